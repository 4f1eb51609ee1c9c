"""Every option of every config group composes and builds; bad input fails before training."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dgm_lab import builders
from dgm_lab.config import CONF_DIR, validate
from dgm_lab.errors import ConfigError
from dgm_lab.models.boltzmann import RBM
from dgm_lab.models.gan import GAN, MLPDiscriminator, MLPGenerator
from dgm_lab.models.networks import MLP
from dgm_lab.models.schemas import check_model_config
from dgm_lab.models.vae import VAE, Bernoulli
from tests.conftest import run_cli

GROUPS = ["data", "model", "optimizer", "scheduler", "trainer", "logger", "callbacks", "metrics", "evaluation",
          "experiment", "hparams_search"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml") if p.stem != "common")


def own_settings(group: str, option: str) -> tuple[str | None, dict]:
    """(package, the option file's own keys and values without its defaults list): ``None`` as
    package for ``# @package _global_`` files."""
    path = Path(CONF_DIR) / group / f"{option}.yaml"
    first = path.read_text().splitlines()[0]
    package = first.split("@package", 1)[1].strip() if "@package" in first else group
    values = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    values.pop("defaults", None)
    return (None if package == "_global_" else package), values


def assert_contains(composed, expected: dict, where: str) -> None:
    """Every key the option sets is in the composed config with that value (interpolations unresolved)."""
    for key, value in expected.items():
        assert key in composed.keys(), f"{where}.{key} missing"
        if isinstance(value, dict):
            assert_contains(composed[key], value, f"{where}.{key}")
        elif key != "hydra":
            actual = OmegaConf.to_container(composed, resolve=False)[key]
            assert actual == value, f"{where}.{key}: {actual!r} != {value!r}"


# Options that cannot run without a setting of the user's (${dgm_required:...}; without it, one
# sentence: tests/test_bad_inputs.py)
REQUIRED_SETTINGS = {("experiment", "m1m2_mnist100"): ["model.m1_ckpt=runs/m1_mnist"]}


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes_with_its_own_settings(compose_train, group, option):
    cfg = compose_train([f"{group}={option}", *REQUIRED_SETTINGS.get((group, option), [])])
    validate(cfg)
    package, settings = own_settings(group, option)
    composed = cfg if package is None else OmegaConf.select(cfg, package)
    if package is not None:
        assert composed is not None, f"{group}={option} left {package} empty"
    # Experiments and sweeps may themselves be overridden by later groups; their own keys must land.
    settings.pop("hydra", None)
    if group not in ("experiment", "hparams_search"):
        assert_contains(composed, settings, package or "")
    else:
        assert set(settings) <= set(composed.keys()), sorted(set(settings) - set(composed.keys()))


def test_callbacks_none_builds_only_checkpointing_even_on_mixture_data(compose_train):
    """Neither a dataset nor the metrics group injects callbacks: ``callbacks=none`` means none,
    besides the run's own: the (inert) sample-quality evaluator, the moved-folder path fix, the
    preemption handling and the validation record that resumed runs report."""
    cfg = compose_train(["callbacks=none", "data=ring8", "model=gan"])
    names = sorted(type(c).__name__ for c in builders.build_callbacks(cfg))
    assert names == ["FollowMovedRun", "ModelCheckpoint", "Preemption", "SampleQuality", "ValidationRecord"]
    default = sorted(type(c).__name__ for c in builders.build_callbacks(compose_train(
        ["data=ring8", "model=gan", "monitor.metric=val/modes_covered", "monitor.mode=max"])))
    assert "ModeCoverage" in default


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("optimizer", options("optimizer"))
def test_models_build_with_every_optimizer(compose_train, model, optimizer):
    """Shapes come from the datamodule; optimizers are factories the model calls."""
    cfg = compose_train([f"model={model}", f"optimizer={optimizer}", "data=digits", "scheduler=cosine"])
    datamodule = builders.build_datamodule(cfg)
    builders.fill_data_fields(cfg, datamodule)
    assert list(cfg.model.data_shape) == [1, 8, 8]
    if optimizer == "sgd" and (cfg.model.get("generator_optimizer") or {}).get("betas") is not None:
        # GAN presets pin Adam betas (Radford et al.); with SGD the user is told to null them.
        with pytest.raises(ConfigError, match="set them to null"):
            builders.build_model(cfg).configure_optimizers()
        return
    model_obj = builders.build_model(cfg)
    optimizers = _optimizers(model_obj.configure_optimizers())
    assert optimizers and all(type(o).__name__.lower() == optimizer for o in optimizers)
    assert model_obj.sample(4).shape == (4, 1, 8, 8)


def _optimizers(returned) -> list[torch.optim.Optimizer]:
    """The optimizers in any of Lightning's configure_optimizers return forms."""
    items = returned if isinstance(returned, list | tuple) else [returned]
    found = []
    for item in items:
        if isinstance(item, dict):
            item = item["optimizer"]
        if isinstance(item, list | tuple):
            found += _optimizers(item)
        elif isinstance(item, torch.optim.Optimizer):
            found.append(item)
    return found


def test_optimizer_swaps_on_command_line(compose_train):
    cfg = compose_train(["optimizer=sgd", "optimizer.lr=0.01"])
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == 0.01


@pytest.mark.parametrize("override,key", [
    ("optimizer.lr=-0.1", "optimizer.lr"),
    ("data.batch_size=0", "data.batch_size"),
    ("eval.iwae_k=0", "eval.iwae_k"),
])
def test_out_of_range_values_are_named(compose_train, override, key):
    """What dgm-train checks before training: run-level settings, then the datamodule's and the
    model's own (typed) settings as they are built."""
    cfg = compose_train([override])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg)
        datamodule = builders.build_datamodule(cfg)
        builders.fill_data_fields(cfg, datamodule)
        builders.build_model(cfg)


