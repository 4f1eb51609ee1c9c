"""Preemption through ``dgm-train``: SIGTERM and SIGINT stop at a batch boundary, save
``checkpoints/interrupted.ckpt``, leave ``status: "interrupted"``, print one sentence and exit
128 + the signal's number; ``resume=`` continues. SLURM's requeue signal (SIGUSR1) goes through
Lightning's SLURMEnvironment: it saves its hpc checkpoint and calls ``scontrol requeue <job id>``
(faked here: a script on PATH that records its arguments, then stops the job with SIGTERM as
SLURM does)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import FAST, REPO, run_cli

BASE = [*[o for o in FAST if not o.startswith("trainer.max_epochs")], "test=false"]


def start(run_dir: Path | None, env: dict | None = None, args: tuple = ("trainer.max_epochs=500",)) -> subprocess.Popen:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true", **(env or {})}
    full_env.pop("DGM_RAISE", None)
    where = [f"hydra.run.dir={run_dir}"] if run_dir else []
    return subprocess.Popen([sys.executable, "-m", "dgm_lab.train", *BASE, *args, *where], cwd=REPO,
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_a_checkpoint_records_interrupted_and_resume_continues(tmp_path, signum, code):
    run = tmp_path / "run"
    process = start(run)
    wait_for(run / "checkpoints" / "last.ckpt", process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr[-3000:]
    assert "Traceback" not in stderr
    name = signal.Signals(signum).name
    assert stderr.strip().splitlines()[-1] == (
        f"dgm-train: error: interrupted by {name}: saved {run}/checkpoints/interrupted.ckpt; continue with "
        f"dgm-train resume={run} (it restarts from the last completed epoch).")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and name in summary["error"]
    interrupted = torch.load(run / "checkpoints" / "interrupted.ckpt", weights_only=True)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert interrupted["global_step"] >= last["global_step"] > 0 and "dgm_config" in interrupted

    result = run_cli("dgm-train", f"resume={run}", f"trainer.max_epochs={last['epoch'] + 2}",
                     env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["status"] == "completed" and resumed["global_step"] > last["global_step"]


def test_slurm_requeue_signal_saves_requeues_and_the_requeued_job_resumes(tmp_path):
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol-calls"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    # SLURM requeues the job, then stops it with SIGTERM; the fake does both.
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nkill -TERM $PPID\n')
    scontrol.chmod(0o755)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_NAME": "train",
             "SLURM_NODELIST": "localhost", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
             "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    # the default timestamped run folder under paths.log_dir: the requeued job must find it again
    command = ("trainer.max_epochs=12", f"paths.log_dir={tmp_path / 'outputs'}", "name=slurm")
    process = start(None, env=slurm, args=command)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "outputs" / "slurm").glob("*/checkpoints/last.ckpt")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.1)
    run = next((tmp_path / "outputs" / "slurm").iterdir())
    process.send_signal(signal.SIGUSR1)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-3000:]
    assert calls.read_text().split() == ["requeue", "4242"]
    hpc = torch.load(run / "hpc_ckpt_1.ckpt", weights_only=True)  # Lightning's requeue checkpoint
    assert hpc["global_step"] > 0
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    assert "Traceback" not in stderr and "interrupted by SIGTERM" in stderr

    # SLURM starts the same command again, with the same job id and SLURM_RESTART_COUNT=1
    requeued = start(None, env={**slurm, "SLURM_RESTART_COUNT": "1"}, args=command)
    _, stderr = requeued.communicate(timeout=300)
    assert requeued.returncode == 0, stderr[-3000:]
    assert [p.name for p in (tmp_path / "outputs" / "slurm").iterdir()] == [run.name]  # no second folder
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["global_step"] > hpc["global_step"]
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert summary["global_step"] == 12 * last["global_step"] // (last["epoch"] + 1)  # all 12 epochs trained
    assert summary["timing"]["iterations"] < summary["global_step"]  # continued from a checkpoint, not afresh
