"""Scaling: the training step's framework ratio and cost across batch sizes, and 1 versus 2 CPU DDP
processes with the same global batch (``benchmarks/ddp_cpu.py``)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from benchmarks import step
from benchmarks.timing import row

BATCH_SIZES = (32, 128, 512)


def run(smoke: bool, repeats: int) -> list[dict]:
    rows = []
    for batch in (16,) if smoke else BATCH_SIZES:
        data = ["data=digits", "data.train_subset=256"] if smoke else ["data=mnist", f"data.train_subset={batch * 10}"]
        result = step.measure(["model=vae", *data, f"data.batch_size={batch}"], repeats + 1, whole_epoch=False)
        rows.append(row("scaling", f"vae_mlp pure step, batch {batch}", "dgm-lab (Lightning fit)", "hand-written loop",
                        "CPU ms/step", result))
        print(rows[-1]["name"], round(rows[-1]["ratio"], 3), flush=True)
    if smoke:
        rows.append(row("scaling", "DDP 2 CPU processes vs 1", "trainer=ddp_cpu (2 x 1 thread)", "1 process, 2 threads",
                        "ms/iteration", None, note="not run in smoke mode (two process launches)"))
        return rows
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import ddp_cpu

    with tempfile.TemporaryDirectory() as tmp:
        case = ddp_cpu.compare("vae", 2, Path(tmp))
    single, ddp = case["single"]["timing"]["ms_per_iteration"], case["ddp"]["timing"]["ms_per_iteration"]
    result = {"ratio": ddp / single, "ratio_min": ddp / single, "ratio_max": ddp / single, "ratio_q1": ddp / single,
              "ratio_q3": ddp / single, "repeats": 1, "candidate": ddp, "baseline": single}
    rows.append(row("scaling", "vae_mlp DDP 2 CPU processes vs 1, global batch 100, 2 epochs",
                    "trainer=ddp_cpu (2 x 1 thread)", "1 process, 2 threads", "ms/iteration", result,
                    note="one run each (a DDP run is two process launches)"))
    return rows
