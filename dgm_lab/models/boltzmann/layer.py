"""The math of one restricted Boltzmann machine (Smolensky 1986; Hinton 2002): conditionals,
energies, Gibbs sampling and the CD-k / persistent CD (Tieleman 2008) statistics; the building
block of RBM, DBN and DBM.

Shapes: v (B, D) visible, h (B, H) hidden, weight (D, H). Energies and log-probabilities in nats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dgm_lab.errors import require
from dgm_lab.metrics.ais import VISIBLE_TYPES, RBMParams
from dgm_lab.progress import progress

# Chains at least this long (sample grids, dgm-sample: 1,000 sweeps) show a progress bar; CD-k steps do not.
MIN_GIBBS_BAR = 100


def bernoulli(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary sample of ``probs`` as ``uniform < probs``, one uniform per unit in row-major order
    (an explicit draw order, so tests can replay it)."""
    uniform = torch.rand(probs.shape, generator=generator, dtype=probs.dtype, device=probs.device)
    return (uniform < probs).to(probs.dtype)


def device_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """``generator`` if it lives on ``device``, else a generator there seeded from it (reproducible)."""
    if generator is None or generator.device == torch.device(device):
        return generator
    seed = int(torch.randint(2**62, (1,), generator=generator))
    return torch.Generator(device).manual_seed(seed)


