"""Every GAN variant end to end through ``dgm-train``; resume equivalence; conditional sampling.

Each ``dgm-train`` process costs seconds of imports on a small machine, so variants share one
Hydra multirun (jobs run one after another in one process).
"""

from __future__ import annotations

import csv
import json

import pytest
import torch

from dgm_lab.checkpoints import load_checkpoint, rebuild
from tests.conftest import run_cli

# Small models run several times faster on one thread when other processes share the cores.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}

QUIET = ["logger=none", "trainer.accelerator=cpu", "callbacks.progress_bar.refresh_rate=0"]
DIGITS = ["data=digits", "data.binarize=none", "data.train_subset=256", *QUIET]
VARIANTS = ["gan", "dcgan", "wgan_gp", "sngan"]


def multirun(sweep_dir, *overrides: str) -> list[dict]:
    result = run_cli("dgm-train", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}", env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(path.read_text()) for path in sorted(sweep_dir.glob("*/summary.json"))]


def train(run_dir, *overrides: str) -> dict:
    result = run_cli("dgm-train", *overrides, f"hydra.run.dir={run_dir}", env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "summary.json").read_text())


def checkpoint_weights(run_dir) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def test_every_gan_variant_trains_end_to_end(tmp_path):
    summaries = multirun(tmp_path, f"model={','.join(VARIANTS)}", *DIGITS, "trainer.max_epochs=2",
                         "trainer.log_every_n_steps=1", "+callbacks.image_samples.every_n_steps=2")
    assert [s["config"]["model"]["_target_"] for s in summaries] == ["dgm_lab.models.gan.GAN"] * 4
    for summary in summaries:
        run = tmp_path / summary["run_dir"].rsplit("/", 1)[-1]
        model = summary["config"]["model"]
        assert summary["status"] == "completed", summary.get("error")
        # 256 images in batches of 64 x n_critic: 4 generator iterations per epoch, 1 when n_critic=5
        iterations = 2 * (4 if model["n_critic"] == 1 else 1)
        assert summary["metrics"]["val/generator_step"] == iterations
        assert summary["global_step"] == iterations * (model["n_critic"] + 1)  # Lightning counts optimizer steps
        assert summary["timing"]["iterations"] == iterations  # throughput per generator iteration
        for key in ("val/d_loss", "val/g_loss", "test/d_loss", "test/generator_step"):
            assert key in summary["metrics"], (model["loss"], key)
        checkpoint = checkpoint_weights(run)
        assert checkpoint["gan"]["generator_steps"] == iterations
        weights = checkpoint["state_dict"]
        raw = {k.removeprefix("generator."): v for k, v in weights.items() if k.startswith("generator.")}
        ema = {k.removeprefix("generator_ema."): v for k, v in weights.items() if k.startswith("generator_ema.")}
        assert raw.keys() == ema.keys() and any(not torch.equal(raw[k], ema[k]) for k in raw)
        assert (run / "samples" / "samples_epoch0002.png").exists()
        assert (run / "samples" / "samples_step0000002.png").exists()
        with open(run / "metrics.csv") as f:
            rows = [r for r in csv.DictReader(f) if r.get("train/d_loss")]
        assert [float(r["train/generator_step"]) for r in rows] == list(range(1, iterations + 1))
        if model["spectral_norm"]:
            assert any("parametrizations.weight.original" in k for k in weights)
        if model["gp_weight"]:
            assert all(r["train/gradient_penalty"] for r in rows)


def test_gan_resume_gives_identical_weights(tmp_path):
    """Conditional DCGAN (batch norm, EMA, two Adam states): 4 epochs == 2 epochs + resume + 2."""
    summaries = multirun(tmp_path, "trainer.max_epochs=2,4", "model=dcgan", "model.conditional=true",
                         "model.generator.channels=16", "model.discriminator.channels=16", "test=false", *DIGITS)
    half, full = (tmp_path / s["run_dir"].rsplit("/", 1)[-1] for s in summaries)
    assert [s["config"]["trainer"]["max_epochs"] for s in summaries] == [2, 4]
    result = run_cli("dgm-train", f"resume={half}", "trainer.max_epochs=4", env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = checkpoint_weights(full), checkpoint_weights(half)
    assert a["gan"]["generator_steps"] == b["gan"]["generator_steps"] == 16
    assert a["global_step"] == b["global_step"] == 32
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert any(k.startswith("generator_ema.") and "running_mean" in k for k in a["state_dict"])
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):  # G and D
        for state_a, state_b in zip(opt_a["state"].values(), opt_b["state"].values(), strict=True):
            assert torch.equal(state_a["exp_avg_sq"], state_b["exp_avg_sq"])


def test_conditional_gan_samples_the_requested_mode(tmp_path):
    """Ring of 8 Gaussians, label = mode: samples for label k must land nearest centre k."""
    run = tmp_path / "ring"
    summary = train(run, "model=gan", "data=ring8", "model.conditional=true", "model.latent_dim=2",
                        "data.num_train=20000", "model.max_generator_steps=300", "model.ema.decay=0.9",
                        "callbacks.mode_coverage.plot_every_n_steps=100", *QUIET)
    assert summary["status"] == "completed"
    metrics = summary["metrics"]
    assert metrics["val/generator_step"] == 300
    assert summary["best"]["monitor"] == "val/mode_score" and summary["best"]["mode"] == "max"
    for split in ("val", "test"):
        assert 0 <= metrics[f"{split}/modes_covered"] <= 8 and 0 <= metrics[f"{split}/high_quality_frac"] <= 1
        assert metrics[f"{split}/mode_score"] == pytest.approx(
            metrics[f"{split}/modes_covered"] + metrics[f"{split}/high_quality_frac"], rel=1e-6)  # logged as float32
        assert len(summary["diagnostics"][f"{split}/mode_histogram"]) == 8
    assert (run / "samples" / "modes_step000200.png").exists()
    assert not list((run / "samples").glob("samples_*.png"))  # no image grids for points

    _, datamodule, model = rebuild(load_checkpoint(run / "checkpoints" / "last.ckpt"))
    model.eval()
    for mode in range(8):
        labels = torch.full((200,), mode)
        points = model.sample(200, generator=torch.Generator().manual_seed(mode), labels=labels)
        nearest = torch.cdist(points, datamodule.mode_centres).argmin(dim=1)
        assert (nearest == mode).float().mean() > 0.9, mode
