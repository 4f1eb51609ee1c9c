"""Restricted Boltzmann machines (Smolensky 1986; Hinton 2002) trained by CD-k or persistent CD
(Tieleman 2008), with log Z by annealed importance sampling (Salakhutdinov & Murray 2008).

``RBMLayer`` is the math of one RBM (also the building block of ``dbn.py`` and ``dbm.py``);
``BoltzmannModule`` is what RBM, DBN and DBM share in Lightning (manual optimization: the CD
statistics are written into ``.grad`` so any torch optimizer applies them); ``RBM`` is the model.

Shapes: v (B, D) visible, h (B, H) hidden, weight (D, H). Energies and log-probabilities in nats.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn

from dgm_lab.metrics.ais import (
    VISIBLE_TYPES,
    RBMParams,
    annealed_importance_sampling,
    base_rate_bias,
    unnormalized_log_prob,
)
from dgm_lab.models.base import GenerativeModule, require

GAUSSIAN_MIN_STD = 0.05  # pixels that never vary (MNIST borders) are not divided by ~0


def bernoulli(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary sample of ``probs`` as ``uniform < probs``, one uniform per unit in row-major order
    (an explicit draw order, so tests can replay it)."""
    uniform = torch.rand(probs.shape, generator=generator, dtype=probs.dtype, device=probs.device)
    return (uniform < probs).to(probs.dtype)


def device_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """``generator`` if it lives on ``device``, else a generator there seeded from it (reproducible)."""
    if generator is None or generator.device == torch.device(device):
        return generator
    seed = int(torch.randint(2**62, (1,), generator=generator))
    return torch.Generator(device).manual_seed(seed)


