"""dgm-lab's opt-in speed settings against the eager hand-written loop (the baseline of the
``training step`` rows): ``trainer.compile``, ``trainer.channels_last``, ``trainer.matmul_precision``
and Adam's fused / foreach implementations. The row of the same case without the option, in the
``training step`` section, is the "before"."""

from __future__ import annotations

from benchmarks import step
from benchmarks.timing import row

OPTIONS = {
    "vae_mlp": [["+optimizer.foreach=true"], ["+optimizer.fused=true"], ["trainer.matmul_precision=medium"]],
    "dcgan": [["trainer.channels_last=true"], ["+optimizer.fused=true"]],
    "conv_vae_rgb": [["trainer.channels_last=true"]],
}
COMPILE = {"vae_mlp": [["trainer.compile=true"]], "dcgan": [["trainer.compile=true"]]}
SMOKE = {"vae_mlp": [["+optimizer.fused=true", "trainer.channels_last=true", "trainer.matmul_precision=high"]]}


def run(smoke: bool, repeats: int, compile_only: bool = False) -> list[dict]:
    """The options of ``OPTIONS`` (``SMOKE``), or with ``compile_only`` those of ``COMPILE``."""
    rows = []
    for name, choices in (COMPILE if compile_only else SMOKE if smoke else OPTIONS).items():
        full, small = step.CASES[name]
        for option in choices:
            result = step.measure(small if smoke else full, repeats + 1, whole_epoch=False, framework_overrides=option)
            rows.append(row("options", f"{name}: pure step, {' '.join(option)}", "dgm-lab with the option",
                            "eager hand-written loop", "CPU ms/step", result, note="first epoch (compilation) not timed"
                            if "trainer.compile=true" in option else ""))
            print(step._line(rows[-1]), flush=True)
    return rows
