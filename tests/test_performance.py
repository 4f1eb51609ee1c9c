"""What the benchmarks pointed to: start-up without torch for ``--help`` and the model settings,
opt-in speed settings (``trainer.compile|channels_last|matmul_precision``), batches indexed once,
inert callbacks left out."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from dgm_lab import builders, performance
from dgm_lab.data.base import TensorBatches
from dgm_lab.errors import ConfigError
from tests.conftest import REPO, run_cli, train_run

NO_TORCH = "import sys; {code}; heavy = sorted(m for m in ('torch', 'pytorch_lightning', 'wandb', 'matplotlib', " \
           "'torch_fidelity') if m in sys.modules); print(heavy)"


def heavy_modules_after(code: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", NO_TORCH.format(code=code)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_help_and_model_settings_load_without_torch():
    assert heavy_modules_after("import dgm_lab.train, dgm_lab.eval, dgm_lab.sample, dgm_lab.config") == []
    assert heavy_modules_after("from dgm_lab.config import register_resolvers; register_resolvers()") == []
    code = "sys.argv = ['dgm-train', 'model=rbm', '--help']; from dgm_lab.train import main; main()"
    assert heavy_modules_after(code) == []
    from dgm_lab.models.gan import GAN
    from dgm_lab.models.vae import VAE

    assert VAE.__module__ == "dgm_lab.models.vae.vae" and GAN.__name__ == "GAN"  # lazy names resolve
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        __import__("dgm_lab.models.boltzmann", fromlist=["Nope"]).Nope  # noqa: B018


@pytest.mark.parametrize("prog", ["dgm-train", "dgm-eval", "dgm-sample"])
def test_help_lists_groups_and_the_composed_config(prog):
    result = run_cli(prog, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert out.startswith(f"``{prog}``") and "== Config ==" in out
    # dgm-sample's config uses no groups (the checkpoint brings the model), so it lists none
    assert ("== Configuration groups ==" in out) == (prog != "dgm-sample")
    if prog == "dgm-sample":
        assert "\nmodel: " not in out and "\noptimizer: " not in out
    if prog == "dgm-train":
        assert "\nmodel: beta_vae, conv_vae," in out and "\ndata: cifar10," in out and "hydra/" not in out
        override = run_cli(prog, "model=rbm", "trainer.max_epochs=3", "-h").stdout
        assert "_target_: dgm_lab.models.boltzmann.RBM" in override and "max_epochs: 3" in override


def test_help_with_a_bad_override_is_one_sentence():
    result = run_cli("dgm-train", "model=nope", "--help")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("dgm-train: error: ") and "nope" in result.stderr and result.stderr.count("\n") == 1


def test_batches_are_indexed_once_and_equal_plain_indexing():
    images, labels = torch.rand(50, 1, 4, 4), torch.arange(50)
    batches = TensorBatches(images, labels)
    index = [7, 3, 3, 49, 0]
    x, y = batches[index]
    assert torch.equal(x, images[index]) and torch.equal(y, labels[index])
    assert torch.equal(batches[4][0], images[4]) and torch.equal(batches[2:5][1], labels[2:5])


def test_inert_callbacks_are_left_out(compose_train):
    def names(overrides):
        cfg = compose_train(["data=digits", "monitor.metric=val/loss", "monitor.mode=min", *overrides])
        datamodule = builders.build_datamodule(cfg)
        builders.fill_data_fields(cfg, datamodule)
        model = builders.build_model(cfg)
        return {type(c).__name__ for c in builders.build_callbacks(cfg, model, datamodule)}

    vae = names(["model=vae"])
    assert {"EpochNumberedCheckpoint", "ImageSamples", "DivergenceGuard"} <= vae
    assert not {"ModeCoverage", "WeightFilters", "SampleQuality"} & vae  # no metric selected: inert
    assert "SampleQuality" in names(["model=vae", "metrics=lenet"])
    assert "WeightFilters" in names(["model=rbm"])
    cfg = compose_train(["data=ring8", "model=gan", "monitor.metric=val/modes_covered", "monitor.mode=max"])
    assert "ModeCoverage" in {type(c).__name__ for c in builders.build_callbacks(cfg)}  # without a model: all


def test_speed_settings_apply_in_place_and_keep_checkpoint_keys(compose_train):
    cfg = compose_train(["data=digits", "model=conv_vae"])
    datamodule = builders.build_datamodule(cfg)
    builders.fill_data_fields(cfg, datamodule)
    model = builders.build_model(cfg)
    keys = list(model.state_dict())
    assert set(performance.networks(model)) == {"encoder", "decoder"}
    precision = torch.get_float32_matmul_precision()
    try:
        performance.apply({"compile": True, "channels_last": True, "matmul_precision": "high"}, model)
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(precision)
    assert list(model.state_dict()) == keys  # nn.Module.compile: no _orig_mod. prefix in checkpoints
    conv = next(p for p in model.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert performance.lightning_arguments({"compile": True, "max_epochs": 2}) == {"max_epochs": 2}
    with pytest.raises(ConfigError, match="trainer.matmul_precision must be null or one of highest, high, medium"):
        performance.check({"matmul_precision": "fast"})
    with pytest.raises(ConfigError, match="trainer.compile must be true or false"):
        performance.check({"compile": "yes"})


def test_speed_settings_through_dgm_train(tmp_path):
    summary = train_run(tmp_path / "run", "model=conv_vae", "trainer.channels_last=true", "trainer.matmul_precision=high",
                        "+optimizer.fused=true")
    assert summary["status"] == "completed" and summary["config"]["trainer"]["channels_last"] is True
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert all("_orig_mod" not in key for key in ckpt["state_dict"])
    result = run_cli("dgm-train", "data=digits", "trainer.matmul_precision=fast", f"hydra.run.dir={tmp_path / 'bad'}")
    assert result.returncode == 2 and "trainer.matmul_precision must be" in result.stderr


@pytest.mark.slow
def test_compile_through_dgm_train(tmp_path):
    """torch.compile on CPU: minutes of compilation on 2 cores, hence slow."""
    summary = train_run(tmp_path / "run", "model=vae", "trainer.compile=true", "trainer.limit_train_batches=3")
    assert summary["status"] == "completed" and summary["metrics"]["test/elbo"] < 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="the switch applies only where CUDA sees no GPU")
def test_optimizer_steps_stop_probing_nvml_where_there_is_no_gpu(monkeypatch):
    """Lightning's NVML-based CUDA check made every Adam step try to load NVML again (0.1 ms each)."""
    monkeypatch.setenv(performance.NVML_CHECK, "1")  # what importing Lightning sets
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    probes = []
    probe = torch.cuda._raw_device_count_nvml
    monkeypatch.setattr(torch.cuda, "_raw_device_count_nvml", lambda: probes.append(1) or probe())
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([weight])

    def steps(count: int) -> int:
        probes.clear()
        for _ in range(count):
            weight.grad = torch.ones(3)
            optimizer.step()
        return len(probes)

    assert steps(3) == 3  # one NVML attempt per step
    assert performance.cheap_cuda_check_without_gpu() is True
    assert steps(3) == 0 and not torch.cuda.is_available()
    assert performance.cheap_cuda_check_without_gpu() is False  # already switched: nothing to do
