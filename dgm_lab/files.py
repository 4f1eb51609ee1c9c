"""Files that several parts of dgm-lab write the same way: the user cache folder and atomic writes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def user_cache_dir(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/dgm-lab/<parts>`` (``~/.cache`` when the variable is unset or empty)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dgm-lab" / Path(*parts)


def temporary_for(path: Path, pid: int | None = None) -> Path:
    """The temporary that ``write_atomically`` writes beside ``path`` (the suffix is kept, so writers
    that add one, as np.savez adds .npz, write the name given here)."""
    return path.with_name(f".{path.stem}.{os.getpid() if pid is None else pid}.tmp{path.suffix}")


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write(temporary)`` beside ``path``, fsync it, then rename it onto ``path`` and fsync the
    folder: a reader never sees half a file, a crash or a kill at any moment leaves either the old
    file or the new one whole (also after a power loss), concurrent writers (DDP ranks, sweep jobs)
    leave one whole one, and a failed write (full disk) leaves the previous file and no temporary
    behind. Creates the folder; OSError propagates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_for(path)
    try:
        write(temporary)
        _fsync(temporary, os.O_RDONLY)
        temporary.replace(path)
        _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    finally:
        temporary.unlink(missing_ok=True)


def remove_stale_temporaries(path: Path) -> None:
    """Temporaries of ``path`` left by processes that were killed while writing (SIGKILL runs no
    cleanup); those of live processes may still be in use and stay."""
    for leftover in path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"):
        pid = leftover.name[len(path.stem) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _fsync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    except OSError:
        if not path.is_dir():  # some file systems cannot fsync a folder; the file itself must be synced
            raise
    finally:
        os.close(descriptor)
