"""``trainer.nan_policy`` through ``dgm-train``, with a NaN training loss injected at chosen steps
(``tests.faulty_train``, ``DGM_TEST_NAN_AT_STEPS``). ``stop`` is also covered by
tests/test_train_cli.py::test_nan_loss_stops_with_status_diverged (an SGD run with lr=1e30)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import FAST, REPO

RUN = [*[o for o in FAST if not o.startswith("trainer.max_epochs")], "trainer.max_epochs=2", "test=false"]


def faulty_train(nan_steps: str, *overrides: str, multirun: bool = False, nan_grad_steps: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true", "DGM_TEST_NAN_AT_STEPS": nan_steps,
           "DGM_TEST_NAN_GRAD_AT_STEPS": nan_grad_steps}
    env.pop("DGM_RAISE", None)
    return subprocess.run([sys.executable, "-m", "tests.faulty_train", *(["-m"] if multirun else []), *RUN, *overrides], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_skip_drops_bad_batches_and_rollback_restores_the_last_good_state(tmp_path):
    # steps 3, 4: before the first checkpoint (rollback: to the state at fit start); 30: after it
    result = faulty_train("3,4,30", "trainer.nan_policy=skip,rollback", f"hydra.sweep.dir={tmp_path}", multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    skip, rollback = (json.loads((tmp_path / job / "summary.json").read_text()) for job in ("0", "1"))
    assert skip["status"] == rollback["status"] == "completed"
    assert skip["diagnostics"]["divergence/skipped_batches"] == 3
    assert rollback["diagnostics"]["divergence/rollbacks"] == 3 and rollback["diagnostics"]["divergence/lr_scale"] == 0.125
    for job, lr in (("0", 1e-3), ("1", 1e-3 * 0.5**3)):
        checkpoint = torch.load(tmp_path / job / "checkpoints" / "last.ckpt", weights_only=True)
        assert all(torch.isfinite(value).all() for value in checkpoint["state_dict"].values())
        assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(lr)
    # the skipped updates did not happen: the finite parts of the run are unchanged by them
    assert all(v == v for v in skip["metrics"].values()) and all(v == v for v in rollback["metrics"].values())


@pytest.mark.parametrize(("policy", "nan_steps", "sentence"), [
    ("skip", "3,4,5,6,7", "training diverged: 3 batches in a row had NaN or infinite gradients (the last at step 5)"),
    ("rollback", "3,4,5,6,7", "training diverged: the gradients became NaN or infinite again at step 6 after 3 rollbacks"),
    ("stop", "3", "training diverged: the training loss became NaN at step 3;"),
])
def test_policy_gives_up_with_status_diverged(tmp_path, policy, nan_steps, sentence):
    run = tmp_path / "run"
    result = faulty_train(nan_steps, f"trainer.nan_policy={policy}", "callbacks.divergence_guard.check_every_n_steps=1",
                          f"hydra.run.dir={run}")
    assert result.returncode == 3, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and sentence in result.stderr.strip().splitlines()[-1], result.stderr[-2000:]
    assert json.loads((run / "summary.json").read_text())["status"] == "diverged"


def test_stop_finds_nan_gradients_behind_a_finite_loss_in_the_weights(tmp_path):
    """``stop`` checks the weights, not every step's gradients: a NaN gradient under a finite loss
    still ends the run as diverged at the next check, with the checkpoints before it kept."""
    run = tmp_path / "run"
    result = faulty_train("", "trainer.nan_policy=stop", "callbacks.divergence_guard.check_every_n_steps=2",
                          f"hydra.run.dir={run}", nan_grad_steps="3")
    assert result.returncode == 3, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr and "the training loss or the weights became NaN or infinite by step 4" in last, last
    assert json.loads((run / "summary.json").read_text())["status"] == "diverged"


def test_stop_names_the_first_bad_step_between_two_checks(tmp_path):
    """The losses since the last check are tested together at the next one: the sentence still
    names the first bad step, not the check's."""
    run = tmp_path / "run"
    result = faulty_train("3,4", "trainer.nan_policy=stop", "callbacks.divergence_guard.check_every_n_steps=6",
                          f"hydra.run.dir={run}")
    assert result.returncode == 3, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr and "the training loss became NaN at step 3;" in last, last
