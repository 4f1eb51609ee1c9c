"""A classifier whose lower layers are a trained generative model's recognition weights.

* VAE family (``vae``, ``beta_vae``, ``iwae``, ``conv_vae``...): a copy of the encoder; its output's
  first ``latent_dim`` values (the posterior mean) feed the classification layer.
* RBM, DBN, DBM: one ``Linear`` + sigmoid per layer with the machine's weights W (transposed) and
  hidden biases: the hidden units' activation probabilities given the layer below (for a DBM, the
  bottom-up pass without the top-down term). Gaussian-visible RBMs standardize their input first,
  as they were trained.

``features(model, pretrained=False)`` builds the same architecture freshly initialised, so the
random-init baseline differs from the fine-tuned classifier only in its starting weights.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from dgm_lab.errors import ConfigError
from dgm_lab.models.boltzmann import DBM, DBN, RBM
from dgm_lab.models.vae import VAE


class PosteriorMean(nn.Module):
    """A VAE encoder's output cut to its first ``latent_dim`` values (the mean of q(z | x))."""

    def __init__(self, encoder: nn.Module, latent_dim: int):
        super().__init__()
        self.encoder, self.latent_dim = encoder, latent_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[:, : self.latent_dim]


class Standardize(nn.Module):
    """(x - mean) / std on flattened images, fixed (the Gaussian RBM's data statistics)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _sigmoid_layers(layers, pretrained: bool) -> list[nn.Module]:
    out: list[nn.Module] = []
    for layer in layers:
        num_visible, num_hidden = layer.weight.shape
        linear = nn.Linear(num_visible, num_hidden)
        if pretrained:
            with torch.no_grad():
                linear.weight.copy_(layer.weight.detach().T)
                linear.bias.copy_(layer.hidden_bias.detach())
        out += [linear, nn.Sigmoid()]
    return out


def features(model, pretrained: bool = True) -> tuple[nn.Module, int]:
    """(feature network mapping images (N, C, H, W) to (N, F), F) from ``model``'s recognition
    weights (``pretrained``) or the same architecture with PyTorch's default initialisation."""
    if isinstance(model, VAE):
        if getattr(model, "conditional", False):
            raise ConfigError("dgm-finetune needs an encoder of x alone; a conditional VAE's encoder also takes y. "
                              "Fine-tune a vae, beta_vae, iwae or conv_vae run.")
        encoder = copy.deepcopy(model.encoder)
        if not pretrained:
            for module in encoder.modules():
                if hasattr(module, "reset_parameters") and module is not encoder:
                    module.reset_parameters()
        return PosteriorMean(encoder, model.latent_dim), model.latent_dim
    if isinstance(model, RBM):
        front = [Standardize(model.data_mean, model.data_std)] if model.visible == "gaussian" else []
        return nn.Sequential(nn.Flatten(), *front, *_sigmoid_layers([model.rbm], pretrained)), model.rbm.weight.shape[1]
    if isinstance(model, DBN | DBM):
        layers = list(model.layers)
        return nn.Sequential(nn.Flatten(), *_sigmoid_layers(layers, pretrained)), layers[-1].weight.shape[1]
    raise ConfigError(f"dgm-finetune builds classifiers from vae, rbm, dbn or dbm runs; this checkpoint holds a "
                      f"{type(model).__name__}.")


def classifier(model, num_classes: int, pretrained: bool, seed: int) -> nn.Module:
    """Feature network + a linear classification layer, every fresh weight drawn from ``seed``: the
    pretrained and the random-init classifier start with the same classification layer."""
    torch.manual_seed(seed)
    body, width = features(model, pretrained=False)
    head = nn.Linear(width, num_classes)
    if pretrained:
        body, _ = features(model, pretrained=True)
    return nn.Sequential(body, head)
