"""One writer per run folder: ``dgm-train`` holds ``<run>/run.lock`` while it trains.

Two processes resuming (or training into) one folder would interleave their checkpoints,
``metrics.csv`` rows and W&B steps; the second one is refused with the holder's pid and host.
The lock is an ``flock`` on the file, which the kernel drops when the holder dies, so a lock
left by a killed process is taken over by the next run (the file still names the dead pid, and
the takeover is logged). The file's pid and host also guard shared file systems whose ``flock``
other hosts may not see: a lock that names another host and was never released is refused,
with the file to delete once that run is known to be gone.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from dgm_lab.errors import CheckpointError

log = logging.getLogger("dgm_lab")
LOCK = "run.lock"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_holder(path: Path) -> dict:
    """The pid/host/started record in a lock file; {} when empty (released) or unreadable."""
    try:
        record = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


@contextlib.contextmanager
def hold(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock for the ``with`` block; raise CheckpointError if another live
    process holds it. Creates the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise CheckpointError(_busy(folder, read_holder(path))) from None
        # The file may have been released and deleted between open and flock: then lock the new one.
        try:
            same_file = os.fstat(descriptor).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(descriptor)
    try:
        _take(descriptor, folder, read_holder(path))
    except BaseException:
        os.close(descriptor)
        raise
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while still holding it: a waiting process then locks a fresh file
        os.close(descriptor)


def _take(descriptor: int, folder: Path, previous: dict) -> None:
    """Write this process's record into the locked file, after checking the one it held."""
    host = socket.gethostname()
    if previous.get("pid") and previous.get("pid") != os.getpid():
        if previous.get("host") not in (None, host):  # flock may not reach across hosts: trust the record
            raise CheckpointError(_busy(folder, previous, other_host=True))
        # On one host the flock is authoritative: its holder is gone (a pid now alive was reused).
        log.warning("run folder %s: taking over the lock left by process %s (%s), which ended without releasing it.",
                    folder, previous["pid"], "no longer running" if not pid_alive(int(previous["pid"])) else "pid reused")
    record = {"pid": os.getpid(), "host": host,
              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps(record).encode(), 0)
    os.fsync(descriptor)


def _busy(folder: Path, holder: dict, other_host: bool = False) -> str:
    who = (f"process {holder.get('pid')} on host {holder.get('host')} (since {holder.get('started')})"
           if holder.get("pid") else "another process")
    if other_host:
        return (f"run folder {folder} is locked by {who}; if that run has ended, delete {folder / LOCK} "
                "and run the command again.")
    return (f"run folder {folder} is in use by {who}; wait for it to finish: two runs writing one folder "
            "would mix their checkpoints and metrics.")
