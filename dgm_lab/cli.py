"""Shared entry-point behaviour: user errors become one sentence on stderr and a non-zero exit."""

from __future__ import annotations

import functools
import os
import sys

from dgm_lab.errors import DivergedError, UserError

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3


def reports_user_errors(prog: str):
    """Decorator for Hydra task functions: print our errors as one line instead of a traceback."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except UserError as error:
                _fail(prog, str(error), EXIT_USER_ERROR)
            except DivergedError as error:
                _fail(prog, f"training diverged: {error}", EXIT_DIVERGED)

        return run

    return wrap


def _fail(prog: str, message: str, code: int):
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.stderr.flush()
    if os.environ.get("DGM_RAISE"):  # tests and debugging: keep the exception
        raise
    sys.exit(code)
