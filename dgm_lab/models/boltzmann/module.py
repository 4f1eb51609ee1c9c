"""What RBM, DBN and DBM share in Lightning: manual optimization with the CD statistics written
into ``.grad`` (so any torch optimizer applies them), AIS settings and reporting, data access,
weight filters and Gibbs sampling settings.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from pytorch_lightning.utilities import rank_zero_warn

from dgm_lab.data.contract import InMemoryImageData
from dgm_lab.models.base import decay_weights_only
from dgm_lab.models.boltzmann.config import BoltzmannConfig
from dgm_lab.models.boltzmann.layer import RBMLayer
from dgm_lab.models.stages import StagedModule
from dgm_lab.settings import EvaluationSettings

BASE_RATE_EXAMPLES = 10000  # training examples whose statistics set base rates (initial biases, AIS base models)


class BoltzmannModule(StagedModule):
    """What RBM, DBN and DBM share: manual optimization with the statistics written into ``.grad``,
    weight decay on weights only, training stages (``dgm_lab.models.stages``), AIS settings and
    reporting, the reconstruction-error validation, weight filters, Gibbs sampling.

    Args:
        evaluation: the run's ``eval`` block; ``eval.ais.num_betas`` / ``num_runs`` set AIS.

    Settings (``settings_class``, a ``BoltzmannConfig`` in dgm_lab/models/boltzmann/config.py,
    checked there): the model's own and those every Boltzmann machine has:
        sample_gibbs_steps: Gibbs sweeps per ``sample()`` chain (ImageSamples grids, dgm-sample).
        monitor_examples: size of the fixed train/validation subsets used by the epoch monitors.
        stage_lr_scale: null, or one LR factor per training stage (``dgm_lab.models.stages``).
    """

    settings_class: type[BoltzmannConfig] = BoltzmannConfig

    def __init__(self, *, evaluation: dict | None = None, **kwargs):
        settings = self.settings_class.take(kwargs)
        super().__init__(stage_lr_scale=settings.stage_lr_scale, **kwargs)
        self.settings = settings
        self.save_hyperparameters(dataclasses.asdict(settings), logger=False)
        self.automatic_optimization = False  # CD statistics are not the gradient of a loss we could backprop
        self.sample_gibbs_steps = settings.sample_gibbs_steps
        self.monitor_examples = settings.monitor_examples
        evaluation = EvaluationSettings.from_config(evaluation)
        self.ais_num_betas, self.ais_num_runs = evaluation.ais_num_betas, evaluation.ais_num_runs
        self.num_visible = math.prod(self.data_shape)
        self._monitor_cache: dict[str, torch.Tensor] = {}
        self.log_z_floor = -math.inf  # the largest log p*(x) of a test image so far (log_ais_estimate)

    # -- optimization ----------------------------------------------------------------------
    def optimized_parameters(self) -> dict:
        return {"optimizer": decay_weights_only(self.named_parameters())}

    # -- data ------------------------------------------------------------------------------
    def train_images(self, split: str = "train", limit: int | None = None, binary: bool = False) -> torch.Tensor | None:
        """The first ``limit`` images of a split, flattened (N, D) on this device, or None when the
        datamodule does not hold its splits in memory (``InMemoryImageData``) or has no such split.
        ``binary``: grey levels are binarized with a fixed seed (same subset every epoch, global
        RNG untouched)."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if not isinstance(datamodule, InMemoryImageData):
            return None
        key = f"{split}:{limit}:{binary}"
        if key not in self._monitor_cache:
            images = datamodule.split_images(split, limit)
            if images is None:
                return None
            images = images.flatten(1).float()
            if binary and not bool(((images == 0) | (images == 1)).all()):
                images = torch.bernoulli(images, generator=torch.Generator().manual_seed(0))
            self._monitor_cache[key] = images
        return self._monitor_cache[key].to(self.device)

    # -- monitoring ------------------------------------------------------------------------
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) in [0, 1] after a deterministic pass up the model and back down."""
        raise NotImplementedError

    def reconstruction_error(self, x: torch.Tensor) -> torch.Tensor:
        """Squared error of ``reconstruct(x)``, summed over pixels, averaged over the batch."""
        return (x - self.reconstruct(x)).flatten(1).pow(2).sum(-1).mean()

    def validation_step(self, batch, batch_idx):
        x, _ = batch
        self.log("val/recon_error", self.reconstruction_error(x), on_epoch=True, batch_size=len(x), sync_dist=True)

    def weight_filters(self) -> torch.Tensor:
        """First-layer filters as images (H, C, h, w), each scaled to [0, 1] by its own range
        (``HasWeightFilters``: the WeightFilters callback writes them)."""
        weight = self.first_layer().weight.detach().T.float()
        low, high = weight.min(1, keepdim=True).values, weight.max(1, keepdim=True).values
        return ((weight - low) / (high - low).clamp_min(1e-12)).reshape(-1, *self.data_shape).cpu()

    def first_layer(self) -> RBMLayer:
        raise NotImplementedError

    # -- AIS reporting ---------------------------------------------------------------------
    binary_visible = True  # p(x) <= 1 for every x: the AIS sanity floor below applies

    def log_ais_estimate(self, prefix: str, log_prob_plus_log_z: torch.Tensor, ais) -> None:
        """Log ``<prefix>`` = mean(log p*(x)) - log Z_hat (nats per example) for a test batch, with
        the ends of the +/- 3 s.e. interval of Z_hat carried over. ``log_prob_plus_log_z`` is
        log p*(x) per example, or a lower bound on it."""
        mean = log_prob_plus_log_z.double().mean()
        n = len(log_prob_plus_log_z)
        self.log_dict({prefix: mean - ais.log_z, f"{prefix}_low": mean - ais.log_z_high,
                       f"{prefix}_high": mean - ais.log_z_low}, on_epoch=True, batch_size=n, sync_dist=True)
        if self.binary_visible:
            self.log_z_floor = max(self.log_z_floor, float(log_prob_plus_log_z.max()))

    def log_ais_result(self, ais) -> None:
        values = {"test/log_z": ais.log_z, "test/log_z_low": ais.log_z_low, "test/log_z_high": ais.log_z_high}
        self.log_dict({k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}, on_epoch=True)
        self.diagnostics["test/ais"] = ais.as_dict()
        self.log_z_floor = -math.inf

    def on_test_epoch_end(self) -> None:
        """With binary units Z = sum_x p*(x) >= p*(x) for every test image x, so log Z >= the largest
        log p*(x) (``test/log_z_lower_bound``). AIS errs low when its chains miss modes; an estimate
        below this floor is certainly wrong, and the log-likelihood it gives certainly too high."""
        ais = self.diagnostics.get("test/ais")
        if ais is None or not math.isfinite(self.log_z_floor):
            return
        self.log("test/log_z_lower_bound", torch.tensor(self.log_z_floor, dtype=torch.float64), reduce_fx="max",
                 sync_dist=True)
        ais["log_z_lower_bound"] = self.log_z_floor
        ais["certainly_underestimated"] = self.log_z_floor > ais["log_z"]
        if ais["certainly_underestimated"]:
            rank_zero_warn(
                f"AIS log Z = {ais['log_z']:.2f} is below log p*(x) = {self.log_z_floor:.2f} of a test image, so it is "
                "certainly too low and the test log-likelihood certainly too high: its chains missed modes of the "
                "model; rerun dgm-eval with more eval.ais.num_betas, and distrust this model's samples and AIS.")
