"""Kill anywhere, resume exactly: ``dgm-train`` killed with SIGKILL at random moments (during a
checkpoint write, mid-epoch, at start-up, across a DBN stage boundary), resumed with
``resume=<run>`` until it completes, ends with the weights and metrics of an uninterrupted run.

Checkpoints are written at epoch ends, where a resumed run is exactly the straight one (RNG states
travel in the checkpoint, dgm_lab.models.rng_states; the train loader reshuffles from the restored
RNG); a kill inside an epoch loses that partial epoch, which the resume trains again. The kills
come from ``tests.faulty_train``, whose checkpoint writes pause halfway so that a kill can land
inside one; the atomic write (dgm_lab.checkpoint_io) must leave the previous checkpoint whole.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO

COMMON = ["data=digits", "eval.iwae_k=8", "eval.ais.num_betas=200", "eval.ais.num_runs=10", "logger=none",
          "trainer.accelerator=cpu", "callbacks.progress_bar.refresh_rate=0"]
FAMILIES = {
    "vae": ["model=vae", "trainer.max_epochs=4"],
    "gan": ["model=gan", "data.binarize=none", "data.train_subset=256", "trainer.max_epochs=4"],
    # three layers of one epoch each and a fourth epoch: stage boundaries at epochs 1 and 2
    "dbn": ["model=dbn", "model.layers=[32,16,8]", "model.epochs_per_layer=1", "trainer.max_epochs=4"],
}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true", "DGM_TEST_WRITE_PAUSE_S": "0.4"}
ENV.pop("DGM_RAISE", None)


def launch(run_dir: Path, overrides: list[str], resume: bool) -> subprocess.Popen:
    where = [f"resume={run_dir}"] if resume else [*overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen([sys.executable, "-m", "tests.faulty_train", *where], cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def checkpoint_temporaries(run_dir: Path) -> set[str]:
    return {p.name for p in (run_dir / "checkpoints").glob(".*.tmp.ckpt")} if (run_dir / "checkpoints").is_dir() else set()


def kill_at(process: subprocess.Popen, run_dir: Path, writes: int, delay: float, mid_write: bool,
            timeout: float = 900) -> bool:
    """SIGKILL ``process`` inside its ``writes``-th checkpoint write (``mid_write``), or ``delay``
    seconds after that write ended (``writes=0``: after config.yaml exists). False when the process
    ended first (the run completed)."""
    deadline, seen, writing = time.monotonic() + timeout, 0, False
    while seen < writes or (writing and not mid_write) or not (run_dir / "config.yaml").exists():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the run neither reached the kill point nor ended"
        now_writing = bool(checkpoint_temporaries(run_dir))
        seen += now_writing and not writing
        writing = now_writing
        if mid_write and seen == writes and writing:
            break
        time.sleep(0.02)
    if not mid_write:
        time.sleep(delay)
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


def finished_weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def reference(run_dir: Path, overrides: list[str]) -> tuple[dict, dict]:
    process = launch(run_dir, overrides, resume=False)
    assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
    return finished_weights(run_dir), json.loads((run_dir / "summary.json").read_text())


def survive(run_dir: Path, overrides: list[str], kills: list[tuple[int, float, bool]]) -> int:
    """Run with a kill at each point (each resumed process killed at the next one), then resume
    until the run completes; returns the number of kills that landed before the run ended."""
    landed = 0
    for number, (writes, delay, mid_write) in enumerate(kills):
        process = launch(run_dir, overrides, resume=number > 0)
        if not kill_at(process, run_dir, writes, delay, mid_write):
            assert process.wait() == 0, process.stderr.read()[-3000:]
            return landed
        landed += 1
    process = launch(run_dir, overrides, resume=True)
    assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
    return landed


def assert_identical(run_dir: Path, expected: tuple[dict, dict]) -> None:
    weights, summary = expected
    resumed = finished_weights(run_dir)
    assert resumed.keys() == weights.keys()
    for key, value in weights.items():
        assert torch.equal(value, resumed[key]), key
    resumed_summary = json.loads((run_dir / "summary.json").read_text())
    assert resumed_summary["status"] == "completed"
    # every final metric; train/* ones of a finished DBN stage are only in the summary of a process
    # that trained that stage, so those of the resumed process are compared where it has them
    final = {k: v for k, v in summary["metrics"].items() if not k.startswith("train/")}
    assert {k: resumed_summary["metrics"].get(k) for k in final} == final
    assert all(summary["metrics"][k] == v for k, v in resumed_summary["metrics"].items())
    assert resumed_summary["best"]["score"] == summary["best"]["score"]
    assert not checkpoint_temporaries(run_dir)  # killed writes leave no temporaries behind


# One kill per family in the default suite: inside a checkpoint write (the VAE's second, i.e. the
# first epoch's last.ckpt), mid-epoch for the GAN, and for the DBN inside the last.ckpt write at the
# end of its first stage, so that the resume starts the first stage again and crosses its boundary.
FAST_KILLS = {"vae": [(2, 0.0, True)], "gan": [(3, 0.3, False)], "dbn": [(2, 0.0, True)]}


# Each dgm-train process costs ~20 s of start-up on a shared 2-core machine: the default suite kills
# the multi-stage DBN (the hardest case); the VAE and the GAN run with the slow tests.
@pytest.mark.parametrize("family", [pytest.param("gan", marks=pytest.mark.slow), "dbn",
                                    pytest.param("vae", marks=pytest.mark.slow)])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, family):
    overrides = [*COMMON, *FAMILIES[family]]
    expected = reference(tmp_path / "straight", overrides)
    landed = survive(tmp_path / "killed", overrides, FAST_KILLS[family])
    assert landed == len(FAST_KILLS[family])
    assert_identical(tmp_path / "killed", expected)


def random_kills(rng: random.Random, count: int) -> list[tuple[int, float, bool]]:
    """Kill points spread over a run: at start-up (writes=0), inside a write, or after one. A resumed
    process counts its writes from its own start and has fewer left (about two per remaining epoch),
    so the points stay within the first three writes: a later one would rarely land."""
    return [(rng.randint(0, 3), round(rng.uniform(0, 1.5), 2), rng.random() < 0.4) for _ in range(count)]


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_many_random_kills_resume_to_the_uninterrupted_result(tmp_path, family):
    """At least 17 landed kills per family (>= 51 in all), in chains of up to 4 kills per run."""
    overrides = [*COMMON, *FAMILIES[family]]
    expected = reference(tmp_path / "straight", overrides)
    rng, landed, runs = random.Random(f"kills-{family}"), 0, 0
    while landed < 17:
        run_dir = tmp_path / f"killed{runs}"
        landed += survive(run_dir, overrides, random_kills(rng, rng.randint(1, 4)))
        assert_identical(run_dir, expected)
        runs += 1
        print(f"{family}: chain {runs} resumed to identical results, {landed} kills so far", flush=True)
    print(f"{family}: {landed} kills in {runs} runs, all resumed to identical weights and metrics")


def test_the_carried_validation_is_the_resumed_checkpoints_not_the_tested_ones():
    """A run resumed after its last epoch reports the val/* metrics of the checkpoint it resumed
    from; the best checkpoint that its test then loads (an earlier epoch's, for a GAN whose best
    FID came before the end) must not replace them (found by the random GAN kills)."""
    from types import SimpleNamespace

    from dgm_lab.callbacks.validation_record import KEY, ValidationRecord, carried_metrics

    record = ValidationRecord()
    resumed, best = {KEY: {"val/generator_step": 16.0}}, {KEY: {"val/generator_step": 12.0}}
    record.on_load_checkpoint(SimpleNamespace(state=SimpleNamespace(fn="fit")), None, resumed)
    record.on_load_checkpoint(SimpleNamespace(state=SimpleNamespace(fn="test")), None, best)
    assert carried_metrics([record]) == {"val/generator_step": 16.0}
