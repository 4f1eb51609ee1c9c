"""Every model end to end through ``dgm-train`` on the digits data, and the run-folder contract."""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml

from tests.conftest import run_cli, train_run

MODELS = ["vae", "conv_vae", "beta_vae", "iwae"]


@pytest.mark.parametrize("model", MODELS)
def test_model_trains_end_to_end(tmp_path, model):
    run = tmp_path / model
    extra = {"beta_vae": "model.kl_warmup_steps=10", "conv_vae": "trainer.deterministic=true"}.get(model, "seed=1")
    summary = train_run(run, f"model={model}", extra)
    assert summary["status"] == "completed"
    metrics = summary["metrics"]
    for key in ("val/elbo", "val/bpd", "val/kl", "val/recon", "val/active_units", "test/elbo", "test/nll_iwae"):
        assert key in metrics, key
    # The k-sample estimate is at least as tight as the ELBO on average (a few nats of noise allowed).
    assert -metrics["test/nll_iwae"] >= metrics["test/elbo"] - 2.0
    assert summary["config"]["model"]["data_shape"] == [1, 8, 8]
    timing = summary["timing"]
    assert timing["iterations"] == summary["global_step"] > 0
    training_s = timing["fit_s"] - timing["validation_s"]  # ms_per_iteration leaves validation (grids, checkpoints) out
    assert 0 < timing["validation_s"] < timing["fit_s"]
    # fit_s and validation_s are rounded to 10 ms between them: that much, spread over the iterations
    rounding_ms = 1000 * 0.01 / timing["iterations"] + 1e-3
    assert timing["ms_per_iteration"] == pytest.approx(1000 * training_s / timing["iterations"], abs=rounding_ms)
    assert (run / "checkpoints" / "last.ckpt").exists()
    assert summary["best"]["monitor"] == "val/elbo" and (run / summary["best"]["checkpoint"]).exists()
    for kind in ("samples", "reconstructions", "interpolations"):
        assert (run / "samples" / f"{kind}_epoch0001.png").exists()
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/elbo", "train/elbo", "test/nll_iwae"} <= set(header)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert "${" not in json.dumps(saved)  # resolved, not interpolations
    assert (run / ".hydra" / "config.yaml").exists()


def test_checkpoint_loads_with_weights_only(tmp_path):
    run = tmp_path / "run"
    train_run(run)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["dgm_config"]["model"]["_target_"] == "dgm_lab.models.vae.VAE"
    assert set(checkpoint["rng_states"]) >= {"torch", "numpy", "python"}


def test_default_run_folder_is_unique_per_job(tmp_path):
    """Two jobs started in the same second must not share a folder."""
    a = run_cli("dgm-train", "trainer.max_epochs=0", "test=false", "logger=none", f"paths.log_dir={tmp_path}")
    b = run_cli("dgm-train", "trainer.max_epochs=0", "test=false", "logger=none", f"paths.log_dir={tmp_path}")
    folders = sorted((tmp_path / "vae").iterdir())
    assert len(folders) == 2, (a.stderr[-500:], b.stderr[-500:])
    assert all(len(f.name.split("-")[-1]) == 6 for f in folders)


def test_lightning_switch_turns_the_progress_bar_off(tmp_path):
    """Lightning's own ``enable_progress_bar=false`` works as users know it: the bar callback of the
    callbacks group is left out instead of Lightning refusing the pair."""
    run = tmp_path / "run"
    result = run_cli("dgm-train", "data=digits", "trainer.max_epochs=1", "logger=none", "test=false",
                     "+trainer.enable_progress_bar=false", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Epoch 0" not in result.stdout + result.stderr
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


def test_nan_loss_stops_with_status_diverged(tmp_path):
    run = tmp_path / "run"
    result = run_cli("dgm-train", "data=digits", "logger=none", "optimizer=sgd", "optimizer.lr=1e30",
                     "callbacks.divergence_guard.check_every_n_steps=1", f"hydra.run.dir={run}")
    assert result.returncode == 3, result.stderr[-2000:]
    assert "diverged" in result.stderr and "Traceback" not in result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert re.search(r"the training loss became (NaN|inf|-inf) at step \d+;", summary["error"]), summary["error"]
    assert (run / "config.yaml").exists()


def test_missing_dataset_is_one_sentence(tmp_path):
    result = run_cli("dgm-train", "data=mnist", f"paths.data_dir={tmp_path / 'empty'}", "logger=none",
                     f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert "MNIST/raw" in result.stderr and "Traceback" not in result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "MNIST/raw" in summary["error"]


def test_wandb_offline_by_default(tmp_path):
    """No network, no account: W&B writes an offline run, named by the id kept in config.yaml."""
    run = tmp_path / "run"
    result = run_cli("dgm-train", "data=digits", "trainer.max_epochs=1", "eval.iwae_k=4", "logger=wandb",
                     f"hydra.run.dir={run}", env={"WANDB_MODE": "", "NETRC": str(tmp_path / "none")},
                     fresh_process=True)
    assert result.returncode == 0, result.stderr[-2000:]
    run_id = yaml.safe_load((run / "config.yaml").read_text())["logger"]["wandb"]["id"]
    offline = list((run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(offline) == 1
    assert list(offline[0].glob("*.wandb"))  # the syncable log that `wandb sync` uploads

    # Resume continues the same W&B run id.
    result = run_cli("dgm-train", f"resume={run}", "trainer.max_epochs=2",
                     env={"WANDB_MODE": "", "NETRC": str(tmp_path / "none")}, fresh_process=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list((run / "wandb").glob(f"offline-run-*-{run_id}"))) == 2
