"""DBN and DBM: bounds against enumeration, the mean-field fixed point, greedy layer-wise training."""

from __future__ import annotations

import functools
import itertools

import pytest
import pytorch_lightning as pl
import torch

from dgm_lab.data import DigitsDataModule
from dgm_lab.metrics.ais import exact_log_partition, unnormalized_log_prob
from dgm_lab.models.boltzmann import DBM, DBN, DBMParams
from dgm_lab.models.boltzmann.dbm import mean_field, mean_field_bound
from dgm_lab.models.boltzmann.layer import bernoulli

SGD = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.5)


def all_states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def randomize(module: torch.nn.Module, std: float, seed: int = 0) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.normal_(0, std)


def test_mean_field_reaches_its_fixed_point_and_only_raises_the_bound():
    g = torch.Generator().manual_seed(0)
    p = DBMParams(*(torch.randn(shape, generator=g, dtype=torch.float64) for shape in [(6, 5), (5, 4), (6,), (5,), (4,)]))
    v = torch.randint(0, 2, (4, 6), generator=g).double()
    mu1, mu2 = mean_field(p, v, steps=300)
    torch.testing.assert_close(mu1, torch.sigmoid(v @ p.w1 + mu2 @ p.w2.T + p.c1), atol=1e-9, rtol=0)
    torch.testing.assert_close(mu2, torch.sigmoid(mu1 @ p.w2 + p.c2), atol=1e-9, rtol=0)
    bounds = torch.stack([mean_field_bound(p, v, *mean_field(p, v, steps)) for steps in range(1, 12)])
    assert bool((bounds[1:] >= bounds[:-1] - 1e-10).all())  # coordinate ascent never goes down
    # log p(v) by brute force over (h1, h2); the bound is below it, as any variational bound.
    h1, h2 = all_states(5), all_states(4)
    energy_terms = (v @ p.b)[:, None, None] + (v @ p.w1 @ h1.T + h1 @ p.c1)[:, :, None] + (h1 @ p.w2 @ h2.T + h2 @ p.c2)[None]
    log_z = exact_log_partition(p.as_rbm())
    log_p = torch.logsumexp(energy_terms.flatten(1), 1) - log_z
    assert bool((bounds[-1] - log_z <= log_p + 1e-10).all())
    assert float((log_p - (bounds[-1] - log_z)).max()) < 5.0  # and a usable bound, not a vacuous one


def test_dbn_bound_matches_enumeration_and_lies_below_log_p():
    dbn = DBN(layers=[4, 3], data_shape=[1, 2, 3], num_classes=10, optimizer=SGD).double()
    randomize(dbn, std=1.0)
    bottom, top = (layer.ais_params().to(torch.float64) for layer in dbn.layers)
    v = torch.randint(0, 2, (5, 6), generator=torch.Generator().manual_seed(1)).double()
    h1 = all_states(4)
    log_z_top = exact_log_partition(top)
    # log p(v) = log sum_h1 p(v | h1) p_top(h1), with p_top(h1) = exp(-F_top(h1)) / Z_top.
    visible_input = h1 @ bottom.weight.T + bottom.visible_bias  # (16, 6)
    log_p_v_given_h1 = v @ visible_input.T - torch.nn.functional.softplus(visible_input).sum(-1)  # (5, 16)
    log_prior = unnormalized_log_prob(top, h1) - log_z_top
    log_p = torch.logsumexp(log_p_v_given_h1 + log_prior, 1)
    # The bound with q(h1 | v) = the bottom RBM's p(h | v), as an exact sum over h1.
    q_probs = torch.sigmoid(v @ bottom.weight + bottom.hidden_bias)
    log_q = h1 @ q_probs.log().T + (1 - h1) @ torch.log1p(-q_probs).T  # (16, 5)
    exact_bound = (log_q.exp().T * (log_p_v_given_h1 + log_prior - log_q.T)).sum(1)
    assert bool((exact_bound <= log_p + 1e-10).all())
    estimate = dbn.bound_without_log_z(v, num_samples=40000, generator=torch.Generator().manual_seed(2)) - log_z_top
    torch.testing.assert_close(estimate, exact_bound, atol=0.05, rtol=0)


def test_upper_layer_starts_at_the_lower_rbms_own_prior():
    """With W2 = W1', the DBN is the bottom RBM again and q(h1 | v) its exact posterior: the
    bound equals the bottom RBM's log p(v) (Hinton, Osindero & Teh 2006), checked by enumeration."""
    dbn = DBN(layers=[4, 6], data_shape=[1, 2, 3], num_classes=10, optimizer=SGD, init_from_below=True).double()
    randomize(dbn, std=1.0)
    dbn.begin_stage(1)
    bottom, top = (layer.ais_params().to(torch.float64) for layer in dbn.layers)
    v = torch.randint(0, 2, (5, 6), generator=torch.Generator().manual_seed(1)).double()
    h1 = all_states(4)
    visible_input = h1 @ bottom.weight.T + bottom.visible_bias
    log_joint = v @ visible_input.T - torch.nn.functional.softplus(visible_input).sum(-1) + unnormalized_log_prob(top, h1)
    q_probs = torch.sigmoid(v @ bottom.weight + bottom.hidden_bias)
    log_q = (h1 @ q_probs.log().T + (1 - h1) @ torch.log1p(-q_probs).T).T  # (5, 16)
    bound = (log_q.exp() * (log_joint - log_q)).sum(1) - exact_log_partition(top)
    rbm_log_p = unnormalized_log_prob(bottom, v) - exact_log_partition(bottom)
    torch.testing.assert_close(bound, rbm_log_p, atol=1e-9, rtol=0)


