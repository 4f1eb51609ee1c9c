"""Start-up: ``dgm-train`` to its first training step versus importing torch, Lightning and Hydra;
``dgm-train --help`` / ``dgm-eval --help`` versus ``import torch``; and where the time goes
(``python -X importtime``). Every side is a fresh child process, timed from before it starts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from benchmarks.timing import alternate, children_cpu, row

REPO = Path(__file__).resolve().parent.parent
FIRST_STEP = "+callbacks.first_step._target_=benchmarks.first_step.StopAtFirstStep"
TRAIN = {"logger=none": ["logger=none"], "default logger (W&B offline)": ["logger=wandb"]}
BARE_IMPORTS = "import torch, pytorch_lightning, hydra"


def child(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "offline", **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=full_env, capture_output=True, text=True, timeout=600)


def cpu(args: list[str]):
    """CPU seconds of ``python <args>`` in a child process."""
    def timed() -> float:
        start = children_cpu()
        result = child(args)
        if result.returncode:
            raise RuntimeError(f"python {' '.join(args)} failed: {result.stderr[-1500:]}")
        return children_cpu() - start
    return timed


def to_first_step(overrides: list[str], folder: Path):
    """CPU seconds of a ``dgm-train`` process that ends at its first training batch (W&B's own
    service process, when that logger is on, is not counted)."""
    def timed() -> float:
        stamp = folder / "first_step"
        stamp.unlink(missing_ok=True)
        shutil.rmtree(folder / "run", ignore_errors=True)  # dgm-train refuses to start over an existing run
        start = children_cpu()
        result = child(["-m", "dgm_lab.train", *overrides, FIRST_STEP, f"hydra.run.dir={folder / 'run'}"],
                       env={"DGM_BENCH_FIRST_STEP": str(stamp)})
        if not stamp.exists():
            raise RuntimeError(f"dgm-train never reached a training step: {result.stderr[-1500:]}")
        return children_cpu() - start
    return timed


def import_profile(overrides: list[str], folder: Path, top: int = 12) -> list[dict]:
    """The top-level packages that cost most to import in a ``dgm-train`` process (cumulative
    microseconds of each package's first import, as ``-X importtime`` reports them)."""
    result = child(["-X", "importtime", "-m", "dgm_lab.train", *overrides, FIRST_STEP,
                    f"hydra.run.dir={folder / 'profile'}"], env={"DGM_BENCH_FIRST_STEP": str(folder / "p")})
    totals: dict[str, int] = defaultdict(int)
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(3)) == 1:  # a top-level import, with everything it pulled in
            totals[match.group(4).split(".")[0]] += int(match.group(2))
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:top]
    return [{"package": name, "cumulative_s": round(us / 1e6, 3)} for name, us in ranked]


def run(smoke: bool, repeats: int) -> tuple[list[dict], list[dict]]:
    rows = []
    data = ["data=digits"] if smoke else []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, logger in TRAIN.items():
            if smoke and "wandb" in logger[0]:
                continue
            overrides = [*data, *logger, "trainer.accelerator=cpu"]
            result = alternate(to_first_step(overrides, folder), cpu(["-c", BARE_IMPORTS]), repeats)
            rows.append(row("start-up", f"dgm-train to first step, {label}", "dgm-train", f"python -c '{BARE_IMPORTS}'",
                            "CPU s", result))
        for prog, module in (("dgm-train", "dgm_lab.train"), ("dgm-eval", "dgm_lab.eval"))[: 1 if smoke else 2]:
            result = alternate(cpu(["-m", module, "--help"]), cpu(["-c", "import torch"]), repeats)
            rows.append(row("start-up", f"{prog} --help", f"{prog} --help", "python -c 'import torch'", "CPU s", result))
        profile = import_profile([*data, "logger=none", "trainer.accelerator=cpu"], folder)
    return rows, profile
