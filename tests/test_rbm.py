"""RBM math against independent computations: brute-force sums, a CD-1 step by hand, the exact
expected CD-1 update, and the optimizer applying the statistics written into ``.grad``."""

from __future__ import annotations

import functools
import itertools
import math

import pytest
import torch

from dgm_lab.models.boltzmann import RBM, RBMLayer


def random_layer(num_visible, num_hidden, visible="bernoulli", num_chains=0, seed=0) -> RBMLayer:
    torch.manual_seed(seed)
    layer = RBMLayer(num_visible, num_hidden, visible, num_chains).double()
    with torch.no_grad():
        for param in layer.parameters():
            param.normal_(0, 0.8)
    return layer


def brute_force_free_energy(layer: RBMLayer, v: torch.Tensor) -> torch.Tensor:
    """-log sum_h exp(-E(v, h)) over all 2^H hidden states, E written out in full."""
    w, b, c = layer.weight.detach(), layer.visible_bias.detach(), layer.hidden_bias.detach()
    out = []
    for row in v:
        terms = []
        for h in itertools.product([0.0, 1.0], repeat=len(c)):
            h = torch.tensor(h, dtype=torch.float64)
            visible_energy = -(row @ b) if layer.visible == "bernoulli" else 0.5 * ((row - b) ** 2).sum()
            terms.append(-(visible_energy - h @ c - row @ w @ h))
        out.append(-torch.logsumexp(torch.stack(terms), 0))
    return torch.stack(out)


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_free_energy_matches_brute_force(visible):
    layer = random_layer(5, 4, visible)
    g = torch.Generator().manual_seed(1)
    v = torch.randint(0, 2, (6, 5), generator=g).double() if visible == "bernoulli" else torch.randn(6, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(layer.free_energy(v), brute_force_free_energy(layer, v), atol=1e-10, rtol=0)


def test_pseudo_log_likelihood_matches_brute_force():
    layer = random_layer(6, 4)
    v = torch.randint(0, 2, (5, 6), generator=torch.Generator().manual_seed(2)).double()
    expected = torch.zeros(5, dtype=torch.float64)
    for i in range(6):
        flipped = v.clone()
        flipped[:, i] = 1 - flipped[:, i]
        own, other = -brute_force_free_energy(layer, v), -brute_force_free_energy(layer, flipped)
        expected += own - torch.logaddexp(own, other)  # log p(v_i | v_-i)
    torch.testing.assert_close(layer.pseudo_log_likelihood(v, chunk=2), expected, atol=1e-10, rtol=0)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_cd1_gradient_matches_hand_computation():
    """One CD-1 step of a 3 x 2 RBM on two examples, recomputed with scalar loops from the same
    uniforms (drawn h0 (2, 2) then v1 (2, 3), as ``contrastive_divergence`` documents)."""
    layer = RBMLayer(3, 2).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -1.0], [1.5, 0.25], [-0.75, 2.0]]))
        layer.visible_bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        layer.hidden_bias.copy_(torch.tensor([-0.5, 0.4]))
    data = [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]
    out = layer.contrastive_divergence(torch.tensor(data, dtype=torch.float64), steps=1,
                                       generator=torch.Generator().manual_seed(7))
    replay = torch.Generator().manual_seed(7)
    u_h = torch.rand((2, 2), generator=replay, dtype=torch.float64).tolist()
    u_v = torch.rand((2, 3), generator=replay, dtype=torch.float64).tolist()
    w = layer.weight.detach().tolist()
    b, c = layer.visible_bias.detach().tolist(), layer.hidden_bias.detach().tolist()

    grad_w = [[0.0] * 2 for _ in range(3)]
    grad_b, grad_c = [0.0] * 3, [0.0] * 2
    for n, v0 in enumerate(data):
        p_h0 = [sigmoid(c[j] + sum(v0[i] * w[i][j] for i in range(3))) for j in range(2)]
        h0 = [1.0 if u_h[n][j] < p_h0[j] else 0.0 for j in range(2)]
        p_v1 = [sigmoid(b[i] + sum(w[i][j] * h0[j] for j in range(2))) for i in range(3)]
        v1 = [1.0 if u_v[n][i] < p_v1[i] else 0.0 for i in range(3)]
        p_h1 = [sigmoid(c[j] + sum(v1[i] * w[i][j] for i in range(3))) for j in range(2)]
        for i in range(3):
            grad_b[i] -= (v0[i] - v1[i]) / 2
            for j in range(2):
                grad_w[i][j] -= (v0[i] * p_h0[j] - v1[i] * p_h1[j]) / 2
        for j in range(2):
            grad_c[j] -= (p_h0[j] - p_h1[j]) / 2
        torch.testing.assert_close(out["recon"][n], torch.tensor(p_v1, dtype=torch.float64))
    torch.testing.assert_close(layer.weight.grad, torch.tensor(grad_w, dtype=torch.float64))
    torch.testing.assert_close(layer.visible_bias.grad, torch.tensor(grad_b, dtype=torch.float64))
    torch.testing.assert_close(layer.hidden_bias.grad, torch.tensor(grad_c, dtype=torch.float64))


