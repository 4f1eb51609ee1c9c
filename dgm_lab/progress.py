"""One progress-bar style for every long loop (IWAE chunks, AIS temperatures, Gibbs chains for
sample grids, feature extraction): tqdm, the library Lightning's own training and evaluation bars
use, with counts, rate and ETA.

Bars go to stderr, below Lightning's bar when one is open (tqdm stacks its instances), and vanish
when done (``leave=False``) so logs keep only Lightning's final line. Only rank 0 of a DDP job
draws them. ``DGM_PROGRESS=0`` switches them off; on a non-terminal (a log file, a CI job) they
refresh at most every ``NON_TTY_INTERVAL_S`` seconds so a ten-minute loop writes a few dozen lines.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from tqdm import tqdm

NON_TTY_INTERVAL_S = 15.0
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]"


def _enabled() -> bool:
    rank = os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or "0"
    return rank == "0" and os.environ.get("DGM_PROGRESS", "1") != "0"


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
             min_total: int = 1) -> tqdm:
    """A tqdm bar over ``iterable`` (or ``total`` steps, advanced with ``update``). Loops shorter
    than ``min_total`` steps (a CD-1 step's single Gibbs sweep) get a disabled bar: same API, no output."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    interactive = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True,
                bar_format=BAR_FORMAT, file=sys.stderr,
                mininterval=0.1 if interactive else NON_TTY_INTERVAL_S,
                disable=not _enabled() or (total is not None and total < min_total))
