"""The console scripts run in this process: their ``main()`` with ``sys.argv``, the environment and
the working directory as the shell would set them, stdout and stderr captured, the exit code taken
from ``SystemExit`` (an uncaught exception exits 1 with its traceback on stderr, as an interpreter
would). What the user sees, without a new interpreter's 5 to 7 CPU seconds of imports. Whatever a
run changes in the process (environment, working directory, signal handlers, logging, warning
filters, torch's global settings and random state) is put back afterwards, so runs in one pytest
worker do not leak into each other. A call that runs past ``timeout`` seconds fails the test."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import signal
import subprocess
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# The handlers a run may install (Lightning, dgm-lab's interrupts) and the alarm of the time bound.
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGALRM)


class Hang(BaseException):
    """Not an Exception: the command's own ``except Exception`` handlers must not turn a hang into
    an ordinary failure."""


def _alarm(signum, frame):
    raise Hang


def _entry_point(prog: str):
    from dgm_lab import eval as eval_cli
    from dgm_lab import finetune as finetune_cli
    from dgm_lab import sample as sample_cli
    from dgm_lab import train as train_cli
    from dgm_lab.compare import cli as compare_cli
    from dgm_lab.reproduce import cli as reproduce_cli

    if prog == "dgm-compare":
        return lambda: compare_cli.main(sys.argv[1:])
    return {"dgm-eval": eval_cli.main, "dgm-sample": sample_cli.main, "dgm-train": train_cli.main,
            "dgm-finetune": finetune_cli.main, "dgm-reproduce": reproduce_cli.entry}[prog]


@contextlib.contextmanager
def _process_state_restored():
    argv, environment, cwd = list(sys.argv), dict(os.environ), os.getcwd()
    handlers = {sig: signal.getsignal(sig) for sig in HANDLED_SIGNALS}
    root = logging.getLogger()
    root_handlers, root_level = list(root.handlers), root.level
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    precision, dtype = torch.get_float32_matmul_precision(), torch.get_default_dtype()
    rng = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    try:
        with warnings.catch_warnings():
            yield
    finally:
        sys.argv = argv
        os.environ.clear()
        os.environ.update(environment)
        os.chdir(cwd)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        root.handlers[:] = root_handlers
        root.setLevel(root_level)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        torch.set_float32_matmul_precision(precision)
        torch.set_default_dtype(dtype)
        torch.set_rng_state(rng[0])
        np.random.set_state(rng[1])
        random.setstate(rng[2])


def run_main(prog: str, *args: str, env: dict | None = None, cwd: Path | str | None = None,
             timeout: int = 300) -> subprocess.CompletedProcess:
    """``prog args...`` in this process; ``env`` replaces the environment for the call (as
    ``subprocess.run(env=...)`` would), ``DGM_RAISE`` (tracebacks on purpose) always removed."""
    main = _entry_point(prog)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with _process_state_restored():
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        os.environ.pop("DGM_RAISE", None)
        if cwd is not None:
            os.chdir(cwd)
        sys.argv = [prog, *args]
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(timeout)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except Hang:
            raise AssertionError(f"{prog} {' '.join(args)} ran past {timeout}s") from None
        except Exception:
            code = 1
            err.write(traceback.format_exc())
        finally:
            signal.alarm(0)
    return subprocess.CompletedProcess([prog, *args], code, out.getvalue(), err.getvalue())


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


def call(prog: str, *args: str, timeout: int = 120) -> Outcome:
    """``prog args...`` in this process with W&B disabled: for matrices of bad inputs and fuzzing."""
    env = {**os.environ, "WANDB_MODE": "disabled", "WANDB_SILENT": "true"}
    result = run_main(prog, *args, env=env, timeout=timeout)
    return Outcome(result.returncode, result.stdout, result.stderr)


def main_in_process(prog: str, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``prog args...`` run in this process."""
    result = run_main(prog, *args)
    return result.returncode, result.stdout, result.stderr


def snapshot(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[bytes, int]]:
    """{relative path: (content, mtime_ns)} of every file under ``folder``, but those under ``skip``."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file() and not str(p.relative_to(folder)).startswith(skip)}
