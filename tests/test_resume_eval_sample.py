"""Resume continues a run exactly; dgm-eval and dgm-sample work from a run folder or a checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import run_cli, train_run

SETTINGS = ["data=digits", "logger=none", "eval.iwae_k=4", "callbacks.progress_bar.refresh_rate=0",
            "trainer.accelerator=cpu", "test=false"]


def weights(run):
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)


def test_resume_gives_identical_weights(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_run(straight, *SETTINGS, "trainer.max_epochs=4", fast=False)
    train_run(split, *SETTINGS, "trainer.max_epochs=2", fast=False)
    result = run_cli("dgm-train", f"resume={split}", "trainer.max_epochs=4")
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = weights(straight), weights(split)
    assert a["global_step"] == b["global_step"] > 0
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    # Adam moments were restored too, not re-initialised.
    first = next(iter(a["optimizer_states"][0]["state"].values()))["exp_avg_sq"]
    assert torch.equal(first, next(iter(b["optimizer_states"][0]["state"].values()))["exp_avg_sq"])
    summary = json.loads((split / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["global_step"] == a["global_step"]
    assert summary["timing"]["iterations"] == a["global_step"] // 2  # the resumed fit did half the steps


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    """One 2-epoch run that the tests below only read (and add eval.json to); a test that damages
    its run trains its own."""
    run = tmp_path_factory.mktemp("shared") / "run"
    train_run(run, *SETTINGS, "trainer.max_epochs=2", fast=False)
    return run


def test_resume_rejects_group_change(two_epoch_run):
    result = run_cli("dgm-train", f"resume={two_epoch_run}", "model=iwae")
    assert result.returncode == 2 and "cannot change config group" in result.stderr


def test_eval_and_sample_from_run_folder(two_epoch_run, tmp_path):
    run = two_epoch_run
    result = run_cli("dgm-eval", f"ckpt_path={run}", "eval.iwae_k=16", "progress_bar=false")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((run / "eval.json").read_text())
    assert record["eval"]["iwae_k"] == 16 and record["split"] == "test"
    assert record["metrics"]["test/nll_iwae"] > 0 and "best-epoch" in record["checkpoint"]

    result = run_cli("dgm-sample", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "num_samples=30",
                     f"output={tmp_path / 's.npz'}")
    assert result.returncode == 0, result.stderr[-2000:]
    images = np.load(tmp_path / "s.npz")["images"]
    assert images.shape == (30, 8, 8, 1) and images.dtype == np.uint8
    assert (tmp_path / "s.png").exists()


def test_corrupt_checkpoint_is_one_sentence(tmp_path):
    run = tmp_path / "run"
    train_run(run, *SETTINGS, "trainer.max_epochs=1", fast=False)  # any checkpoint will do: it gets truncated
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    for prog, args in (("dgm-eval", [f"ckpt_path={last}"]), ("dgm-train", [f"resume={run}", "trainer.max_epochs=2"])):
        result = run_cli(prog, *args)
        assert result.returncode == 2, (prog, result.stderr[-2000:])
        assert "corrupt" in result.stderr and "Traceback" not in result.stderr


def test_sample_and_eval_without_a_checkpoint_are_one_sentence():
    for prog in ("dgm-sample", "dgm-eval"):
        result = run_cli(prog)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and "pass ckpt_path=" in lines[0], (prog, result.stderr)


def test_saved_data_paths_follow_the_data_folder_of_this_machine():
    from omegaconf import OmegaConf

    from dgm_lab.checkpoints import relocate_data_paths

    cfg = OmegaConf.create({"paths": {"data_dir": "/old/data"}, "data": {
        "root": "/old/data/CIFAR-10-images", "data_dir": "/old/data", "cache_dir": "/elsewhere/cache", "batch_size": 4}})
    relocate_data_paths(cfg, "/new/data/")
    assert cfg.data == {"root": "/new/data/CIFAR-10-images", "data_dir": "/new/data/", "cache_dir": "/elsewhere/cache",
                        "batch_size": 4}


def test_configs_saved_before_the_model_packages_rebuild(compose_train):
    """An old run's config (old class paths, nested ones included, and a setting that moved to a
    callback) is upgraded to a config that builds the same model."""
    from omegaconf import OmegaConf, open_dict

    from dgm_lab import builders
    from dgm_lab.config import upgrade_saved_config
    from dgm_lab.models.moved import MOVED_TARGETS

    old_names = {new: old for old, new in MOVED_TARGETS.items()}
    for model in ("rbm", "dcgan", "iwae"):
        cfg = compose_train([f"model={model}", "data=digits"])
        builders.fill_data_fields(cfg, builders.build_datamodule(cfg))
        OmegaConf.resolve(cfg)
        current = OmegaConf.to_container(cfg)
        text = OmegaConf.to_yaml(cfg)
        for new, former in old_names.items():
            text = text.replace(f"_target_: {new}\n", f"_target_: {former}\n")
        old = OmegaConf.create(text)
        if model == "rbm":
            with open_dict(old):
                old.model.filter_grid_every_n_epochs = 0
        assert OmegaConf.to_container(old) != current
        assert OmegaConf.to_container(upgrade_saved_config(old)) == current
        builders.build_model(old)