MODEL_SETTING_ERRORS = [
    (["model.latent_dim=0"], "model.latent_dim must be a positive integer, got 0."),
    (["model.latent_dim=abc"], "model.latent_dim must be a positive integer, got 'abc'."),
    (["model.beta=-1"], "model.beta must be a non-negative number, got -1."),
    (["model=iwae", "model.k=0"], "model.k must be a positive integer, got 0."),
    (["model=iwae", "model.beta=2"], "model=iwae trains the plain k-sample bound"),
    (["model=gan", "model.n_critic=0"], "model.n_critic must be a positive integer, got 0."),
    (["model=dcgan", "model.ema.decay=1.5"], "model.ema.decay must be in [0, 1), got 1.5."),
    (["model=gan", "model.loss=wasserstein"], "model.loss=wasserstein needs a Lipschitz critic"),
    (["model=gan", "model.max_generator_steps=0"], "model.max_generator_steps must be a positive integer or null"),
    (["model=rbm", "model.cd_k=0"], "model.cd_k must be a positive integer, got 0."),
    (["model=rbm", "model.persistent=maybe"], "model.persistent must be true or false, got 'maybe'."),
    (["model=dbn", "model.layers=[0]"], "model.layers must list positive layer sizes, got [0]."),
    (["model=dbn", "model.layers=[8,x]"], "model.layers must be a list of integers, got [8, 'x']."),
    (["model=dbm", "model.layers=[8]"], "model.layers must be two positive sizes [H1, H2], got [8]."),
    (["model=dbm", "model.chain_init=random"], "model.chain_init must be data or noise, got 'random'."),
]


@pytest.mark.parametrize("overrides,message", MODEL_SETTING_ERRORS)
def test_model_settings_are_checked_once_by_their_schema(compose_train, overrides, message):
    """The family's settings dataclass judges a composed config before anything is built, and
    building the model says the same sentence: the check lives in one place."""
    cfg = compose_train([*overrides, "data=digits"])
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_model_config(cfg.model)
    builders.fill_data_fields(cfg, builders.build_datamodule(cfg))
    with pytest.raises(ConfigError, match=re.escape(message)):
        builders.build_model(cfg)


def test_direct_construction_is_checked_by_the_same_schema():
    optimizer = functools.partial(torch.optim.SGD, lr=0.1)
    with pytest.raises(ConfigError, match=re.escape("model.num_hidden must be a positive integer, got 0.")):
        RBM(num_hidden=0, data_shape=[1, 8, 8], num_classes=10, optimizer=optimizer)
    with pytest.raises(ConfigError, match=re.escape("model.latent_dim must be a positive integer, got 0.")):
        VAE(encoder=MLP, decoder=MLP, likelihood=Bernoulli(), latent_dim=0, data_shape=[1, 8, 8], num_classes=10,
            optimizer=optimizer)
    with pytest.raises(ConfigError, match=re.escape("model.ema has no setting 'decy'")):
        GAN(generator=MLPGenerator, discriminator=MLPDiscriminator, ema={"decy": 0.5}, data_shape=[2], num_classes=8,
            optimizer=optimizer)


def test_conv_vae_rejects_indivisible_image(compose_train):
    cfg = compose_train(["model=conv_vae", "data=digits", "model.encoder.channels=[8,8,8,8]"])
    datamodule = builders.build_datamodule(cfg)
    builders.fill_data_fields(cfg, datamodule)
    with pytest.raises(ConfigError, match="not divisible"):
        builders.build_model(cfg)


@pytest.mark.parametrize("args,expected,exit_code", [
    (["model=no_such_model"], "no_such_model", 2),  # Hydra's own composition errors: usage, exit 2
    (["data.batchsize=3"], "batchsize", 2),
    (["optimizer.lr=-1"], "optimizer.lr must be positive", 2),
    (["data=digits", "model.latent_dim=abc"], "model.latent_dim must be a positive integer, got 'abc'.", 2),
    (["model=dbn", "data=digits", "model.stage_lr_scale=[1.0]"], "model.stage_lr_scale needs 2 positive factors", 2),
    (["model=dbm", "data=digits", "model.chain_init=random"], "model.chain_init must be data or noise", 2),
])
def test_cli_rejects_bad_overrides_with_one_message(tmp_path, args, expected, exit_code):
    result = run_cli("dgm-train", *args, f"hydra.run.dir={tmp_path / 'run'}", "logger=none")
    assert result.returncode == exit_code
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # failed before training
