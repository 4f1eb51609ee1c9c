"""Preemption: SIGTERM (a scheduler taking the node back), SIGINT (Ctrl-C) and SLURM's requeue signal.

Lightning already turns SIGTERM into a stop at the next batch boundary (``SIGTERMException``), and
under SLURM (``SLURMEnvironment``, detected from ``SLURM_*`` variables, ``auto_requeue`` on) its
requeue-signal handler (SIGUSR1 by default: ``sbatch --signal=USR1@90``) saves
``hpc_ckpt_<n>.ckpt`` and calls ``scontrol requeue <job id>``; SLURM then stops the job with SIGTERM.
This module adds what a scheduler and a user need on top:

- SIGINT stops at the same batch boundary as SIGTERM (a second Ctrl-C stops at once), so that
  neither leaves the weights half-updated;
- the weights at the signal are saved as ``checkpoints/interrupted.ckpt`` (for dgm-eval and
  dgm-sample); ``resume=`` continues from ``last.ckpt``, written at the last epoch end, because
  that is where a resumed run is exactly the straight one (the train loader is not resumable
  mid-epoch: the partial epoch is trained again);
- the run ends with ``status: "interrupted"`` in summary.json, one sentence and exit code
  128 + the signal's number (143 for SIGTERM, 130 for SIGINT), which schedulers read as "killed";
- a requeued SLURM job (same job id, ``SLURM_RESTART_COUNT`` >= 1) resumes its own run folder when
  it runs the same ``dgm-train`` command again.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from dgm_lab.errors import Interrupted
from dgm_lab.files import write_atomically
from dgm_lab.run_folder import CHECKPOINTS, RunFolder

INTERRUPTED_CHECKPOINT = "interrupted.ckpt"


class Preemption(pl.Callback):
    """Graceful SIGINT, and the interrupted checkpoint on SIGTERM/SIGINT (see the module docstring)."""

    def __init__(self):
        self.received: str | None = None  # "SIGINT" once a Ctrl-C arrived during fit
        self.checkpoint: str | None = None
        self._previous_sigint = None

    def on_fit_start(self, trainer, pl_module) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._restore_sigint()

    def _on_sigint(self, signum, frame) -> None:
        if self.received == "SIGINT":  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.received = "SIGINT"
        os.kill(os.getpid(), signal.SIGTERM)  # Lightning's SIGTERM handling: stop at the next batch boundary

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore_sigint()
        if not isinstance(exception, SIGTERMException | KeyboardInterrupt):
            return
        if not isinstance(exception, KeyboardInterrupt) and self.received is None:
            self.received = "SIGTERM"
        self.received = self.received or "SIGINT"
        if isinstance(exception, SIGTERMException):  # at a batch boundary: the state is consistent
            path = os.path.join(trainer.default_root_dir, CHECKPOINTS, INTERRUPTED_CHECKPOINT)
            trainer.save_checkpoint(path, weights_only=False)  # the full training state
            self.checkpoint = path


def interruption(error: BaseException, callbacks: list, run_dir: str) -> Interrupted | None:
    """The ``Interrupted`` that ``error`` (raised out of trainer.fit/test) means, or None. Lightning
    turns a KeyboardInterrupt into ``sys.exit(1)``; the KeyboardInterrupt is then its context."""
    preemption = next((c for c in callbacks if isinstance(c, Preemption)), None)
    signal_name = preemption.received if preemption is not None else None
    if signal_name is None:
        if isinstance(error, SIGTERMException):
            signal_name = "SIGTERM"
        elif isinstance(error, KeyboardInterrupt) or isinstance(error.__context__, KeyboardInterrupt):
            signal_name = "SIGINT"
        else:
            return None
    saved = f"saved {preemption.checkpoint}; " if preemption is not None and preemption.checkpoint else ""
    message = (f"interrupted by {signal_name}: {saved}continue with dgm-train resume={run_dir} "
               "(it restarts from the last completed epoch).")
    return Interrupted(signal_name, 128 + getattr(signal, signal_name).value, message)


# -- SLURM requeue: the requeued job continues its own run folder -------------------------------
SLURM_JOBS = ".slurm-jobs"  # under paths.log_dir: one file per job id, naming its run folder


def remember_slurm_run(run_dir: str, log_dir: str) -> None:
    """Under SLURM, note which run folder this job trains in, so that its requeued self finds it."""
    job = slurm_job_id()
    if job:
        record = Path(log_dir) / SLURM_JOBS / job
        write_atomically(record, lambda temporary: temporary.write_text(str(run_dir)))


def requeued_run(run_dir: str, log_dir: str) -> str | None:
    """The run folder a requeued SLURM job (``SLURM_RESTART_COUNT`` >= 1) continues: its own
    ``hydra.run.dir`` when that already holds a run, else the folder it noted on its first start."""
    job = slurm_job_id()
    if not job or int(os.environ.get("SLURM_RESTART_COUNT") or 0) < 1:
        return None
    if RunFolder(run_dir).config.exists():
        return run_dir
    record = Path(log_dir) / SLURM_JOBS / job
    previous = record.read_text().strip() if record.is_file() else ""
    if previous and RunFolder(previous).config.exists():
        left = Path(run_dir)  # the fresh folder Hydra made for this start: only its .hydra and log
        if left.is_dir() and {p.name for p in left.iterdir()} <= {".hydra", "train.log"}:
            shutil.rmtree(left, ignore_errors=True)
        return previous
    return None


def slurm_job_id() -> str | None:
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job:
        return f"{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"
    return os.environ.get("SLURM_JOB_ID") or None
