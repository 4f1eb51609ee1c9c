"""Mode coverage of a generator on a 2-D Gaussian mixture (``data=ring8|grid25``), and scatter plots.

Protocol (VEEGAN, Srivastava et al. 2017): draw ``num_samples`` points; a point is high quality
when it lies within ``threshold_std`` standard deviations (Euclidean distance) of its nearest
mode centre; a mode is covered when at least one high-quality point is nearest to it.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

from dgm_lab.callbacks.media import log_images
from dgm_lab.data.contract import ModeMixtureData
from dgm_lab.run_folder import RunFolder


def mode_coverage(points: torch.Tensor, centres: torch.Tensor, std: float, threshold_std: float = 3.0) -> dict:
    """Score ``points`` (N, 2) against mode ``centres`` (K, 2) of standard deviation ``std``.

    Returns:
        modes_covered: number of modes (0..K) with at least one high-quality point.
        high_quality_frac: fraction (0..1) of points within ``threshold_std * std`` of a centre.
        mode_kl: KL(q || uniform) in nats (0..log K) of the histogram q of nearest modes over all
            points; 0 when every mode gets the same share, log K when all points go to one mode.
        mode_score: modes_covered + high_quality_frac, one number that ranks checkpoints by modes
            first and sharpness second (modes_covered alone ties at K from early on, and a tie keeps
            the earliest, blurriest checkpoint).
        histogram: high-quality points per mode (K ints).
    """
    distances = torch.cdist(points.double(), centres.double())
    nearest_distance, nearest = distances.min(dim=1)
    high_quality = nearest_distance <= threshold_std * std
    k = len(centres)
    histogram = torch.bincount(nearest[high_quality], minlength=k)
    shares = torch.bincount(nearest, minlength=k).double() / max(len(points), 1)
    present = shares > 0
    mode_kl = (shares[present] * (shares[present] * k).log()).sum()
    modes_covered, high_quality_frac = int((histogram > 0).sum()), float(high_quality.double().mean())
    return {"modes_covered": modes_covered, "high_quality_frac": high_quality_frac, "mode_kl": float(mode_kl),
            "mode_score": modes_covered + high_quality_frac, "histogram": histogram.tolist()}


class ModeCoverage(pl.Callback):
    """Logs ``{split}/modes_covered``, ``{split}/high_quality_frac``, ``{split}/mode_kl`` and
    ``{split}/mode_score`` (the checkpoint monitor on these data) after
    every validation and test epoch (per-mode histogram in summary.json's diagnostics), and writes
    ``samples/modes_step<N>.png`` (generated points over the true centres) every
    ``plot_every_n_steps`` generator iterations and at every validation, also to W&B.

    Samples come from a private seeded generator: the same noise every time, and the training RNG
    is never touched (resume equivalence depends on that).
    """

    def __init__(self, num_samples: int = 2500, threshold_std: float = 3.0, seed: int = 0,
                 plot_every_n_steps: int = 0, plot_points: int = 1000, folder: str | None = None):
        self.num_samples, self.threshold_std, self.seed = int(num_samples), float(threshold_std), seed
        self.plot_every_n_steps, self.plot_points, self.folder = int(plot_every_n_steps), int(plot_points), folder
        self.written: list[str] = []
        self.diagnostics: dict = {}  # per-mode histograms, copied into summary.json by the run
        self.active = False

    def applies_to(self, model, datamodule) -> bool:
        """Attached only for data with known modes (``builders.build_callbacks``): an inert callback
        still costs a hook call per step."""
        return isinstance(datamodule, ModeMixtureData)

    def setup(self, trainer, pl_module, stage):
        # In the default callbacks of every run: it scores only data with known modes.
        self.active = isinstance(trainer.datamodule, ModeMixtureData)

    def measure(self, trainer, pl_module, split: str = "val") -> tuple[torch.Tensor, dict]:
        datamodule = trainer.datamodule
        # test draws other noise than val: a checkpoint picked on val is scored on fresh samples
        generator = torch.Generator().manual_seed(self.seed + (split == "test"))
        points = pl_module.sample(self.num_samples, generator=generator).float().cpu()
        scores = mode_coverage(points, datamodule.mode_centres, datamodule.mode_std, self.threshold_std)
        return points, scores

    def _report(self, trainer, pl_module, split: str) -> None:
        if not self.active or trainer.sanity_checking:
            return
        points, scores = self.measure(trainer, pl_module, split)
        for key in ("modes_covered", "high_quality_frac", "mode_kl", "mode_score"):
            # every rank computes the same value (same weights, same noise): no sync needed
            pl_module.log(f"{split}/{key}", float(scores[key]), on_step=False, on_epoch=True)
        self.diagnostics[f"{split}/mode_histogram"] = scores["histogram"]
        if split == "val":
            self.plot(trainer, pl_module, points, scores)

    def on_validation_epoch_end(self, trainer, pl_module):
        self._report(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module):
        self._report(trainer, pl_module, "test")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = pl_module.training_iterations
        if self.active and self.plot_every_n_steps and step % self.plot_every_n_steps == 0:
            points, scores = self.measure(trainer, pl_module)
            self.plot(trainer, pl_module, points, scores)

    @rank_zero_only
    def plot(self, trainer, pl_module, points: torch.Tensor, scores: dict) -> None:
        import matplotlib

        matplotlib.use("Agg")  # no display on servers
        import matplotlib.pyplot as plt

        step = pl_module.training_iterations
        folder = Path(self.folder or RunFolder(trainer.default_root_dir).samples)
        folder.mkdir(parents=True, exist_ok=True)
        centres = trainer.datamodule.mode_centres
        shown = points[: self.plot_points]
        fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
        # hollow centres under the points: a tight cluster stays visible inside its circle
        ax.scatter(centres[:, 0], centres[:, 1], s=60, facecolors="none", edgecolors="red", label="mode centres")
        ax.scatter(shown[:, 0], shown[:, 1], s=2, alpha=0.4, label="generated")
        limit = float(centres.abs().max()) * 1.5
        ax.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal",
               title=f"step {step}: {scores['modes_covered']}/{len(centres)} modes, "
                     f"{scores['high_quality_frac']:.0%} high quality")
        ax.title.set_fontsize(9)
        path = folder / f"modes_step{step:06d}.png"
        fig.savefig(path, bbox_inches="tight")
        plt.close(fig)
        self.written.append(str(path))
        log_images(trainer, "samples/modes", [path])