def test_cd1_update_is_unbiased_for_its_exact_expectation():
    """Averaged over many chains from one v, the CD-1 statistics approach the exact expectation
    over h0 ~ p(h | v) and v1 ~ p(v | h0), enumerated."""
    layer = random_layer(3, 2, seed=4)
    v = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    w, b, c = layer.weight.detach(), layer.visible_bias.detach(), layer.hidden_bias.detach()

    def prob(x, p):  # probability of binary vector x under independent Bernoulli(p)
        return torch.prod(torch.where(x > 0, p, 1 - p))

    p_h0 = torch.sigmoid(v @ w + c)
    expected_w = torch.outer(v, p_h0).clone()
    for h0 in itertools.product([0.0, 1.0], repeat=2):
        h0 = torch.tensor(h0, dtype=torch.float64)
        p_v1 = torch.sigmoid(w @ h0 + b)
        for v1 in itertools.product([0.0, 1.0], repeat=3):
            v1 = torch.tensor(v1, dtype=torch.float64)
            expected_w -= prob(h0, p_h0) * prob(v1, p_v1) * torch.outer(v1, torch.sigmoid(v1 @ w + c))
    layer.contrastive_divergence(v.expand(200_000, 3).contiguous(), steps=1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(-layer.weight.grad, expected_w, atol=4e-3, rtol=0)


def test_pcd_advances_stored_chains_not_the_data():
    layer = random_layer(4, 3, num_chains=5, seed=5)
    data = torch.randint(0, 2, (3, 4), generator=torch.Generator().manual_seed(3)).double()
    g, replay = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    layer.contrastive_divergence(data, steps=2, persistent=True, generator=g)
    start = data[torch.arange(5) % 3]  # the first call starts the chains at training examples
    expected = layer.gibbs_sweeps(start, 2, replay)
    torch.testing.assert_close(layer.persistent_chains, expected)
    assert bool(layer.chains_ready)
    stored = layer.persistent_chains.clone()
    layer.contrastive_divergence(data, steps=1, persistent=True, generator=g)
    chains = layer.gibbs_sweeps(stored, 1, replay)
    torch.testing.assert_close(layer.persistent_chains, chains)
    negative = chains.T @ layer.hidden_probs(chains) / 5
    positive = data.T @ layer.hidden_probs(data) / 3
    torch.testing.assert_close(layer.weight.grad, -(positive - negative))


def test_sgd_applies_the_statistics_with_decay_on_weights_only():
    lr, decay = 0.1, 0.01
    model = RBM(num_hidden=4, data_shape=[1, 2, 3], num_classes=10,
                optimizer=functools.partial(torch.optim.SGD, lr=lr, momentum=0.0, weight_decay=decay))
    optimizer = model.configure_optimizers()
    v = torch.randint(0, 2, (8, 6), generator=torch.Generator().manual_seed(0)).float()
    model.rbm.contrastive_divergence(v)
    before = {name: p.detach().clone() for name, p in model.rbm.named_parameters()}
    grads = {name: p.grad.clone() for name, p in model.rbm.named_parameters()}
    optimizer.step()
    torch.testing.assert_close(model.rbm.weight, before["weight"] - lr * (grads["weight"] + decay * before["weight"]))
    for name in ("visible_bias", "hidden_bias"):
        torch.testing.assert_close(getattr(model.rbm, name), before[name] - lr * grads[name])


def test_sample_is_reproducible_and_leaves_global_rng_alone():
    model = RBM(num_hidden=5, data_shape=[1, 8, 8], num_classes=10, sample_gibbs_steps=20,
                optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    state = torch.get_rng_state()
    first = model.sample(6, generator=torch.Generator().manual_seed(3))
    second = model.sample(6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)  # ImageSamples must not shift training's RNG
    assert first.shape == (6, 1, 8, 8) and torch.equal(first, second)
    assert 0 <= float(first.min()) and float(first.max()) <= 1


def test_gaussian_rbm_refuses_the_pseudo_likelihood_monitor_in_one_sentence(tmp_path):
    import pytorch_lightning as pl

    from dgm_lab.data import DigitsDataModule
    from dgm_lab.errors import ConfigError

    model = RBM(num_hidden=4, visible="gaussian", data_shape=[1, 8, 8], num_classes=10,
                optimizer=functools.partial(torch.optim.SGD, lr=0.01))
    checkpoint = pl.callbacks.ModelCheckpoint(monitor=RBM.default_monitor[0], mode="max")
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[checkpoint], default_root_dir=tmp_path)
    with pytest.raises(ConfigError, match="monitor.metric=val/recon_error monitor.mode=min"):
        trainer.fit(model, datamodule=DigitsDataModule(binarize="none"))


def test_an_ais_log_z_below_a_test_images_log_p_star_is_flagged():
    """Z = sum_x p*(x) >= p*(x): a log Z estimate under the largest log p*(x) of the test set is
    certainly too low (AIS chains that missed modes), and the run says so instead of reporting it."""
    from dgm_lab.metrics.ais import AISResult, exact_log_partition, unnormalized_log_prob

    model = RBM(num_hidden=5, data_shape=[1, 2, 3], num_classes=10, optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    with torch.no_grad():
        for param in model.rbm.parameters():
            param.normal_(0, 2.0, generator=torch.Generator().manual_seed(3))
    x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6)))  # every image: the floor is the mode
    log_p_star = unnormalized_log_prob(model.rbm.ais_params(), x)
    exact = exact_log_partition(model.rbm.ais_params())
    for log_z, flagged in [(exact, False), (float(log_p_star.max()) - 0.5, True)]:
        model.diagnostics = {}
        model.log_ais_result(AISResult(log_z, log_z - 0.1, log_z + 0.1, 0.0, 10, 2, 0.1))
        model.log_ais_estimate("test/loglik_ais", log_p_star, AISResult(log_z, log_z - 0.1, log_z + 0.1, 0.0, 10, 2, 0.1))
        if flagged:
            with pytest.warns(UserWarning, match="certainly too low"):
                model.on_test_epoch_end()
        else:
            model.on_test_epoch_end()
        ais = model.diagnostics["test/ais"]
        assert ais["log_z_lower_bound"] == pytest.approx(float(log_p_star.max()))
        assert ais["log_z_lower_bound"] <= exact  # the floor is a true lower bound on log Z
        assert ais["certainly_underestimated"] is flagged


