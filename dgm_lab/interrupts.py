"""SIGTERM and SIGINT during evaluation: stop at once with one sentence and a non-zero exit.

Python runs a signal handler between two bytecodes, so the handler's exception surfaces inside
the running loop (an AIS temperature, an IWAE chunk) within milliseconds; Lightning re-raises
anything but KeyboardInterrupt after its teardown, and ``dgm_lab.cli`` turns it into the sentence.
Lightning's own SIGTERM hook (a flag read between training steps) still runs: it composes with
the handler installed here.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

from dgm_lab.errors import Interrupted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class EvaluationInterrupted(Interrupted):
    """A stop signal arrived during evaluation (nothing written yet); ``exit_code`` is 128 + signal number."""

    def __init__(self, signum: int, activity: str):
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(name, 128 + signum,
                         f"stopped by {name} while {activity}; nothing was written, run the command again to redo it.")


@contextlib.contextmanager
def stop_on_signals(activity: str) -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`EvaluationInterrupted` (``activity`` names what stopped)."""

    def handler(signum, frame):
        raise EvaluationInterrupted(signum, activity)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
