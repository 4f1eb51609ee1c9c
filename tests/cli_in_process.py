"""The console scripts called in this process (their ``main``, with ``sys.argv`` as the shell would
set it): what a user sees (stderr, the exit code) without a new interpreter's seconds of imports,
so that matrices of bad inputs and fuzzing stay cheap. A call that runs past ``timeout`` seconds
fails the test (a hang)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
from dataclasses import dataclass


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


def call(prog: str, *args: str, timeout: int = 120) -> Outcome:
    from dgm_lab import eval as dgm_eval
    from dgm_lab import sample, train
    from dgm_lab.compare import cli as compare

    out, err = io.StringIO(), io.StringIO()
    argv, environment = sys.argv, dict(os.environ)
    os.environ.pop("DGM_RAISE", None)
    os.environ.update({"WANDB_MODE": "disabled", "WANDB_SILENT": "true"})
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if prog == "dgm-compare":
                compare.main(list(args))
            else:
                sys.argv = [prog, *args]
                {"dgm-train": train.main, "dgm-eval": dgm_eval.main, "dgm-sample": sample.main}[prog]()
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except Hang:
        raise AssertionError(f"{prog} {' '.join(args)} ran past {timeout}s") from None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        sys.argv = argv
        os.environ.clear()
        os.environ.update(environment)
    return Outcome(code, out.getvalue(), err.getvalue())
