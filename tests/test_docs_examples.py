"""The worked examples of docs/extending.md run as written: its files are written into a fresh
project folder and its ``dgm-train`` / ``dgm-eval`` commands are run there through the CLI; the
density and coverage of the metric example are checked against a brute-force numpy computation."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from tests.conftest import REPO

GUIDE = REPO / "docs" / "extending.md"
BLOCK = re.compile(r"```(?P<lang>\w+)\n(?P<body>.*?)```", re.S)
# Appended to every command: a few steps, no W&B, a few importance samples, a known run folder.
FAST = ["trainer.accelerator=cpu", "logger=none", "eval.iwae_k=4", "callbacks.progress_bar.refresh_rate=0"]
# Keys a command's summary.json must hold, by a part of the command that selects them.
LOGGED = {"metrics=[density_coverage]": ("val/density_lenet", "val/coverage_lenet", "test/density_lenet",
                                         "test/coverage_lenet")}


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
    # The checkout under test, after the user's folders: an installed dgm_lab may be another checkout.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(REPO)]))
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # reference features: never the user's own cache
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
        for part, keys in LOGGED.items():
            if part in command:
                assert all(np.isfinite(summary["metrics"].get(key, np.nan)) for key in keys), summary["metrics"]
                headline = result.stdout.rpartition("[dgm-lab]")[0]  # the closing line, from the spec table
                assert all(f"{key}=" in headline for key in keys if key.startswith("test/")), headline


# -- the metric example's numbers --------------------------------------------------------------
@pytest.fixture(scope="module")
def density_coverage(project):
    """The guide's my_lab/density_coverage.py, imported from the project folder it was written to."""
    spec = importlib.util.spec_from_file_location("guide_density_coverage", project / "my_lab" / "density_coverage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def brute_force(generated: np.ndarray, real: np.ndarray, k: int) -> tuple[float, float]:
    """Naeem et al. 2020 written out: r_i the k-th nearest-neighbour distance of real i (itself
    excluded); density (1/kM) sum_j sum_i 1[d(Y_j, X_i) <= r_i], coverage (1/N) sum_i 1[some j inside]."""
    distance = lambda a, b: np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))  # noqa: E731
    radii = np.sort(distance(real, real), axis=1)[:, k]  # column 0 is the point itself
    inside = distance(generated, real) <= radii[None, :]
    return inside.sum() / (k * len(generated)), inside.any(axis=0).mean()


@pytest.mark.parametrize("m,n,d,k,batch_size", [(40, 30, 3, 3, 7), (25, 60, 8, 5, 1000), (50, 50, 2, 1, 16)])
def test_density_and_coverage_equal_the_brute_force_computation(density_coverage, m, n, d, k, batch_size):
    rng = np.random.default_rng(m + n + d + k)
    real, generated = rng.normal(size=(n, d)), rng.normal(0.3, 1.2, size=(m, d))
    got = density_coverage.density_coverage(torch.from_numpy(generated), torch.from_numpy(real), k, batch_size)
    assert got == pytest.approx(brute_force(generated, real, k), abs=1e-12)


def test_density_and_coverage_on_cases_with_known_answers(density_coverage):
    """Generated = real: every real ball holds its own centre (coverage 1) and, besides it, its k
    nearest neighbours (density (k + 1) / k, up to round-off on the ball's edge). Generated far
    from every real point: both 0. One real cluster of ten generated: coverage about 1/10."""
    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.normal(size=(200, 4)))
    density, coverage = density_coverage.density_coverage(real, real, k=5, batch_size=64)
    # (k + 1) / k = 1.2 exactly when no k-th neighbour falls off its ball's edge by round-off; float
    # distances from differently batched matrix products lose a few (1.18 seen with 2 threads)
    assert coverage == 1.0 and 1.15 <= density <= 6 / 5 + 1e-12
    assert density_coverage.density_coverage(real + 100.0, real, k=5) == (0.0, 0.0)
    centres = 10.0 * np.eye(10)
    clusters = torch.from_numpy(np.concatenate([rng.normal(c, 1.0, size=(50, 10)) for c in centres]))
    one_mode = torch.from_numpy(rng.normal(centres[0], 1.0, size=(300, 10)))
    density, coverage = density_coverage.density_coverage(one_mode, clusters, k=5)
    assert coverage <= 0.1 + 1e-12 and 0.5 < density < 2.0  # real-like samples of one mode: fidelity kept


def test_the_metric_example_builds_as_a_run_builds_it(project, monkeypatch):
    """Through metrics.implementations, as conf/metrics/density_coverage.yaml declares it: built,
    its rows registered (logged keys, direction), and a bad option stopped in one sentence."""
    from dgm_lab.errors import ConfigError
    from dgm_lab.metrics import specs
    from dgm_lab.metrics.feature_metric import Reference, build_feature_metrics
    from dgm_lab.metrics.settings import Settings

    monkeypatch.syspath_prepend(str(project))
    monkeypatch.setattr(specs, "BY_NAME", dict(specs.BY_NAME))  # the rows it registers stay in this test
    node = OmegaConf.to_container(OmegaConf.load(project / "my_conf" / "metrics" / "density_coverage.yaml"))
    settings = Settings.from_config(node)
    assert settings.feature_metrics == ("density_coverage",) and "density_coverage" in settings.choices
    metric = build_feature_metrics(settings)["density_coverage"]
    assert specs.metric_key("test", "coverage", "lenet") == "test/coverage_lenet"
    assert specs.direction("test/density_lenet") == "max"
    real = torch.from_numpy(np.random.default_rng(1).normal(size=(30, 3)))
    scores, details = metric.compute(real, Reference(real), settings)
    assert scores[("coverage", "")] == 1.0 and details == {"density_coverage_k": 5}
    node["implementations"]["density_coverage"]["k"] = 0
    with pytest.raises(ConfigError, match="k must be a positive integer") as error:
        build_feature_metrics(Settings.from_config(node))
    assert "\n" not in str(error.value)
