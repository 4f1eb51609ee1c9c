"""Learning curves as inline SVG: one chart per metric, one ``<path data-run=...>`` per run.

Hand-written SVG keeps the report a single offline file with crisp, hoverable lines and no
plotting dependency at render time; each path carries ``data-run``/``data-metric`` so the page
script and the browser test can find every curve.
"""

from __future__ import annotations

import math
from html import escape

WIDTH, HEIGHT = 560, 280
LEFT, RIGHT, TOP, BOTTOM = 68, 14, 10, 34
MAX_MARKERS = 60  # beyond this a run's points are a line only, so long runs stay light
# Colour-blind-friendly palette (Okabe-Ito), then matplotlib's tab10 for more runs.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
           "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def run_color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]."""
    span = hi - lo
    raw = span / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def line_chart(metric: str, series: list[tuple[str, str, list[tuple[float, float]]]]) -> str:
    """SVG markup for one metric; ``series`` is ``(run label, colour, [(step, value), ...])``."""
    series = [(label, color, [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)])
              for label, color, pts in series]
    series = [s for s in series if s[2]]
    points = [p for _, _, pts in series for p in pts]
    if not points:
        return ""
    x_lo, x_hi = _padded(min(x for x, _ in points), max(x for x, _ in points), pad=0.0)
    y_lo, y_hi = _padded(min(y for _, y in points), max(y for _, y in points), pad=0.05)

    def sx(x: float) -> float:
        return LEFT + (x - x_lo) / (x_hi - x_lo) * (WIDTH - LEFT - RIGHT)

    def sy(y: float) -> float:
        return HEIGHT - BOTTOM - (y - y_lo) / (y_hi - y_lo) * (HEIGHT - TOP - BOTTOM)

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(metric)} against step" data-metric="{escape(metric)}">']
    for y in nice_ticks(y_lo, y_hi, 6):
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{sy(y):.1f}" y2="{sy(y):.1f}"/>'
                     f'<text class="tick" x="{LEFT - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{_fmt(y)}</text>')
    for x in nice_ticks(x_lo, x_hi, 6):
        parts.append(f'<text class="tick" x="{sx(x):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{_fmt(x)}</text>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" y2="{HEIGHT - BOTTOM}"/>'
                 f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>'
                 f'<text class="tick" x="{WIDTH - RIGHT}" y="{HEIGHT - 4}" text-anchor="end">step</text>')
    for label, color, pts in series:
        run, name = escape(label), escape(metric)
        d = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(pts))
        parts.append(f'<g class="series" data-run="{run}" style="color:{color}">'
                     f'<path data-run="{run}" data-metric="{name}" d="{d}"><title>{run}</title></path>')
        if len(pts) <= MAX_MARKERS:  # markers make single-point curves (test metrics) visible
            parts.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3"><title>{run}: step {_fmt(x)}, '
                         f'{name} = {y:.6g}</title></circle>' for x, y in pts)
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _padded(lo: float, hi: float, pad: float) -> tuple[float, float]:
    """Widen a range by a fraction, and a zero-width range (one point) to a visible one."""
    if hi == lo:
        width = abs(lo) * 0.1 or 1.0
        return lo - width, hi + width
    margin = (hi - lo) * pad
    return lo - margin, hi + margin


def _fmt(value: float) -> str:
    return f"{value:.4g}"
