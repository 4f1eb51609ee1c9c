"""Paired, alternating measurements and their summary.

These CPUs are shared and oversubscribed (a load of 20 on 2 cores is common): wall time there
measures the neighbours, so costs are CPU seconds (``clock``: the process's CPU time; for a child
process, its CPU time as the parent collects it), every side single-threaded. A ratio is only
meaningful when both sides see the same machine, so each repetition times the baseline and then the
candidate back to back (A B A B ...), and the figure is the median of the per-pair ratios with their
spread (min-max and interquartile range).
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable

clock = time.process_time  # CPU seconds of this process (all its threads)


def children_cpu() -> float:
    """CPU seconds of the child processes waited for so far (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def summarize(candidate: list[float], baseline: list[float]) -> dict:
    """The ratio candidate/baseline of each pair, summarized; costs keep their own unit."""
    if len(candidate) != len(baseline) or not candidate:
        raise ValueError("candidate and baseline need the same, non-zero number of repetitions")
    ratios = [c / b for c, b in zip(candidate, baseline, strict=True)]
    q1, q3 = quartiles(ratios)
    return {"ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "ratio_q1": q1, "ratio_q3": q3, "repeats": len(ratios),
            "candidate": statistics.median(candidate), "baseline": statistics.median(baseline)}


def alternate(candidate: Callable[[], float], baseline: Callable[[], float], repeats: int,
              warmup: int = 0) -> dict:
    """Call baseline, candidate, baseline, candidate ...; each returns its own cost (seconds,
    bytes: lower is better). ``warmup`` pairs run first and are not counted."""
    for _ in range(warmup):
        baseline()
        candidate()
    costs_b, costs_c = [], []
    for _ in range(repeats):
        costs_b.append(baseline())
        costs_c.append(candidate())
    return summarize(costs_c, costs_b)


def seconds(fn: Callable[[], object]) -> Callable[[], float]:
    """``fn`` as a cost: the CPU seconds it takes."""

    def timed() -> float:
        start = clock()
        fn()
        return clock() - start

    return timed


def row(section: str, name: str, candidate: str, baseline: str, unit: str, result: dict | None,
        note: str = "", scale: float = 1.0) -> dict:
    """One table row; ``scale`` converts the costs to ``unit`` (1000: seconds -> ms).
    ``result`` None: not measured, and ``note`` says why."""
    out = {"section": section, "name": name, "candidate_label": candidate, "baseline_label": baseline, "unit": unit,
           "note": note}
    if result is not None:
        out.update({k: (v * scale if k in ("candidate", "baseline") else v) for k, v in result.items()})
    return out
