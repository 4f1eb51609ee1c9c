"""RBM, DBN and DBM end to end through dgm-train / dgm-eval / dgm-sample on the 8x8 digits:
AIS log-likelihoods against exact enumeration of the trained checkpoints, PCD resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dgm_lab.checkpoints import load_checkpoint, rebuild
from dgm_lab.metrics.ais import exact_log_partition, unnormalized_log_prob
from dgm_lab.models.boltzmann import DBMParams
from tests.conftest import run_cli, train_run

BASE = ["data=digits", "logger=none", "trainer.accelerator=cpu", "callbacks.progress_bar.refresh_rate=0",
        "optimizer=sgd", "optimizer.lr=0.05", "model.sample_gibbs_steps=20", "callbacks.image_samples.num_samples=16"]
AIS = ["eval.ais.num_betas=3000", "eval.ais.num_runs=50"]


def rebuilt(path):
    _, datamodule, model = rebuild(load_checkpoint(path))
    datamodule.setup()
    return datamodule, model.double()


def test_rbm_trains_and_its_ais_loglik_matches_enumeration(tmp_path):
    run = tmp_path / "rbm"
    summary = train_run(run, *BASE, *AIS, "model=rbm", "model.num_hidden=10", "trainer.max_epochs=3",
                        "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5", fast=False)
    metrics = summary["metrics"]
    for key in ("train/recon_error", "val/recon_error", "val/pseudo_loglik", "val/free_energy_gap",
                "test/loglik_ais_low", "test/loglik_ais_high", "test/log_z", "test/recon_error"):
        assert key in metrics and math.isfinite(metrics[key]), key
    assert summary["best"]["monitor"] == "val/pseudo_loglik"
    for kind in ("samples", "reconstructions", "filters"):
        assert (run / "samples" / f"{kind}_epoch0003.png").exists(), kind
    # The exact test log-likelihood of the checkpoint that was tested: 2^10 hidden states.
    datamodule, model = rebuilt(summary["best"]["checkpoint"])
    params = model.rbm.ais_params()
    log_z = exact_log_partition(params)
    test_images = datamodule.splits["test"].images.flatten(1).double()
    exact_loglik = float((unnormalized_log_prob(params, test_images) - log_z).mean())
    assert abs(metrics["test/log_z"] - log_z) < 0.1
    assert abs(metrics["test/loglik_ais"] - exact_loglik) < 0.1
    assert metrics["test/log_z_lower_bound"] <= log_z  # the AIS sanity floor: max log p*(x) <= log Z
    assert summary["diagnostics"]["test/ais"]["certainly_underestimated"] is False
    assert metrics["test/loglik_ais_low"] <= exact_loglik <= metrics["test/loglik_ais_high"]
    assert summary["diagnostics"]["test/ais"]["num_betas"] == 3000
    # Manual optimization still follows the LR schedule: halved at the start of every epoch after the first.
    best = torch.load(summary["best"]["checkpoint"], weights_only=True)
    for group in best["optimizer_states"][0]["param_groups"]:
        assert group["lr"] == pytest.approx(0.05 * 0.5 ** best["epoch"])

    result = run_cli("dgm-eval", f"ckpt_path={run}", "eval.ais.num_betas=2000", "eval.ais.num_runs=40", "progress_bar=false")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((run / "eval.json").read_text())
    assert record["eval"]["ais"] == {"num_betas": 2000, "num_runs": 40}
    assert record["diagnostics"]["test/ais"]["num_runs"] == 40
    assert abs(record["metrics"]["test/loglik_ais"] - exact_loglik) < 0.1

    result = run_cli("dgm-sample", f"ckpt_path={run}", "num_samples=12", f"output={tmp_path / 's.npz'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert np.load(tmp_path / "s.npz")["images"].shape == (12, 8, 8, 1)
    # The chain length is the caller's: one sweep from noise gives other pictures than the run's 20.
    result = run_cli("dgm-sample", f"ckpt_path={run}", "num_samples=12", "gibbs_steps=1", f"output={tmp_path / 'one.npz'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert not np.array_equal(np.load(tmp_path / "one.npz")["images"], np.load(tmp_path / "s.npz")["images"])
    result = run_cli("dgm-sample", f"ckpt_path={run}", "num_samples=12", "gibbs_steps=20", f"output={tmp_path / 'same.npz'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert np.array_equal(np.load(tmp_path / "same.npz")["images"], np.load(tmp_path / "s.npz")["images"])
    result = run_cli("dgm-sample", f"ckpt_path={run}", "gibbs_steps=0")
    assert result.returncode != 0 and "gibbs_steps must be a positive integer" in result.stderr


def test_pcd_resume_restores_chains_and_continues_exactly(tmp_path):
    settings = [*BASE, "model=rbm", "model.num_hidden=12", "model.persistent=true", "model.num_chains=37",
                "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5", "test=false"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_run(straight, *settings, "trainer.max_epochs=2", fast=False)
    train_run(split, *settings, "trainer.max_epochs=1", fast=False)
    halfway = torch.load(split / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    chains = halfway["rbm.persistent_chains"]
    assert chains.shape == (37, 64) and bool(halfway["rbm.chains_ready"])
    assert set(chains.unique().tolist()) <= {0.0, 1.0}  # Gibbs states, not the grey initial data
    _, model = rebuilt(split / "checkpoints" / "last.ckpt")
    assert torch.equal(model.rbm.persistent_chains.float(), chains)
    result = run_cli("dgm-train", f"resume={split}", "trainer.max_epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(split / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] > 0
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert not torch.equal(a["state_dict"]["rbm.persistent_chains"], chains)  # the chains moved on


def test_dbn_greedy_training_and_bound_through_the_cli(tmp_path):
    run = tmp_path / "dbn"
    summary = train_run(run, *BASE, *AIS, "model=dbn", "model.layers=[16,8]", "model.epochs_per_layer=1",
                        "model.bound_samples=50", "trainer.max_epochs=2", fast=False)
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert state["layers.0.weight"].shape == (64, 16) and state["layers.1.weight"].shape == (16, 8)
    metrics = summary["metrics"]
    assert "train/layer0_recon_error" in metrics and "train/layer1_recon_error" in metrics
    assert summary["best"]["monitor"] == "step"
    datamodule, model = rebuilt(summary["best"]["checkpoint"])
    log_z_top = exact_log_partition(model.layers[1].ais_params())  # 2^8 top hidden states
    assert abs(metrics["test/log_z"] - log_z_top) < 0.1
    assert metrics["test/log_z_lower_bound"] <= log_z_top
    # The logged bound against a 200-draw estimate of the same bound with the exact top log Z
    # (bound <= log p(v) itself is checked by enumeration in test_rbm_deep.py).
    test_images = datamodule.splits["test"].images.flatten(1).double()
    bound = float((model.bound_without_log_z(test_images, 200, torch.Generator().manual_seed(0)) - log_z_top).mean())
    assert abs(metrics["test/loglik_bound_ais"] - bound) < 0.2
    assert (run / "samples" / "filters_epoch0002.png").exists()


def test_dbn_layers_each_get_the_whole_schedule_and_resume_across_a_layer_boundary(tmp_path):
    """Every stage (here: layer) restarts the LR schedule over its own epochs, times its
    ``stage_lr_scale``; stopping after layer 0 and resuming into layer 1 gives the same weights."""
    settings = [*BASE, "model=dbn", "model.layers=[16,8]", "model.epochs_per_layer=2", "model.persistent=true",
                "model.stage_lr_scale=[1.0,0.5]", "scheduler=cosine", "test=false"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_run(straight, *settings, "trainer.max_epochs=4", fast=False)
    train_run(split, *settings, "trainer.max_epochs=2", fast=False)
    halfway = torch.load(split / "checkpoints" / "last.ckpt", weights_only=True)
    assert int(halfway["state_dict"]["started_stage"]) == 0
    # Layer 0, second epoch: a cosine over its 2 epochs is at half the configured 0.05.
    assert halfway["lr_schedulers"][0]["T_max"] == 2
    assert halfway["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.025)
    result = run_cli("dgm-train", f"resume={split}", "trainer.max_epochs=4")
    assert result.returncode == 0, result.stderr[-3000:]
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(split / "checkpoints" / "last.ckpt", weights_only=True)
    assert int(a["state_dict"]["started_stage"]) == int(b["state_dict"]["started_stage"]) == 1
    for checkpoint in (a, b):  # layer 1, second epoch: 0.05 * 0.5, then half of it again
        assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.0125)
    assert a["global_step"] == b["global_step"] > 0
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key


def test_dbm_bound_is_below_the_exact_log_likelihood(tmp_path):
    run = tmp_path / "dbm"
    summary = train_run(run, *BASE, *AIS, "model=dbm", "model.layers=[12,6]", "model.pretrain_epochs_per_layer=1",
                        "model.num_chains=20", "trainer.max_epochs=3", fast=False)
    metrics = summary["metrics"]
    datamodule, model = rebuilt(summary["best"]["checkpoint"])
    assert model.chains_visible.shape == (20, 64) and bool(model.chains_ready)
    p = model.params().to(torch.float64)
    log_z = exact_log_partition(p.as_rbm())  # enumerates the 2^12 states of h1
    assert abs(metrics["test/log_z"] - log_z) < 0.1
    assert metrics["test/log_z_lower_bound"] <= log_z
    v = datamodule.splits["test"].images.flatten(1).double()
    log_p = exact_log_likelihood(p, v, log_z)
    assert metrics["test/loglik_bound_ais"] <= float(log_p.mean()) + 0.05
    assert metrics["test/loglik_bound_ais"] > float(log_p.mean()) - 10  # close, not vacuous


def exact_log_likelihood(p: DBMParams, v: torch.Tensor, log_z: float) -> torch.Tensor:
    """log p(v) of a DBM with h1 enumerated and h2 summed out; shape (N,)."""
    from dgm_lab.metrics.ais import binary_states

    h1 = torch.cat(list(binary_states(len(p.c1))))
    top = torch.nn.functional.softplus(h1 @ p.w2 + p.c2).sum(-1) + h1 @ p.c1  # (2^H1,)
    return torch.logsumexp(v @ p.w1 @ h1.T + top, 1) + v @ p.b - log_z


def test_gaussian_rbm_end_to_end(tmp_path):
    run = tmp_path / "gaussian"
    settings = [*BASE, *AIS, "model=rbm", "model.visible=gaussian", "model.num_hidden=8", "data.binarize=none",
                "optimizer.lr=0.002", "trainer.max_epochs=2"]
    summary = train_run(run, *settings, "monitor.metric=val/recon_error", "monitor.mode=min", fast=False)
    datamodule, model = rebuilt(summary["best"]["checkpoint"])
    params = model.rbm.ais_params()
    log_z = exact_log_partition(params)
    x = datamodule.splits["test"].images.flatten(1).double()
    v = (x - model.data_mean) / model.data_std
    exact = float((unnormalized_log_prob(params, v) - log_z - model.data_std.log().sum()).mean())
    assert abs(summary["metrics"]["test/loglik_ais"] - exact) < 0.1
