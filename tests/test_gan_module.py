"""The GAN module without a trainer: networks, EMA semantics, sampling, TTUR optimizers, configs."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from dgm_lab import builders
from dgm_lab.callbacks.modes import mode_coverage
from dgm_lab.data.toy2d import Grid25DataModule, Ring8DataModule
from dgm_lab.errors import ConfigError
from dgm_lab.models.gan import (
    GAN,
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
)
from dgm_lab.models.gan.networks import conv_plan

MODELS = ["gan", "dcgan", "wgan_gp", "sngan"]


def make_gan(data_shape=(2,), num_classes=8, optimizer=None, **kwargs) -> GAN:
    torch.manual_seed(0)
    return GAN(generator=functools.partial(MLPGenerator, hidden=[16]),
               discriminator=functools.partial(MLPDiscriminator, hidden=[16]),
               optimizer=optimizer or functools.partial(torch.optim.Adam, lr=1e-3),
               data_shape=list(data_shape), num_classes=num_classes, latent_dim=4, **kwargs)


@pytest.mark.parametrize("shape,start,stages", [((1, 28, 28), (7, 7), 2), ((3, 32, 32), (4, 4), 3),
                                                ((1, 8, 8), (4, 4), 1), ((3, 64, 64), (4, 4), 4)])
def test_dcgan_is_sized_from_the_image(shape, start, stages):
    assert conv_plan(shape) == (shape[0], *start, stages)
    generator = DCGANGenerator(latent_dim=10, out_shape=shape, num_classes=10, channels=8)
    discriminator = DCGANDiscriminator(in_shape=shape, num_classes=10, channels=8)
    labels = torch.tensor([0, 9, 3])
    images = generator(torch.randn(3, 10), labels)
    assert images.shape == (3, *shape) and images.abs().max() <= 1
    assert discriminator(images, labels).shape == (3,)


def test_dcgan_rejects_points():
    with pytest.raises(ConfigError, match="use model=gan for vectors"):
        conv_plan([2])


def test_projection_discriminator_depends_on_the_label():
    discriminator = MLPDiscriminator(in_shape=[2], num_classes=3, hidden=[8])
    x = torch.randn(4, 2)
    a, b = discriminator(x, torch.zeros(4, dtype=torch.long)), discriminator(x, torch.ones(4, dtype=torch.long))
    assert not torch.allclose(a, b)


def test_ema_update_is_the_moving_average():
    gan = make_gan(ema={"enabled": True, "decay": 0.9, "start_step": 1, "warmup": False})
    old = [p.clone() for p in gan.generator_ema.parameters()]
    with torch.no_grad():
        for p in gan.generator.parameters():
            p.add_(1.0)
    gan.generator_steps = 1  # up to start_step: a copy
    gan.update_ema()
    for ema, raw in zip(gan.generator_ema.parameters(), gan.generator.parameters(), strict=True):
        assert torch.equal(ema, raw)
    with torch.no_grad():
        for p in gan.generator.parameters():
            p.add_(1.0)
    gan.generator_steps = 2
    gan.update_ema()
    for ema, raw, before in zip(gan.generator_ema.parameters(), gan.generator.parameters(), old, strict=True):
        expected = 0.9 * (before + 1.0) + 0.1 * raw  # ema after the copy was before + 1
        assert torch.allclose(ema, expected, atol=1e-6)
        assert not ema.requires_grad


def test_ema_warmup_caps_the_decay_early_and_reaches_the_configured_decay():
    gan = make_gan(ema={"enabled": True, "decay": 0.999})
    decays = {}
    for step in (1, 10, 100, 1000, 10000, 20000):
        gan.generator_steps = step
        decays[step] = gan.current_ema_decay()
    assert decays[1] == 2 / 11 and decays[10] == 11 / 20 and decays[100] == 101 / 110  # (1 + t) / (10 + t)
    assert decays[10000] == decays[20000] == 0.999  # the warm-up ends where it passes the configured decay
    # after 300 iterations, the initial weights' share of the average, prod of the decays, is negligible
    share = 1.0
    for step in range(1, 301):
        gan.generator_steps = step
        share *= gan.current_ema_decay()
    assert share < 1e-3, share  # without warm-up: 0.999 ** 300 = 0.74


def test_sampling_uses_ema_weights_unless_told_otherwise():
    gan = make_gan(num_classes=0, ema={"enabled": True, "decay": 0.5})
    with torch.no_grad():
        for p in gan.generator.parameters():
            p.mul_(3.0)
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(7))
    default = gan.sample(5, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(default, gan.generator_ema(z))
    raw = gan.sample(5, generator=torch.Generator().manual_seed(7), use_ema=False)
    assert torch.allclose(raw, gan.generator(z)) and not torch.allclose(raw, default)
    assert set(k.split(".")[0] for k in gan.state_dict()) == {"generator", "discriminator", "generator_ema"}


@pytest.mark.parametrize("num_classes", [0, 3])
def test_ema_generator_normalizes_with_the_statistics_of_its_own_weights(num_classes):
    """The averaged weights' activations differ from the trained generator's: sampling in eval
    mode with the EMA's re-estimated statistics matches normalizing a large batch by its own
    statistics (train mode); the trained generator's statistics, copied as an earlier version
    did, do not."""
    torch.manual_seed(0)
    gan = GAN(generator=functools.partial(MLPGenerator, hidden=[32], batch_norm=True),
              discriminator=functools.partial(MLPDiscriminator, hidden=[16]),
              optimizer=functools.partial(torch.optim.Adam, lr=1e-3), data_shape=[2], num_classes=num_classes,
              latent_dim=4, conditional=num_classes > 0, ema={"decay": 0.9, "warmup": False})
    gan.generator.train()
    with torch.no_grad():
        for p in gan.generator.parameters():
            p.mul_(6.0)
        for _ in range(20):  # the trained generator's running statistics, on its own weights
            gan.generator(torch.randn(64, 4), torch.randint(0, 3, (64,)) if num_classes else None)
    gan.generator_steps = 1  # past start_step: an average, not a copy
    gan.update_ema()  # EMA weights: 1.5 times the initial ones, the trained generator's 6 times

    z = torch.randn(4096, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(4096) % 3 if num_classes else None

    def relative_error() -> float:
        net = gan.sampling_generator()
        with torch.no_grad():
            net.eval()
            sampled = net(z, labels)
            net.train()
            batch_normalized = net(z, labels)
        return float((sampled - batch_normalized).abs().mean() / batch_normalized.abs().mean())

    own = relative_error()
    with torch.no_grad():
        for ema_buffer, buffer in zip(gan.generator_ema.buffers(), gan.generator.buffers(), strict=True):
            ema_buffer.copy_(buffer)
    copied = relative_error()  # not re-estimated: the weights have not moved since
    assert own < 0.05 and copied > 4 * own, (own, copied)


def test_ema_statistics_are_refreshed_once_per_update_and_saved_with_the_weights():
    gan = make_gan(num_classes=0, ema={"decay": 0.5})
    assert not gan._ema_statistics_stale  # no batch norm: nothing to estimate
    gan = GAN(generator=functools.partial(MLPGenerator, hidden=[8], batch_norm=True),
              discriminator=functools.partial(MLPDiscriminator, hidden=[8]),
              optimizer=functools.partial(torch.optim.Adam, lr=1e-3), data_shape=[2], num_classes=0, latent_dim=4)
    gan.sampling_generator()
    first = gan.generator_ema.net[1].running_mean.clone()
    gan.generator_ema.net[1].running_mean.add_(1.0)
    gan.sampling_generator()  # the weights have not moved since: kept
    assert torch.equal(gan.generator_ema.net[1].running_mean, first + 1.0)
    with torch.no_grad():
        gan.generator.net[0].weight.mul_(2.0)
    gan.update_ema()
    checkpoint = {"state_dict": {k: v.clone() for k, v in gan.state_dict().items()}}
    gan.on_save_checkpoint(checkpoint)  # re-estimated, and written into the state dict Lightning took
    saved = checkpoint["state_dict"]["generator_ema.net.1.running_mean"]
    assert torch.equal(saved, gan.generator_ema.net[1].running_mean) and not torch.equal(saved, first + 1.0)


def test_ema_disabled_samples_from_the_trained_generator():
    gan = make_gan(num_classes=0, ema={"enabled": False})
    assert gan.generator_ema is None and gan.sampling_generator() is gan.generator
    with pytest.raises(ConfigError, match="ema.enabled"):
        gan.sample(2, use_ema=True)


def test_image_samples_are_in_unit_range():
    gan = make_gan(data_shape=(1, 8, 8), num_classes=10)
    images = gan.sample(6)
    assert images.shape == (6, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(gan.from_model_space(gan.to_model_space(x)), x)


def test_conditional_sampling_validates_labels():
    gan = make_gan(conditional=True)
    assert gan.sample(3, labels=torch.tensor([0, 7, 7])).shape == (3, 2)
    with pytest.raises(ConfigError, match="classes 0..7"):
        gan.sample(2, labels=torch.tensor([8, 1]))


def test_ttur_overrides_per_network():
    gan = make_gan(generator_optimizer={"lr": 1e-4, "betas": [0.0, 0.9]},
                   discriminator_optimizer={"lr": 4e-4, "betas": None})
    g_opt, d_opt = gan.configure_optimizers()
    assert g_opt.param_groups[0]["lr"] == 1e-4 and tuple(g_opt.param_groups[0]["betas"]) == (0.0, 0.9)
    assert d_opt.param_groups[0]["lr"] == 4e-4 and tuple(d_opt.param_groups[0]["betas"]) == (0.9, 0.999)
    assert {id(p) for p in g_opt.param_groups[0]["params"]} == {id(p) for p in gan.generator.parameters()}
    assert {id(p) for p in d_opt.param_groups[0]["params"]} == {id(p) for p in gan.discriminator.parameters()}


def test_betas_on_sgd_is_one_sentence():
    gan = make_gan(optimizer=functools.partial(torch.optim.SGD, lr=0.1),
                   discriminator_optimizer={"betas": [0.5, 0.9]})
    with pytest.raises(ConfigError, match="model.discriminator_optimizer sets"):
        gan.configure_optimizers()


@pytest.mark.parametrize("kwargs,message", [
    ({"loss": "wasserstein"}, "needs a Lipschitz critic"),
    ({"conditional": True, "num_classes": 1}, "2 or more classes"),
    ({"n_critic": 0}, "n_critic"),
])
def test_inconsistent_settings_fail_early(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_gan(**kwargs)


def test_gradient_penalty_refuses_batch_norm_discriminator():
    with pytest.raises(ConfigError, match="norm=none"):
        GAN(generator=functools.partial(DCGANGenerator, channels=4),
            discriminator=functools.partial(DCGANDiscriminator, channels=4, norm="batch"),
            optimizer=functools.partial(torch.optim.Adam), data_shape=[1, 16, 16], num_classes=10,
            loss="wasserstein", gp_weight=10.0)


def test_toy_mixtures_match_their_definition():
    ring, grid = Ring8DataModule(batch_size=8), Grid25DataModule(batch_size=8)
    assert torch.allclose(ring.mode_centres.norm(dim=1), torch.full((8,), 2.0))
    assert sorted(set(grid.mode_centres[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert (ring.mode_std, grid.mode_std, ring.data_shape, grid.num_classes) == (0.02, 0.05, [2], 25)
    ring.setup()
    points, labels = ring.splits["train"].images, ring.splits["train"].labels
    offsets = points - ring.mode_centres[labels]
    assert offsets.std().item() == pytest.approx(0.02, rel=0.02)  # 100k coordinates
    assert torch.equal(Ring8DataModule(batch_size=8).load_splits()["val"][0], ring.splits["val"].images)


def test_a_scaled_mixture_is_the_same_points_in_other_units_and_scores_the_same():
    grid, scaled = Grid25DataModule(batch_size=8), Grid25DataModule(batch_size=8, scale=1 / 2.828)
    grid.setup(), scaled.setup()
    assert torch.allclose(scaled.splits["train"].images, grid.splits["train"].images / 2.828, atol=1e-6)
    assert scaled.mode_std == pytest.approx(0.05 / 2.828) and scaled.fingerprint != grid.fingerprint
    spread = grid.splits["test"].images * torch.tensor([1.0, 1.04])  # some points pushed off their mode
    in_units, in_scaled_units = (mode_coverage(spread, grid.mode_centres, grid.mode_std),
                                 mode_coverage(spread / 2.828, scaled.mode_centres, scaled.mode_std))
    assert in_units.pop("histogram") == in_scaled_units.pop("histogram")
    assert in_scaled_units == pytest.approx(in_units) and 0.3 < in_units["high_quality_frac"] < 0.9
    with pytest.raises(ConfigError, match="data.scale must be positive"):
        Grid25DataModule(batch_size=8, scale=0)


def test_mode_coverage_counts_by_hand():
    centres = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    points = torch.tensor([[0.05, 0.0],   # mode 0, within 3 * 0.02 = 0.06: high quality
                           [0.0, 0.07],   # mode 0, too far
                           [2.0, 0.01],   # mode 1, high quality
                           [1.9, 0.0]])   # mode 1, too far
    scores = mode_coverage(points, centres, std=0.02)
    assert scores["modes_covered"] == 2 and scores["histogram"] == [1, 1, 0]
    assert scores["high_quality_frac"] == pytest.approx(0.5)
    assert scores["mode_score"] == pytest.approx(2.5)  # modes first, then the high-quality fraction
    # nearest-mode shares (1/2, 1/2, 0) against uniform 1/3: sum q log(3q) = log(3/2)
    assert scores["mode_kl"] == pytest.approx(math.log(1.5), rel=1e-12)


def test_true_mixture_scores_full_coverage():
    grid = Grid25DataModule(batch_size=8)
    grid.setup()
    scores = mode_coverage(grid.splits["test"].images, grid.mode_centres, grid.mode_std)
    assert scores["modes_covered"] == 25 and scores["high_quality_frac"] > 0.97  # 1 - exp(-4.5) = 0.989
    assert scores["mode_kl"] < 0.01


@pytest.mark.parametrize("model", MODELS)
def test_gan_configs_build_two_optimizers(compose_train, model):
    cfg = compose_train([f"model={model}", "data=digits", "optimizer=adamw", "scheduler=cosine",
                         "model.discriminator_optimizer.lr=4e-4"])
    datamodule = builders.build_datamodule(cfg)
    builders.fill_data_fields(cfg, datamodule)
    gan = builders.build_model(cfg)
    configured = gan.configure_optimizers()
    g_opt, d_opt = (entry["optimizer"] for entry in configured)
    assert isinstance(g_opt, torch.optim.AdamW) and d_opt.param_groups[0]["lr"] == 4e-4
    assert gan.sample(4).shape == (4, 1, 8, 8)


def test_the_gan_asks_the_datamodule_for_its_micro_batches_through_the_data_contract():
    """n_critic x accumulate micro-batches per Lightning batch: set_batches_per_step, never batch_size."""
    from types import SimpleNamespace

    import pytorch_lightning as pl

    gan = make_gan(n_critic=3, accumulate=2)
    ring = Ring8DataModule(batch_size=8, num_train=64, num_val=8, num_test=8)
    gan._trainer = SimpleNamespace(datamodule=ring)
    gan.setup("fit")
    gan.setup("fit")  # a second fit asks again: the count replaces the first, nothing multiplies
    assert (ring.batch_size, ring.batches_per_step) == (8, 6)
    assert len(next(iter(ring.train_dataloader()))[0]) == 48
    gan._trainer = SimpleNamespace(datamodule=pl.LightningDataModule())  # no in-memory data contract
    with pytest.raises(ConfigError, match="set model.n_critic=1 and model.accumulate=1"):
        gan.setup("fit")
    single = make_gan()
    single._trainer = SimpleNamespace(datamodule=pl.LightningDataModule())
    single.setup("fit")  # one micro-batch per iteration: any datamodule will do
