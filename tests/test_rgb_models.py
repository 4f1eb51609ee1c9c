"""Models for 32x32 RGB images: the discretized logistic mixture likelihood against independent
computations, the deeper conv VAE, DCGAN and the ResNet GANs (SNGAN, WGAN-GP) built from their
configs, and every CIFAR-10 experiment file trained for a couple of steps on a tiny RGB folder.
"""

from __future__ import annotations

import functools
import itertools
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import special, stats
from torch import nn

from dgm_lab import builders
from dgm_lab.errors import ConfigError
from dgm_lab.models.deep_conv import DeepConvDecoder, DeepConvEncoder
from dgm_lab.models.gan import ResNetDiscriminator, ResNetGenerator
from dgm_lab.models.schemas import check_model_config
from dgm_lab.models.vae import DiscretizedLogistic, DiscretizedLogisticMixture
from tests.conftest import run_cli

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
QUIET = ["logger=none", "trainer.accelerator=cpu", "callbacks.progress_bar.refresh_rate=0"]
EXPERIMENTS = ["vae_cifar10", "dcgan_cifar10", "sngan_resnet_cifar10", "wgan_gp_resnet_cifar10"]


# -- the likelihood ---------------------------------------------------------------------------------
def random_params(mixture: DiscretizedLogisticMixture, channels: int, batch: int = 1, size: int = 1,
                  seed: int = 0, log_scales: tuple[float, float] = (-4.5, 0.5)) -> torch.Tensor:
    """Random decoder outputs with log scales uniform in ``log_scales`` (a realistic range by default)."""
    g = torch.Generator().manual_seed(seed)
    params = torch.randn(batch, mixture.decoder_channels(channels), size, size, generator=g) * 1.5
    k, (low, high) = mixture.num_components, log_scales
    scales = torch.rand(batch, k * channels, size, size, generator=g) * (high - low) + low
    params[:, k + k * channels:k + 2 * k * channels] = scales
    return params


@pytest.mark.parametrize("components,coupling", [(1, False), (3, True), (10, False)])
def test_mixture_probabilities_of_all_256_levels_of_one_pixel_sum_to_one(components, coupling):
    mixture = DiscretizedLogisticMixture(components, coupling)
    params = random_params(mixture, 1, seed=components).expand(256, -1, 1, 1)
    levels = torch.arange(256, dtype=torch.float32).div(255).view(256, 1, 1, 1)
    log_prob = mixture.log_prob(params, levels)
    assert torch.all(log_prob <= 0)
    assert log_prob.double().exp().sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("coupling", [False, True])
def test_mixture_over_rgb_pixels_sums_to_one_over_every_colour(coupling):
    """All bins^3 colours of one RGB pixel (coupled channels: each channel's location moves with
    the earlier ones, and the joint stays normalised); 16 levels keep the enumeration small."""
    mixture = DiscretizedLogisticMixture(4, coupling, bins=16)
    colours = torch.tensor(list(itertools.product(range(16), repeat=3)), dtype=torch.float32).div(15)
    params = random_params(mixture, 3, seed=1).expand(len(colours), -1, 1, 1)
    total = mixture.log_prob(params, colours.view(-1, 3, 1, 1)).double().exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-5)


def test_mixture_with_one_component_is_the_discretized_logistic():
    """K=1 without coupling: the same pixels, parameters [weight logit | means | log scales]."""
    mixture = DiscretizedLogisticMixture(1, channel_coupling=False)
    params = random_params(mixture, 3, batch=4, size=8)
    single = params[:, 1:]  # DiscretizedLogistic's [means | log scales]
    # pixels within a few scales of the location: DiscretizedLogistic floors bin masses at 1e-12
    noise = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    near = torch.sigmoid(single[:, :3]) + noise * single[:, 3:].exp()
    x = near.clamp(0, 1).mul(255).round().div(255)
    expected = DiscretizedLogistic().log_prob(single, x)
    assert torch.allclose(mixture.log_prob(params, x), expected, rtol=1e-5, atol=1e-3)
    assert torch.allclose(mixture.mean(params), DiscretizedLogistic().mean(single), atol=1e-6)


