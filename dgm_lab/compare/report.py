"""Render collected runs as one self-contained HTML page and a markdown summary.

The HTML has its CSS and script inline, sample grids as base64 ``data:`` URIs and curves as
inline SVG, so it opens offline from anywhere (mail it, attach it to an issue). The markdown
holds the same tables for pasting into a PR or issue; its images are relative links.

Best-value rule, per metric: the direction in the metric-spec table (``dgm_lab.metrics.specs``);
metrics that do not rank runs (adversarial losses, counters, spreads) are never highlighted. A
name the table does not know falls back to its name hints (``val/my_nll`` -> lower), then to the
``mode`` of runs that monitor it; otherwise nothing is highlighted.
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
    monitor_modes = {m: mode for m, mode in (run.monitor for run in runs) if m and mode}
    names = sorted(set().union(*(run.metrics for run in runs)), key=_metric_order)
    metric_rows = []
    for name in names:
        values = [run.metrics.get(name) for run in runs]
        direction = specs.direction(name, monitor_modes)
        best = best_indices(values, direction)
        metric_rows.append({"name": name, "arrow": ARROW[direction],
                            "cells": [{"text": _fmt_metric(v), "best": i in best} for i, v in enumerate(values)]})
    colors = [plot.run_color(i) for i in range(len(runs))]
    charts = []
    for metric in curve_metrics:
        series = [(run.label, color, run.curves.get(metric, [])) for run, color in zip(runs, colors, strict=True)]
        svg = plot.line_chart(metric, series)
        missing = [run.label for run in runs if not run.curves.get(metric)]
        charts.append({"metric": metric, "svg": svg, "missing": missing})
    kinds = list(dict.fromkeys(kind for run in runs for kind in run.samples))
    return {
        "title": f"dgm-compare: {len(runs)} run{'s' if len(runs) != 1 else ''}",
        "generated": dt.datetime.now().isoformat(timespec="seconds"),
        "runs": [_run_row(run, color) for run, color in zip(runs, colors, strict=True)],
        "config_rows": [{"key": key, "cells": [{"text": _fmt_config(v, limit=90), "full": _fmt_config(v)} for v in values]}
                        for key, values in config_differences(runs).items()],
        "metric_rows": metric_rows,
        "charts": charts,
        "kinds": kinds,
        "samples": [{"label": run.label, "color": color,
                     "cells": [_sample_cell(run.samples.get(kind), out_dir) for kind in kinds]}
                    for run, color in zip(runs, colors, strict=True)],
    }


def render_html(context: dict) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(HTML_TEMPLATE)
    # The SVG is ours, built with every label escaped; mark it safe so autoescape leaves it alone.
    charts = [{**chart, "svg": markupsafe.Markup(chart["svg"])} for chart in context["charts"]]
    return template.render(**{**context, "charts": charts})


def render_markdown(context: dict, html_name: str) -> str:
    """The tables of the HTML report; curves only there (markdown has no inline plots). Every
    value from the runs (labels, config values, metric and file names) is escaped (``_md_text``,
    ``_md_code``), so a run folder cannot put HTML, links or images into the page that renders it."""
    labels = [_md_text(run["label"]) for run in context["runs"]]
    link = _md_link(html_name)
    lines = [f"# {_md_text(context['title'])}", "", f"Generated {context['generated']}; curves and embedded "
             f"sample grids: [{_md_text(html_name)}]({link}).", "", "## Runs", ""]
    lines += _md_table(["run", "status", "seed", "wall time (s)", "steps", "best", "folder"],
                       [[_md_text(r[key]) for key in ("label", "status", "seed", "wall_time", "steps", "best")]
                        + [_md_code(r["path"])] for r in context["runs"]])
    lines += ["", "## Config differences", ""]
    if context["config_rows"]:
        lines += _md_table(["key", *labels], [[_md_code(row["key"]), *(_md_text(c["text"]) for c in row["cells"])]
                                             for row in context["config_rows"]])
    else:
        lines.append("No config key differs between the runs (paths, Hydra settings and run ids ignored).")
    lines += ["", "## Final metrics", "", "Best per metric in **bold**: ↑ higher is better, ↓ lower is better.", ""]
    lines += _md_table(["metric", *labels],
                       [[_md_text(f"{row['name']} {row['arrow']}".strip()),
                         *(f"**{_md_text(c['text'])}**" if c["best"] else _md_text(c["text"]) for c in row["cells"])]
                        for row in context["metric_rows"]])
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


def _run_row(run: Run, color: str) -> dict:
    monitor = run.monitor[0]
    score = (run.summary.get("best") or {}).get("score")
    best = f"{monitor} = {_fmt_metric(score)}" if monitor and score is not None else (monitor or "—")
    wall = run.summary.get("wall_time_s")
    return {"label": run.label, "color": color, "path": str(run.path), "status": run.status,
            "seed": _fmt_config(run.summary.get("seed", run.config.get("seed", MISSING))),
            "wall_time": f"{wall:.1f}" if isinstance(wall, int | float) else "—",
            "steps": str(run.summary.get("global_step", "—")), "best": best,
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
    """Config values as typed (``1.0``, ``null``, ``[1, 2]``); a section as ``key=value, ...``,
    cut at ``limit`` characters when one is given."""
    if value is MISSING:
        return "—"
    if isinstance(value, dict):
        text = ", ".join(f"{k}={_fmt_config(v)}" for k, v in value.items())
    else:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if not limit or len(text) <= limit else text[: limit - 1] + "…"


def _md_table(header: list[str], rows: list[list[object]]) -> list[str]:
    def cell(value: object) -> str:  # values arrive escaped (_md_text, _md_code)
        return str(value).replace("\n", " ")

    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
