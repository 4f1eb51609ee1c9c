"""``dgm-reproduce``: run a published baseline with one command, list the rows, regenerate the table.

    dgm-reproduce vae_k1                 # the full run -> experiments/results/vae_k1.json
    dgm-reproduce vae_k1 --quick         # the same row on a tiny slice (smoke test)
    dgm-reproduce vae_k1 --resume        # continue a stopped run in its folder (dgm-train resume=),
                                         # or a completed one whose row now trains longer (max_epochs raised)
    dgm-reproduce --list                 # rows and their status
    dgm-reproduce --table                # experiments/README.md from the stored results
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dgm_lab.cli import EXIT_USER_ERROR
from dgm_lab.errors import UserError
from dgm_lab.reproduce import runner
from dgm_lab.reproduce.config_hash import row_hash
from dgm_lab.reproduce.registry import find_row, load_registry, upstream_rows
from dgm_lab.reproduce.status import read_result, row_status
from dgm_lab.reproduce.table import write_table

PROG = "dgm-reproduce"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one sentence and exit 2, as every dgm-lab entry point
        raise UserError(f"{message}; see dgm-reproduce --help.")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Reproduce a published baseline (experiments/baselines.yaml) with one command.")
    p.add_argument("name", nargs="?", help="the registry row to run")
    p.add_argument("--quick", action="store_true", help="the row's shortened schedule on a tiny slice (smoke test)")
    p.add_argument("--resume", action="store_true",
                   help="continue the row's stopped run in its run folder, or its completed run when the row's "
                        "config now only trains longer (trainer.max_epochs, max_steps or max_time raised)")
    p.add_argument("--list", action="store_true", help="print the rows and their status")
    p.add_argument("--table", action="store_true", help="regenerate the README table from the stored results")
    p.add_argument("--registry", type=Path, default=None, help="the registry file (default experiments/baselines.yaml)")
    p.add_argument("--results-dir", type=Path, default=runner.RESULTS, help="where results are stored")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="where run folders live (default $XDG_CACHE_HOME/dgm-lab/reproduce, outside the work tree)")
    p.add_argument("--readme", type=Path, default=runner.REPO / "experiments" / "README.md", help="the table's file")
    return p


def _current_hash(row, rows: dict) -> str | None:
    if not all(r.experiment_file.exists() for r in [row, *upstream_rows(rows, row)]):
        return None
    try:
        return row_hash(row, rows)
    except UserError:
        return None


def statuses(rows: dict, results_dir: Path) -> dict:
    return {name: row_status(row, read_result(runner.result_path(row, results_dir, quick=False)),
                             _current_hash(row, rows)) for name, row in rows.items()}


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        rows = load_registry(args.registry)
        if args.list or args.table:
            if args.name or args.quick or args.resume:
                raise UserError("--list and --table take no row name, --quick or --resume.")
            found = statuses(rows, args.results_dir)
            if args.table:
                write_table(args.readme, list(rows.values()), found)
                print(f"[dgm-reproduce] wrote {args.readme}")
            if args.list:
                width = max(len(name) for name in rows)
                for name, row in rows.items():
                    print(f"{name:<{width}}  {found[name].status:<40}  {row.title}")
            return 0
        if not args.name:
            raise UserError("name a registry row to run (dgm-reproduce --list shows them), or pass --list or --table.")
        row = find_row(rows, args.name)
        path = runner.run_row(row, args.runs_dir or runner.default_runs_dir(), args.results_dir,
                              quick=args.quick, resume=args.resume, rows=rows)
        print(f"[dgm-reproduce] {row.name}: result in {path}")
        return 0
    except UserError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return EXIT_USER_ERROR


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
