"""A callback the start-up benchmark adds to ``dgm-train``: at the first training batch it writes
the wall-clock time to ``$DGM_BENCH_FIRST_STEP`` and ends the process (nothing else to measure)."""

from __future__ import annotations

import os
import time

import pytorch_lightning as pl


class StopAtFirstStep(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        with open(os.environ["DGM_BENCH_FIRST_STEP"], "w") as out:
            out.write(repr(time.time()))
        os._exit(0)  # the run's remaining work (fit, test, summary) is not start-up
