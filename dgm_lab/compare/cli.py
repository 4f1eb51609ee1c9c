"""``dgm-compare RUN_OR_SWEEP... [--metrics a,b] [--out report.html]``.

Plain argparse, no Hydra: the command only reads folders, and its arguments are paths and globs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dgm_lab.cli import reports_user_errors
from dgm_lab.compare.collect import NotARunFolderError, collect_runs
from dgm_lab.compare.report import default_curve_metrics, write_report
from dgm_lab.errors import UserError

PROG = "dgm-compare"


class UnknownMetricError(UserError):
    """--metrics names a metric that no run's metrics.csv has."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Compare dgm-train runs: config differences, final metrics, learning curves and "
                    "the latest sample grids, in one offline HTML file plus a markdown table next to it.",
        epilog="Best values are highlighted in the direction of dgm_lab/metrics/specs.py (losses and counters "
               "never); runs on different datasets get separate sections and are never ranked together; within "
               "a dataset runs are ranked by the metric that picked their checkpoints; sweep jobs are labelled "
               "by the overrides that differ between them.",
    )
    parser.add_argument("folders", nargs="+", metavar="FOLDER",
                        help="run folders or sweep folders (dgm-train -m); globs allowed, quote them")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated metrics to plot against step (default: each run's monitored "
                             "metric, plus train/loss when logged)")
    parser.add_argument("--out", default="report.html", type=Path,
                        help="HTML file to write; the markdown goes next to it as <name>.md (default: report.html)")
    return parser.parse_args(argv)


@reports_user_errors(PROG)
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    runs = collect_runs(args.folders)
    if not runs:  # collect_runs raises for empty folders; this guards an empty glob list
        raise NotARunFolderError("no run folders were given; pass folders written by dgm-train.")
    if args.metrics:
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
        _check_metrics(metrics, runs)
    else:
        metrics = default_curve_metrics(runs)
    html_path, md_path = write_report(runs, metrics, args.out)
    print(f"[{PROG}] {len(runs)} run{'s' if len(runs) != 1 else ''} -> {html_path} and {md_path}")


def _check_metrics(metrics: list[str], runs) -> None:
    """A typo in --metrics would silently give an empty chart; name what exists instead."""
    logged = sorted(set().union(*(run.curves for run in runs)))
    unknown = [m for m in metrics if m not in logged]
    if unknown:
        raise UnknownMetricError(
            f"no run logged {', '.join(unknown)} in metrics.csv; logged metrics are: {', '.join(logged) or 'none'}."
        )


if __name__ == "__main__":
    sys.exit(main())
