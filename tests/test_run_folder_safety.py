"""Run folders keep what they hold: a copied or moved run resumes and evaluates in its own place,
a fresh run into an existing run is refused, a failed resume changes nothing, ``metrics.csv``
keeps every row across resumes, and one process at a time writes a folder (``run.lock``)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from dgm_lab.run_lock import LOCK
from tests.conftest import FAST, REPO, run_cli, train_run
from tests.inprocess import main_in_process, snapshot

# Files a refused command may add to or append to without changing what was there (Hydra's own).
HYDRA_FILES = (".hydra", "train.log")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished one-epoch digits run, logging every 5 steps so metrics.csv has several rows."""
    run = tmp_path_factory.mktemp("finished") / "run"
    train_run(run, "test=false", "trainer.log_every_n_steps=5", "callbacks.image_samples.every_n_epochs=0")
    return run


def copy_of(run, target):
    """``cp -a``, as a user copies a run folder (mtimes kept)."""
    subprocess.run(["cp", "-a", str(run), str(target)], check=True)
    return target


def rows(path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def unchanged(folder, before) -> bool:
    """Every file of ``before`` is still there, byte-identical with the same mtime (Hydra's log may
    have grown at its end); Hydra's .hydra/ subfolders may have been added."""
    after = snapshot(folder, skip=HYDRA_FILES)
    log = folder / "train.log"
    kept_log = not (log.exists() and "train.log" in before) or log.read_bytes().startswith(before["train.log"][0])
    return after == {k: v for k, v in before.items() if not k.startswith(HYDRA_FILES)} and kept_log


def test_resuming_a_copy_never_touches_the_original_and_keeps_every_row(finished, tmp_path):
    original = copy_of(finished, tmp_path / "original")
    copy = copy_of(original, tmp_path / "copy")
    before = snapshot(original)
    code, _, err = main_in_process("dgm-train", f"resume={copy}", "trainer.max_epochs=2")
    assert code == 0, err
    assert snapshot(original) == before  # byte-identical, same mtimes, nothing added
    summary = json.loads((copy / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["run_dir"] == str(copy)
    best = summary["best"]["checkpoint"]
    assert best.startswith(str(copy / "checkpoints") + "/") and os.path.isfile(best)
    earlier, now = rows(original / "metrics.csv"), rows(copy / "metrics.csv")
    assert len(now) > len(earlier) > 2
    assert [{k: v for k, v in row.items() if v} for row in now[: len(earlier)]] == \
           [{k: v for k, v in row.items() if v} for row in earlier]  # the first attempt's rows, in order
    assert max(int(r["epoch"]) for r in now if r.get("epoch")) == 1


def test_a_moved_run_resumes_and_evaluates_in_its_new_place(finished, tmp_path):
    old = copy_of(finished, tmp_path / "old")
    new = tmp_path / "new"
    shutil.move(old, new)
    code, _, err = main_in_process("dgm-train", f"resume={new}", "trainer.max_epochs=2")
    assert code == 0, err
    assert not old.exists()  # the old place was not recreated
    code, _, err = main_in_process("dgm-eval", f"ckpt_path={new}", "eval.iwae_k=4", "progress_bar=false")
    assert code == 0, err
    record = json.loads((new / "eval.json").read_text())
    assert record["checkpoint"].startswith(str(new / "checkpoints")) and not old.exists()


def test_a_fresh_run_into_an_existing_run_folder_is_refused(finished, tmp_path):
    run = copy_of(finished, tmp_path / "run")
    before = snapshot(run)
    result = run_cli("dgm-train", *FAST, "model=iwae", f"hydra.run.dir={run}", env={"OMP_NUM_THREADS": "1"})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert lines[-1] == (f"dgm-train: error: {run} already holds a run (config.yaml, checkpoints/); continue it with "
                         f"resume={run}, or leave hydra.run.dir out for a new folder."), result.stderr
    assert unchanged(run, before)
    assert (run / ".hydra" / "config.yaml").read_bytes() == before[".hydra/config.yaml"][0]  # Hydra wrote elsewhere


@pytest.mark.parametrize("failure", ["ckpt_path typo", "last.ckpt missing"])
def test_a_failed_resume_changes_nothing(finished, tmp_path, failure):
    run = copy_of(finished, tmp_path / "run")
    args = [f"resume={run}", "trainer.max_epochs=2"]
    if failure == "ckpt_path typo":
        args.append(f"ckpt_path={run / 'checkpoints' / 'lats.ckpt'}")
        expected = f"ckpt_path {run / 'checkpoints' / 'lats.ckpt'} does not exist"
    else:
        (run / "checkpoints" / "last.ckpt").unlink()
        expected = f"{run} has trained steps but no checkpoints/last.ckpt to continue from"
    before = snapshot(run)
    code, _, err = main_in_process("dgm-train", *args)
    assert code == 2 and err.strip().splitlines() == [err.strip()] and expected in err, err
    assert unchanged(run, before)
    assert not (run / LOCK).exists()


@pytest.mark.parametrize("left", ["best checkpoint", "nothing whole"])
def test_a_run_killed_before_its_first_last_ckpt_resumes(finished, tmp_path, left):
    """SIGKILL inside the first last.ckpt write leaves the epoch's best checkpoint (written just
    before it in the same hook) and no summary.json: resume continues from that checkpoint; a kill
    before any whole checkpoint (a temporary left halfway) starts the run again from its first step."""
    run = copy_of(finished, tmp_path / "run")
    (run / "summary.json").unlink()
    killed = subprocess.Popen(["true"])  # its process id names the half-written temporary below
    killed.wait()
    (run / "checkpoints" / "last.ckpt").rename(run / "checkpoints" / f".last.{killed.pid}.tmp.ckpt")
    best = next((run / "checkpoints").glob("best-*.ckpt"))
    if left == "nothing whole":
        best.unlink()
    code, _, err = main_in_process("dgm-train", f"resume={run}", "trainer.max_epochs=2")
    assert code == 0, err[-3000:]
    expected = f"continuing from {best.name}" if left == "best checkpoint" else "training starts again from its first step"
    assert expected in (run / "train.log").read_text()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["timing"]["iterations"] == summary["global_step"] // (
        2 if left == "best checkpoint" else 1)
    assert (run / "checkpoints" / "last.ckpt").exists() and not list((run / "checkpoints").glob(".*.tmp.ckpt"))


def test_a_second_process_is_refused_and_a_dead_ones_lock_is_taken_over(finished, tmp_path):
    run = copy_of(finished, tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from dgm_lab.run_lock import hold\n"
         "with hold(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(300)", str(run)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(run)
        code, _, err = main_in_process("dgm-train", f"resume={run}", "trainer.max_epochs=2")
        assert code == 2, err
        assert f"run folder {run} is in use by process {holder.pid} on host {socket.gethostname()}" in err, err
        assert unchanged(run, before)
    finally:
        holder.send_signal(signal.SIGKILL)  # killed: its lock file stays behind, naming a dead pid
        holder.wait()
    assert json.loads((run / LOCK).read_text())["pid"] == holder.pid
    code, out, err = main_in_process("dgm-train", f"resume={run}", "trainer.max_epochs=2")
    assert code == 0, err
    logged = out + err + (run / "train.log").read_text()
    assert f"taking over the lock left by process {holder.pid} (no longer running)" in logged, logged[-2000:]
    assert json.loads((run / "summary.json").read_text())["global_step"] > json.loads(before["summary.json"][0])["global_step"]
    assert not (run / LOCK).exists()  # released at the end


@pytest.mark.slow
def test_two_resumes_started_together_one_is_refused(finished, tmp_path):
    """Two real dgm-train processes on one folder: one trains, the other is refused with the lock message."""
    run = copy_of(finished, tmp_path / "run")
    env = {**os.environ, "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "dgm_lab.train", f"resume={run}", "trainer.max_epochs=40"]
    first, second = (subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2))
    results = [(p.wait(timeout=600), p.stderr.read()) for p in (first, second)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert f"run folder {run} is in use by process" in refused and "Traceback" not in refused


def test_a_lock_left_on_another_host_is_refused_with_the_file_to_delete(tmp_path):
    """Across hosts the flock may not be shared, so an unreleased lock naming another host is
    trusted: refused, naming the file to delete once that run is known to be gone."""
    from dgm_lab.errors import CheckpointError
    from dgm_lab.run_lock import hold

    (tmp_path / LOCK).write_text(json.dumps({"pid": 4242, "host": "elsewhere", "started": "2026-01-01T00:00:00+00:00"}))
    with pytest.raises(CheckpointError) as refused, hold(tmp_path):
        pass
    assert str(refused.value) == (f"run folder {tmp_path} is locked by process 4242 on host elsewhere (since "
                                  f"2026-01-01T00:00:00+00:00); if that run has ended, delete {tmp_path / LOCK} "
                                  "and run the command again.")
    (tmp_path / LOCK).unlink()
    with hold(tmp_path):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK).exists()
