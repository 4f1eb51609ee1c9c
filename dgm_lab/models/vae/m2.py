"""M2, the semi-supervised VAE of Kingma, Rezende, Mohamed & Welling (2014), and the stacked M1+M2.

Generative model p(y) p(z) p(x | y, z) with p(y) uniform over K classes and p(z) = N(0, I);
inference q(y | x) (the classifier) and q(z | x, y). Per example, in nats:

* labelled:   L(x, y) = E_q(z|x,y)[log p(x | y, z)] + log p(y) - KL(q(z | x, y) || p(z))
* unlabelled: U(x) = sum_y q(y | x) L(x, y) + H(q(y | x)), a bound on log p(x) (every class summed)

The paper's objective is J^alpha = sum_labelled L + sum_unlabelled U - alpha E_labelled[log q(y|x)]
with alpha = 0.1 N (N training examples). Divided by N, a batch of B rows estimates it as

    loss = -(sum of L over labelled rows + sum of U over unlabelled rows) / B
           + model.alpha * mean over labelled rows of -log q(y | x),

so ``model.alpha`` = (paper's alpha) / N: 0.1 gives the paper's setting. Labels come in the batch
(``dgm_lab.data.contract``: ``y == UNLABELED`` rows are unlabelled; ``data.num_labeled``,
``data.labeled_per_batch``); with every label known M2 is a supervised conditional VAE with a
classifier. Validation and test report the classification error of q(y | x), ``{split}/error``,
and the bound U(x) as ``{split}/elbo`` (the labels unused), so it is comparable with a VAE's.

M1+M2 (``model.m1_ckpt``): M2 models the latent codes z1 of a trained VAE (M1), whose encoder and
decoder are frozen: samples z1 ~ q(z1 | x) while training (``model.m1_codes``), the posterior mean
for evaluation. ``elbo`` is then a bound on the density of the codes, not of the images. Only M1's
active units are modelled (``model.m1_units=active``, as the authors' code did): a unit whose
posterior ignores x carries no information, and its sampled code is N(0, 1) noise that M2's
Gaussian would spend capacity on.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dgm_lab.data.contract import labeled_mask
from dgm_lab.errors import require
from dgm_lab.metrics.likelihood import (
    active_unit_mask,
    bits_per_dim,
    gaussian_log_density,
    kl_to_standard_normal,
    standard_normal_log_density,
)
from dgm_lab.models.vae.config import M2Config
from dgm_lab.models.vae.likelihood_module import LikelihoodModule
from dgm_lab.models.vae.likelihoods import Bernoulli
from dgm_lab.models.vae.vae import LOG_VAR_RANGE, VAE


def unlabelled_bound(log_q: torch.Tensor, class_bounds: torch.Tensor) -> torch.Tensor:
    """U(x) = sum_y q(y|x) (L(x, y) - log q(y|x)) from log q (B, K) and L(x, k) (B, K); shape (B,)."""
    return (log_q.exp() * (class_bounds - log_q)).sum(-1)


def load_m1(path: str, data_shape: tuple[int, ...]) -> VAE:
    """The frozen VAE of a run folder or checkpoint (``weights_only=True``), checked against the data."""
    from dgm_lab.checkpoints import load_checkpoint, rebuild_model, resolve_checkpoint

    checkpoint_file, _ = resolve_checkpoint(str(Path(path)))
    m1 = rebuild_model(load_checkpoint(checkpoint_file))
    require(isinstance(m1, VAE), f"model.m1_ckpt={path} holds a {type(m1).__name__}; M1+M2 needs a VAE run "
                                 "(model=vae, conv_vae, beta_vae or iwae).")
    require(tuple(m1.data_shape) == tuple(data_shape),
            f"model.m1_ckpt={path} was trained on data of shape {list(m1.data_shape)}, this data has "
            f"{list(data_shape)}; train M1 on the same dataset.")
    return m1.eval().requires_grad_(False)


# M1 samples that decide which of its units are active (``active_code_units``)
ACTIVITY_PROBES = 2000


@torch.no_grad()
def active_code_units(m1: VAE, num_probes: int = ACTIVITY_PROBES) -> torch.Tensor:
    """Indices of M1's latent units whose posterior mean varies across inputs: Var_x E_q[z|x] > 0.01,
    the active-unit criterion of Burda et al. (2015), which the authors of M1+M2 applied as std > 0.1.

    The inputs are M1's own samples drawn with a fixed seed rather than training images, so the
    model rebuilt from a checkpoint (``dgm-eval``, ``dgm-sample``) finds the same units without data.
    """
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(num_probes, m1.latent_dim, generator=generator)
    x = m1.likelihood.mean(m1.decode(z.to(m1.device))).cpu()
    if isinstance(m1.likelihood, Bernoulli):
        x = torch.bernoulli(x, generator=generator)  # M1 was trained on binary images
    means, _ = m1.encode(x.to(m1.device))
    return torch.nonzero(active_unit_mask(means)).flatten().cpu()


class M2(LikelihoodModule):
    """Semi-supervised VAE (Kingma et al. 2014, M2), or M1+M2 with ``m1_ckpt``.

    Args:
        encoder: factory ``(in_shape, out_shape) -> nn.Module``: [x flattened, one-hot y] -> 2 * latent_dim.
        decoder: factory: [z, one-hot y] -> the likelihood's parameters of x (or of M1's codes).
        classifier: factory: x (or M1's code) -> K logits of q(y | x).
        likelihood: p(x | y, z) (``Bernoulli`` on binarized images; ``Gaussian`` for M1's codes).

    Settings (``M2Config``, dgm_lab/models/vae/config.py): ``latent_dim``, ``alpha``, ``m1_ckpt``, ``m1_codes``,
    ``m1_units``.
    """

    settings_class = M2Config
    conditional = True  # sample() draws the classes it is given
    default_monitor = ("val/error", "min")

    def __init__(self, encoder: Callable, decoder: Callable, classifier: Callable, likelihood: nn.Module, **kwargs):
        settings = self.settings_class.take(kwargs)
        super().__init__(**kwargs)
        self.settings = settings
        self.save_hyperparameters(dataclasses.asdict(settings), logger=False)
        require(self.num_classes >= 2, f"model=m2 needs labelled data with 2 or more classes, this data has "
                                       f"{self.num_classes}.")
        self.latent_dim, self.alpha = settings.latent_dim, settings.alpha
        self.likelihood = likelihood
        self.m1: VAE | None = None
        code_shape = self.data_shape
        if settings.m1_ckpt:
            require(not isinstance(likelihood, Bernoulli),
                    "M1+M2 models real-valued latent codes: set model.likelihood._target_=dgm_lab.models.vae.Gaussian "
                    "(or use experiment=m1m2_mnist100).")
            self.m1 = load_m1(settings.m1_ckpt, self.data_shape)
            units = (active_code_units(self.m1) if settings.m1_units == "active"
                     else torch.arange(self.m1.latent_dim))
            require(len(units) > 0, f"the M1 of model.m1_ckpt={settings.m1_ckpt} has no active latent unit (its "
                                    "posterior ignores the input): train it longer, or set model.m1_units=all.")
            # not saved with the weights: recomputed identically from M1 whenever the model is built
            self.register_buffer("code_units", units, persistent=False)
            self.diagnostics["m1_units"] = units.tolist()
            code_shape = (len(units),)
        self.code_shape = tuple(code_shape)
        k = self.num_classes
        channels, *rest = self.code_shape
        self.classifier = classifier(self.code_shape, (k,))
        self.encoder = encoder((math.prod(self.code_shape) + k,), (2 * self.latent_dim,))
        self.decoder = decoder((self.latent_dim + k,), (likelihood.decoder_channels(channels), *rest))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.m1 is not None:
            self.m1.eval()  # frozen: never in training mode
        return self

    def optimized_parameters(self) -> dict:
        return {"optimizer": [p for p in self.parameters() if p.requires_grad]}  # M1 stays frozen

    # -- model -------------------------------------------------------------------------------
    def codes(self, x: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """What M2 models: x itself, or M1's code of x (a sample of q(z1 | x), or its mean)."""
        if self.m1 is None:
            return x
        with torch.no_grad():
            mean, log_var = self.m1.encode(x)
        mean, log_var = mean[:, self.code_units], log_var[:, self.code_units]
        return mean + torch.randn_like(mean) * torch.exp(0.5 * log_var) if sample else mean

    def classifier_log_probs(self, codes: torch.Tensor) -> torch.Tensor:
        """log q(y | x), shape (B, K), in float32."""
        return F.log_softmax(self.classifier(codes).float(), dim=-1)

    def labelled_bound(self, codes: torch.Tensor, labels: torch.Tensor,
                       noise: torch.Tensor | None = None) -> torch.Tensor:
        """L(x, y) in nats, shape (B,), with one z = mean + std * noise (fresh N(0, I) noise unless given)."""
        onehot = F.one_hot(labels, self.num_classes).to(codes.dtype)
        mean, log_var = self.encoder(torch.cat([codes.flatten(1), onehot], dim=1)).float().chunk(2, dim=-1)
        log_var = log_var.clamp(*LOG_VAR_RANGE)
        noise = torch.randn_like(mean) if noise is None else noise
        z = mean + noise * torch.exp(0.5 * log_var)
        recon = self.likelihood.log_prob(self.decoder(torch.cat([z, onehot.float()], dim=1)), codes)
        return recon - kl_to_standard_normal(mean, log_var).sum(-1) - math.log(self.num_classes)

    def class_bounds(self, codes: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """L(x, k) for every example and class, shape (B, K); ``noise`` (B, K, latent_dim) if given."""
        n, k = codes.shape[0], self.num_classes
        labels = torch.arange(k, device=codes.device).repeat(n)
        flat_noise = None if noise is None else noise.reshape(n * k, self.latent_dim)
        return self.labelled_bound(codes.repeat_interleave(k, dim=0), labels, flat_noise).view(n, k)

    def batch_loss(self, codes: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The batch estimate of -J^alpha / N (module docstring) and its parts."""
        known = labeled_mask(labels)
        log_q = self.classifier_log_probs(codes)
        bound_sum = codes.new_zeros((), dtype=torch.float32)
        classification = codes.new_zeros((), dtype=torch.float32)
        if known.any():
            bound_sum = bound_sum + self.labelled_bound(codes[known], labels[known]).sum()
            classification = F.nll_loss(log_q[known], labels[known])
        if (~known).any():
            bound_sum = bound_sum + unlabelled_bound(log_q[~known], self.class_bounds(codes[~known])).sum()
        bound = bound_sum / codes.shape[0]
        return {"loss": -bound + self.alpha * classification, "bound": bound, "classification": classification}

    # -- training ---------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.batch_loss(self.codes(x, sample=self.settings.m1_codes == "sample"), y)
        self.log_train_step({"train/loss": out["loss"]}, prog_bar_key="train/loss")
        self.accumulate_epoch_mean("train/elbo", out["bound"].detach())
        self.accumulate_epoch_mean("train/classification_loss", out["classification"].detach())
        return out["loss"]

    # -- evaluation -------------------------------------------------------------------------
    def _evaluate(self, batch, split: str) -> None:
        x, y = batch
        codes = self.codes(x)
        log_q = self.classifier_log_probs(codes)
        elbo = unlabelled_bound(log_q, self.class_bounds(codes)).mean()
        known = labeled_mask(y)
        n = x.shape[0]
        metrics = {f"{split}/elbo": elbo}
        if self.m1 is None:
            metrics[f"{split}/bpd"] = bits_per_dim(-elbo, self.num_dims)
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        if known.any():
            wrong = (log_q[known].argmax(-1) != y[known]).float().mean()
            self.log(f"{split}/error", wrong, on_step=False, on_epoch=True, batch_size=int(known.sum()), sync_dist=True)
        if split == "test" and self.m1 is None:
            log_px = self.importance_weighted_log_px(x, self.iwae_k)
            self.log_dict({"test/nll_iwae": -log_px.mean().float(),
                           "test/bpd_iwae": bits_per_dim(-log_px.mean().float(), self.num_dims)},
                          on_step=False, on_epoch=True, batch_size=n, sync_dist=True)

    def log_importance_weights(self, x: torch.Tensor, num_samples: int,
                               labels: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x, y_i, z_i) - log q(y_i, z_i | x) for y_i ~ q(y | x), z_i ~ q(z | x, y_i); shape (n, B).
        ``labels`` are not used: the estimate of the marginal log p(x) sums over the classes."""
        n, k = x.shape[0], self.num_classes
        log_q_y = self.classifier_log_probs(x)
        y = torch.multinomial(log_q_y.exp(), num_samples, replacement=True).T  # (num_samples, B)
        onehot = F.one_hot(y.reshape(-1), k).float()
        x_rep = x.unsqueeze(0).expand(num_samples, *x.shape).reshape(-1, *x.shape[1:])
        mean, log_var = self.encoder(torch.cat([x_rep.flatten(1), onehot], dim=1)).float().chunk(2, dim=-1)
        log_var = log_var.clamp(*LOG_VAR_RANGE)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        log_lik = self.likelihood.log_prob_repeated(self.decoder(torch.cat([z, onehot], dim=1)), x, num_samples)
        log_p = log_lik + standard_normal_log_density(z) - math.log(k)
        log_q = gaussian_log_density(z, mean, log_var) + log_q_y.gather(1, y.T).T.reshape(-1)
        return (log_p - log_q).view(num_samples, n)

    # -- generation --------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images (N, C, H, W) in [0, 1] of classes ``labels`` (default: the cycle 0, 1, ..., K-1, 0, ...)."""
        labels = torch.arange(num_samples) % self.num_classes if labels is None else torch.as_tensor(labels)
        require(bool(((labels >= 0) & (labels < self.num_classes)).all()),
                f"labels must be classes 0..{self.num_classes - 1}, got {labels.unique().tolist()}.")
        z = torch.randn(num_samples, self.latent_dim, generator=generator).to(self.device)
        onehot = F.one_hot(labels.long().to(self.device), self.num_classes).float()
        params = self.decoder(torch.cat([z, onehot], dim=1))
        if self.m1 is None:
            return self.likelihood.mean(params)
        code_mean = params.chunk(2, dim=1)[0]  # the Gaussian's mean, unclamped: codes are not in [0, 1]
        z1 = code_mean.new_zeros(num_samples, self.m1.latent_dim)  # inactive units: their prior mean, 0
        z1[:, self.code_units] = code_mean
        return self.m1.likelihood.mean(self.m1.decode(z1))
