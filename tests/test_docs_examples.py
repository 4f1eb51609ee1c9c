"""The worked examples of docs/extending.md run as written: its files are written into a fresh
project folder and its ``dgm-train`` / ``dgm-eval`` commands are run there through the CLI."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO

GUIDE = REPO / "docs" / "extending.md"
BLOCK = re.compile(r"```(?P<lang>\w+)\n(?P<body>.*?)```", re.S)
# Appended to every command: a few steps, no W&B, a few importance samples, a known run folder.
FAST = ["trainer.accelerator=cpu", "logger=none", "eval.iwae_k=4", "callbacks.progress_bar.refresh_rate=0"]


def guide_files() -> dict[str, str]:
    files = {}
    for match in BLOCK.finditer(GUIDE.read_text()):
        first, _, rest = match["body"].partition("\n")
        if first.startswith("# file: "):
            files[first.removeprefix("# file: ").strip()] = rest
    return files


def guide_commands() -> list[str]:
    return [line.strip() for match in BLOCK.finditer(GUIDE.read_text()) if match["lang"] == "bash"
            for line in match["body"].splitlines() if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The guide's files, and ``images/<digit>/<n>.png``: 300 of scikit-learn's 8x8 digits."""
    root = tmp_path_factory.mktemp("project")
    for name, text in guide_files().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images[:300], digits.target[:300], strict=True)):
        folder = root / "images" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).astype(np.uint8)).save(folder / f"{index:04d}.png")
    return root


def test_guide_has_one_module_and_one_yaml_per_example():
    files = guide_files()
    modules = [f for f in files if f.endswith(".py")]
    configs = [f for f in files if f.endswith(".yaml")]
    assert modules and len(modules) == len(configs), files.keys()


@pytest.mark.parametrize("command", guide_commands())
def test_guide_command_runs(project, command, tmp_path):
    """Each command of the guide, as a user types it, on the guide's own files."""
    words = shlex.split(command.replace("$PWD", str(project)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    while "=" in words[0]:  # leading VAR=value assignments
        key, value = words.pop(0).split("=", 1)
        env[key] = str(project / value) if value == "." else value
    program = {"dgm-train": "dgm_lab.train", "dgm-eval": "dgm_lab.eval", "dgm-sample": "dgm_lab.sample"}[words[0]]
    run_dir = tmp_path / "run"
    extra = [*FAST, f"hydra.run.dir={run_dir}"] if program == "dgm_lab.train" else []
    result = subprocess.run([sys.executable, "-m", program, *words[1:], *extra], cwd=project, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    if program == "dgm_lab.train":
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "completed", summary.get("error")
        assert summary["metrics"], "the run logged no metrics"
