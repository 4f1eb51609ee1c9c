"""Files that several parts of dgm-lab write the same way: the user cache folder and atomic writes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def user_cache_dir(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/dgm-lab/<parts>`` (``~/.cache`` when the variable is unset or empty)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dgm-lab" / Path(*parts)


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write(temporary)`` beside ``path``, then rename it onto ``path``: a reader never sees half a
    file, concurrent writers (DDP ranks, sweep jobs) leave one whole one, and a failed write (full
    disk) leaves the previous file and no temporary behind. Creates the folder; OSError propagates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # the suffix is kept, so writers that add one (np.savez adds .npz) write the name given here
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(temporary)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
