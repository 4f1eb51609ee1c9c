"""``dgm-train`` with injected faults in its checkpoint writes, for the fault-injection tests
(run as ``python -m tests.faulty_train <overrides>``, like ``python -m dgm_lab.train``).

- ``DGM_TEST_WRITE_PAUSE_S=<s>``: every checkpoint write stops halfway through its bytes for s
  seconds, so that a test can kill the process in the middle of a write;
- ``DGM_TEST_WRITE_FAIL_AFTER=<n>``: the n-th checkpoint write (1-based) fails halfway with
  ENOSPC, as on a full disk;
- ``DGM_TEST_NAN_AT_STEPS=3,4``: the VAE's training loss is NaN at those global steps (its
  gradients then are too), as a diverging batch;
- ``DGM_TEST_NAN_GRAD_AT_STEPS=3``: the loss stays finite at those steps but its gradients are NaN,
  as from a square root at zero.
"""

from __future__ import annotations

import errno
import io
import os
import time

import torch

from dgm_lab import checkpoint_io
from dgm_lab.models.vae.vae import VAE
from dgm_lab.train import main

PAUSE_S = float(os.environ.get("DGM_TEST_WRITE_PAUSE_S", "0"))
FAIL_AFTER = int(os.environ.get("DGM_TEST_WRITE_FAIL_AFTER", "0"))
writes = 0


def faulty_write(self, checkpoint, temporary) -> None:
    global writes
    writes += 1
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    data = buffer.getvalue()
    with open(temporary, "wb") as file:
        file.write(data[: len(data) // 2])
        file.flush()
        if writes == FAIL_AFTER:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(temporary))
        time.sleep(PAUSE_S)
        file.write(data[len(data) // 2:])


checkpoint_io.AtomicCheckpointIO.write = faulty_write

NAN_AT_STEPS = {int(step) for step in os.environ.get("DGM_TEST_NAN_AT_STEPS", "").split(",") if step}
original_training_step = VAE.training_step


NAN_GRAD_AT_STEPS = {int(step) for step in os.environ.get("DGM_TEST_NAN_GRAD_AT_STEPS", "").split(",") if step}


class NanGradient(torch.autograd.Function):
    """Zero in the forward pass, NaN in the backward pass."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.sum() * 0

    @staticmethod
    def backward(ctx, grad):
        return torch.full(ctx.shape, float("nan"))


def training_step_with_nan(self, batch, batch_idx):
    loss = original_training_step(self, batch, batch_idx)
    if self.global_step in NAN_GRAD_AT_STEPS:
        loss = loss + NanGradient.apply(next(self.parameters()))
    return loss * float("nan") if self.global_step in NAN_AT_STEPS else loss


VAE.training_step = training_step_with_nan

if __name__ == "__main__":
    main()
