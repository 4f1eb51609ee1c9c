"""The status of a registry row from its stored result: reproduced / within tolerance / below /
measured (no published number) / stale (the config changed since) / not run / needs GPU or data /
not runnable yet (waits on an issue)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dgm_lab.errors import UserError
from dgm_lab.reproduce.registry import Row

ORDER = ("reproduced", "measured", "within tolerance", "below")  # a row is as bad as its worst target


@dataclass(frozen=True)
class RowStatus:
    status: str
    result: dict | None = None
    gaps: tuple[float | None, ...] = ()


def read_result(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{path} is not a dgm-reproduce result (invalid JSON); delete it and run the row again.") from None


def not_run_status(row: Row) -> str:
    if row.waits_on is not None and not row.experiment_file.exists():
        return f"not runnable yet (waits on issue {row.waits_on})"
    if row.needs:
        return "needs " + " and ".join("GPU" if need == "gpu" else "data" for need in row.needs)
    return "not run"


def row_status(row: Row, result: dict | None, current_hash: str | None) -> RowStatus:
    """``current_hash``: the hash of the row's config as it composes now (None: it does not compose)."""
    if result is None:
        return RowStatus(not_run_status(row))
    metrics = result.get("metrics_mean", {})
    gaps = tuple(t.gap(metrics[t.metric]) if t.metric in metrics else None for t in row.targets)
    if current_hash is None or result.get("config_hash") != current_hash:
        return RowStatus("stale", result, gaps)
    verdicts = [t.verdict(metrics[t.metric]) if t.metric in metrics else "below" for t in row.targets]
    return RowStatus(max(verdicts, key=ORDER.index), result, gaps)
