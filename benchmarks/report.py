"""The runner's outputs: ``results/<date>-<host>.json`` (every row with its spread) and the markdown
table that ``benchmarks/README.md`` keeps for the latest run (between the two markers)."""

from __future__ import annotations

import json
import math
from pathlib import Path

START, END = "<!-- benchmark table: start -->", "<!-- benchmark table: end -->"


def _cost(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def markdown(record: dict) -> str:
    lines = [f"Run of {record['date']} on {record['machine']} (torch {record['torch']}, Lightning {record['lightning']}, "
             f"{record['threads']} thread(s)){', smoke mode: sizes too small to mean anything' if record['smoke'] else ''}. "
             "Ratio = dgm-lab cost / baseline cost, median of the alternating pairs (min-max); below 1 is faster.",
             "", "| section | measurement | dgm-lab | baseline | ratio (min-max) | dgm-lab / baseline | note |",
             "|---|---|---|---|---|---|---|"]
    for r in record["rows"]:
        if "ratio" in r:
            ratio = f"**{r['ratio']:.3f}** ({r['ratio_min']:.3f}-{r['ratio_max']:.3f}, n={r['repeats']})"
            costs = f"{_cost(r['candidate'])} / {_cost(r['baseline'])} {r['unit']}"
        else:
            ratio, costs = "not measured", ""
        lines.append(f"| {r['section']} | {r['name']} | {r['candidate_label']} | {r['baseline_label']} | {ratio} | "
                     f"{costs} | {r['note']} |")
    if record.get("import_profile"):
        top = ", ".join(f"{p['package']} {p['cumulative_s']:.2f} s" for p in record["import_profile"])
        lines += ["", f"Import profile of a `dgm-train` process (`python -X importtime`, cumulative per top-level package): {top}."]
    return "\n".join(lines) + "\n"


def finite(record: dict) -> bool:
    """Every measured ratio is a finite positive number."""
    return all(math.isfinite(r["ratio"]) and r["ratio"] > 0 for r in record["rows"] if "ratio" in r)


def write(record: dict, json_path: Path, readme: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    table = markdown(record)
    text = readme.read_text() if readme.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    readme.write_text(f"{head}{START}\n{table}{END}{tail}")