def bernoulli_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of independent Bernoulli units, summed over the last dimension."""
    probs = probs.clamp(1e-12, 1 - 1e-12)
    return -(probs * probs.log() + (1 - probs) * torch.log1p(-probs)).sum(-1)


class RBMLayer(nn.Module):
    """One RBM: ``weight`` (D, H), ``visible_bias`` (D,), ``hidden_bias`` (H,).

    Args:
        visible: "bernoulli" (v in {0, 1}; grey levels in [0, 1] are read as probabilities) or
            "gaussian" (real v with unit variance: standardize the data first).
        num_chains: persistent fantasy particles kept in the ``persistent_chains`` buffer (0: CD only).
        up_factor / down_factor: multiply W in p(h | v) / p(v | h). 2 gives the modified RBMs that
            pretrain a DBM (Salakhutdinov & Hinton 2009); the free energy assumes both are 1.
        init_std: weights start N(0, init_std^2) (Hinton's practical guide: 0.01).
    """

    def __init__(self, num_visible: int, num_hidden: int, visible: str = "bernoulli", num_chains: int = 0,
                 up_factor: float = 1.0, down_factor: float = 1.0, init_std: float = 0.01):
        super().__init__()
        require(visible in VISIBLE_TYPES, f"model.visible must be one of {', '.join(VISIBLE_TYPES)}, got {visible!r}.")
        self.visible, self.up_factor, self.down_factor = visible, up_factor, down_factor
        self.weight = nn.Parameter(torch.randn(num_visible, num_hidden) * init_std)
        self.visible_bias = nn.Parameter(torch.zeros(num_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(num_hidden))
        # In the checkpoint, so that PCD resumes with the same fantasy particles.
        self.register_buffer("persistent_chains", torch.zeros(num_chains, num_visible))
        self.register_buffer("chains_ready", torch.tensor(False))

    # -- conditionals ----------------------------------------------------------------------
    def hidden_input(self, v: torch.Tensor) -> torch.Tensor:
        return self.up_factor * (v @ self.weight) + self.hidden_bias

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.hidden_input(v))

    def visible_mean(self, h: torch.Tensor) -> torch.Tensor:
        """E[v | h]: probabilities in [0, 1] (bernoulli) or the Gaussian mean."""
        visible_input = self.down_factor * (h @ self.weight.T) + self.visible_bias
        return torch.sigmoid(visible_input) if self.visible == "bernoulli" else visible_input

    def sample_visible(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mean = self.visible_mean(h)
        if self.visible == "bernoulli":
            return bernoulli(mean, generator)
        return mean + torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)

    def gibbs_sweeps(self, v: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``steps`` sweeps v -> h -> v of block Gibbs sampling."""
        for _ in range(steps):
            v = self.sample_visible(bernoulli(self.hidden_probs(v), generator), generator)
        return v

    # -- energies --------------------------------------------------------------------------
    def free_energy(self, v: torch.Tensor, hidden_input: torch.Tensor | None = None) -> torch.Tensor:
        """F(v) = -log sum_h exp(-E(v, h)) in nats, shape (B,); p(v) = exp(-F(v)) / Z."""
        hidden_input = self.hidden_input(v) if hidden_input is None else hidden_input
        if self.visible == "bernoulli":
            visible_term = -(v @ self.visible_bias)
        else:
            visible_term = 0.5 * (v - self.visible_bias).pow(2).sum(-1)
        return visible_term - F.softplus(hidden_input).sum(-1)

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """E(v, h) in nats, shape (B,)."""
        visible_term = -(v @ self.visible_bias) if self.visible == "bernoulli" else 0.5 * (v - self.visible_bias).pow(2).sum(-1)
        return visible_term - h @ self.hidden_bias - ((v @ self.weight) * h).sum(-1)

    def pseudo_log_likelihood(self, v: torch.Tensor, chunk: int = 50) -> torch.Tensor:
        """sum_i log p(v_i | v_-i) in nats for binary v (B, D), shape (B,); exact: every unit is
        flipped, using p(v_i | v_-i) = sigmoid(F(v with v_i flipped) - F(v))."""
        require(self.visible == "bernoulli", "the pseudo-log-likelihood needs binary visible units.")
        out = []
        for piece in v.split(chunk):
            hidden_input = self.hidden_input(piece)
            flip = 1 - 2 * piece  # +1 where a 0 becomes 1
            flipped_input = hidden_input.unsqueeze(1) + self.up_factor * flip.unsqueeze(-1) * self.weight
            softplus_change = (F.softplus(flipped_input) - F.softplus(hidden_input).unsqueeze(1)).sum(-1)
            free_energy_change = -self.visible_bias * flip - softplus_change
            out.append(F.logsigmoid(free_energy_change).sum(-1))
        return torch.cat(out)

    def ais_params(self) -> RBMParams:
        return RBMParams(self.weight, self.visible_bias, self.hidden_bias, self.visible)

    # -- learning --------------------------------------------------------------------------
    @torch.no_grad()
    def contrastive_divergence(self, v_data: torch.Tensor, steps: int = 1, persistent: bool = False,
                               generator: torch.Generator | None = None) -> dict[str, torch.Tensor | None]:
        """Write the CD-k (or PCD) estimate of -d log p(v_data)/d theta into the parameters' ``.grad``.

        Positive phase: <v h'> with h at p(h | v_data). Negative phase: <v h'> at the end of
        ``steps`` Gibbs sweeps started from the data (CD) or from the persistent chains (PCD),
        with h at p(h | v) (Rao-Blackwellized). Random draws, in order: CD draws h0 (B, H),
        then v1 (B, D), then alternately h, v; PCD draws h, v per sweep of the chains.

        Returns ``loss`` = mean F(v_data) - mean F(v_model), a scalar whose gradient is exactly
        the update, and ``recon`` = E[v | h0] (B, D) of the first down pass (CD only, else None).
        """
        hidden_data_input = self.hidden_input(v_data)
        h_data = torch.sigmoid(hidden_data_input)
        recon = None
        if persistent:
            if not bool(self.chains_ready):  # start the fantasy particles at training examples
                index = torch.arange(len(self.persistent_chains), device=v_data.device) % len(v_data)
                self.persistent_chains.copy_(v_data[index])
                self.chains_ready.fill_(True)
            v_model = self.gibbs_sweeps(self.persistent_chains, steps, generator)
            self.persistent_chains.copy_(v_model)
        else:
            h = bernoulli(h_data, generator)
            for step in range(steps):
                if step == 0:
                    recon = self.visible_mean(h)
                v_model = self.sample_visible(h, generator)
                if step < steps - 1:
                    h = bernoulli(self.hidden_probs(v_model), generator)
        hidden_model_input = self.hidden_input(v_model)
        h_model = torch.sigmoid(hidden_model_input)
        n, m = len(v_data), len(v_model)
        self.weight.grad = -(v_data.T @ h_data / n - v_model.T @ h_model / m)
        self.visible_bias.grad = -(v_data.mean(0) - v_model.mean(0))
        self.hidden_bias.grad = -(h_data.mean(0) - h_model.mean(0))
        loss = self.free_energy(v_data, hidden_data_input).mean() - self.free_energy(v_model, hidden_model_input).mean()
        return {"loss": loss, "recon": recon}


def ais_settings(evaluation: dict | None) -> tuple[int, int]:
    """(num_betas, num_runs) from the ``eval.ais`` block; the papers' 14,500 and 100 by default."""
    ais = dict((evaluation or {}).get("ais") or {})
    num_betas, num_runs = int(ais.get("num_betas", 14500)), int(ais.get("num_runs", 100))
    require(num_betas >= 3, f"eval.ais.num_betas must be at least 3, got {num_betas}.")
    require(num_runs >= 2, f"eval.ais.num_runs must be at least 2 (for the error bar), got {num_runs}.")
    return num_betas, num_runs


class BoltzmannModule(GenerativeModule):
    """What RBM, DBN and DBM share: manual optimization with the statistics written into ``.grad``,
    weight decay on weights only, per-epoch LR schedule, AIS settings, filter grids, Gibbs sampling.

    Args:
        sample_gibbs_steps: Gibbs sweeps per ``sample()`` chain (ImageSamples grids, dgm-sample).
        filter_grid_every_n_epochs: PNG grid of first-layer filters every n epochs (0: off).
        monitor_examples: size of the fixed train/validation subsets used by the epoch monitors.
        evaluation: the run's ``eval`` block; ``eval.ais.num_betas`` / ``num_runs`` set AIS.
    """

    def __init__(self, *, sample_gibbs_steps: int = 1000, filter_grid_every_n_epochs: int = 1,
                 monitor_examples: int = 500, evaluation: dict | None = None,
                 stage_lr_scale: list[float] | None = None, **kwargs):
        super().__init__(**kwargs)
        require(sample_gibbs_steps >= 1, f"model.sample_gibbs_steps must be >= 1, got {sample_gibbs_steps}.")
        require(monitor_examples >= 1, f"model.monitor_examples must be >= 1, got {monitor_examples}.")
        self.automatic_optimization = False  # CD statistics are not the gradient of a loss we could backprop
        self.stage_lr_scale = None if stage_lr_scale is None else [float(scale) for scale in stage_lr_scale]
        # The stage whose start-up has run; in the checkpoint, so a resume does not start it again.
        self.register_buffer("started_stage", torch.tensor(-1))
        self.sample_gibbs_steps = int(sample_gibbs_steps)
        self.filter_grid_every_n_epochs = int(filter_grid_every_n_epochs)
        self.monitor_examples = int(monitor_examples)
        self.ais_num_betas, self.ais_num_runs = ais_settings(evaluation)
        self.num_visible = math.prod(self.data_shape)
        self._monitor_cache: dict[str, torch.Tensor] = {}

    # -- optimization ----------------------------------------------------------------------
    def configure_optimizers(self):
        # Weight decay (from the optimizer config) on weights only, as in Hinton's practical guide.
        weights = [p for name, p in self.named_parameters() if name.endswith("weight")]
        biases = [p for name, p in self.named_parameters() if not name.endswith("weight")]
        optimizer = self.optimizer_factory([{"params": weights}, {"params": biases, "weight_decay": 0.0}])
        self.configured_lrs = [group["lr"] for group in optimizer.param_groups]
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"}}

    # -- training stages (DBN: one per layer; DBM: two pretraining RBMs, then joint training) --
    def stage_starts(self) -> list[int]:
        """First epoch of each training stage, in order; one stage unless a model says otherwise."""
        return [0]

    def check_stages(self) -> None:
        """Validates ``stage_lr_scale`` against the stages; models call it once they are built."""
        scales, count = self.stage_lr_scale, len(self.stage_starts())
        require(scales is None or (len(scales) == count and min(scales) > 0),
                f"model.stage_lr_scale needs {count} positive factors, one per training stage, got {scales}.")

    def stage(self) -> int:
        """Index of the stage that the current epoch belongs to."""
        return max(i for i, start in enumerate(self.stage_starts()) if start <= self.current_epoch)

    def begin_stage(self, stage: int) -> None:
        """Called once when ``stage`` starts (after a resume only if it had not started yet)."""

    def restart_optimizer(self, stage: int) -> None:
        """A stage trains its parameters afresh: momentum is cleared, the LR is the configured one
        times ``stage_lr_scale[stage]``, and the scheduler starts again. In a model of several
        stages a cosine one decays over the stage's own epochs (T_max), so that every layer of a
        stack gets the whole schedule; a one-stage model keeps the configured T_max."""
        optimizer = self.optimizers().optimizer
        optimizer.state.clear()
        scale = self.stage_lr_scale[stage] if self.stage_lr_scale else 1.0
        for group, lr in zip(optimizer.param_groups, self.configured_lrs, strict=True):
            group["lr"] = group["initial_lr"] = lr * scale
        if self.scheduler_factory is None:
            return
        scheduler = self.scheduler_factory(optimizer)
        starts = self.stage_starts()
        end = starts[stage + 1] if stage + 1 < len(starts) else self.trainer.max_epochs
        if len(starts) > 1 and hasattr(scheduler, "T_max") and end is not None and end > starts[stage]:
            scheduler.T_max = end - starts[stage]
        self.trainer.lr_scheduler_configs[0].scheduler = scheduler

    def on_train_epoch_start(self) -> None:
        """Starts the stage this epoch begins, then steps the LR scheduler (manual optimization:
        Lightning does not) up to the epoch within the stage. Stepping at epoch start (not at
        epoch end, after the checkpoint was written) keeps a resumed run on the same schedule."""
        stage = self.stage()
        if stage > int(self.started_stage):
            with torch.no_grad():
                for skipped_or_new in range(int(self.started_stage) + 1, stage + 1):
                    self.begin_stage(skipped_or_new)
            self.restart_optimizer(stage)
            self.started_stage.fill_(stage)
        scheduler = self.lr_schedulers()
        while scheduler is not None and scheduler.last_epoch < self.current_epoch - self.stage_starts()[stage]:
            scheduler.step()

    def configure_callbacks(self):
        from dgm_lab.callbacks.rbm_monitor import WeightFilters

        return [WeightFilters(self.filter_grid_every_n_epochs)] if self.filter_grid_every_n_epochs > 0 else []

    # -- data ------------------------------------------------------------------------------
    def train_images(self, split: str = "train", limit: int | None = None, binary: bool = False) -> torch.Tensor | None:
        """The first ``limit`` images of a split, flattened (N, D) on this device, or None when the
        datamodule does not hold its splits in memory. ``binary``: grey levels are binarized with
        a fixed seed (same subset every epoch, global RNG untouched)."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        splits = getattr(datamodule, "splits", None)
        if not splits or split not in splits:
            return None
        key = f"{split}:{limit}:{binary}"
        if key not in self._monitor_cache:
            images = splits[split].images[:limit].flatten(1).float()
            if binary and not bool(((images == 0) | (images == 1)).all()):
                images = torch.bernoulli(images, generator=torch.Generator().manual_seed(0))
            self._monitor_cache[key] = images
        return self._monitor_cache[key].to(self.device)

    def weight_filters(self) -> torch.Tensor:
        """First-layer filters as images (H, C, h, w), each scaled to [0, 1] by its own range."""
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
        if ais is None or not math.isfinite(getattr(self, "log_z_floor", -math.inf)):
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


class RBM(BoltzmannModule):
    """Bernoulli-Bernoulli or Gaussian-Bernoulli RBM on flattened images.

    Args:
        num_hidden: H, number of binary hidden units.
        visible: "bernoulli" (binarized data, or grey levels as probabilities) or "gaussian"
            (each pixel standardized with the training set's mean and std; unit variance).
        cd_k: Gibbs sweeps per update (CD-k), or sweeps the persistent chains advance per update.
        persistent: persistent CD (Tieleman 2008) with ``num_chains`` fantasy particles.
        init_std: initial weight std.

    Metrics (nats): ``val/pseudo_loglik`` (bernoulli; per example, summed over pixels),
    ``val/recon_error`` (squared error summed over pixels, data units), ``val/free_energy_gap``
    (mean F on validation minus mean F on training examples; growth means overfitting),
    ``test/loglik_ais`` (mean log p(x) with log Z by AIS) and its ``_low``/``_high`` interval.
    """

    default_monitor = ("val/pseudo_loglik", "max")

    @property
    def binary_visible(self) -> bool:
        return self.visible == "bernoulli"  # Gaussian units have densities: log p(x) > 0 is possible

    def __init__(self, num_hidden: int = 500, visible: str = "bernoulli", cd_k: int = 1, persistent: bool = False,
                 num_chains: int = 100, init_std: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        require(num_hidden >= 1, f"model.num_hidden must be a positive integer, got {num_hidden}.")
        require(cd_k >= 1, f"model.cd_k must be at least 1, got {cd_k}.")
        require(num_chains >= 1 or not persistent, f"model.num_chains must be >= 1 with persistent CD, got {num_chains}.")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.cd_k, self.persistent, self.visible = int(cd_k), bool(persistent), visible
        self.rbm = RBMLayer(self.num_visible, num_hidden, visible, num_chains if persistent else 0, init_std=init_std)
        # Gaussian units see standardized pixels; the statistics travel in the checkpoint.
        self.register_buffer("data_mean", torch.zeros(self.num_visible))
        self.register_buffer("data_std", torch.ones(self.num_visible))
        self.register_buffer("data_initialized", torch.tensor(False))

    def first_layer(self) -> RBMLayer:
        return self.rbm

    # -- data <-> visible units ------------------------------------------------------------
    def to_visible(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return (flat - self.data_mean) / self.data_std if self.visible == "gaussian" else flat

    def to_data(self, v: torch.Tensor) -> torch.Tensor:
        return v * self.data_std + self.data_mean if self.visible == "gaussian" else v

    def log_jacobian(self) -> torch.Tensor:
        """log |dv/dx| of the standardization: log p(x) = log p(v) + this (0 for bernoulli)."""
        return -self.data_std.double().log().sum() if self.visible == "gaussian" else torch.zeros((), dtype=torch.float64)

    def on_fit_start(self) -> None:
        """First fit only: visible biases at the data's base rates (Hinton's guide, section 8)."""
        checkpoint = self.trainer.checkpoint_callback
        require(self.visible == "bernoulli" or checkpoint is None or checkpoint.monitor != "val/pseudo_loglik",
                "model.visible=gaussian has no pseudo-log-likelihood to select checkpoints by; add "
                "monitor.metric=val/recon_error monitor.mode=min.")
        images = self.train_images()
        if bool(self.data_initialized) or images is None:
            return
        with torch.no_grad():
            if self.visible == "gaussian":
                self.data_mean.copy_(images.mean(0))
                self.data_std.copy_(images.std(0).clamp_min(GAUSSIAN_MIN_STD))
            else:
                self.rbm.visible_bias.copy_(base_rate_bias(images).float())
        self.data_initialized.fill_(True)

    # -- training --------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x, _ = batch
        optimizer = self.optimizers()
        v = self.to_visible(x)
        out = self.rbm.contrastive_divergence(v, self.cd_k, self.persistent)
        optimizer.step()
        self.log_train_step({"train/free_energy_diff": out["loss"]}, prog_bar_key="train/free_energy_diff")
        if out["recon"] is not None:
            self.accumulate_epoch_mean("train/recon_error", (x.flatten(1) - self.to_data(out["recon"])).pow(2).sum(-1).mean())
        return out["loss"]

    # -- monitoring ------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[v | p(h | x)]: one deterministic up-down pass, images (N, C, H, W) in [0, 1]."""
        recon = self.to_data(self.rbm.visible_mean(self.rbm.hidden_probs(self.to_visible(x))))
        return recon.clamp(0, 1).reshape(-1, *self.data_shape)

    def validation_step(self, batch, batch_idx):
        x, _ = batch
        error = (x - self.reconstruct(x)).flatten(1).pow(2).sum(-1).mean()
        self.log("val/recon_error", error, on_epoch=True, batch_size=len(x), sync_dist=True)

    @torch.no_grad()
    def on_validation_epoch_end(self) -> None:
        binary = self.visible == "bernoulli"
        val = self.train_images("val", self.monitor_examples, binary)
        train = self.train_images("train", self.monitor_examples, binary)
        if val is None or train is None:
            return
        val_v, train_v = self.to_visible(val), self.to_visible(train)
        gap = self.rbm.free_energy(val_v).mean() - self.rbm.free_energy(train_v).mean()
        self.log("val/free_energy_gap", gap, on_epoch=True)
        if binary:
            self.log("val/pseudo_loglik", self.rbm.pseudo_log_likelihood(val_v).mean(), on_epoch=True)

    def on_fit_end(self) -> None:
        self._monitor_cache = {}

    # -- test: log-likelihood with log Z by AIS --------------------------------------------
    def base_bias(self) -> torch.Tensor:
        """AIS base-rate biases from the training split (standardized units for gaussian)."""
        images = self.train_images()
        if images is None:  # no data at hand: a uniform / standard-normal base model
            return torch.zeros(self.num_visible, dtype=torch.float64)
        return base_rate_bias(self.to_visible(images), self.visible)

    def on_test_epoch_start(self) -> None:
        self.ais = annealed_importance_sampling(self.rbm.ais_params(), self.base_bias(), self.ais_num_betas,
                                                self.ais_num_runs)
        self.log_ais_result(self.ais)

    @torch.no_grad()
    def test_step(self, batch, batch_idx):
        x, _ = batch
        v = self.to_visible(x)
        log_p_star = unnormalized_log_prob(self.rbm.ais_params(), v) + self.log_jacobian().to(v.device)
        self.log_ais_estimate("test/loglik_ais", log_p_star, self.ais)
        error = (x - self.reconstruct(x)).flatten(1).pow(2).sum(-1).mean()
        self.log("test/recon_error", error, on_epoch=True, batch_size=len(x), sync_dist=True)

    # -- generation ------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None, labels=None) -> torch.Tensor:
        """``sample_gibbs_steps`` Gibbs sweeps from uniform noise; returns E[v | h] of the last sweep
        (no sampling noise in the picture), images (N, C, H, W) in [0, 1]."""
        generator = device_generator(generator, self.device)
        shape = (num_samples, self.num_visible)
        if self.visible == "bernoulli":
            v = bernoulli(torch.full(shape, 0.5, device=self.device), generator)
        else:
            v = torch.randn(shape, generator=generator, device=self.device)
        v = self.rbm.gibbs_sweeps(v, self.sample_gibbs_steps - 1, generator)
        mean = self.rbm.visible_mean(bernoulli(self.rbm.hidden_probs(v), generator))
        return self.to_data(mean).clamp(0, 1).reshape(-1, *self.data_shape)
