"""FID / IS / KID / precision-recall (and plug-in feature metrics) of a model's samples during training (conf/metrics).

    dgm-train metrics=lenet                          # all four with the shipped LeNet: val/fid_lenet ...
    dgm-train metrics=[fid,kid] metrics.every_n_epochs=5
    dgm-train metrics=inception metrics.inception_weights=/path/pt_inception-2015-12-05-6726825d.pth
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from dgm_lab.errors import ConfigError
from dgm_lab.metrics.extractors import Extractor, missing_inception_message, resolve_extractor
from dgm_lab.metrics.feature_metric import build_feature_metrics
from dgm_lab.metrics.sample_quality import SampleQuality as Evaluator
from dgm_lab.metrics.sample_quality import image_data, image_shape
from dgm_lab.metrics.settings import CAS, INCEPTION, Settings

log = logging.getLogger("dgm_lab")


class SampleQuality(pl.Callback):
    """Scores ``metrics.num_samples`` samples against the reference split, outside training_step.

    When: after every ``every_n_epochs``-th validation epoch and/or every ``every_n_steps``
    optimizer steps (against ``metrics.reference_split``), and after ``trainer.test`` against the
    test split (``on_test``). Logs ``{split}/fid_lenet`` etc. (no suffix for InceptionV3), keeps
    the latest scores and their protocol in its own ``diagnostics["sample_quality"]`` (the run copies
    every callback's ``diagnostics`` into summary.json; the model is never written into) and
    writes the protocol to the W&B config. Under DDP every rank draws its share of
    exactly N samples, features are gathered, and every rank computes the same scores.

    Args:
        settings: the ``metrics`` config node (see conf/metrics/common.yaml). With no metric
            selected the callback does nothing. The selected feature metrics are built here, when
            the run is built, so a plug-in that does not build stops it before training.
    """

    def __init__(self, settings: dict | None = None):
        self.settings = Settings.from_config(settings)
        if CAS in self.settings.selected:
            raise ConfigError("metrics=[cas] is computed by dgm-eval on a trained class-conditional model, not during training.")
        self.active = bool(self.settings.feature_metrics)
        self.metrics = build_feature_metrics(self.settings)
        self.evaluator: Evaluator | None = None
        self.skipped: str | None = None
        self.diagnostics: dict = {}  # {"sample_quality": {split: latest entry, "history": [...], "skipped": ...}}
        if self.active and self.settings.feature_extractor == INCEPTION:
            self._resolve(dataset="")  # weights do not depend on the data: fail before anything is built

    def _resolve(self, dataset: str, shape: tuple[int, ...] | None = None) -> Extractor | None:
        extractor = resolve_extractor(self.settings, dataset, shape)
        if extractor is None:
            self.active = False
            self.skipped = missing_inception_message(self.settings)
        return extractor

    def applies_to(self, model, datamodule) -> bool:
        """Attached only when a metric is selected (``builders.build_callbacks``), or when it has a
        skipped metric to record."""
        return self.active or self.skipped is not None

    # -- set up before training: weights are checked here at the latest -------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        if not self.active or self.evaluator is not None:
            self._record_skip()
            return
        data = image_data(trainer.datamodule)
        extractor = self._resolve(data.name, image_shape(data))
        if extractor is None:
            self._record_skip()
            return
        self.evaluator = Evaluator(self.settings, extractor, data, device=pl_module.device, metrics=self.metrics)

    def _record_skip(self) -> None:
        if self.skipped:
            self.diagnostics.setdefault("sample_quality", {})["skipped"] = self.skipped

    # -- when to evaluate ---------------------------------------------------------------------
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        n = self.settings.every_n_epochs
        if not self.active or trainer.sanity_checking or not n or trainer.state.fn != "fit":
            return
        if (trainer.current_epoch + 1) % n == 0:
            self.evaluate(trainer, pl_module, self.settings.reference_split, on_step=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = self.settings.every_n_steps
        if self.active and n and trainer.global_step % n == 0:
            self.evaluate(trainer, pl_module, self.settings.reference_split, on_step=True)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if self.active and self.settings.on_test:
            self.evaluate(trainer, pl_module, "test", on_step=False)

    # -- one evaluation -----------------------------------------------------------------------
    def evaluate(self, trainer, pl_module, split: str, on_step: bool) -> dict:
        self.evaluator.device = pl_module.device
        scores, record = self.evaluator.evaluate(split, model=pl_module, rank=trainer.global_rank,
                                                 world_size=trainer.world_size)
        for name, value in scores.items():  # identical on every rank: no sync needed
            pl_module.log(name, value, on_step=on_step, on_epoch=not on_step, sync_dist=False)
        entry = {"scores": scores, "protocol": record, "epoch": trainer.current_epoch,
                 "global_step": trainer.global_step}
        quality = self.diagnostics.setdefault("sample_quality", {})
        quality[split] = entry
        quality.setdefault("history", []).append({"split": split, "epoch": trainer.current_epoch,
                                                  "global_step": trainer.global_step, **scores})
        if trainer.is_global_zero:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in scores.items())
            log.info("sample quality (%d generated vs %s real %s images, %s): %s", record["num_generated"],
                     record["num_real"], split, record["feature_extractor"], shown)
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.experiment.config.update({f"sample_quality_protocol/{split}": record},
                                                    allow_val_change=True)
        return scores
