"""dgm-lab: Hydra + PyTorch Lightning experiments for deep generative models."""

__version__ = "0.1.0"
