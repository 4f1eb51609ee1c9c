"""Learning from few labels: M2 (and M1+M2) and the semi-supervised GAN.

The bounds are checked against computations written out by hand (a loop over the classes in numpy,
the closed forms of the Bernoulli likelihood and the Gaussian KL); the models end to end through
``dgm-train`` on a tiny partly labelled slice of the 8x8 digits.
"""

from __future__ import annotations

import csv
import functools
import json
import math

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, logsumexp

from dgm_lab.checkpoints import load_checkpoint, rebuild_model
from dgm_lab.data.contract import UNLABELED
from dgm_lab.errors import ConfigError
from dgm_lab.models.gan import BatchNormMLPGenerator, NoisyMLPDiscriminator, SemiSupervisedGAN
from dgm_lab.models.networks import MLP
from dgm_lab.models.vae import M2, VAE, Bernoulli
from dgm_lab.models.vae.m2 import active_code_units, unlabelled_bound
from tests.conftest import FAST, run_cli, train_run


def tiny_m2(**settings) -> M2:
    torch.manual_seed(0)
    mlp = functools.partial(MLP, hidden=[7], act="softplus")
    return M2(encoder=mlp, decoder=mlp, classifier=mlp, likelihood=Bernoulli(),
              optimizer=functools.partial(torch.optim.Adam, lr=1e-3), data_shape=[1, 2, 3], num_classes=3,
              latent_dim=2, **settings)


def numpy_labelled_bound(model: M2, x: np.ndarray, label: int, noise: np.ndarray) -> np.ndarray:
    """L(x, y) of one class for every row, from the networks' outputs and the closed forms, in float64."""
    k = model.num_classes
    onehot = np.zeros((len(x), k))
    onehot[:, label] = 1
    with torch.no_grad():
        stats = model.encoder(torch.tensor(np.concatenate([x, onehot], 1), dtype=torch.float32)).double().numpy()
    mean, log_var = stats[:, :2], stats[:, 2:]
    z = mean + noise * np.exp(0.5 * log_var)
    with torch.no_grad():
        logits = model.decoder(torch.tensor(np.concatenate([z, onehot], 1), dtype=torch.float32)).double()
    logits = logits.flatten(1).numpy()
    log_lik = (x * -np.logaddexp(0, -logits) + (1 - x) * -np.logaddexp(0, logits)).sum(1)  # Bernoulli, by hand
    kl = 0.5 * (mean**2 + np.exp(log_var) - 1 - log_var).sum(1)
    return log_lik - kl - math.log(k)


