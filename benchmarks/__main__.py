"""``python -m benchmarks`` (``make bench``): every measurement of benchmarks/README.md in one run.

    python -m benchmarks                 # the full run (about an hour on 2 shared CPU cores)
    python -m benchmarks --smoke         # tiny sizes, seconds: checks that every measurement runs
    python -m benchmarks --only step startup --repeats 5

Writes benchmarks/results/<date>-<host>.json and the table in benchmarks/README.md (``--out`` and
``--readme`` elsewhere). Each figure is a ratio to a baseline measured in the same run, the two
sides alternated, median of ``--repeats`` pairs with min-max and interquartile range.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import socket
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTIONS = ("step", "quality", "options", "startup", "evaluation", "data", "scaling", "peer")
COMPILE = "compile"  # trainer.compile=true (minutes of compilation on a CPU): only when asked for


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: a check that runs in seconds, not a measurement")
    parser.add_argument("--only", nargs="+", choices=[*SECTIONS, COMPILE], default=list(SECTIONS),
                        help="sections to run, in this order (compile: trainer.compile=true, not in the default set)")
    parser.add_argument("--repeats", type=int, help="alternating pairs per figure (default 5, smoke 1)")
    parser.add_argument("--out", type=Path, help="JSON file (default benchmarks/results/<date>-<host>.json)")
    parser.add_argument("--readme", type=Path, default=HERE / "README.md", help="markdown file that keeps the table")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.smoke else 5)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import pytorch_lightning as pl
    import torch

    from benchmarks import (
        data_loading,
        evaluation,
        options,
        peer_pythae,
        report,
        scaling,
        startup,
        step,
        time_to_quality,
    )

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    data_dir = Path(os.environ.get("DGM_DATA_DIR", "data"))
    started = time.time()
    record = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
              "host": socket.gethostname(), "torch": torch.__version__, "lightning": pl.__version__,
              "threads": torch.get_num_threads(), "smoke": args.smoke, "repeats": repeats, "rows": []}
    out = args.out or HERE / "results" / f"{datetime.date.today().isoformat()}-{socket.gethostname()}.json"
    for section in args.only:
        if section == COMPILE:
            record["rows"] += options.run(args.smoke, repeats, compile_only=True)
        elif section == "step":
            record["rows"] += step.run(args.smoke, repeats)
        elif section == "quality":
            record["rows"] += time_to_quality.run(args.smoke, min(repeats, 3))  # a race is minutes per seed
        elif section == "options":
            record["rows"] += options.run(args.smoke, repeats)
        elif section == "startup":
            rows, record["import_profile"] = startup.run(args.smoke, repeats)
            record["rows"] += rows
        elif section == "evaluation":
            record["rows"] += evaluation.run(args.smoke, repeats)
        elif section == "data":
            record["rows"] += data_loading.run(args.smoke, repeats, data_dir)
        elif section == "scaling":
            record["rows"] += scaling.run(args.smoke, repeats)
        elif section == "peer":
            record["rows"] += peer_pythae.run(args.smoke, repeats)
        record["wall_time_s"] = round(time.time() - started, 1)
        report.write(record, out, args.readme)  # after every section: a long run stopped early keeps its rows
    print(report.markdown(record))
    print(f"[benchmarks] wrote {out} and {args.readme} in {record['wall_time_s']:.0f} s")
    return record


if __name__ == "__main__":
    main()
