"""Two-layer deep Boltzmann machine (Salakhutdinov & Hinton 2009): v - h1 - h2 with energy
    E(v, h1, h2) = -b'v - c1'h1 - c2'h2 - v'W1 h1 - h1'W2 h2,
W1 (D, H1), W2 (H1, H2). One run does it all: greedy pretraining of the two modified RBMs
(bottom: p(h1 | v) with 2 W1; top: p(h1 | h2) with 2 W2), then joint training with a
mean-field positive phase and persistent Gibbs chains for the negative phase.

``test/loglik_bound_ais``: the mean-field lower bound on log p(v) (nats) minus log Z by AIS. Given
h1, v and h2 are independent, so the DBM is an RBM between h1 and (v, h2): AIS anneals h1 and
sums v and h2 out analytically.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from dgm_lab.metrics.ais import RBMParams, annealed_importance_sampling, base_rate_bias
from dgm_lab.models.boltzmann.config import DBMConfig
from dgm_lab.models.boltzmann.layer import (
    MIN_GIBBS_BAR,
    RBMLayer,
    bernoulli,
    bernoulli_entropy,
    device_generator,
)
from dgm_lab.models.boltzmann.module import BASE_RATE_EXAMPLES, BoltzmannModule
from dgm_lab.progress import progress


class DBMParams(NamedTuple):
    """W1 (D, H1), W2 (H1, H2), b (D,), c1 (H1,), c2 (H2,)."""

    w1: torch.Tensor
    w2: torch.Tensor
    b: torch.Tensor
    c1: torch.Tensor
    c2: torch.Tensor

    def to(self, dtype: torch.dtype) -> DBMParams:
        return DBMParams(*(t.detach().to(dtype) for t in self))

    def as_rbm(self) -> RBMParams:
        """The same model as an RBM with "visible" h1 and "hidden" (v, h2): same Z."""
        return RBMParams(torch.cat([self.w1.T, self.w2], 1), self.c1, torch.cat([self.b, self.c2]))


def mean_field(p: DBMParams, v: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fully factorized q(h1) q(h2) for one v (B, D): start at the doubled-weight recognition pass,
    then ``steps`` sweeps of the fixed-point equations
        mu1 = sigmoid(v W1 + mu2 W2' + c1),  mu2 = sigmoid(mu1 W2 + c2);
    each sweep does not decrease the bound ``mean_field_bound``. Returns (mu1, mu2) in [0, 1]."""
    visible_input = v @ p.w1
    bottom_up = visible_input + p.c1
    mu1 = torch.sigmoid(bottom_up + visible_input)
    mu2 = torch.sigmoid(mu1 @ p.w2 + p.c2)
    for _ in range(steps):
        mu1 = torch.sigmoid(bottom_up + mu2 @ p.w2.T)
        mu2 = torch.sigmoid(mu1 @ p.w2 + p.c2)
    return mu1, mu2


def mean_field_bound(p: DBMParams, v: torch.Tensor, mu1: torch.Tensor, mu2: torch.Tensor) -> torch.Tensor:
    """E_q[-E(v, h)] + H(q), shape (B,): log p(v) + log Z minus KL(q || p(h | v)) (nats)."""
    expected_neg_energy = (v @ p.b + mu1 @ p.c1 + mu2 @ p.c2 + ((v @ p.w1) * mu1).sum(-1)
                           + ((mu1 @ p.w2) * mu2).sum(-1))
    return expected_neg_energy + bernoulli_entropy(mu1) + bernoulli_entropy(mu2)