def reference_log_prob(params: np.ndarray, x: np.ndarray, k: int, coupled: bool, bins: int = 256) -> np.ndarray:
    """Brute force in float64 with scipy: logistic CDF differences per channel, then the mixture."""
    b, c, h, w = x.shape
    half = 0.5 / (bins - 1)
    out = np.zeros(b)
    for n, i, j in itertools.product(range(b), range(h), range(w)):
        p = params[n, :, i, j]
        logits, means = p[:k], p[k:k + k * c].reshape(k, c)
        scales = np.exp(np.clip(p[k + k * c:k + 2 * k * c].reshape(k, c), -7, 5))
        coefficients = np.tanh(p[k + 2 * k * c:]).reshape(k, -1) if coupled else None
        pixel = x[n, :, i, j]
        log_joint = special.log_softmax(logits).copy()
        for comp in range(k):
            pair = 0
            for ch in range(c):
                location = special.expit(means[comp, ch])
                if coupled:
                    for prev in range(ch):
                        location += coefficients[comp, pair + prev] * (pixel[prev] - 0.5)
                    pair += ch
                cdf = functools.partial(stats.logistic.cdf, loc=location, scale=scales[comp, ch])
                upper = 1.0 if pixel[ch] > 1 - half else cdf(pixel[ch] + half)
                lower = 0.0 if pixel[ch] < half else cdf(pixel[ch] - half)
                log_joint[comp] += np.log(upper - lower)
        out[n] += special.logsumexp(log_joint)
    return out


@pytest.mark.parametrize("coupled", [False, True])
def test_mixture_matches_a_brute_force_scipy_reference(coupled):
    mixture = DiscretizedLogisticMixture(3, coupled)
    # scales of at least e^-2 of the [0, 1] range: the reference's CDF differences lose every digit
    # beyond about 37 scales from the location, where the log-space form is still exact
    params = random_params(mixture, 3, batch=2, size=2, seed=5, log_scales=(-2.0, 0.5))
    x = torch.randint(0, 256, (2, 3, 2, 2), generator=torch.Generator().manual_seed(5)).float().div(255)
    x[0, :, 0, 0] = torch.tensor([0.0, 1.0, 0.0])  # the edge bins
    expected = reference_log_prob(params.double().numpy(), x.double().numpy(), 3, coupled)
    np.testing.assert_allclose(mixture.log_prob(params, x).double().numpy(), expected, rtol=1e-5)


def test_mixture_is_finite_far_in_the_tails():
    """Pixels 60 scales from the location: log(sigmoid(a) - sigmoid(b)) in probabilities would be
    log 0; the log-space form stays finite, and so do its gradients."""
    mixture = DiscretizedLogisticMixture(2, True)
    params = torch.zeros(1, mixture.decoder_channels(3), 1, 1)
    params[:, 2:8] = -12.0  # locations sigmoid(-12), about 0
    params[:, 8:14] = -7.0  # the smallest scale
    params.requires_grad_(True)
    log_prob = mixture.log_prob(params, torch.full((1, 3, 1, 1), 200 / 255))
    log_prob.sum().backward()
    assert torch.isfinite(log_prob).all() and log_prob.item() < -1000
    assert torch.isfinite(params.grad).all()


def test_coupled_mixture_mean_follows_the_linear_dependence():
    """One component: E[G] = loc_G + a (E[R] - 1/2) with E[R] = sigmoid(m_R), and so on for B."""
    mixture = DiscretizedLogisticMixture(1, True)
    params = random_params(mixture, 3, seed=3)
    m, a = torch.sigmoid(params[0, 1:4, 0, 0]), torch.tanh(params[0, 7:10, 0, 0])
    red = m[0]
    green = m[1] + a[0] * (red - 0.5)
    blue = m[2] + a[1] * (red - 0.5) + a[2] * (green - 0.5)
    expected = torch.stack([red, green, blue]).clamp(0, 1)
    assert torch.allclose(mixture.mean(params)[0, :, 0, 0], expected, atol=1e-6)


@pytest.mark.parametrize("kwargs,message", [({"num_components": 0}, "num_components must be a positive integer"),
                                            ({"bins": 1}, "bins must be an integer >= 2")])
