"""Every RNG state as plain containers, so that checkpoints load with ``weights_only=True`` and a
resumed run draws the same numbers as a straight one."""

from __future__ import annotations

import random

import numpy as np
import torch


def collect_rng_states() -> dict:
    """RNG states of torch (CPU and CUDA), numpy and Python as tensors and plain lists."""
    np_state = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np_state = states["numpy"]
    np.random.set_state(("MT19937", np_state["key"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    random.setstate(_to_tuples(states["python"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, tuple | list) else value


def _to_tuples(value):
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value
