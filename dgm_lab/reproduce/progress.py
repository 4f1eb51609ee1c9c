"""When each validation epoch of a run landed: metrics.csv has epochs and steps but no clock, and a
learning curve against training time (the NLL-versus-time curve of a long row) needs one.

While dgm-train runs, ``watch`` polls the run's metrics.csv and appends one JSON line per new
validation epoch to ``<run>/progress.jsonl``: the session (one per dgm-train invocation), the
seconds since that session started, the epoch and its ``val/*`` values. ``curve`` adds the sessions
up into training time, so a run continued with --resume gives one curve.

    python -m dgm_lab.reproduce.progress <run folder> <pid> [<start, unix time>]   # a run started by hand
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

from dgm_lab.run_folder import RunFolder

PROGRESS = "progress.jsonl"


def last_validation(metrics_csv: Path) -> tuple[int, dict[str, float]] | None:
    """The last row of metrics.csv with ``val/`` values: (epoch, {key: value})."""
    try:
        with metrics_csv.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error):
        return None
    for row in reversed(rows):
        values = {k: float(v) for k, v in row.items() if k and k.startswith("val/") and v not in ("", None)}
        if values and row.get("epoch") not in ("", None):
            return int(float(row["epoch"])), values
    return None


def read_progress(folder: Path) -> list[dict]:
    path = Path(folder) / PROGRESS
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a killed watcher
            continue
    return lines


def watch(folder: Path, is_running, session: int, interval_s: float = 20.0, started: float | None = None) -> None:
    """Poll ``folder``'s metrics.csv every ``interval_s`` while ``is_running()``; one last poll after.
    ``started``: when the session began (unix time), if before this call."""
    folder, started = Path(folder), started or time.time()
    seen = {line["epoch"] for line in read_progress(folder) if line.get("session") == session}
    metrics_csv = RunFolder(folder).metrics_csv
    while True:
        running = is_running()
        found = last_validation(metrics_csv)
        if found is not None and found[0] not in seen:
            seen.add(found[0])
            record = {"session": session, "elapsed_s": round(time.time() - started, 1), "time": round(time.time(), 1),
                      "epoch": found[0], "val": found[1]}
            with (folder / PROGRESS).open("a") as handle:
                handle.write(json.dumps(record) + "\n")
        if not running:
            return
        time.sleep(interval_s)


def next_session(folder: Path) -> int:
    return max((line.get("session", 0) for line in read_progress(folder)), default=-1) + 1


def curve(folder: Path, key: str) -> list[dict]:
    """[{training_s, epoch, value}]: ``key`` per validation epoch against training time summed over
    sessions (a session's time counts up to its last recorded epoch)."""
    lines = [line for line in read_progress(folder) if key in line.get("val", {})]
    offsets, points, offset = {}, [], 0.0
    for session in sorted({line["session"] for line in lines}):
        offsets[session] = offset
        offset += max(line["elapsed_s"] for line in lines if line["session"] == session)
    best_epoch = -1
    for line in sorted(lines, key=lambda item: (item["session"], item["elapsed_s"])):
        if line["epoch"] <= best_epoch:  # a resumed session repeats nothing: keep epochs increasing
            continue
        best_epoch = line["epoch"]
        points.append({"training_s": round(offsets[line["session"]] + line["elapsed_s"], 1), "epoch": line["epoch"],
                       "value": line["val"][key]})
    return points


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


if __name__ == "__main__":
    run, pid = Path(sys.argv[1]), int(sys.argv[2])
    watch(run, lambda: _alive(pid), next_session(run), started=float(sys.argv[3]) if len(sys.argv) > 3 else None)
