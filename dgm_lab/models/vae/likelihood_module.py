"""Shared evaluation for models with a tractable bound on log p(x): ELBO, bits/dim, IWAE NLL.

Subclasses implement ``elbo_terms(x, labels) -> dict`` with per-example tensors ``elbo``, ``recon``
(expected log-likelihood, nats), ``kl`` (nats) and optionally ``posterior_mean`` (B, D) and
``kl_per_dim`` (B, D); and ``log_importance_weights(x, n, labels) -> (n, B)`` for the IWAE estimate.
``labels`` (B,) are the batch's labels: class-conditional models bound log p(x | y), others ignore them.
"""

from __future__ import annotations

import math

import torch

from dgm_lab.metrics.likelihood import (
    active_units,
    bits_per_dim,
    importance_weighted_log_likelihood,
)
from dgm_lab.models.base import GenerativeModule
from dgm_lab.settings import EvaluationSettings


class LikelihoodModule(GenerativeModule):
    """Base of VAEs and other models evaluated by likelihood.

    Args:
        evaluation: ``{"iwae_k": int, "iwae_batch": int}``; ``iwae_k`` importance samples per test
            example for ``test/nll_iwae``, drawn in chunks of about ``iwae_batch`` decoder passes.
    """

    default_monitor = ("val/elbo", "max")

    def __init__(self, *, evaluation: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        evaluation = EvaluationSettings.from_config(evaluation)  # checked there, once
        self.iwae_k, self.iwae_batch = evaluation.iwae_k, evaluation.iwae_batch
        self.num_dims = math.prod(self.data_shape)
        self._posterior_means: list[torch.Tensor] = []
        self._kl_dim_sum: torch.Tensor | None = None

    # -- to implement ----------------------------------------------------------------------
    def elbo_terms(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def log_importance_weights(self, x: torch.Tensor, num_samples: int,
                               labels: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    # -- evaluation ------------------------------------------------------------------------
    def _evaluate(self, batch, split: str) -> None:
        x, y = batch
        terms = self.elbo_terms(x, y)
        n = x.shape[0]
        elbo = terms["elbo"].mean()
        self.log_dict(
            {f"{split}/elbo": elbo, f"{split}/bpd": bits_per_dim(-elbo, self.num_dims),
             f"{split}/recon": terms["recon"].mean(), f"{split}/kl": terms["kl"].mean()},
            on_step=False, on_epoch=True, batch_size=n, sync_dist=True,
        )
        if "posterior_mean" in terms:
            self._posterior_means.append(terms["posterior_mean"].detach())
            kl_sum = terms["kl_per_dim"].detach().sum(0)
            self._kl_dim_sum = kl_sum if self._kl_dim_sum is None else self._kl_dim_sum + kl_sum
        if split == "test":
            log_px = self.importance_weighted_log_px(x, self.iwae_k, y)
            self.log_dict({"test/nll_iwae": -log_px.mean().float(),
                           "test/bpd_iwae": bits_per_dim(-log_px.mean().float(), self.num_dims)},
                          on_step=False, on_epoch=True, batch_size=n, sync_dist=True)

    @torch.no_grad()
    def importance_weighted_log_px(self, x: torch.Tensor, num_samples: int,
                                   labels: torch.Tensor | None = None) -> torch.Tensor:
        """IWAE estimate of log p(x) (log p(x | y) for conditional models) in nats for each example of
        ``x`` (shape (B,), float64)."""
        chunk = max(1, self.iwae_batch // x.shape[0])
        return importance_weighted_log_likelihood(lambda n: self.log_importance_weights(x, n, labels), num_samples,
                                                  chunk)

    def _finish_epoch(self, split: str) -> None:
        if not self._posterior_means:
            return
        means = self.all_gather(torch.cat(self._posterior_means)).reshape(-1, self._posterior_means[0].shape[-1])
        kl_sum = self.all_gather(self._kl_dim_sum).reshape(-1, means.shape[-1]).sum(0)
        self.log(f"{split}/active_units", float(active_units(means)), rank_zero_only=True)
        self.diagnostics[f"{split}/kl_per_dim"] = (kl_sum / len(means)).tolist()
        self._posterior_means, self._kl_dim_sum = [], None

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def on_validation_epoch_end(self):
        self._finish_epoch("val")

    def on_test_epoch_end(self):
        self._finish_epoch("test")
        # the protocol behind test/nll_iwae, beside the number in summary.json / eval.json
        self.diagnostics["test/iwae"] = {"iwae_k": self.iwae_k, "iwae_batch": self.iwae_batch}
