"""Render collected runs as one self-contained HTML page and a markdown summary.

The HTML has its CSS and script inline, sample grids as base64 ``data:`` URIs and curves as
inline SVG, so it opens offline from anywhere (mail it, attach it to an issue). The markdown
holds the same tables for pasting into a PR or issue; its images are relative links.

Best-value rule, per metric: the direction in the metric-spec table (``dgm_lab.metrics.specs``);
metrics that do not rank runs (adversarial losses, counters, spreads) are never highlighted. A
name the table does not know falls back to its name hints (``val/my_nll`` -> lower), then to the
``mode`` of runs that monitor it; otherwise nothing is highlighted.

Runs on different datasets are never compared: metrics, ranks and curves come in one section
per dataset, and the page says so at the top. Within a dataset the runs are ranked by the metric
their best checkpoints were chosen by (when they share it and it ranks: never a loss or counter).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import os
import re
import urllib.parse
from pathlib import Path

import jinja2
import markupsafe

from dgm_lab.compare import plot
from dgm_lab.compare.collect import MISSING, Run, config_differences
from dgm_lab.compare.template import HTML_TEMPLATE
from dgm_lab.metrics import specs

ARROW = {"max": "↑", "min": "↓", None: ""}


def best_indices(values: list[float | None], direction: str | None) -> set[int]:
    """Indices of the best finite values; none when there is no direction or nothing to compare."""
    finite = {i: v for i, v in enumerate(values) if v is not None and math.isfinite(v)}
    if direction not in ("max", "min") or len(finite) < 2 or len(set(finite.values())) < 2:
        return set()
    best = (max if direction == "max" else min)(finite.values())
    return {i for i, v in finite.items() if v == best}


def default_curve_metrics(runs: list[Run]) -> list[str]:
    """Each run's monitored metric, then ``train/loss`` when any run logged it."""
    metrics = [m for m in dict.fromkeys(run.monitor[0] for run in runs) if m]
    if any("train/loss" in run.curves for run in runs) and "train/loss" not in metrics:
        metrics.append("train/loss")
    return metrics


def build_context(runs: list[Run], curve_metrics: list[str], out_dir: Path) -> dict:
    """Everything both renderers show, as plain strings and numbers."""
    colors = [plot.run_color(i) for i in range(len(runs))]
    groups: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(run.dataset, []).append(i)
    sections = [_section(dataset, [runs[i] for i in members], [colors[i] for i in members], curve_metrics)
                for dataset, members in groups.items()]
    ranks = {i: rank for section, members in zip(sections, groups.values(), strict=True)
             for i, rank in zip(members, section.pop("ranks"), strict=True)}
    warning = ""
    if len(groups) > 1:
        counts = ", ".join(f"{name} ({len(members)} run{'s' if len(members) != 1 else ''})"
                           for name, members in groups.items())
        warning = (f"These runs use {len(groups)} datasets: {counts}. Numbers from different datasets are not "
                   "comparable, so each dataset has its own metrics table, ranking and curves below.")
    kinds = list(dict.fromkeys(kind for run in runs for kind in run.samples))
    return {
        "title": f"dgm-compare: {len(runs)} run{'s' if len(runs) != 1 else ''}",
        "generated": dt.datetime.now().isoformat(timespec="seconds"),
        "warning": warning,
        "runs": [_run_row(run, colors[i], ranks[i]) for i, run in enumerate(runs)],
        "config_rows": [{"key": key, "cells": [{"text": _fmt_config(v, limit=40), "full": _fmt_config(v)} for v in values]}
                        for key, values in config_differences(runs).items()],
        "sections": sections,
        "kinds": kinds,
        "samples": [{"label": run.label, "color": color,
                     "cells": [_sample_cell(run.samples.get(kind), out_dir) for kind in kinds]}
                    for run, color in zip(runs, colors, strict=True)],
    }