def test_mixture_rejects_bad_settings_in_one_sentence(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DiscretizedLogisticMixture(**kwargs)


# -- networks sized from the data shape -------------------------------------------------------------
@pytest.mark.parametrize("size", [8, 16, 32])
def test_resnet_generator_and_discriminator_shapes(size):
    shape = (3, size, size)
    labels = torch.tensor([0, 4, 9])
    for classes in (0, 10):
        generator = ResNetGenerator(latent_dim=16, out_shape=shape, num_classes=classes, channels=16)
        discriminator = ResNetDiscriminator(in_shape=shape, num_classes=classes, channels=16, norm="layer")
        images = generator(torch.randn(3, 16), labels if classes else None)
        assert images.shape == (3, *shape) and images.abs().max() <= 1
        assert discriminator(images, labels if classes else None).shape == (3,)
    up = {8: 1, 16: 2, 32: 3}[size]
    assert len(ResNetGenerator(16, shape, channels=8).blocks) == up  # 4x4 start, one block per doubling
    pools = [block.down for block in ResNetDiscriminator(shape, channels=8).blocks]
    assert pools == [True] * max(1, up - 1) + [False] * (4 - max(1, up - 1))


@pytest.mark.parametrize("size", [8, 16, 32])
def test_deep_conv_vae_networks_are_sized_from_the_image(size):
    encoder = DeepConvEncoder((3, size, size), (10,), channels=8, hidden=16)
    decoder = DeepConvDecoder((5,), (100, size, size), channels=8, hidden=16)
    assert encoder(torch.rand(2, 3, size, size)).shape == (2, 10)
    assert decoder(torch.randn(2, 5)).shape == (2, 100, size, size)
    with pytest.raises(ConfigError, match="even sides larger than 4"):
        DeepConvEncoder((3, 5, 5), (10,))


def build(compose_train, overrides: list[str], shape=(3, 32, 32), num_classes: int = 10):
    """A model from its composed config with the data shape set by hand (no dataset needed)."""
    cfg = compose_train(overrides)
    cfg.model.data_shape, cfg.model.num_classes = list(shape), num_classes
    return builders.build_model(cfg)


def test_sngan_resnet_has_spectral_norm_on_every_discriminator_layer(compose_train):
    gan = build(compose_train, ["model=sngan_resnet", "model.conditional=true"])
    layers = [m for m in gan.discriminator.modules() if isinstance(m, nn.Conv2d | nn.Linear | nn.Embedding)]
    assert len(layers) == 2 * 4 + 2 + 2  # two convs per block, two 1x1 shortcuts, linear + projection
    assert all(nn.utils.parametrize.is_parametrized(m, "weight") for m in layers)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in gan.discriminator.modules())
    assert gan.sample(2).shape == (2, 3, 32, 32)


def test_wgan_gp_resnet_critic_is_penalised_and_unnormalised(compose_train):
    gan = build(compose_train, ["model=wgan_gp_resnet"])
    assert gan.gp_weight == 10.0 and gan.n_critic == 5 and gan.loss.name == "wasserstein"
    assert not any(nn.utils.parametrize.is_parametrized(m) for m in gan.discriminator.modules())
    assert gan.generator.start == (128, 4, 4) and gan.discriminator.pooling == "mean"
    g_opt, d_opt = gan.configure_optimizers()
    assert tuple(g_opt.param_groups[0]["betas"]) == (0.0, 0.9) and d_opt.param_groups[0]["lr"] == 2e-4
    layer_norm = build(compose_train, ["model=wgan_gp_resnet", "model.discriminator.norm=layer"])
    assert any(isinstance(m, nn.GroupNorm) for m in layer_norm.discriminator.modules())


