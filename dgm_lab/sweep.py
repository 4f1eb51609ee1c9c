"""Hydra callback that summarizes a multirun: mean +/- std of every metric over seeds.

Runs are grouped by their overrides minus ``seed=``, so ``-m model.beta=1,2 seed=0,1,2`` gives
two groups of three. Writes ``aggregate.json`` and ``aggregate.md`` into the sweep folder.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from dgm_lab.run_folder import HYDRA, SUMMARY, RunFolder

log = logging.getLogger(__name__)


def aggregate(sweep_dir: Path) -> dict:
    """Group the job folders of ``sweep_dir`` by their non-seed overrides and average their metrics."""
    groups: dict[str, dict] = {}
    for summary_path in sorted(sweep_dir.glob(f"*/{SUMMARY}")):
        summary = RunFolder(summary_path.parent).read_summary()
        if summary is None:  # a job killed while writing: nothing to aggregate
            continue
        overrides_file = summary_path.parent / HYDRA / "overrides.yaml"
        overrides = OmegaConf.to_container(OmegaConf.load(overrides_file)) if overrides_file.exists() else []
        key_overrides = sorted(o for o in overrides if not o.startswith(("seed=", "hydra.")))
        group = groups.setdefault(" ".join(key_overrides) or "(defaults)",
                                  {"overrides": key_overrides, "runs": [], "seeds": [], "status": []})
        group["runs"].append(summary_path.parent.name)
        group["seeds"].append(summary.seed)
        group["status"].append(summary.status)
        for name, value in summary.metrics.items():
            group.setdefault("values", {}).setdefault(name, []).append(value)
    common = set.intersection(*(set(g["overrides"]) for g in groups.values())) if groups else set()
    for group in groups.values():
        group["metrics"] = {name: _mean_std(values) for name, values in sorted(group.pop("values", {}).items())}
        group["label"] = " ".join(o for o in group["overrides"] if o not in common) or "(all runs)"
    return {"sweep_dir": str(sweep_dir), "common_overrides": sorted(common), "groups": list(groups.values())}


def _mean_std(values: list[float]) -> dict:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "n": 0}
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    return {"mean": float(np.mean(finite)), "std": std, "n": len(finite)}


def to_markdown(result: dict, metrics: list[str] | None = None) -> str:
    groups = result["groups"]
    names = metrics or sorted({m for g in groups for m in g["metrics"] if m.startswith(("val/", "test/"))})
    lines = [f"Common overrides: `{' '.join(result['common_overrides']) or '-'}`. Cells: mean ± std over runs (n finite).", "",
             "| group | runs | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for group in groups:
        cells = []
        for name in names:
            stat = group["metrics"].get(name)
            cells.append("" if not stat or stat["mean"] is None else f"{stat['mean']:.3f} ± {stat['std']:.3f} (n={stat['n']})")
        lines.append(f"| {group['label']} | {len(group['runs'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


class AggregateRuns(Callback):
    """Writes ``aggregate.json`` and ``aggregate.md`` at the end of every multirun."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.exists():
            return
        result = aggregate(sweep_dir)
        (sweep_dir / "aggregate.json").write_text(json.dumps(result, indent=2))
        (sweep_dir / "aggregate.md").write_text(to_markdown(result))
        log.info("aggregated %d runs into %s", sum(len(g["runs"]) for g in result["groups"]), sweep_dir / "aggregate.md")