def bernoulli_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of independent Bernoulli units, summed over the last dimension."""
    probs = probs.clamp(1e-12, 1 - 1e-12)
    return -(probs * probs.log() + (1 - probs) * torch.log1p(-probs)).sum(-1)


class RBMLayer(nn.Module):
    """One RBM: ``weight`` (D, H), ``visible_bias`` (D,), ``hidden_bias`` (H,).

    Args:
        visible: "bernoulli" (v in {0, 1}; grey levels in [0, 1] are read as probabilities) or
            "gaussian" (real v with unit variance: standardize the data first).
        num_chains: persistent fantasy particles kept in the ``persistent_chains`` buffer (0: CD only).
        up_factor / down_factor: multiply W in p(h | v) / p(v | h). 2 gives the modified RBMs that
            pretrain a DBM (Salakhutdinov & Hinton 2009); the free energy assumes both are 1.
        init_std: weights start N(0, init_std^2) (Hinton's practical guide: 0.01).
    """

    def __init__(self, num_visible: int, num_hidden: int, visible: str = "bernoulli", num_chains: int = 0,
                 up_factor: float = 1.0, down_factor: float = 1.0, init_std: float = 0.01):
        super().__init__()
        require(visible in VISIBLE_TYPES, f"model.visible must be one of {', '.join(VISIBLE_TYPES)}, got {visible!r}.")
        self.visible, self.up_factor, self.down_factor = visible, up_factor, down_factor
        self.weight = nn.Parameter(torch.randn(num_visible, num_hidden) * init_std)
        self.visible_bias = nn.Parameter(torch.zeros(num_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(num_hidden))
        # In the checkpoint, so that PCD resumes with the same fantasy particles.
        self.register_buffer("persistent_chains", torch.zeros(num_chains, num_visible))
        self.register_buffer("chains_ready", torch.tensor(False))

    # -- conditionals ----------------------------------------------------------------------
    def hidden_input(self, v: torch.Tensor) -> torch.Tensor:
        return self.up_factor * (v @ self.weight) + self.hidden_bias

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.hidden_input(v))

    def visible_mean(self, h: torch.Tensor) -> torch.Tensor:
        """E[v | h]: probabilities in [0, 1] (bernoulli) or the Gaussian mean."""
        visible_input = self.down_factor * (h @ self.weight.T) + self.visible_bias
        return torch.sigmoid(visible_input) if self.visible == "bernoulli" else visible_input

    def sample_visible(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mean = self.visible_mean(h)
        if self.visible == "bernoulli":
            return bernoulli(mean, generator)
        return mean + torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)

    def gibbs_sweeps(self, v: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``steps`` sweeps v -> h -> v of block Gibbs sampling (a progress bar for long chains)."""
        for _ in progress(range(steps), desc="Gibbs sweeps", unit="sweep", min_total=MIN_GIBBS_BAR):
            v = self.sample_visible(bernoulli(self.hidden_probs(v), generator), generator)
        return v

    # -- energies --------------------------------------------------------------------------
    def free_energy(self, v: torch.Tensor, hidden_input: torch.Tensor | None = None) -> torch.Tensor:
        """F(v) = -log sum_h exp(-E(v, h)) in nats, shape (B,); p(v) = exp(-F(v)) / Z."""
        hidden_input = self.hidden_input(v) if hidden_input is None else hidden_input
        if self.visible == "bernoulli":
            visible_term = -(v @ self.visible_bias)
        else:
            visible_term = 0.5 * (v - self.visible_bias).pow(2).sum(-1)
        return visible_term - F.softplus(hidden_input).sum(-1)

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """E(v, h) in nats, shape (B,)."""
        visible_term = -(v @ self.visible_bias) if self.visible == "bernoulli" else 0.5 * (v - self.visible_bias).pow(2).sum(-1)
        return visible_term - h @ self.hidden_bias - ((v @ self.weight) * h).sum(-1)

    def pseudo_log_likelihood(self, v: torch.Tensor, chunk: int = 50) -> torch.Tensor:
        """sum_i log p(v_i | v_-i) in nats for binary v (B, D), shape (B,); exact: every unit is
        flipped, using p(v_i | v_-i) = sigmoid(F(v with v_i flipped) - F(v))."""
        require(self.visible == "bernoulli", "the pseudo-log-likelihood needs binary visible units.")
        out = []
        for piece in v.split(chunk):
            hidden_input = self.hidden_input(piece)
            flip = 1 - 2 * piece  # +1 where a 0 becomes 1
            flipped_input = hidden_input.unsqueeze(1) + self.up_factor * flip.unsqueeze(-1) * self.weight
            softplus_change = (F.softplus(flipped_input) - F.softplus(hidden_input).unsqueeze(1)).sum(-1)
            free_energy_change = -self.visible_bias * flip - softplus_change
            out.append(F.logsigmoid(free_energy_change).sum(-1))
        return torch.cat(out)

    def ais_params(self) -> RBMParams:
        return RBMParams(self.weight, self.visible_bias, self.hidden_bias, self.visible)

    # -- learning --------------------------------------------------------------------------
    @torch.no_grad()
    def contrastive_divergence(self, v_data: torch.Tensor, steps: int = 1, persistent: bool = False,
                               generator: torch.Generator | None = None) -> dict[str, torch.Tensor | None]:
        """Write the CD-k (or PCD) estimate of -d log p(v_data)/d theta into the parameters' ``.grad``.

        Positive phase: <v h'> with h at p(h | v_data). Negative phase: <v h'> at the end of
        ``steps`` Gibbs sweeps started from the data (CD) or from the persistent chains (PCD),
        with h at p(h | v) (Rao-Blackwellized). Random draws, in order: CD draws h0 (B, H),
        then v1 (B, D), then alternately h, v; PCD draws h, v per sweep of the chains.

        Returns ``loss`` = mean F(v_data) - mean F(v_model), a scalar whose gradient is exactly
        the update, and ``recon`` = E[v | h0] (B, D) of the first down pass (CD only, else None).
        """
        hidden_data_input = self.hidden_input(v_data)
        h_data = torch.sigmoid(hidden_data_input)
        recon = None
        if persistent:
            if not bool(self.chains_ready):  # start the fantasy particles at training examples
                index = torch.arange(len(self.persistent_chains), device=v_data.device) % len(v_data)
                self.persistent_chains.copy_(v_data[index])
                self.chains_ready.fill_(True)
            v_model = self.gibbs_sweeps(self.persistent_chains, steps, generator)
            self.persistent_chains.copy_(v_model)
        else:
            h = bernoulli(h_data, generator)
            for step in range(steps):
                if step == 0:
                    recon = self.visible_mean(h)
                v_model = self.sample_visible(h, generator)
                if step < steps - 1:
                    h = bernoulli(self.hidden_probs(v_model), generator)
        hidden_model_input = self.hidden_input(v_model)
        h_model = torch.sigmoid(hidden_model_input)
        n, m = len(v_data), len(v_model)
        self.weight.grad = -(v_data.T @ h_data / n - v_model.T @ h_model / m)
        self.visible_bias.grad = -(v_data.mean(0) - v_model.mean(0))
        self.hidden_bias.grad = -(h_data.mean(0) - h_model.mean(0))
        loss = self.free_energy(v_data, hidden_data_input).mean() - self.free_energy(v_model, hidden_model_input).mean()
        return {"loss": loss, "recon": recon}