def _section(dataset: str, runs: list[Run], colors: list[str], curve_metrics: list[str]) -> dict:
    """The metrics table, ranking and curves of the runs on one dataset."""
    monitor_modes = {m: mode for m, mode in (run.monitor for run in runs) if m and mode}
    names = sorted(set().union(*(run.metrics for run in runs)), key=_metric_order)
    metric_rows = []
    for name in names:
        values = [run.metrics.get(name) for run in runs]
        direction = specs.direction(name, monitor_modes)
        best = best_indices(values, direction)
        metric_rows.append({"name": name, "arrow": ARROW[direction],
                            "cells": [{"text": _fmt_metric(v), "best": i in best} for i, v in enumerate(values)]})
    charts = []
    for metric in curve_metrics:
        series = [(run.label, color, run.curves.get(metric, [])) for run, color in zip(runs, colors, strict=True)]
        missing = [run.label for run in runs if not run.curves.get(metric)]
        if len(missing) < len(runs):  # a dataset's runs that never logged a metric get no empty chart
            charts.append({"metric": metric, "svg": plot.line_chart(metric, series), "missing": missing})
    ranked_by, ranks = rank_runs(runs)
    return {"dataset": dataset, "labels": [run.label for run in runs], "metric_rows": metric_rows, "charts": charts,
            "ranked_by": ranked_by, "ranks": ranks}


def rank_runs(runs: list[Run]) -> tuple[str, list[str]]:
    """("<metric> <arrow>", rank text per run) by the monitored metric the runs share (the score of
    each run's best checkpoint), in its direction (the spec table, then the monitor's mode); no ranking ("", dashes) when the runs
    monitor different metrics or one that does not rank (a loss, a counter)."""
    monitors = {run.monitor[0] for run in runs}
    metric = next(iter(monitors)) if len(monitors) == 1 else None
    direction = None
    if metric:
        known = specs.parse(metric).spec is not None
        direction = specs.direction(metric, {} if known else {metric: runs[0].monitor[1]})
    if direction not in ("max", "min"):
        return "", ["—"] * len(runs)
    values = [_best_score(run, metric) for run in runs]
    finite = sorted({v for v in values if v is not None and math.isfinite(v)}, reverse=direction == "max")
    text = [f"{finite.index(v) + 1} of {len(finite)}" if v is not None and v in finite else "—" for v in values]
    return f"{metric} {ARROW[direction]}", text


def render_html(context: dict) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(HTML_TEMPLATE)
    # The SVG is ours, built with every label escaped; mark it safe so autoescape leaves it alone.
    sections = [{**section, "charts": [{**chart, "svg": markupsafe.Markup(chart["svg"])} for chart in section["charts"]]}
                for section in context["sections"]]
    return template.render(**{**context, "sections": sections})


def render_markdown(context: dict, html_name: str) -> str:
    """The tables of the HTML report; curves only there (markdown has no inline plots). Every
    value from the runs (labels, config values, metric and file names) is escaped (``_md_text``,
    ``_md_code``), so a run folder cannot put HTML, links or images into the page that renders it."""
    labels = [_md_text(run["label"]) for run in context["runs"]]
    link = _md_link(html_name)
    lines = [f"# {_md_text(context['title'])}", "", f"Generated {context['generated']}; curves and embedded "
             f"sample grids: [{_md_text(html_name)}]({link}).", ""]
    if context["warning"]:
        lines += [f"> **Warning:** {_md_text(context['warning'])}", ""]
    lines += ["## Runs", ""]
    lines += _md_table(["run", "status", "seed", "wall time (s)", "steps", "dataset", "rank", "best", "folder"],
                       [[_md_text(r[key]) for key in ("label", "status", "seed", "wall_time", "steps", "dataset",
                                                      "rank", "best")]
                        + [_md_code(r["path"])] for r in context["runs"]])
    lines += ["", "## Config differences", ""]
    if context["config_rows"]:
        lines += _md_table(["key", *labels], [[_md_code(row["key"]), *(_md_text(c["text"]) for c in row["cells"])]
                                             for row in context["config_rows"]])
    else:
        lines.append("No config key differs between the runs (paths, Hydra settings and run ids ignored).")
    for section in context["sections"]:
        title = "## Final metrics" + (f": {_md_text(section['dataset'])}" if len(context["sections"]) > 1 else "")
        ranked = f" Ranked by {_md_text(section['ranked_by'])}." if section["ranked_by"] else ""
        lines += ["", title, "", f"Best per metric in **bold**: ↑ higher is better, ↓ lower is better.{ranked}", ""]
        lines += _md_table(["metric", *map(_md_text, section["labels"])],
                           [[_md_text(f"{row['name']} {row['arrow']}".strip()),
                             *(f"**{_md_text(c['text'])}**" if c["best"] else _md_text(c["text"]) for c in row["cells"])]
                            for row in section["metric_rows"]])
    if context["kinds"]:
        lines += ["", "## Latest sample grids", ""]
        lines += _md_table(["run", *map(_md_text, context["kinds"])],
                           [[_md_text(s["label"]), *(f"![{_md_text(c['name'])}]({_md_link(c['link'])})" if c else "—"
                                                     for c in s["cells"])]
                            for s in context["samples"]])
    return "\n".join(lines) + "\n"