def test_one_layer_dbn_bound_is_the_rbm_log_likelihood():
    dbn = DBN(layers=[5], data_shape=[1, 2, 3], num_classes=10, optimizer=SGD).double()
    randomize(dbn, std=1.0)
    v = torch.randint(0, 2, (4, 6), generator=torch.Generator().manual_seed(1)).double()
    torch.testing.assert_close(dbn.bound_without_log_z(v, 3), -dbn.layers[0].free_energy(v))


class WeightRecorder(pl.Callback):
    def __init__(self):
        self.snapshots = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.snapshots.append({name: p.detach().clone() for name, p in pl_module.named_parameters()})


def fit(model, epochs: int) -> list[dict]:
    recorder = WeightRecorder()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[recorder],
                         num_sanity_val_steps=0)
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=64, binarize="dynamic"))
    return [before, *recorder.snapshots]


def changed(snapshots, epoch: int, name: str) -> bool:
    return not torch.equal(snapshots[epoch][name], snapshots[epoch + 1][name])


def test_dbn_trains_its_layers_one_after_the_other():
    torch.manual_seed(0)
    model = DBN(layers=[8, 4], epochs_per_layer=1, data_shape=[1, 8, 8], num_classes=10, optimizer=SGD)
    snapshots = fit(model, epochs=3)
    assert changed(snapshots, 0, "layers.0.weight") and not changed(snapshots, 0, "layers.1.weight")
    for epoch in (1, 2):  # the top layer keeps training until the run ends
        assert changed(snapshots, epoch, "layers.1.weight") and not changed(snapshots, epoch, "layers.0.weight")
    assert model.layers[0].weight.shape == (64, 8) and model.layers[1].weight.shape == (8, 4)
    # Reconstructions (val/recon_error) go through the layers trained so far, not the untrained top.
    x = torch.rand(5, 1, 8, 8)
    bottom, top = model.layers
    through_both = bottom.visible_mean(top.visible_mean(top.hidden_probs(bottom.hidden_probs(x.flatten(1)))))
    torch.testing.assert_close(model.reconstruct(x).flatten(1), through_both)
    model.started_stage.fill_(0)
    torch.testing.assert_close(model.reconstruct(x).flatten(1), bottom.visible_mean(bottom.hidden_probs(x.flatten(1))))
    # ... and so do samples: a Gibbs chain of the bottom RBM alone, replayed with the same draws.
    model.sample_gibbs_steps = 3
    generator = torch.Generator().manual_seed(5)
    state = bottom.gibbs_sweeps(bernoulli(torch.full((4, 64), 0.5), generator), 2, generator)
    expected = bottom.visible_mean(bernoulli(bottom.hidden_probs(state), generator))
    torch.testing.assert_close(model.sample(4, torch.Generator().manual_seed(5)).flatten(1), expected)
    assert model.sample(3).shape == (3, 1, 8, 8)


def test_dbm_pretrains_bottom_then_top_then_trains_jointly():
    torch.manual_seed(0)
    model = DBM(layers=[8, 4], pretrain_epochs_per_layer=1, num_chains=10, data_shape=[1, 8, 8], num_classes=10,
                optimizer=SGD)
    snapshots = fit(model, epochs=3)
    assert changed(snapshots, 0, "layers.0.weight") and not changed(snapshots, 0, "layers.1.weight")
    assert changed(snapshots, 1, "layers.1.weight") and not changed(snapshots, 1, "layers.0.weight")
    assert changed(snapshots, 2, "layers.0.weight") and changed(snapshots, 2, "layers.1.weight")
    assert not changed(snapshots, 2, "layers.1.visible_bias")  # the top RBM's own h1 bias is retired
    assert int(model.started_stage) == 2 and bool(model.chains_ready)
    assert set(model.chains_visible.unique().tolist()) <= {0.0, 1.0}
    assert model.sample(3).shape == (3, 1, 8, 8)


@pytest.mark.parametrize("model_class", [DBN, DBM])
def test_bad_layer_sizes_are_one_sentence(model_class):
    from dgm_lab.errors import ConfigError

    with pytest.raises(ConfigError, match="model.layers"):
        model_class(layers=[8, 0, 3] if model_class is DBN else [8], data_shape=[1, 8, 8], num_classes=10, optimizer=SGD)


@pytest.mark.parametrize("chain_init", ["data", "noise"])
def test_dbm_persistent_chains_start_at_data_or_at_noise(chain_init):
    model = DBM(layers=[8, 4], num_chains=4000, chain_init=chain_init, data_shape=[1, 2, 2], num_classes=10,
                optimizer=SGD)
    v = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])  # pixel means 1, 0, 0.5, 0
    mu2 = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]])
    model.start_chains(v, mu2, torch.Generator().manual_seed(0))
    assert bool(model.chains_ready)
    if chain_init == "data":  # the batch's examples in turn, h2 drawn from their mean field
        assert torch.equal(model.chains_visible, v.repeat(2000, 1))
        assert torch.equal(model.chains_top, mu2.repeat(2000, 1))
    else:  # independent of the examples: their pixel means, and uniform h2
        torch.testing.assert_close(model.chains_visible.mean(0), torch.tensor([1.0, 0.0, 0.5, 0.0]), atol=0.03, rtol=0)
        torch.testing.assert_close(model.chains_top.mean(0), torch.full((4,), 0.5), atol=0.03, rtol=0)
