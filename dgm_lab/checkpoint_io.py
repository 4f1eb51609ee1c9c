"""Checkpoint files written so that the last good one is never lost: Lightning's ``TorchCheckpointIO``
with the write made atomic (temporary file, fsync, rename; ``dgm_lab.files.write_atomically``).

Lightning's own save streams the bytes into the final file name, so a run killed or out of disk
space while writing leaves a truncated ``last.ckpt`` in place of the good one, which a resume or
``dgm-eval`` then picks. Every checkpoint Lightning writes (ModelCheckpoint, ``trainer.save_checkpoint``,
the SLURM requeue checkpoint, the preemption checkpoint) goes through the trainer's CheckpointIO.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from dgm_lab.errors import UserError
from dgm_lab.files import remove_stale_temporaries, write_atomically


class DiskFullError(UserError):
    """A checkpoint could not be written because the disk (or quota) is full."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose save writes a temporary beside the target, fsyncs it and renames it."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options.")
        target = Path(path)
        remove_stale_temporaries(target)
        try:
            write_atomically(target, lambda temporary: self.write(checkpoint, temporary))
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(f"the disk is full: checkpoint {target.name} could not be written to {target.parent} "
                                    "(the previous checkpoints are kept whole); free space and resume with "
                                    f"resume={target.parent.parent}.") from None
            raise

    def write(self, checkpoint: dict[str, Any], temporary: Path) -> None:
        """The bytes of one checkpoint, into the temporary file."""
        torch.save(checkpoint, temporary)
