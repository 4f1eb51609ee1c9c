"""Sweeps: grid and Optuna multiruns, DDP inside a multirun, seed aggregation, the SLURM preset."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import run_cli

QUICK = ["data=digits", "trainer.max_epochs=1", "eval.iwae_k=4", "logger=none", "callbacks.progress_bar.refresh_rate=0"]


def test_ddp_inside_multirun_gives_exactly_one_folder_per_job(tmp_path):
    """Lightning re-launches the script for rank 1; that must not re-run the sweep or add folders."""
    result = run_cli("dgm-train", "-m", "trainer=ddp_cpu", "seed=0,1", *QUICK, f"paths.log_dir={tmp_path}",
                     fresh_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "multirun").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        assert summary["status"] == "completed"
        assert summary["config"]["trainer"]["devices"] == 2
        assert (job / "train_ddp_process_1.log").exists()  # rank 1 ran, inside this job's folder
    assert not (tmp_path / "vae").exists()


def test_seed_sweep_is_aggregated(tmp_path):
    result = run_cli("dgm-train", "-m", "seed=0,1,2", "model.latent_dim=4", *QUICK, "logger=wandb",
                     f"paths.log_dir={tmp_path}", env={"WANDB_MODE": "offline"}, fresh_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "multirun").iterdir()
    aggregate = json.loads((sweep / "aggregate.json").read_text())
    (group,) = aggregate["groups"]
    assert sorted(group["seeds"]) == [0, 1, 2]
    values = [json.loads((sweep / str(i) / "summary.json").read_text())["metrics"]["val/elbo"] for i in range(3)]
    stat = group["metrics"]["val/elbo"]
    assert stat["mean"] == pytest.approx(sum(values) / 3)
    mean = sum(values) / 3
    assert stat["std"] == pytest.approx((sum((v - mean) ** 2 for v in values) / 2) ** 0.5)
    assert "val/elbo" in (sweep / "aggregate.md").read_text()
    # Each job is its own W&B run (finish() between jobs), all in one group named after the sweep.
    configs = [yaml.safe_load((sweep / str(i) / "config.yaml").read_text())["logger"]["wandb"] for i in range(3)]
    assert len({c["id"] for c in configs}) == 3 and len({c["group"] for c in configs}) == 1
    for i, c in enumerate(configs):
        assert len(list((sweep / str(i) / "wandb").glob(f"offline-run-*-{c['id']}"))) == 1


def test_optuna_study_survives_a_failed_trial(tmp_path):
    """latent_dim=0 is rejected by validation: that trial fails, the study completes and reports the best."""
    result = run_cli("dgm-train", "hparams_search=vae_optuna", *QUICK, "hydra.sweeper.n_trials=4",
                     "hydra.sweeper.sampler.n_startup_trials=4", "hydra.sweeper.params={model.latent_dim: 'choice(0, 4)', optimizer.lr: 'interval(0.0005, 0.002)'}",
                     f"paths.log_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    (results_file,) = (tmp_path / "vae_optuna").glob("*/optimization_results.yaml")
    best = yaml.safe_load(results_file.read_text())
    assert best["best_params"]["model.latent_dim"] == 4
    job_dirs = [p for p in results_file.parent.iterdir() if p.is_dir()]
    assert len(job_dirs) == 4
    completed = [json.loads((p / "summary.json").read_text()) for p in job_dirs if (p / "summary.json").exists()]
    assert best["best_value"] == pytest.approx(max(s["metrics"]["val/elbo"] for s in completed if s["status"] == "completed"))


def test_slurm_preset_builds_the_sbatch_payload(compose_train, tmp_path, monkeypatch):
    """No cluster here: check the preset composes and that submitit turns it into the right #SBATCH lines."""
    submitit = pytest.importorskip("submitit")
    from hydra.core.hydra_config import HydraConfig
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    compose_train(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=4",
                   "hydra.launcher.tasks_per_node=4", "hydra.launcher.nodes=2", "trainer=multinode"])
    launcher = OmegaConf.to_container(HydraConfig.get().launcher, resolve=False)
    assert launcher["_target_"].endswith("SlurmLauncher")
    params = {k: v for k, v in launcher.items() if k not in ("_target_", "submitit_folder", "max_num_timeout", "name")}
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    # submitit refuses to build a SLURM executor where srun is missing; pretend it is present.
    monkeypatch.setattr(submitit.slurm.slurm.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    executor = submitit.AutoExecutor(folder=str(tmp_path), cluster="slurm")
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -m dgm_lab.train", "0")
    for line in ("--partition=gpu", "--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--time=240",
                 "--cpus-per-task=8", "--mem=64GB"):
        assert line in script, line