def test_weight_filters_callback_is_inert_unless_the_model_has_filters_or_when_off(tmp_path):
    from types import SimpleNamespace

    from dgm_lab.callbacks.weight_filters import WeightFilters
    from dgm_lab.models.networks import MLP
    from dgm_lab.models.vae import VAE, Bernoulli

    trainer = SimpleNamespace(sanity_checking=False, state=SimpleNamespace(fn="fit"), current_epoch=1,
                              default_root_dir=str(tmp_path), loggers=[], global_step=0)
    rbm = RBM(num_hidden=4, data_shape=[1, 2, 3], num_classes=10, optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    vae = VAE(encoder=functools.partial(MLP, hidden=[4]), decoder=functools.partial(MLP, hidden=[4]),
              likelihood=Bernoulli(), latent_dim=2, data_shape=[1, 2, 3], num_classes=10,
              optimizer=functools.partial(torch.optim.Adam))
    for callback, model in [(WeightFilters(every_n_epochs=0), rbm), (WeightFilters(every_n_epochs=1), vae)]:
        callback.on_validation_epoch_end(trainer, model)
        assert callback.written == []
    callback = WeightFilters(every_n_epochs=2)
    callback.on_validation_epoch_end(trainer, rbm)
    assert callback.written == [str(tmp_path / "samples" / "filters_epoch0002.png")]
