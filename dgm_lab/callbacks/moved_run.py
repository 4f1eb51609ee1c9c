"""Checkpoint state of a run folder that was copied or moved, pointed at where the folder is now.

A checkpoint stores its ``ModelCheckpoint``'s folder and the paths of the best and last
checkpoints as absolute paths of the folder it was written in. Resumed from a copy, Lightning
would keep the original's best-checkpoint path (and test it, or report it in summary.json);
so before the callbacks restore their state, the paths under the recorded folder are moved
to the callback's current folder (``paths.output_dir``, already moved by ``load_run_config``).
"""

from __future__ import annotations

import pytorch_lightning as pl

from dgm_lab.run_folder import rebase_paths


class FollowMovedRun(pl.Callback):
    """Rebase the ``ModelCheckpoint`` states of a loaded checkpoint onto the current folder."""

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        # Lightning calls every callback's on_load_checkpoint before any load_state_dict.
        states = checkpoint.get("callbacks") or {}
        for callback in trainer.checkpoint_callbacks:
            state = states.get(callback.state_key)
            recorded = state.get("dirpath") if isinstance(state, dict) else None
            if not recorded or not callback.dirpath or recorded == callback.dirpath:
                continue
            rebase_paths(state, recorded, callback.dirpath)
            state["best_k_models"] = {path.replace(recorded, callback.dirpath, 1) if path.startswith(recorded + "/") else path: score
                                      for path, score in (state.get("best_k_models") or {}).items()}
