"""log Z of a trained RBM checkpoint by AIS at several numbers of temperatures: does it converge?

    OMP_NUM_THREADS=1 python experiments/boltzmann/ais_convergence.py <ckpt or run folder> 1000 14500 50000

Prints, per setting: log Z, the +/- 3 s.e. interval, the spread of the log weights and seconds.
"""

from __future__ import annotations

import sys
import time

import torch

from dgm_lab.checkpoints import load_checkpoint, rebuild, resolve_checkpoint
from dgm_lab.metrics.ais import annealed_importance_sampling, base_rate_bias


def main(path: str, settings: list[int], num_runs: int = 100) -> None:
    ckpt, _ = resolve_checkpoint(path)
    _, datamodule, model = rebuild(load_checkpoint(ckpt))
    datamodule.setup()
    base = base_rate_bias(datamodule.splits["train"].images.flatten(1))
    for num_betas in settings:
        started = time.time()
        result = annealed_importance_sampling(model.rbm.ais_params(), base, num_betas, num_runs,
                                              generator=torch.Generator().manual_seed(0))
        print(f"num_betas={num_betas:6d} runs={num_runs}: log Z = {result.log_z:.3f} "
              f"[{result.log_z_low:.3f}, {result.log_z_high:.3f}] log-weight std {result.log_weight_std:.2f} "
              f"({time.time() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], [int(n) for n in sys.argv[2:]] or [1000, 14500])
