"""Mode coverage of GAN variants on ring8 and grid25: run every (data, config, seed), print the table.

    python experiments/gan_modes/run_table.py                 # all runs, then the table
    python experiments/gan_modes/run_table.py --table-only    # table from finished runs

Runs go one after another (one CPU thread each) into outputs/gan_modes_table/<data>/<config>/seed<k>;
a run whose summary.json exists is not repeated. Each row is the final EMA generator scored on
2,500 fresh test samples (dgm_lab.callbacks.ModeCoverage).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "outputs" / "gan_modes_table"
DATA = ["ring8", "grid25"]
SEEDS = [0, 1, 2]
# name -> dgm-train overrides on top of experiment=gan_modes (which sets the shared budget)
CONFIGS = {
    "gan": ["model=gan"],
    # Gulrajani et al.'s toy settings (n_critic 5, lambda 10, Adam betas (0.5, 0.9)) with the 2 x 256
    # networks of the GAN rows instead of 3 x 512 (8x fewer FLOPs: 3 x 512 managed only 585
    # iterations in this budget) and lr 2e-4; 110 epochs x 39 iterations, about 5-6 CPU minutes
    "wgan_gp": ["model=wgan_gp", "trainer.max_epochs=110", "model.generator.hidden=[256,256]",
                "model.discriminator.hidden=[256,256]", "model.generator_optimizer.lr=2e-4",
                "model.discriminator_optimizer.lr=2e-4", "model.generator_optimizer.betas=[0.5,0.9]",
                "model.discriminator_optimizer.betas=[0.5,0.9]"],
    "gan_beta0.5": ["model=gan", "model.generator_optimizer.betas=[0.5,0.9]",
                    "model.discriminator_optimizer.betas=[0.5,0.9]"],
}


def command(data: str, config: str, seed: int) -> list[str]:
    return ["dgm-train", "experiment=gan_modes", f"data={data}", *CONFIGS[config], f"seed={seed}",
            f"hydra.run.dir={OUT / data / config / f'seed{seed}'}"]


def run(data: str, config: str, seed: int) -> None:
    run_dir = OUT / data / config / f"seed{seed}"
    if (run_dir / "summary.json").exists():
        return
    args = command(data, config, seed)
    print("OMP_NUM_THREADS=1", " ".join(args), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run([sys.executable, "-m", "dgm_lab.train", *args[1:], "logger=csv"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode:  # reported and left out of the table; the sweep goes on
        print(f"  failed ({result.returncode}): {result.stderr.strip().splitlines()[-1:]}", flush=True)
        return
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU time of the whole process (imports, validation, test included): wall time depends on
    # whatever else the machine runs, CPU time much less
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    (run_dir / "cpu_seconds.json").write_text(json.dumps({"cpu_seconds": round(cpu, 1)}))


def table() -> str:
    lines = ["| data | config | seed | modes covered | high quality | mode KL (nats) | generator iters | CPU (s) | wall (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    summary_lines = ["| data | config | modes covered (mean, min) | high quality % (mean +- sd) | seeds |",
                     "|---|---|---|---|---|"]
    for data in DATA:
        for config in CONFIGS:
            modes, quality = [], []
            for seed in SEEDS:
                path = OUT / data / config / f"seed{seed}" / "summary.json"
                if not path.exists():
                    continue
                summary = json.loads(path.read_text())
                if summary["status"] != "completed":
                    continue
                m = summary["metrics"]
                cpu_file = path.parent / "cpu_seconds.json"
                cpu = json.loads(cpu_file.read_text())["cpu_seconds"] if cpu_file.exists() else float("nan")
                modes.append(m["test/modes_covered"])
                quality.append(100 * m["test/high_quality_frac"])
                lines.append(f"| {data} | {config} | {seed} | {m['test/modes_covered']:.0f} | "
                             f"{100 * m['test/high_quality_frac']:.1f}% | {m['test/mode_kl']:.3f} | "
                             f"{m['test/generator_step']:.0f} | {cpu:.0f} | {summary['wall_time_s']:.0f} |")
            if modes:
                sd = statistics.stdev(quality) if len(quality) > 1 else 0.0
                summary_lines.append(f"| {data} | {config} | {statistics.mean(modes):.1f}, {min(modes):.0f} | "
                                     f"{statistics.mean(quality):.1f} +- {sd:.1f} | {len(modes)} |")
    return "\n".join(summary_lines) + "\n\n" + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if not args.table_only:
        # every config once first, then the GAN seeds, then the slow WGAN-GP seeds: a sweep cut
        # short still compares all configs
        order = [(0, d, c) for d in DATA for c in CONFIGS]
        order += [(s, d, c) for s in SEEDS[1:] for d in DATA for c in CONFIGS if c != "wgan_gp"]
        order += [(s, d, "wgan_gp") for s in SEEDS[1:] for d in DATA]
        for seed, data, config in order:
            run(data, config, seed)
    print(table())


if __name__ == "__main__":
    main()