class DBM(BoltzmannModule):
    """Two-hidden-layer DBM for binary (or grey-as-probability) images.

    Settings (``DBMConfig``, dgm_lab/models/boltzmann/config.py, checked there):
        layers: [H1, H2], e.g. [500, 1000] as in the paper.
        pretrain_epochs_per_layer: epochs for each modified RBM (bottom, then top); joint
            training runs from epoch 2 * n to the end of the run (0: no pretraining).
        pretrain_cd_k: CD-k of the pretraining RBMs.
        cd_k: Gibbs sweeps the persistent chains advance per joint update.
        num_chains: persistent chains (v, h2); saved in the checkpoint.
        chain_init: where the persistent chains start when joint training begins: "data" (training
            examples and their mean-field h2) or "noise" (v from the batch's pixel means, h2 uniform),
            so that they also visit the states a chain from noise falls into.
        mean_field_steps: fixed-point sweeps per training example; ``mean_field_eval_steps`` at test.
    """

    # Pretraining then joint training: the final model is the model, so keep the last checkpoint.
    default_monitor = ("step", "max")

    settings_class = DBMConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        settings = self.settings
        self.pretrain_epochs, self.pretrain_cd_k = settings.pretrain_epochs_per_layer, settings.pretrain_cd_k
        self.cd_k, self.chain_init = settings.cd_k, settings.chain_init
        self.mean_field_steps, self.mean_field_eval_steps = settings.mean_field_steps, settings.mean_field_eval_steps
        hidden1, hidden2 = settings.layers
        init_std, num_chains = settings.init_std, settings.num_chains
        # The pretraining RBMs share W1, W2, b, c2 with the DBM; layers[1].visible_bias is the top
        # RBM's own h1 bias, averaged into c1 when joint training starts.
        self.layers = nn.ModuleList([RBMLayer(self.num_visible, hidden1, up_factor=2.0, init_std=init_std),
                                     RBMLayer(hidden1, hidden2, down_factor=2.0, init_std=init_std)])
        self.register_buffer("chains_visible", torch.zeros(num_chains, self.num_visible))
        self.register_buffer("chains_top", torch.zeros(num_chains, hidden2))
        self.register_buffer("chains_ready", torch.tensor(False))
        self.check_stages()

    def first_layer(self) -> RBMLayer:
        return self.layers[0]

    def params(self) -> DBMParams:
        bottom, top = self.layers
        return DBMParams(bottom.weight, top.weight, bottom.visible_bias, bottom.hidden_bias, top.hidden_bias)

    def stage_starts(self) -> list[int]:
        """Stages 0, 1: pretraining the bottom / top RBM; 2: joint training (until the run ends)."""
        return [0, self.pretrain_epochs, 2 * self.pretrain_epochs]

    @staticmethod
    def hidden1_probs(p: DBMParams, v: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(v @ p.w1 + h2 @ p.w2.T + p.c1)

    # -- training --------------------------------------------------------------------------
    def begin_stage(self, stage: int) -> None:
        if stage == 0:  # visible biases at the data's base rates (Hinton's guide, section 8)
            images = self.train_images(limit=BASE_RATE_EXAMPLES)
            if images is not None:
                self.layers[0].visible_bias.copy_(base_rate_bias(images).float())
        elif stage == 2:  # both RBMs modelled h1: the DBM's h1 bias is the average of their two
            bottom, top = self.layers
            bottom.hidden_bias.copy_(0.5 * (bottom.hidden_bias + top.visible_bias))

    def training_step(self, batch, batch_idx):
        x, _ = batch
        v = x.flatten(1)
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        stage = self.stage()
        if stage < 2:
            data = v if stage == 0 else bernoulli(self.layers[0].hidden_probs(v).detach())
            out = self.layers[stage].contrastive_divergence(data, self.pretrain_cd_k)
            loss = out["loss"]
        else:
            loss = self.joint_gradients(v)
            self.accumulate_epoch_mean("train/recon_error", loss)
        optimizer.step()
        self.log_train_step({"train/loss": loss, "train/stage": torch.tensor(float(stage))}, prog_bar_key="train/loss")
        return loss

    @torch.no_grad()
    def start_chains(self, v: torch.Tensor, mu2: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Start the persistent chains from the first joint batch v (B, D) with mean-field mu2 (B, H2):
        at its examples ("data"), or at noise with its pixel means and uniform h2 ("noise")."""
        if self.chain_init == "data":
            index = torch.arange(len(self.chains_visible), device=v.device) % len(v)
            self.chains_visible.copy_(v[index])
            self.chains_top.copy_(bernoulli(mu2[index], generator))
        else:
            self.chains_visible.copy_(bernoulli(v.mean(0).expand_as(self.chains_visible), generator))
            self.chains_top.copy_(bernoulli(torch.full_like(self.chains_top, 0.5), generator))
        self.chains_ready.fill_(True)

    @torch.no_grad()
    def joint_gradients(self, v: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Write -(data - model) statistics into ``.grad``: data terms at the mean-field q(h | v),
        model terms at the persistent chains after ``cd_k`` Gibbs sweeps, with h1 at p(h1 | v, h2)
        (Rao-Blackwellized). Returns the mean-field reconstruction error (monitoring)."""
        p = self.params()
        mu1, mu2 = mean_field(p, v, self.mean_field_steps)
        if not bool(self.chains_ready):
            self.start_chains(v, mu2, generator)
        chain_v, chain_h2 = self.chains_visible, self.chains_top
        for _ in range(self.cd_k):
            chain_h1 = bernoulli(self.hidden1_probs(p, chain_v, chain_h2), generator)
            chain_v = bernoulli(torch.sigmoid(chain_h1 @ p.w1.T + p.b), generator)
            chain_h2 = bernoulli(torch.sigmoid(chain_h1 @ p.w2 + p.c2), generator)
        self.chains_visible.copy_(chain_v)
        self.chains_top.copy_(chain_h2)
        model_h1 = self.hidden1_probs(p, chain_v, chain_h2)
        n, m = len(v), len(chain_v)
        p.w1.grad = -(v.T @ mu1 / n - chain_v.T @ model_h1 / m)
        p.w2.grad = -(mu1.T @ mu2 / n - model_h1.T @ chain_h2 / m)
        p.b.grad = -(v.mean(0) - chain_v.mean(0))
        p.c1.grad = -(mu1.mean(0) - model_h1.mean(0))
        p.c2.grad = -(mu2.mean(0) - chain_h2.mean(0))
        return (v - torch.sigmoid(mu1 @ p.w1.T + p.b)).pow(2).sum(-1).mean()

    # -- monitoring ------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[v | mu1] after mean-field inference; images (N, C, H, W) in [0, 1]."""
        p = self.params()
        mu1, _ = mean_field(p, x.flatten(1), self.mean_field_steps)
        return torch.sigmoid(mu1 @ p.w1.T + p.b).reshape(-1, *self.data_shape)

    # -- test: mean-field bound with log Z by AIS ------------------------------------------
    @torch.no_grad()
    def bound_without_log_z(self, x: torch.Tensor) -> torch.Tensor:
        """Mean-field bound plus log Z, float64 (B,), with ``mean_field_eval_steps`` sweeps."""
        p = self.params().to(torch.float64)
        v = x.flatten(1).double()
        return mean_field_bound(p, v, *mean_field(p, v, self.mean_field_eval_steps))

    def ais_base(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Base-rate model for AIS over h1 with (v, h2) summed out: h1, v and h2 each at the rates
        the training images give them (mean field for h1 and h2). With uniform (v, h2) instead, the
        runs start with half the top layer on, a region a trained DBM keeps empty, and may never
        leave it (measured: a log Z certainly too low, experiments/boltzmann/RESULTS.md)."""
        images = self.train_images(limit=BASE_RATE_EXAMPLES)
        if images is None:
            return torch.zeros(self.layers[0].weight.shape[1], dtype=torch.float64), None
        mu1, mu2 = mean_field(self.params(), images, self.mean_field_steps)
        return base_rate_bias(mu1), torch.cat([base_rate_bias(images), base_rate_bias(mu2)])

    def on_test_epoch_start(self) -> None:
        base, hidden_base = self.ais_base()
        self.ais = annealed_importance_sampling(self.params().as_rbm(), base, self.ais_num_betas, self.ais_num_runs,
                                                base_hidden_bias=hidden_base)
        self.log_ais_result(self.ais)

    def test_step(self, batch, batch_idx):
        x, _ = batch
        self.log_ais_estimate("test/loglik_bound_ais", self.bound_without_log_z(x), self.ais)

    # -- generation ------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None, labels=None) -> torch.Tensor:
        """``sample_gibbs_steps`` sweeps h1 | (v, h2) then (v, h2) | h1 from uniform noise in v and an
        empty top layer; returns E[v | h1] of the last sweep, images (N, C, H, W) in [0, 1]. A trained
        DBM keeps h2 sparse: chains started with half of it on stay in a metastable blur (measured)."""
        generator = device_generator(generator, self.device)
        p = self.params()
        v = bernoulli(torch.full((num_samples, self.num_visible), 0.5, device=self.device), generator)
        h2 = torch.zeros(num_samples, p.c2.shape[0], device=self.device)
        for _ in progress(range(self.sample_gibbs_steps), desc="Gibbs sweeps", unit="sweep", min_total=MIN_GIBBS_BAR):
            h1 = bernoulli(self.hidden1_probs(p, v, h2), generator)
            mean = torch.sigmoid(h1 @ p.w1.T + p.b)
            v = bernoulli(mean, generator)
            h2 = bernoulli(torch.sigmoid(h1 @ p.w2 + p.c2), generator)
        return mean.reshape(-1, *self.data_shape)
