"""A wheel built from the tree runs ``dgm-train`` from a fresh virtualenv, with no ``-e`` install.

The fresh venv gets torch & co. from the test interpreter's site-packages through a ``.pth`` line
(no download, no second torch); ``dgm_lab`` itself comes only from the wheel, and the command runs
outside the repository so that nothing can be imported from the source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

from tests.conftest import REPO

TOP_LEVEL_SKIP = {".git", ".venv", "outputs", "multirun", "build", "data", "wandb", ".pytest_cache", ".ruff_cache"}


def _copy_tree(target: Path) -> Path:
    """The repository's files without virtualenvs, outputs and caches (a build writes into its tree)."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
        return skipped | (TOP_LEVEL_SKIP & set(names) if Path(folder) == REPO else set())

    shutil.copytree(REPO, target, ignore=ignore)
    return target


def test_wheel_holds_every_module_and_config_and_trains_from_a_fresh_venv(tmp_path):
    source = _copy_tree(tmp_path / "src")
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("dgm_lab-*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(REPO)) for p in (REPO / "dgm_lab").rglob("*.py")}
    configs = {"dgm_lab/conf/" + str(p.relative_to(REPO / "conf")) for p in (REPO / "conf").rglob("*.yaml")}
    assert modules - names == set() and configs - names == set(), (modules | configs) - names
    assert {"dgm_lab/metrics/weights/lenet_mnist.pt", "dgm_lab/metrics/weights/lenet_fashion_mnist.pt"} <= names

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # torch, Lightning, Hydra... from this interpreter; a .pth line adds the folder without running
    # its own .pth files, so the editable install of dgm_lab living there stays invisible.
    Path(site, "dgm_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WANDB_MODE")}
    where = subprocess.run([str(python), "-c", "import dgm_lab.config as c; print(c.__file__); print(c.CONF_DIR)"],
                           cwd=workdir, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(path.startswith(str(env_dir)) for path in where), where

    run_dir = tmp_path / "run"
    result = subprocess.run([str(env_dir / "bin" / "dgm-train"), "data=digits", "trainer.max_epochs=1", "eval.iwae_k=4",
                             "logger=none", "trainer.accelerator=cpu", "callbacks.progress_bar.refresh_rate=0",
                             f"hydra.run.dir={run_dir}"],
                            cwd=workdir, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and "test/nll_iwae" in summary["metrics"]
