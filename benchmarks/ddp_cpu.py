"""Two-process CPU DDP (gloo) versus one process with the same global batch, through ``dgm-train``.

    python benchmarks/ddp_cpu.py [--only vae|gan] [--epochs-vae 50] [--epochs-gan 20]

For each model the two runs go one after the other on the same machine: one process with
OMP_NUM_THREADS=2 and batch B, then ``trainer=ddp_cpu`` (2 processes, 1 thread each, B/2 per rank:
the datamodules shard their batches, so the global batch is B). Both use every core, so the
ratio is the cost of DDP's gradient all-reduce and process coordination, not of extra hardware.
Step time is the run summary's ``timing.ms_per_iteration`` (fit time over optimizer steps, or
generator iterations for the GAN). Writes benchmarks/results/ddp_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "ddp_cpu.json"
# model -> (global batch, overrides, final metrics to compare)
CASES = {
    "vae": (100, ["model=vae", "data=mnist_5k", "eval.iwae_k=1000"],
            ["val/elbo", "test/elbo", "test/nll_iwae"]),
    "gan": (256, ["experiment=gan_modes", "data=ring8", "model=gan"],
            ["test/modes_covered", "test/high_quality_frac", "test/mode_kl"]),
}


def train(out: Path, overrides: list[str], ddp: bool, batch: int) -> dict:
    run_dir = out / ("ddp" if ddp else "single")
    args = [*overrides, "logger=csv", "seed=0", f"hydra.run.dir={run_dir}",
            f"data.batch_size={batch // 2 if ddp else batch}",
            *(["trainer=ddp_cpu", "trainer.devices=2"] if ddp else ["trainer.accelerator=cpu"])]
    env = {**os.environ, "OMP_NUM_THREADS": "1" if ddp else "2", "WANDB_SILENT": "true"}
    result = subprocess.run([sys.executable, "-m", "dgm_lab.train", *args], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if result.returncode:
        raise SystemExit(f"dgm-train {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return json.loads((run_dir / "summary.json").read_text())


def compare(name: str, epochs: int, out: Path) -> dict:
    batch, overrides, metrics = CASES[name]
    overrides = [*overrides, f"trainer.max_epochs={epochs}", "trainer.max_time=null"]
    runs = {kind: train(out / name, overrides, kind == "ddp", batch) for kind in ("single", "ddp")}
    row = {"global_batch": batch, "epochs": epochs, "overrides": overrides}
    for kind, summary in runs.items():
        row[kind] = {"timing": summary["timing"], "wall_time_s": summary["wall_time_s"],
                     "metrics": {key: summary["metrics"].get(key) for key in metrics}}
    row["step_time_ratio_ddp_over_single"] = round(
        row["ddp"]["timing"]["ms_per_iteration"] / row["single"]["timing"]["ms_per_iteration"], 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(CASES))
    parser.add_argument("--epochs-vae", type=int, default=50)
    parser.add_argument("--epochs-gan", type=int, default=20)
    args = parser.parse_args()
    epochs = {"vae": args.epochs_vae, "gan": args.epochs_gan}
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
               "torch": torch.__version__, "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in [args.only] if args.only else list(CASES):
            results["cases"][name] = row = compare(name, epochs[name], Path(tmp))
            print(f"{name}: single {row['single']['timing']['ms_per_iteration']} ms/iter, "
                  f"ddp {row['ddp']['timing']['ms_per_iteration']} ms/iter, "
                  f"ratio {row['step_time_ratio_ddp_over_single']}", flush=True)
            for kind in ("single", "ddp"):
                print(f"  {kind}: {row[kind]['metrics']}", flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
