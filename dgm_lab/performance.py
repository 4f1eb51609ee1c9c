"""dgm-lab's opt-in speed settings, kept in the ``trainer`` group beside Lightning's arguments but
not passed to ``pytorch_lightning.Trainer``: they act on the model, before fitting.

    trainer.compile=true            torch.compile of each network (encoder, decoder, generator, ...)
    trainer.channels_last=true      convolution weights, hence activations, in channels-last layout
    trainer.matmul_precision=high   torch.set_float32_matmul_precision (TF32 / bf16 matmuls on GPUs)

All default off: ``benchmarks/README.md`` has what each one buys (on these CPUs compile does not pay
for the small networks; see there). Checkpoints do not change: ``nn.Module.compile`` compiles in
place, so the state-dict keys stay those of the eager networks.

Always on, not a setting: ``cheap_cuda_check_without_gpu`` (below).
"""

from __future__ import annotations

import logging
import os

from dgm_lab.errors import require

log = logging.getLogger("dgm_lab")
OPTIONS = ("compile", "channels_last", "matmul_precision")
NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
MATMUL_PRECISIONS = ("highest", "high", "medium")


def lightning_arguments(trainer_node: dict) -> dict:
    """The ``trainer`` node without dgm-lab's own settings: what ``pytorch_lightning.Trainer`` takes."""
    return {key: value for key, value in trainer_node.items() if key not in OPTIONS}


def check(trainer_node: dict) -> None:
    precision = trainer_node.get("matmul_precision")
    require(precision is None or precision in MATMUL_PRECISIONS,
            f"trainer.matmul_precision must be null or one of {', '.join(MATMUL_PRECISIONS)}, got {precision!r}.")
    for key in ("compile", "channels_last"):
        value = trainer_node.get(key, False)
        require(isinstance(value, bool), f"trainer.{key} must be true or false, got {value!r}.")


def networks(model) -> dict:
    """The model's trained networks that have a forward pass: its direct children with trainable
    parameters (an RBM layer is driven by Gibbs sampling methods, not ``forward``, and is left out)."""
    from torch import nn

    return {name: child for name, child in model.named_children()
            if type(child).forward is not nn.Module.forward and any(p.requires_grad for p in child.parameters())}


def cheap_cuda_check_without_gpu() -> bool:
    """On a machine where CUDA sees no GPU, answer "is CUDA available?" from the CUDA runtime's cached
    count instead of NVML; True when it switched.

    Importing Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (so that asking does not initialize
    CUDA before a fork). Every Adam or AdamW step asks (``torch.optim``'s CUDA-graph health check),
    and without an NVIDIA driver each question tries to load NVML again, fails, then asks the runtime
    anyway: about 0.1 ms per optimizer step here, six per WGAN-GP iteration. With no GPU there is no
    CUDA state a fork could break, so the runtime's answer (cached after the first) is as safe."""
    import torch

    if os.environ.get(NVML_CHECK) != "1" or torch.cuda.is_available():
        return False
    os.environ[NVML_CHECK] = "0"
    return True


def apply(trainer_node: dict, model) -> None:
    """Apply the selected settings to ``model`` (an ``nn.Module``, in place) and to torch's global
    matmul precision."""
    import torch  # here, not at import time: dgm_lab.config checks these settings without torch

    check(trainer_node)
    cheap_cuda_check_without_gpu()
    if trainer_node.get("matmul_precision"):
        torch.set_float32_matmul_precision(trainer_node["matmul_precision"])
    if trainer_node.get("channels_last"):
        model.to(memory_format=torch.channels_last)
    if trainer_node.get("compile"):
        compiled = networks(model)
        if not compiled:
            log.warning("trainer.compile=true: %s has no network with a forward pass to compile; running eagerly.",
                        type(model).__name__)
        for module in compiled.values():
            module.compile()
