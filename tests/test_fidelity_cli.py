"""Sample-quality metrics through the real console scripts: during training (one process and
2-process CPU DDP), dgm-eval on a checkpoint or on saved images, and missing Inception weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from dgm_lab.config import CONF_DIR, register_resolvers
from dgm_lab.data import DigitsDataModule
from dgm_lab.data.base import to_uint8
from dgm_lab.errors import ConfigError
from dgm_lab.eval import evaluate
from dgm_lab.metrics import lenet
from dgm_lab.metrics.extractors import INCEPTION_FILE, file_sha256
from dgm_lab.metrics.image_files import load_image_files
from tests.conftest import run_cli, train_run

SETTINGS = ["metrics.num_samples=250", "metrics.batch_size=100", "metrics.kid_subsets=10"]
NAMES = ("fid_lenet", "is_lenet", "kid_lenet", "precision_lenet", "recall_lenet")


@pytest.fixture
def cache(tmp_path):
    return f"metrics.cache_dir={tmp_path / 'cache'}"


def test_training_logs_scores_with_protocol_and_dgm_eval_reproduces_them(tmp_path, cache):
    run = tmp_path / "run"
    summary = train_run(run, "metrics=lenet", *SETTINGS, cache, "trainer.max_epochs=2")
    metrics = summary["metrics"]
    for name in NAMES:
        assert np.isfinite(metrics[f"val/{name}"]) and np.isfinite(metrics[f"test/{name}"]), name
    quality = summary["diagnostics"]["sample_quality"]
    protocol = quality["val"]["protocol"]
    assert protocol["num_generated"] == 250 and protocol["num_real"] == 180  # digits' val split has 180
    assert protocol["reference"] == {**protocol["reference"], "dataset": "digits", "split": "val"}
    assert protocol["feature_extractor"] == "lenet-mnist" and protocol["generated"]["seed"] == 0
    assert protocol["weights_sha256"] == file_sha256(lenet.LENETS["lenet-mnist"])
    assert protocol["versions"]["torch_fidelity"] and protocol["resize"].startswith("none for 28x28")
    assert [h["epoch"] for h in quality["history"] if h["split"] == "val"] == [0, 1]
    assert "val/fid_lenet" in (run / "metrics.csv").read_text().splitlines()[0]

    result = run_cli("dgm-eval", f"ckpt_path={run}", "metrics=lenet", "likelihood=false", *SETTINGS, cache,
                     "progress_bar=false")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((run / "eval.json").read_text())
    exact = quality["test"]["scores"]  # float64; Lightning's logged copies are float32
    for name in NAMES:  # the same checkpoint, samples and reference: the same numbers
        assert record["metrics"][f"test/{name}"] == pytest.approx(exact[f"test/{name}"], rel=1e-9), name
        assert exact[f"test/{name}"] == pytest.approx(metrics[f"test/{name}"], rel=1e-6), name
    assert "test/elbo" not in record["metrics"]
    assert record["sample_quality"]["protocol"]["reference_cache"]["status"] == "hit"
    assert "cache hit" in result.stdout + result.stderr


def test_two_ddp_processes_give_the_single_process_scores(tmp_path, cache):
    """250 samples in chunks of 100 over 2 ranks (150 + 100): exactly 250, no padding duplicates."""
    run = tmp_path / "ddp"
    summary = train_run(run, "trainer=ddp_cpu", "metrics=[fid,kid,prc]", *SETTINGS, cache, fresh_process=True)
    metrics = summary["metrics"]
    protocol = summary["diagnostics"]["sample_quality"]["test"]["protocol"]
    assert protocol["generated"]["world_size"] == 2 and protocol["num_generated"] == 250
    result = run_cli("dgm-eval", f"ckpt_path={run}", "metrics=[fid,kid,prc]", "likelihood=false", *SETTINGS,
                     cache, "progress_bar=false")
    assert result.returncode == 0, result.stderr[-2000:]
    single = json.loads((run / "eval.json").read_text())["metrics"]
    two_ranks = summary["diagnostics"]["sample_quality"]["test"]["scores"]
    for name in ("fid_lenet", "kid_lenet", "precision_lenet", "recall_lenet"):
        assert single[f"test/{name}"] == pytest.approx(two_ranks[f"test/{name}"], rel=1e-9, abs=1e-12), name
        assert two_ranks[f"test/{name}"] == pytest.approx(metrics[f"test/{name}"], rel=1e-6), name


def test_missing_inception_weights_stop_before_training_or_are_skipped(tmp_path):
    run = tmp_path / "run"
    env = {"TORCH_HOME": str(tmp_path / "torch")}
    args = ["data=digits", "logger=none", "trainer.max_epochs=1", "eval.iwae_k=4", "metrics=inception",
            "metrics.download=false", "callbacks.progress_bar.refresh_rate=0", "trainer.accelerator=cpu"]
    result = run_cli("dgm-train", *args, f"hydra.run.dir={run}", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and INCEPTION_FILE in lines[0] and "metrics.inception_weights" in lines[0]
    assert not (run / "checkpoints").exists()

    skipped = tmp_path / "skipped"
    result = run_cli("dgm-train", *args, "metrics.on_missing_weights=skip", f"hydra.run.dir={skipped}", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((skipped / "summary.json").read_text())
    assert INCEPTION_FILE in summary["diagnostics"]["sample_quality"]["skipped"]
    assert "skipping" in (skipped / "train.log").read_text()
    assert not any(key.startswith("val/fid") for key in summary["metrics"])


def test_dgm_eval_scores_saved_images_and_folders_read_like_npz(tmp_path, cache):
    datamodule = DigitsDataModule(binarize="none")
    datamodule.setup()
    images = to_uint8(datamodule.splits["train"].images[:300]).permute(0, 2, 3, 1).numpy()
    np.savez(tmp_path / "samples.npz", images=images)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image[..., 0]).save(folder / f"{i:04d}.png")
    assert torch.equal(load_image_files(folder), load_image_files(tmp_path / "samples.npz"))

    result = run_cli("dgm-eval", f"images={tmp_path / 'samples.npz'}", "data=digits", "metrics=[fid,prc]", cache,
                     f"paths.log_dir={tmp_path / 'outputs'}")
    assert result.returncode == 0, result.stderr[-2000:]
    written = Path(result.stdout.rpartition("wrote ")[2].strip())  # outputs/eval/samples-<id>/, not beside the npz
    assert written.parent.parent == tmp_path / "outputs" / "eval" and not (tmp_path / "eval.json").exists()
    record = json.loads(written.read_text())
    protocol = record["sample_quality"]["protocol"]
    assert record["metrics"]["test/fid_lenet"] > 0 and 0 < record["metrics"]["test/recall_lenet"] <= 1
    assert protocol["num_generated"] == 300 and protocol["generated"]["source"].endswith("samples.npz")
    assert protocol["reference"]["split"] == "test" and protocol["num_real"] == 180


def test_dgm_eval_images_without_reference_data_is_one_sentence(tmp_path):
    register_resolvers()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("eval", overrides=[f"images={tmp_path}", "metrics=[fid]"])
    with pytest.raises(ConfigError, match="data="):
        evaluate(cfg)
