"""What the upper layer of a trained DBN adds: the test log-likelihood of its first RBM on its own
(log Z by AIS), next to the DBN's lower bound from the run's summary.json.

    OMP_NUM_THREADS=1 python experiments/boltzmann/dbn_layer_gain.py <run folder> [num_betas] [num_runs]

The first RBM is frozen once the second layer starts training, so its log-likelihood now is the
one it had then; with ``model.init_from_below=true`` that is also where the DBN's bound started.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from dgm_lab.checkpoints import load_checkpoint, rebuild, resolve_checkpoint
from dgm_lab.metrics.ais import annealed_importance_sampling, base_rate_bias, unnormalized_log_prob


def main(run: str, num_betas: int = 14500, num_runs: int = 100) -> None:
    ckpt, _ = resolve_checkpoint(run)
    _, datamodule, model = rebuild(load_checkpoint(ckpt))
    datamodule.setup()
    first = model.layers[0].ais_params()
    started = time.time()
    ais = annealed_importance_sampling(first, base_rate_bias(datamodule.splits["train"].images.flatten(1)),
                                       num_betas, num_runs, generator=torch.Generator().manual_seed(0))
    test = datamodule.splits["test"].images.flatten(1)
    mean = float(unnormalized_log_prob(first, test).mean())
    print(f"first RBM alone: test log-likelihood {mean - ais.log_z:.2f} nats "
          f"[{mean - ais.log_z_high:.2f}, {mean - ais.log_z_low:.2f}], log Z {ais.log_z:.3f}, "
          f"log-weight std {ais.log_weight_std:.2f} ({num_betas} x {num_runs}, {time.time() - started:.0f} s)")
    summary = Path(run) / "summary.json"
    if summary.exists():
        bound = json.loads(summary.read_text())["metrics"].get("test/loglik_bound_ais")
        if bound is not None:
            print(f"DBN lower bound (summary.json): {bound:.2f} nats; the upper layers add {bound - (mean - ais.log_z):+.2f}")


if __name__ == "__main__":
    main(sys.argv[1], *(int(arg) for arg in sys.argv[2:4]))
