"""Shared fixtures: compose the real configs, and run the real console scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from dgm_lab.config import CONF_DIR, register_resolvers

REPO = Path(__file__).resolve().parent.parent
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: a second torch thread per worker (and per process it
    # starts) would only oversubscribe the cores, and the tests' tensors are too small to gain.
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
# Fast settings shared by end-to-end runs: tiny data, few importance samples, no W&B.
FAST = ["data=digits", "trainer.max_epochs=1", "eval.iwae_k=8", "logger=none", "trainer.accelerator=cpu",
        "callbacks.progress_bar.refresh_rate=0"]


@pytest.fixture(autouse=True)
def fresh_global_hydra():
    """Every test starts and ends with Hydra uninitialised: an entry point run in this process that
    stops inside Hydra (a timeout alarm, an assertion) must not break every later composition."""
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


@pytest.fixture
def compose_train(tmp_path):
    """Compose conf/train.yaml with overrides, as dgm-train would, writing into tmp_path."""

    def _compose(overrides: list[str]):
        register_resolvers()
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
            del cfg["hydra"]
        return cfg

    return _compose


def run_cli(prog: str, *args: str, env: dict | None = None, timeout: int = 300,
            fresh_process: bool = False) -> subprocess.CompletedProcess:
    """Run a console script (``dgm-train`` ...) as the shell would and return what a user sees:
    exit code, stdout, stderr. By default its ``main()`` runs in this process (``tests.inprocess``),
    which saves the 5 to 7 CPU seconds of imports a new interpreter costs; ``fresh_process=True``
    runs ``python -m`` in a subprocess, for what one process cannot show: DDP's worker processes,
    W&B's service process, settings read when torch starts (``OMP_NUM_THREADS``)."""
    full_env = {**os.environ, "WANDB_SILENT": "true", **(env or {})}
    if env is None or "WANDB_MODE" not in env:
        full_env.pop("WANDB_MODE", None)
    if not fresh_process:
        from tests.inprocess import run_main

        return run_main(prog, *args, env=full_env, cwd=REPO, timeout=timeout)
    module = {"dgm-train": "dgm_lab.train", "dgm-eval": "dgm_lab.eval", "dgm-sample": "dgm_lab.sample"}[prog]
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def train_run(run_dir: Path, *overrides: str, fast: bool = True, fresh_process: bool = False) -> dict:
    """``dgm-train`` into ``run_dir``; returns its summary.json (asserting the command succeeded)."""
    result = run_cli("dgm-train", *(FAST if fast else []), *overrides, f"hydra.run.dir={run_dir}",
                     fresh_process=fresh_process)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """Random InceptionV3 weights saved in the format of pt_inception-2015-12-05-6726825d.pth:
    torch-fidelity's network, its keys and shapes, random values (the real file cannot be downloaded here)."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from dgm_lab.metrics.extractors import INCEPTION_FILE

    with pytest.MonkeyPatch.context() as patch:  # build the network without any download
        patch.setattr("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", lambda *a, **k: {})
        patch.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("weights") / INCEPTION_FILE
    torch.save(torch.nn.Module.state_dict(net), path)
    return path