def _md_text(value: object) -> str:
    """Plain text in a markdown table cell: the characters that start HTML (``<``, ``&``), a link or
    an image (``[``), a code span or an escape, or end the cell (``|``) are backslash-escaped."""
    text = str(value).replace("\n", " ")
    return "".join("\\" + ch if ch in "\\`<>&[]|" else ch for ch in text)


def _md_code(value: object) -> str:
    """``value`` as a code span whose fence is longer than any run of backticks inside it."""
    text = str(value).replace("\n", " ").replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_link(target: str) -> str:
    """A relative link, percent-encoded so that no character of a file name ends or changes it."""
    return urllib.parse.quote(target, safe="/._-~")


def write_report(runs: list[Run], curve_metrics: list[str], html_path: Path) -> tuple[Path, Path]:
    """Write ``<name>.html`` and ``<name>.md`` side by side; return both paths."""
    html_path.parent.mkdir(parents=True, exist_ok=True)
    context = build_context(runs, curve_metrics, html_path.parent)
    md_path = html_path.with_suffix(".md")
    html_path.write_text(render_html(context), encoding="utf-8")
    md_path.write_text(render_markdown(context, html_path.name), encoding="utf-8")
    return html_path, md_path


def _best_score(run: Run, metric: str) -> float | None:
    """The monitored metric of the run's best checkpoint (what its test numbers come from), else its last value."""
    best = run.summary.get("best") or {}
    score = best.get("score") if best.get("monitor") == metric else None
    return float(score) if isinstance(score, int | float) else run.metrics.get(metric)


def _run_row(run: Run, color: str, rank: str) -> dict:
    monitor = run.monitor[0]
    score = (run.summary.get("best") or {}).get("score")
    best = f"{monitor} = {_fmt_metric(score)}" if monitor and score is not None else (monitor or "—")
    wall = run.summary.get("wall_time_s")
    return {"label": run.label, "color": color, "path": str(run.path), "status": run.status,
            "seed": _fmt_config(run.summary.get("seed", run.config.get("seed", MISSING))),
            "wall_time": f"{wall:.1f}" if isinstance(wall, int | float) else "—",
            "steps": str(run.summary.get("global_step", "—")), "best": best, "rank": rank, "dataset": run.dataset,
            "error": str(run.summary.get("error") or "")}


def _sample_cell(png: Path | None, out_dir: Path) -> dict | None:
    if png is None:
        return None
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return {"name": png.name, "uri": f"data:image/png;base64,{data}", "link": _relative(png, out_dir)}


def _relative(path: Path, start: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return path.resolve().as_posix()


def _metric_order(name: str) -> tuple:
    """val/ then test/ then train/ then the rest, alphabetical inside each."""
    prefix = name.split("/", 1)[0]
    return ({"val": 0, "test": 1, "train": 2}.get(prefix, 3), name)


def _fmt_metric(value: float | None) -> str:
    return "—" if value is None else f"{value:.5g}"


def _fmt_config(value: object, limit: int = 0) -> str:
    """Config values in one style: numbers to 4 significant digits (``1`` and ``1.0`` alike,
    ``0.0003142``), ``true``/``null`` as in YAML, a section as ``key=value, ...``; cut at ``limit``
    characters when one is given (the full text is the cell's tooltip)."""
    if value is MISSING:
        return "—"
    if isinstance(value, dict):
        text = ", ".join(f"{k}={_fmt_config(v)}" for k, v in value.items())
    elif isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e9):
        text = str(int(value))  # counts and sizes in full: 10000, not 1e+04
    elif isinstance(value, float):
        text = f"{value:.4g}" if math.isfinite(value) else str(value)
    elif isinstance(value, list):
        text = "[" + ", ".join(_fmt_config(v) for v in value) + "]"
    else:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if not limit or len(text) <= limit else text[: limit - 1] + "…"


def _md_table(header: list[str], rows: list[list[object]]) -> list[str]:
    def cell(value: object) -> str:  # values arrive escaped (_md_text, _md_code)
        return str(value).replace("\n", " ")

    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