@pytest.mark.parametrize("overrides,message", [
    (["model=wgan_gp_resnet", "model.gp_weight=0"], "model.loss=wasserstein needs a Lipschitz critic"),
    (["model=sngan_resnet", "model.discriminator.norm=batch"], "must be 'none' or 'layer' for ResNet critics"),
    (["model=sngan_resnet", "model.discriminator.num_blocks=1"], "num_blocks must be at least 2 for 32x32"),
])
def test_inconsistent_resnet_settings_fail_in_one_sentence(compose_train, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build(compose_train, overrides)


def test_penalty_and_spectral_norm_together_pass_the_config_checks(compose_train):
    """Both constraints on one critic are allowed (neither needs batch norm, none is there)."""
    cfg = compose_train(["model=sngan_resnet", "model.gp_weight=10"])
    check_model_config(cfg.model)
    gan = build(compose_train, ["model=sngan_resnet", "model.gp_weight=10"], shape=(3, 8, 8))
    loss = gan.discriminator_loss(torch.rand(4, 3, 8, 8) * 2 - 1, None)
    assert torch.isfinite(loss["gradient_penalty"])


def test_conditional_resnet_gan_samples_the_classes_it_is_asked_for(compose_train):
    gan = build(compose_train, ["model=sngan_resnet", "model.conditional=true", "model.generator.channels=16",
                                "model.discriminator.channels=16"], shape=(3, 16, 16))
    labels = torch.tensor([0, 3, 9, 9])
    images = gan.sample(4, generator=torch.Generator().manual_seed(0), labels=labels)
    assert images.shape == (4, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    with torch.no_grad():  # conditional batch norm: the classes move the samples
        for module in gan.generator_ema.modules():
            if isinstance(module, nn.Embedding):
                module.weight.normal_()
    same_noise = [gan.sample(1, generator=torch.Generator().manual_seed(0), labels=torch.tensor([k])) for k in (0, 5)]
    assert not torch.allclose(*same_noise)
    with pytest.raises(ConfigError, match="classes 0..9"):
        gan.sample(2, labels=torch.tensor([10, 0]))


def test_conv_vae_rgb_reports_bits_per_dim_of_its_mixture(compose_train):
    vae = build(compose_train, ["model=conv_vae_rgb", "model.encoder.channels=8", "model.decoder.channels=8"],
                shape=(3, 16, 16))
    assert vae.decoder(torch.randn(2, 128)).shape == (2, 100, 16, 16)  # K (1 + 2C + C(C-1)/2), K=10, C=3
    x = torch.randint(0, 256, (2, 3, 16, 16), generator=torch.Generator().manual_seed(0)).float().div(255)
    terms = vae.elbo_terms(x)
    assert terms["recon"].shape == (2,) and torch.all(terms["recon"] < 0)
    assert vae.sample(3).shape == (3, 3, 16, 16)


# -- end to end through dgm-train on a tiny RGB folder ---------------------------------------------
@pytest.fixture
def rgb_folder(tmp_path):
    """64 random 32x32 RGB PNGs per class in train/, 8 in test/ (two classes), as the JPEG copy of
    CIFAR-10 lays them out."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for split, count in (("train", 64), ("test", 8)):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / name / f"{i}.png")
    return root


def multirun(sweep_dir, *overrides: str) -> list[dict]:
    result = run_cli("dgm-train", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}", env=ONE_THREAD, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(path.read_text()) for path in sorted(sweep_dir.glob("*/summary.json"), key=lambda p: int(p.parent.name))]


def test_every_cifar10_experiment_trains_two_steps_on_a_tiny_rgb_folder(tmp_path, rgb_folder):
    """The experiment files as written (models, optimizers, schedules), the data replaced by the folder."""
    experiments = EXPERIMENTS + [f"{name}_cpu" for name in EXPERIMENTS]
    # ++: a multirun composes its base config before the swept experiment picks data=cifar10_jpeg
    summaries = multirun(tmp_path / "sweep", f"experiment={','.join(experiments)}", f"++data.root={rgb_folder}",
                         f"++data.cache_dir={tmp_path / 'cache'}", "++data.val_size=8", "data.batch_size=8",
                         "data.eval_batch_size=8", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                         "trainer.check_val_every_n_epoch=1", "trainer.limit_test_batches=1", "eval.iwae_k=4",
                         "eval.iwae_batch=16", *QUIET)
    assert [s["config"]["name"] for s in summaries] == experiments
    for summary in summaries:
        assert summary["status"] == "completed", (summary["config"]["name"], summary.get("error"))
        assert summary["config"]["model"]["data_shape"] == [3, 32, 32]
        metrics = summary["metrics"]
        if "vae" in summary["config"]["name"]:
            assert summary["global_step"] == 2
            for key in ("test/bpd", "test/bpd_iwae", "test/nll_iwae"):
                assert np.isfinite(metrics[key]) and metrics[key] > 0, key
        else:
            assert metrics["val/generator_step"] == 2 and np.isfinite(metrics["test/d_loss"])


def test_dcgan_and_conditional_sngan_resnet_train_on_a_tiny_rgb_folder(tmp_path, rgb_folder):
    """``model=dcgan`` (3 stride-2 stages at 32x32x3) and a class-conditional ResNet GAN through
    ``data=image_folder``."""
    summaries = multirun(tmp_path / "sweep", "model=dcgan,sngan_resnet", "data=image_folder", f"data.root={rgb_folder}",
                         f"data.cache_dir={tmp_path / 'cache'}", "data.val_size=8", "data.batch_size=8",
                         # ++: the multirun's base config (model=vae) has no such keys
                         "++model.conditional=true", "++model.generator.channels=16",
                         "++model.discriminator.channels=16",
                         "trainer.max_epochs=1", "trainer.limit_train_batches=2", *QUIET)
    for summary in summaries:
        assert summary["status"] == "completed", summary.get("error")
        assert summary["metrics"]["val/generator_step"] == 2
        assert summary["config"]["model"]["num_classes"] == 2
