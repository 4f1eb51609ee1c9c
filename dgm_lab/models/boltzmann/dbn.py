"""Deep belief network (Hinton, Osindero & Teh 2006): a stack of RBMs trained greedily, one layer
after the other inside one run, each on the hidden activities of the trained layers below.

The top RBM is an undirected prior p(h_{L-1}); the layers below are directed, p(h_{l-1} | h_l)
from RBM l's visible conditional. ``test/loglik_bound_ais`` is the variational lower bound on
log p(v) (nats) with q(h_l | h_{l-1}) from the RBMs' hidden conditionals and log Z of the top
RBM by AIS (Salakhutdinov & Murray 2008, section 4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dgm_lab.metrics.ais import annealed_importance_sampling, base_rate_bias, unnormalized_log_prob
from dgm_lab.models.boltzmann.config import DBNConfig
from dgm_lab.models.boltzmann.layer import RBMLayer, bernoulli, bernoulli_entropy, device_generator
from dgm_lab.models.boltzmann.module import BASE_RATE_EXAMPLES, BoltzmannModule


class DBN(BoltzmannModule):
    """Greedily trained stack of Bernoulli RBMs.

    Settings (``DBNConfig``, dgm_lab/models/boltzmann/config.py, checked there):
        layers: hidden layer sizes, bottom to top, e.g. [500, 2000]: RBMs D-500 and 500-2000.
        epochs_per_layer: layer l trains in epochs [l * n, (l + 1) * n); the top layer keeps
            training until the run ends (trainer.max_epochs / max_time).
        cd_k, persistent, num_chains, init_std: as for ``model=rbm``, for every layer.
        upward: "sample" (binary states, as in the papers) or "mean" (probabilities) as the data
            of the layer above.
        bound_samples: draws from q(h | v) per test example for the lower bound (its Monte Carlo
            noise shrinks as 1/sqrt(bound_samples); the bound itself does not change).
        init_from_below: start each upper RBM as the prior implied by the RBM below when it has
            at least as many hidden units as that RBM has visible units (see ``begin_stage``).
    """

    # Greedy training: the final stack is the model, so the last checkpoint is the best one.
    default_monitor = ("step", "max")

    settings_class = DBNConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        settings = self.settings
        self.epochs_per_layer, self.cd_k, self.persistent = settings.epochs_per_layer, settings.cd_k, settings.persistent
        self.upward, self.bound_samples = settings.upward, settings.bound_samples
        self.init_from_below = settings.init_from_below
        sizes = [self.num_visible, *settings.layers]
        chains = settings.num_chains if settings.persistent else 0
        self.layers = nn.ModuleList(
            RBMLayer(sizes[i], sizes[i + 1], "bernoulli", chains, init_std=settings.init_std)
            for i in range(len(settings.layers))
        )
        self.check_stages()

    def first_layer(self) -> RBMLayer:
        return self.layers[0]

    def stage_starts(self) -> list[int]:
        """Layer l trains from epoch l * epochs_per_layer; the top one until the run ends."""
        return [index * self.epochs_per_layer for index in range(len(self.layers))]

    def trained_depth(self) -> int:
        """Layers whose training has started. Reconstructions (``val/recon_error``) and samples use
        only these, so they follow the layer in training, not the untrained ones above it."""
        return max(int(self.started_stage), 0) + 1

    def up(self, v: torch.Tensor, depth: int, sample: bool, generator=None) -> torch.Tensor:
        """Activities of layer ``depth`` (0 = the data) from ``v`` (B, D) through the RBMs below."""
        for layer in self.layers[:depth]:
            probs = layer.hidden_probs(v)
            v = bernoulli(probs, generator) if sample else probs
        return v

    # -- greedy training -------------------------------------------------------------------
    @torch.no_grad()
    def begin_stage(self, index: int) -> None:
        """When layer ``index`` starts training. With ``init_from_below`` and room for it (H_l >=
        the layer below's visible size), it starts as the prior the layer below already implies:
        RBM l-1's marginal over its hidden units is an RBM with weights W_{l-1}', visible biases
        c_{l-1} and hidden biases b_{l-1} (Hinton, Osindero & Teh 2006: the bound then starts at
        the lower model's log-likelihood); extra hidden units keep their small random weights.
        Otherwise its visible biases start at the base rates of its input (Hinton's guide)."""
        layer = self.layers[index]
        below = self.layers[index - 1] if index > 0 else None
        if self.init_from_below and below is not None and layer.weight.shape[1] >= below.weight.shape[0]:
            num_inputs = below.weight.shape[0]
            layer.weight[:, :num_inputs] = below.weight.T
            layer.hidden_bias[:num_inputs] = below.visible_bias
            layer.visible_bias.copy_(below.hidden_bias)
        else:
            images = self.train_images(limit=BASE_RATE_EXAMPLES)
            if images is not None:
                layer.visible_bias.copy_(base_rate_bias(self.up(images, index, sample=False)).float())

    def training_step(self, batch, batch_idx):
        x, _ = batch
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)  # frozen layers get no update (not even weight decay)
        index = self.stage()
        with torch.no_grad():
            v = self.up(x.flatten(1), index, sample=self.upward == "sample")
        out = self.layers[index].contrastive_divergence(v, self.cd_k, self.persistent)
        optimizer.step()
        self.log_train_step({"train/free_energy_diff": out["loss"], "train/layer": torch.tensor(float(index))},
                            prog_bar_key="train/free_energy_diff")
        if out["recon"] is not None:
            self.accumulate_epoch_mean(f"train/layer{index}_recon_error", (v - out["recon"]).pow(2).sum(-1).mean())
        return out["loss"]

    # -- monitoring ------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic pass up the layers trained so far and back down; images (N, C, H, W) in [0, 1]."""
        depth = self.trained_depth()
        h = self.up(x.flatten(1), depth, sample=False)
        for layer in reversed(self.layers[:depth]):
            h = layer.visible_mean(h)
        return h.reshape(-1, *self.data_shape)

    # -- test: lower bound with log Z of the top RBM by AIS --------------------------------
    @torch.no_grad()
    def bound_without_log_z(self, v: torch.Tensor, num_samples: int, generator=None) -> torch.Tensor:
        """E_q[log p*(v, h_1..h_{L-1}) - log q(h_1..h_{L-1} | v)], float64 (B,), by ``num_samples``
        draws from q; minus log Z of the top RBM it is a lower bound on log p(v) (nats).

        log p* = sum_l log p(h_{l-1} | h_l) + log p*_top(h_{L-1}), the top RBM's hidden units summed
        out; the entropy of each q(h_l | h_{l-1}) is exact given the draw h_{l-1}.
        """
        params = [layer.ais_params().to(torch.float64) for layer in self.layers]
        below = v.flatten(1).double().repeat(num_samples, 1)
        total = torch.zeros(len(below), dtype=torch.float64, device=below.device)
        for p in params[:-1]:
            probs = torch.sigmoid(below @ p.weight + p.hidden_bias)
            h = bernoulli(probs, generator)
            visible_input = h @ p.weight.T + p.visible_bias
            total += (below * visible_input - F.softplus(visible_input)).sum(-1) + bernoulli_entropy(probs)
            below = h
        total += unnormalized_log_prob(params[-1], below)
        return total.view(num_samples, -1).mean(0)

    def on_test_epoch_start(self) -> None:
        depth = len(self.layers) - 1
        images = self.train_images(limit=BASE_RATE_EXAMPLES)
        base = (base_rate_bias(self.up(images, depth, sample=False)) if images is not None
                else torch.zeros(self.layers[-1].weight.shape[0], dtype=torch.float64))
        self.ais = annealed_importance_sampling(self.layers[-1].ais_params(), base, self.ais_num_betas, self.ais_num_runs)
        self.log_ais_result(self.ais)

    def test_step(self, batch, batch_idx):
        x, _ = batch
        self.log_ais_estimate("test/loglik_bound_ais", self.bound_without_log_z(x, self.bound_samples), self.ais)

    # -- generation ------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None, labels=None) -> torch.Tensor:
        """Gibbs chain in the top trained RBM from noise (``sample_gibbs_steps`` sweeps), then one
        directed down pass; returns E[v | h_1], images (N, C, H, W) in [0, 1]."""
        generator = device_generator(generator, self.device)
        depth = self.trained_depth()
        top = self.layers[depth - 1]
        state = bernoulli(torch.full((num_samples, top.weight.shape[0]), 0.5, device=self.device), generator)
        state = top.gibbs_sweeps(state, self.sample_gibbs_steps - 1, generator)
        hidden = bernoulli(top.hidden_probs(state), generator)
        for layer in reversed(self.layers[1:depth]):  # from the top trained RBM down to h_1
            hidden = bernoulli(layer.visible_mean(hidden), generator)
        return self.layers[0].visible_mean(hidden).reshape(-1, *self.data_shape)
