"""dgm-lab's opt-in speed settings against the eager hand-written loop (the baseline of the
``training step`` rows): ``trainer.compile``, ``trainer.channels_last``, ``trainer.matmul_precision``
and Adam's fused / foreach implementations. The row of the same case without the option, in the
``training step`` section, is the "before".

Also the one always-on change of the same kind, ``dgm_lab.performance.cheap_cuda_check_without_gpu``:
an Adam step of the same networks with the CUDA check dgm-lab restores on a machine without a GPU,
against the step under the NVML-based check that importing Lightning sets (dgm-lab before it)."""

from __future__ import annotations

import functools
import os
import tempfile

import torch

from benchmarks import step
from benchmarks.timing import alternate, row, seconds
from dgm_lab import builders
from dgm_lab.performance import NVML_CHECK

OPTIONS = {
    "vae_mlp": [["+optimizer.foreach=true"], ["+optimizer.fused=true"], ["trainer.matmul_precision=medium"]],
    "dcgan": [["trainer.channels_last=true"], ["+optimizer.fused=true"]],
    "conv_vae_rgb": [["trainer.channels_last=true"]],
}
COMPILE = {"vae_mlp": [["trainer.compile=true"]], "dcgan": [["trainer.compile=true"]]}
SMOKE = {"vae_mlp": [["+optimizer.fused=true", "trainer.channels_last=true", "trainer.matmul_precision=high"]]}


# networks whose Adam steps are timed under both CUDA checks: (case, overrides, optimizer steps per training step)
CUDA_CHECK_CASES = {"vae_mlp_digits": (["model=vae", "data=digits"], 1),
                    "wgan_gp_grid25": (["experiment=wgan_gp_modes", "data=grid25", "model.generator.hidden=[256,256]",
                                        "model.discriminator.hidden=[256,256]"], 6)}


def adam_steps(parameters: list[torch.nn.Parameter], check: str, count: int) -> float:
    """CPU seconds of ``count`` Adam steps (fixed gradients) with ``NVML_CHECK`` set to ``check``."""
    optimizer = torch.optim.Adam(parameters, lr=1e-5)
    previous = os.environ.get(NVML_CHECK)
    os.environ[NVML_CHECK] = check
    try:
        return seconds(lambda: [optimizer.step() for _ in range(count)])()
    finally:
        if previous is None:
            os.environ.pop(NVML_CHECK)
        else:
            os.environ[NVML_CHECK] = previous


def cuda_check(smoke: bool, repeats: int) -> list[dict]:
    """Adam steps under the runtime CUDA check (dgm-lab) against the NVML-based one (Lightning's)."""
    if torch.cuda.is_available():
        return [row("options", "Adam step, CUDA check without a GPU", "runtime check", "NVML-based check", "",
                    None, note="not measured: a GPU is visible here, and the change applies only without one")]
    rows, count = [], 20 if smoke else 500
    for name, (overrides, per_step) in CUDA_CHECK_CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            cfg = step.compose_config(overrides, tmp)
            builders.fill_data_fields(cfg, builders.build_datamodule(cfg))
            parameters = [p for p in builders.build_model(cfg).parameters() if p.requires_grad]
        for p in parameters:
            p.grad = torch.randn_like(p)
        result = alternate(functools.partial(adam_steps, parameters, "0", count),
                           functools.partial(adam_steps, parameters, "1", count), repeats, warmup=1)
        rows.append(row("options", f"{name}: Adam step, CUDA check without a GPU", "runtime check (dgm-lab)",
                        "NVML-based check (Lightning's setting, dgm-lab before)", "CPU ms/optimizer step", result,
                        scale=1000 / count, note=f"{per_step} optimizer step(s) per training step"))
        print(step._line(rows[-1]), flush=True)
    return rows


def run(smoke: bool, repeats: int, compile_only: bool = False) -> list[dict]:
    """The options of ``OPTIONS`` (``SMOKE``), or with ``compile_only`` those of ``COMPILE``; then
    (not with ``compile_only``) the CUDA check."""
    rows = []
    for name, choices in (COMPILE if compile_only else SMOKE if smoke else OPTIONS).items():
        full, small = step.CASES[name]
        for option in choices:
            result = step.measure(small if smoke else full, repeats + 1, whole_epoch=False, framework_overrides=option)
            rows.append(row("options", f"{name}: pure step, {' '.join(option)}", "dgm-lab with the option",
                            "eager hand-written loop", "CPU ms/step", result, note="first epoch (compilation) not timed"
                            if "trainer.compile=true" in option else ""))
            print(step._line(rows[-1]), flush=True)
    return rows if compile_only else rows + cuda_check(smoke, repeats)
