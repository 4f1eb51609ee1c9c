"""The adversarial LightningModule every GAN shares (``model=gan|dcgan|wgan_gp|sngan``).

One Lightning training step is one generator iteration:

1. ``n_critic`` discriminator steps, each on ``accumulate`` micro-batches of ``data.batch_size``
   real examples (loss divided by ``accumulate``: gradient accumulation by hand, because Lightning's
   ``accumulate_grad_batches`` does not apply to manual optimization);
2. one generator step on ``accumulate`` micro-batches of the same size;
3. the EMA generator is updated and ``generator_steps`` (saved in checkpoints) advances by one.

So that one Lightning batch carries all the real data of an iteration, the GAN asks the
datamodule at fit start for ``n_critic * accumulate`` batches of ``data.batch_size`` per step
(``InMemoryImageData.set_batches_per_step``) and splits each batch into micro-batches. Lightning's ``batch_idx``, ``log_every_n_steps`` and
``val_check_interval`` (hence checkpoint intervals, checkpoints being written at validation) then
count generator iterations. ``trainer.global_step`` counts optimizer steps, n_critic + 1 per
iteration; ``model.max_generator_steps`` bounds training in generator iterations.

Data conventions: images arrive in [0, 1] and are mapped to [-1, 1] (tanh generator output);
vectors (2-D points) are used as they are (linear generator output).

DDP without ``find_unused_parameters``: every backward pass must reach every trainable parameter.
The generator loss reaches both networks; the discriminator loss adds 0 * sum(generator params)
when several processes run. Noise is drawn for the global batch on every rank (same seed, same
stream: ``noise_generator``) and sliced rank::world, matching DistributedSampler's strided shards,
so that a 2-process run computes what a 1-process run with the same global batch computes.

AMP: losses go through ``manual_backward`` (Lightning scales them) and every optimizer step through
Lightning's optimizer wrapper, which unscales, skips non-finite steps and updates the scaler after
that step. Each D step and each G step is its own scale/backward/step/update cycle: a scaler step
per optimizer between two updates is all that torch.amp allows, and the scale is never updated
between a backward pass and the step that consumes its gradients.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from dgm_lab.data.contract import InMemoryImageData, hides_labels
from dgm_lab.errors import require
from dgm_lab.models.base import GenerativeModule
from dgm_lab.models.gan.config import GANConfig
from dgm_lab.models.gan.losses import adversarial_loss, gradient_penalty
from dgm_lab.models.gan.networks import add_spectral_norm, has_batch_norm

EVAL_NOISE_SEED = 20240  # validation/test fakes use a private generator: no training RNG is consumed
# The EMA generator's batch-norm statistics: estimated from these noise batches, drawn with a private
# seed, so that they depend on the averaged weights alone (a resumed run recomputes the same ones).
# 1,024 draws measured 1,024 x H x W activations per convolution channel.
EMA_STATISTICS_SEED, EMA_STATISTICS_BATCHES, EMA_STATISTICS_BATCH_SIZE = 20241, 8, 128


class GAN(GenerativeModule):
    """Generator + discriminator trained adversarially with manual optimization.

    Args:
        generator: factory ``(latent_dim, out_shape, num_classes, out_activation) -> nn.Module``.
        discriminator: factory ``(in_shape, num_classes) -> nn.Module`` returning scores (B,).

    Settings (``GANConfig``, dgm_lab/models/gan/config.py, checked there):
        latent_dim: size of z ~ N(0, I).
        loss: ``non_saturating | minimax | wasserstein | hinge | least_squares``.
        n_critic: discriminator steps per generator step.
        gp_weight: weight of the WGAN-GP gradient penalty (0 = off).
        spectral_norm: spectral normalization on every discriminator layer.
        conditional: class-conditional G (label embedding) and D (projection).
        accumulate: micro-batches per optimizer step (gradient accumulation).
        max_generator_steps: stop after this many generator iterations (null: no limit).
        ema: ``{enabled, decay, start_step, warmup, use_for_sampling}``: moving average of the generator weights;
            samples and metrics use it when enabled. Before ``start_step`` it copies the weights.
        generator_optimizer, discriminator_optimizer: ``{lr, betas}`` overriding the shared
            ``optimizer`` factory for one network (null keeps the factory's value): TTUR.
    """

    # GAN losses do not rank checkpoints: the run picks a sample-quality metric (dgm_lab.monitor).
    default_monitor = (None, None)

    settings_class = GANConfig

    def __init__(self, generator: Callable, discriminator: Callable, **kwargs):
        settings = self.settings_class.take(kwargs)
        super().__init__(**kwargs)
        self.settings = settings
        self.automatic_optimization = False
        self.save_hyperparameters(dataclasses.asdict(settings), logger=False)
        require(not settings.conditional or self.num_classes >= 2,
                f"model.conditional=true needs labelled data with 2 or more classes, this data has {self.num_classes}.")
        self.loss = adversarial_loss(settings.loss)
        self.latent_dim, self.n_critic, self.accumulate = settings.latent_dim, settings.n_critic, settings.accumulate
        self.gp_weight, self.conditional = settings.gp_weight, settings.conditional
        self.max_generator_steps = settings.max_generator_steps
        ema = settings.ema
        self.ema_enabled, self.ema_decay, self.ema_start = ema.enabled, float(ema.decay), ema.start_step
        self.ema_warmup, self.ema_for_sampling = ema.warmup, ema.use_for_sampling
        self.optimizer_overrides = {"generator_optimizer": dict(settings.generator_optimizer or {}),
                                    "discriminator_optimizer": dict(settings.discriminator_optimizer or {})}
        self.is_image = len(self.data_shape) == 3
        classes = self.num_classes if self.conditional else 0
        self.generator = generator(latent_dim=self.latent_dim, out_shape=self.data_shape, num_classes=classes,
                                   out_activation="tanh" if self.is_image else "none")
        self.discriminator = discriminator(in_shape=self.data_shape, num_classes=classes)
        if settings.spectral_norm:
            add_spectral_norm(self.discriminator)
        require(self.gp_weight == 0 or not has_batch_norm(self.discriminator),
                "the gradient penalty is per example and batch norm mixes examples: set model.discriminator.norm=none.")
        # Holds both weight sets in every checkpoint; never trained, so DDP ignores it.
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False) if self.ema_enabled else None
        # batch norm in the EMA generator: its statistics are re-estimated after each update
        self._ema_has_batch_norm = self.ema_enabled and has_batch_norm(self.generator_ema)
        self._ema_statistics_stale = self._ema_has_batch_norm
        self.generator_steps = 0
        self._noise: torch.Generator | None = None
        self._noise_state: torch.Tensor | None = None  # restored from a checkpoint

    @property
    def training_iterations(self) -> int:
        return self.generator_steps

    # -- data space ---------------------------------------------------------------------------
    def to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        """Images [0, 1] -> [-1, 1]; vectors unchanged."""
        return x * 2 - 1 if self.is_image else x

    def from_model_space(self, x: torch.Tensor) -> torch.Tensor:
        """Generator output -> data space: images to [0, 1], vectors unchanged."""
        return ((x + 1) / 2).clamp(0, 1) if self.is_image else x

    # -- randomness shared across DDP ranks ----------------------------------------------------
    def _world(self) -> tuple[int, int]:
        trainer = self._trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def noise_generator(self) -> torch.Generator:
        """The training noise stream: seeded from the run's seed at the first draw, saved in
        checkpoints. Private, because DDP re-seeds the global RNG after the model is built (a
        1-process run would draw other noise) and so that no callback can perturb it."""
        if self._noise is None or self._noise.device != self.device:
            self._noise = torch.Generator(device=self.device)
            if self._noise_state is not None:
                self._noise.set_state(self._noise_state)
            else:
                self._noise.manual_seed(torch.initial_seed())
        return self._noise

    def _draw(self, kind: str, n: int, *shape: int) -> torch.Tensor:
        """``n`` rows of this rank's slice of a global draw (normal, uniform or class labels)."""
        world, rank = self._world()
        size, rng = (n * world, *shape), self.noise_generator()
        if kind == "normal":
            full = torch.randn(size, device=self.device, generator=rng)
        elif kind == "uniform":
            full = torch.rand(size, device=self.device, generator=rng)
        else:
            full = torch.randint(0, self.num_classes, size, device=self.device, generator=rng)
        return full[rank::world]

    def _unused_guard(self, module: nn.Module) -> torch.Tensor | float:
        """0 * sum of ``module``'s parameters under DDP: marks them used by a backward pass that
        does not otherwise reach them, so DDP needs no ``find_unused_parameters``."""
        if self._world()[0] == 1:
            return 0.0
        return sum(p.sum() for p in module.parameters() if p.requires_grad) * 0.0

    # -- losses -------------------------------------------------------------------------------
    def discriminator_loss(self, real: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """D loss on real examples (model space) and as many fresh fakes; the GP term if on."""
        n = real.shape[0]
        with torch.no_grad():
            fake = self.generator(self._draw("normal", n, self.latent_dim), labels)
        real_scores = self.discriminator(real, labels).float()
        fake_scores = self.discriminator(fake, labels).float()
        out = {"loss": self.loss.discriminator(real_scores, fake_scores),
               "real_score": real_scores.mean().detach(), "fake_score": fake_scores.mean().detach()}
        if self.gp_weight > 0:
            scaler = getattr(self.trainer.precision_plugin, "scaler", None) if self._trainer is not None else None
            grad_scale = scaler.scale(torch.ones((), device=self.device)) if scaler is not None else None
            penalty = gradient_penalty(lambda x: self.discriminator(x, labels), real, fake,
                                       self._draw("uniform", n), grad_scale)
            out["loss"] = out["loss"] + self.gp_weight * penalty
            out["gradient_penalty"] = penalty.detach()
        return out

    def generator_loss(self, n: int) -> torch.Tensor:
        labels = self._draw("labels", n) if self.conditional else None
        fake = self.generator(self._draw("normal", n, self.latent_dim), labels)
        return self.loss.generator(self.discriminator(fake, labels).float())

    # -- training -----------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """One Lightning batch = all real data of one generator iteration (see module docstring)."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if stage != "fit" or datamodule is None:
            return
        # A conditional G and D need the label of every real image; hidden labels (y = -1) have none.
        require(not (self.conditional and hides_labels(datamodule)),
                f"model.conditional=true needs the label of every training image, but data.num_labeled="
                f"{getattr(datamodule, 'num_labeled', None)} hides most of them; remove data.num_labeled, or use a "
                "semi-supervised model.")
        per_iteration = self.n_critic * self.accumulate
        if isinstance(datamodule, InMemoryImageData):
            datamodule.set_batches_per_step(per_iteration)
            return
        require(per_iteration == 1,
                f"model.n_critic x model.accumulate = {per_iteration} micro-batches per generator iteration need a "
                f"datamodule that implements dgm_lab.data.contract.InMemoryImageData, which "
                f"{type(datamodule).__name__} does not: set model.n_critic=1 and model.accumulate=1.")

    def training_step(self, batch, batch_idx):
        x, y = batch
        pieces = self.n_critic * self.accumulate
        require(x.shape[0] >= pieces, f"a batch of {x.shape[0]} examples cannot be split into n_critic x accumulate = "
                                      f"{pieces} micro-batches; use more training data or a smaller model.n_critic.")
        reals = self.to_model_space(x).tensor_split(pieces)
        labels = y.tensor_split(pieces) if self.conditional else [None] * pieces
        g_opt, d_opt = self.optimizers()

        for step in range(self.n_critic):
            d_opt.zero_grad(set_to_none=True)
            for micro in range(self.accumulate):
                i = step * self.accumulate + micro
                d_out = self.discriminator_loss(reals[i], labels[i])
                self.manual_backward(d_out["loss"] / self.accumulate + self._unused_guard(self.generator))
            d_opt.step()

        g_opt.zero_grad(set_to_none=True)
        for _ in range(self.accumulate):
            g_loss = self.generator_loss(reals[0].shape[0])
            self.manual_backward(g_loss / self.accumulate)  # also reaches D: those grads are discarded
        g_opt.step()
        d_opt.zero_grad(set_to_none=True)

        self.generator_steps += 1
        self.update_ema()
        if self.max_generator_steps and self.generator_steps >= self.max_generator_steps:
            self.trainer.should_stop = True
        metrics = {"train/d_loss": d_out["loss"].detach(), "train/g_loss": g_loss.detach(),
                   "train/real_score": d_out["real_score"], "train/fake_score": d_out["fake_score"]}
        if "gradient_penalty" in d_out:
            metrics["train/gradient_penalty"] = d_out["gradient_penalty"]
        self.log_train_step({**metrics, "train/generator_step": float(self.generator_steps)})
        return {"loss": metrics["train/d_loss"] + metrics["train/g_loss"]}  # DivergenceGuard reads it

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema <- decay * ema + (1 - decay) * weights; its batch-norm statistics are then re-estimated
        before it next samples (``refresh_ema_statistics``), not copied: the trained generator's
        describe other weights (a DCGAN's val LeNet FID 137.8 with copied ones, 135.9 with its own)."""
        if self.generator_ema is None:
            return
        decay = self.current_ema_decay()
        ema_params, params = list(self.generator_ema.parameters()), list(self.generator.parameters())
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        self._ema_statistics_stale = self._ema_has_batch_norm

    @torch.no_grad()
    def refresh_ema_statistics(self) -> None:
        """Re-estimate the EMA generator's batch-norm statistics from its own activations: reset,
        then the cumulative mean over fixed noise batches (momentum None), as
        ``torch.optim.swa_utils.update_bn`` does for a data loader; written here because a
        class-conditional generator also takes labels. A no-op when the weights have not moved."""
        if not self._ema_statistics_stale:
            return
        net = self.generator_ema
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        noise = torch.Generator().manual_seed(EMA_STATISTICS_SEED)
        was_training = net.training
        net.train()
        try:
            for _ in range(EMA_STATISTICS_BATCHES):
                z = torch.randn(EMA_STATISTICS_BATCH_SIZE, self.latent_dim, generator=noise).to(self.device)
                labels = (torch.randint(0, self.num_classes, (EMA_STATISTICS_BATCH_SIZE,), generator=noise).to(self.device)
                          if self.conditional else None)
                net(z, labels)
        finally:
            net.train(was_training)
            for m, momentum in zip(norms, momenta, strict=True):
                m.momentum = momentum
        self._ema_statistics_stale = False

    def current_ema_decay(self) -> float:
        """The EMA decay at this generator iteration: 0 (a copy) up to ``start_step``, then
        ``decay``, capped by the warm-up (1 + t) / (10 + t), t counted from ``start_step``."""
        if self.generator_steps <= self.ema_start:
            return 0.0
        if not self.ema_warmup:
            return self.ema_decay
        t = self.generator_steps - self.ema_start
        return min(self.ema_decay, (1 + t) / (10 + t))

    def optimized_parameters(self) -> dict:
        """Generator optimizer, then discriminator optimizer: the shared factory with each
        network's ``model.generator_optimizer`` / ``model.discriminator_optimizer`` overrides."""
        return {"generator_optimizer": self.generator.parameters(),
                "discriminator_optimizer": self.discriminator.parameters()}

    # -- evaluation ---------------------------------------------------------------------------
    def _evaluate(self, batch, batch_idx: int, split: str) -> None:
        """Losses on held-out real data against fixed-seed fakes of the sampling generator."""
        x, y = batch
        labels = y if self.conditional else None
        noise = torch.Generator().manual_seed(EVAL_NOISE_SEED + batch_idx)
        z = torch.randn(x.shape[0], self.latent_dim, generator=noise).to(self.device)
        fake = self.sampling_generator()(z, labels)
        real_scores = self.discriminator(self.to_model_space(x), labels).float()
        fake_scores = self.discriminator(fake, labels).float()
        self.log_dict({f"{split}/d_loss": self.loss.discriminator(real_scores, fake_scores),
                       f"{split}/g_loss": self.loss.generator(fake_scores)},
                      on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True)

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, batch_idx, "test")

    def on_validation_epoch_end(self):
        self.log("val/generator_step", float(self.generator_steps))

    def on_test_epoch_end(self):
        self.log("test/generator_step", float(self.generator_steps))

    # -- sampling -----------------------------------------------------------------------------
    def sampling_generator(self, use_ema: bool | None = None) -> nn.Module:
        """The EMA generator when EMA is enabled and ``model.ema.use_for_sampling`` (``use_ema``
        decides when given), else the trained one."""
        use_ema = (self.ema_enabled and self.ema_for_sampling) if use_ema is None else use_ema
        require(not use_ema or self.generator_ema is not None, "use_ema=True needs model.ema.enabled=true.")
        if use_ema:
            self.refresh_ema_statistics()
        return self.generator_ema if use_ema else self.generator

    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None, use_ema: bool | None = None) -> torch.Tensor:
        """Images (N, C, H, W) in [0, 1], or points (N, D), from z ~ N(0, I) drawn with ``generator``.

        Conditional models draw class ``labels[i]`` for sample i; without labels, the fixed
        cycle 0, 1, ..., K-1, 0, 1, ... (so that sample grids always show the same classes).
        """
        net = self.sampling_generator(use_ema)
        z = torch.randn(num_samples, self.latent_dim, generator=generator).to(self.device)
        if self.conditional:
            labels = torch.arange(num_samples) % self.num_classes if labels is None else torch.as_tensor(labels)
            require(bool(((labels >= 0) & (labels < self.num_classes)).all()),
                    f"labels must be classes 0..{self.num_classes - 1}, got {labels.unique().tolist()}.")
            labels = labels.long().to(self.device)
        else:
            labels = None
        was_training = net.training
        net.eval()  # batch norm uses its running statistics; sampling never updates them
        try:
            out = net(z, labels)
        finally:
            net.train(was_training)
        return self.from_model_space(out.float())

    # -- checkpoints --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the statistics in the file belong to the weights in it: Lightning took the state dict before
        # this hook, so the re-estimated buffers are written into it (nothing to do after a validation)
        if self._ema_statistics_stale:
            self.refresh_ema_statistics()
            checkpoint["state_dict"].update({f"generator_ema.{k}": v.detach().clone()
                                             for k, v in self.generator_ema.named_buffers()})
        super().on_save_checkpoint(checkpoint)
        checkpoint["gan"] = {"generator_steps": self.generator_steps,
                             "noise_rng": self.noise_generator().get_state()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("gan", {})
        self.generator_steps = int(state.get("generator_steps", 0))
        # a checkpoint of an earlier version copied the trained generator's statistics: estimate the EMA's own
        self._ema_statistics_stale = self._ema_has_batch_norm
        self._noise, self._noise_state = None, state.get("noise_rng")