def test_m2_unlabelled_bound_is_the_sum_over_classes_by_hand():
    model = tiny_m2()
    x = torch.bernoulli(torch.full((5, 1, 2, 3), 0.5), generator=torch.Generator().manual_seed(1))
    noise = torch.randn(5, 3, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        bounds = model.class_bounds(x, noise)
        log_q = model.classifier_log_probs(x)
        u = unlabelled_bound(log_q, bounds).double().numpy()

    flat = x.flatten(1).double().numpy()
    by_hand = np.stack([numpy_labelled_bound(model, flat, c, noise[:, c].double().numpy()) for c in range(3)], 1)
    np.testing.assert_allclose(bounds.double().numpy(), by_hand, rtol=1e-5, atol=1e-4)
    with torch.no_grad():
        logits = model.classifier(x).double().numpy()
    q_log = log_softmax(logits, axis=1)
    expected = np.zeros(5)
    for c in range(3):  # sum_y q(y|x) L(x, y) + H(q(y|x)), one class at a time
        expected += np.exp(q_log[:, c]) * (by_hand[:, c] - q_log[:, c])
    np.testing.assert_allclose(u, expected, rtol=1e-5, atol=1e-4)
    # The bound is tightest, log sum_y exp L(x, y), when q(y|x) is the posterior under the bounds.
    posterior = torch.log_softmax(bounds.double(), dim=1)
    np.testing.assert_allclose(unlabelled_bound(posterior, bounds.double()).numpy(), logsumexp(by_hand, axis=1),
                               rtol=1e-6, atol=1e-4)
    assert np.all(u <= logsumexp(by_hand, axis=1) + 1e-5)


def test_m2_batch_loss_weights_labelled_and_unlabelled_rows():
    """-(sum of L over labelled rows + sum of U over unlabelled rows) / B + alpha * mean CE."""
    model = tiny_m2(alpha=2.5)
    x = torch.bernoulli(torch.full((4, 1, 2, 3), 0.5), generator=torch.Generator().manual_seed(3))
    y = torch.tensor([2, UNLABELED, 0, UNLABELED])
    torch.manual_seed(5)
    out = model.batch_loss(x, y)
    torch.manual_seed(5)  # the same noise, drawn in the same order: labelled rows first
    with torch.no_grad():
        log_q = model.classifier_log_probs(x)
        labelled = model.labelled_bound(x[[0, 2]], y[[0, 2]])
        unlabelled = unlabelled_bound(log_q[[1, 3]], model.class_bounds(x[[1, 3]]))
    cross_entropy = -(log_q[0, 2] + log_q[2, 0]) / 2
    expected = -(labelled.sum() + unlabelled.sum()) / 4 + 2.5 * cross_entropy
    assert torch.allclose(out["loss"].detach(), expected, atol=1e-5)
    all_unlabelled = model.batch_loss(x, torch.full((4,), UNLABELED))
    assert float(all_unlabelled["classification"]) == 0.0  # no labelled row: no classification term


def test_m2_importance_weights_estimate_the_exact_marginal_of_a_tiny_model():
    """With z of 2 dimensions and 3 classes, log p(x) = log sum_y p(y) int p(z) p(x|y,z) dz by a grid;
    the importance-weighted estimate with many samples agrees within Monte Carlo error. The encoder
    is set to a proposal wider than the prior (q(z|x,y) = N(0.3, 2 I)), so the weights have a finite
    variance and the estimate a small error."""
    model = tiny_m2()
    with torch.no_grad():
        last = model.encoder.net[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.3, 0.3, math.log(2.0), math.log(2.0)]))
    x = torch.tensor([[[[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]]])
    grid = torch.linspace(-6, 6, 241)
    step = float(grid[1] - grid[0])
    z = torch.cartesian_prod(grid, grid)
    log_terms = []
    with torch.no_grad():
        for c in range(3):
            onehot = torch.nn.functional.one_hot(torch.full((len(z),), c), 3).float()
            log_lik = Bernoulli().log_prob(model.decoder(torch.cat([z, onehot], 1)), x.expand(len(z), -1, -1, -1))
            log_prior = -0.5 * (z**2).sum(1) - math.log(2 * math.pi)
            log_terms.append(torch.logsumexp(log_lik.double() + log_prior.double(), 0) + 2 * math.log(step) - math.log(3))
        exact = float(torch.logsumexp(torch.stack(log_terms), 0))
        torch.manual_seed(0)
        estimate = float(model.importance_weighted_log_px(x, 20000))
    assert abs(estimate - exact) < 0.015, (estimate, exact)


def test_m2_refuses_a_bernoulli_likelihood_on_m1_codes(tmp_path):
    with pytest.raises(ConfigError, match="Gaussian"):
        tiny_m2(m1_ckpt=str(tmp_path))


def tiny_ssgan(**settings) -> SemiSupervisedGAN:
    torch.manual_seed(0)
    return SemiSupervisedGAN(generator=functools.partial(BatchNormMLPGenerator, hidden=[6]),
                             discriminator=functools.partial(NoisyMLPDiscriminator, hidden=[5, 4]),
                             optimizer=functools.partial(torch.optim.Adam, lr=1e-3), data_shape=[1, 2, 3],
                             num_classes=3, latent_dim=4, **settings)


def test_ssgan_losses_match_the_k_plus_1_class_softmax_by_hand():
    """D's loss: cross-entropy over K classes on labelled rows, plus half of -log p(real|x) on
    unlabelled rows and of -log p(generated|G(z)) on fakes, p from a softmax over K logits and a
    (K+1)-th logit 0; G's loss: squared difference of D's mean last hidden features."""
    model = tiny_ssgan(unsupervised_weight=0.7).eval()  # evaluation mode: no noise layers, fixed batch norm
    x = torch.rand(5, 1, 2, 3, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([1, UNLABELED, UNLABELED, 2, UNLABELED])
    torch.manual_seed(3)
    out = model.discriminator_loss(x, y)
    torch.manual_seed(3)
    with torch.no_grad():
        fake = model.generator(torch.rand(3, 4))
        logits_real, features_real = (t.double().numpy() for t in model.discriminator(x))
        logits_fake, features_fake = (t.double().numpy() for t in model.discriminator(fake))

    def k_plus_1(logits):
        return log_softmax(np.concatenate([logits, np.zeros((len(logits), 1))], 1), axis=1)

    supervised = -np.mean([log_softmax(logits_real[i])[c] for i, c in ((0, 1), (3, 2))])
    unlabelled = [1, 2, 4]
    minus_log_real = -np.log1p(-np.exp(k_plus_1(logits_real[unlabelled])[:, 3]))
    minus_log_generated = -k_plus_1(logits_fake)[:, 3]
    expected = supervised + 0.7 * 0.5 * (minus_log_real.mean() + minus_log_generated.mean())
    assert float(out["loss"].detach()) == pytest.approx(expected, rel=1e-5)
    assert torch.equal(out["real"], x[unlabelled])
    torch.manual_seed(3)
    matching = float(model.feature_matching_loss(x[unlabelled]).detach())
    expected_matching = np.mean((features_real[unlabelled].mean(0) - features_fake.mean(0)) ** 2)
    assert matching == pytest.approx(expected_matching, rel=1e-5)


# End to end through dgm-train: 256 digits, 50 of them labelled, 8 labelled draws in every batch.
PARTLY_LABELLED = ["data=digits", "data.train_subset=256", "data.num_labeled=50", "data.labeled_per_batch=8",
                   "trainer.max_epochs=2", "eval.iwae_k=8", "logger=none", "trainer.accelerator=cpu",
                   "callbacks.progress_bar.refresh_rate=0"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def test_m2_and_ssgan_train_end_to_end_on_partly_labelled_digits(tmp_path):
    result = run_cli("dgm-train", "-m", "model=m2,ssgan", *PARTLY_LABELLED, "trainer.log_every_n_steps=1",
                     f"hydra.sweep.dir={tmp_path}",
                     env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = {s["config"]["model"]["_target_"].rsplit(".", 1)[-1]: s
                 for s in (json.loads(p.read_text()) for p in tmp_path.glob("*/summary.json"))}
    assert set(summaries) == {"M2", "SemiSupervisedGAN"}
    for name, summary in summaries.items():
        assert summary["status"] == "completed", summary.get("error")
        metrics = summary["metrics"]
        for split in ("val", "test"):
            assert 0.0 <= metrics[f"{split}/error"] <= 1.0, (name, split)
        assert summary["best"]["monitor"] == "val/error"  # the best checkpoint is the best classifier
    m2 = summaries["M2"]["metrics"]
    assert m2["test/elbo"] < 0 and m2["test/nll_iwae"] > 0 and "train/classification_loss" in m2
    with open(tmp_path / summaries["SemiSupervisedGAN"]["run_dir"].rsplit("/", 1)[-1] / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/supervised_loss")]
    assert rows and all(float(r["train/supervised_loss"]) > 0 and r["train/unsupervised_loss"] for r in rows)
    assert summaries["SemiSupervisedGAN"]["timing"]["iterations"] == 2 * 4  # one per step, not per optimizer


def test_active_code_units_are_the_units_whose_posterior_mean_depends_on_x():
    """Units 1 and 3 of a VAE's encoder are silenced by hand (constant posterior mean): exactly the
    other units are active, and the choice is the same every time (the model is rebuilt from it)."""
    torch.manual_seed(0)
    mlp = functools.partial(MLP, hidden=[16], act="tanh")
    m1 = VAE(encoder=mlp, decoder=mlp, likelihood=Bernoulli(), optimizer=functools.partial(torch.optim.Adam),
             data_shape=[1, 4, 4], num_classes=0, latent_dim=5)
    last = [m for m in m1.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight *= 10  # the random encoder's means vary well above the 0.01 threshold...
        last.weight[[1, 3]] = 0.0  # ...except units 1 and 3, whose means are their biases for every x
    assert active_code_units(m1).tolist() == [0, 2, 4]
    assert torch.equal(active_code_units(m1), active_code_units(m1))


def test_m1_m2_trains_on_the_frozen_codes_of_a_vae_run(tmp_path):
    vae_run, m1m2_run = tmp_path / "m1", tmp_path / "m1m2"
    train_run(vae_run, "model=vae", "model.latent_dim=4", "data.train_subset=256")
    summary = train_run(m1m2_run, "model=m2", f"model.m1_ckpt={vae_run}", "model.latent_dim=3",
                        "model.likelihood._target_=dgm_lab.models.vae.Gaussian",
                        *[o for o in PARTLY_LABELLED if not o.startswith(("logger", "trainer.accelerator"))],
                        fast=True)
    assert summary["status"] == "completed", summary.get("error")
    assert 0.0 <= summary["metrics"]["test/error"] <= 1.0 and "test/nll_iwae" not in summary["metrics"]
    # M2 models M1's active units only, found again when the model is rebuilt from its checkpoint
    m1_model = rebuild_model(load_checkpoint(vae_run / "checkpoints" / "last.ckpt"))
    units = summary["diagnostics"]["m1_units"]
    assert units == active_code_units(m1_model).tolist() and len(units) >= 1
    m1m2_model = rebuild_model(load_checkpoint(m1m2_run / "checkpoints" / "last.ckpt"))
    assert m1m2_model.code_units.tolist() == units and m1m2_model.classifier(torch.zeros(1, len(units))).shape == (1, 10)
    assert m1m2_model.sample(4).shape == (4, 1, 8, 8)
    # M1's encoder and decoder are in M2's checkpoint, unchanged by training
    m1 = load_checkpoint(vae_run / "checkpoints" / "last.ckpt")["state_dict"]
    m2 = load_checkpoint(m1m2_run / "checkpoints" / "last.ckpt")["state_dict"]
    assert m1.keys() == {k.removeprefix("m1.") for k in m2 if k.startswith("m1.")}
    assert all(torch.equal(m1[k], m2[f"m1.{k}"]) for k in m1)
    # an M1 path that is not there: one sentence, exit code 2, no traceback
    missing = run_cli("dgm-train", *FAST, "model=m2", f"model.m1_ckpt={tmp_path / 'nowhere'}",
                      "model.likelihood._target_=dgm_lab.models.vae.Gaussian", f"hydra.run.dir={tmp_path / 'bad'}")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "nowhere does not exist" in missing.stderr


def test_m1m2_experiment_without_an_m1_run_is_one_sentence(tmp_path):
    """The experiment cannot run as plain M2 by accident: model.m1_ckpt is required (a ``???`` merged
    over M2's default of none would have left the default)."""
    result = run_cli("dgm-train", "experiment=m1m2_mnist100", "data=digits", "logger=none", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "dgm-train: error: model.m1_ckpt needs a value: give model.m1_ckpt=<the run folder of a trained M1, "
        "dgm-train experiment=m1_mnist>.")
    assert not (tmp_path / "run" / "checkpoints").exists()
