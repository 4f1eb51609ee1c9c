"""Datamodules. Every one holds its splits in memory (``base.TensorDataModule``) and serves float
images in [0, 1] shaped (N, C, H, W), or points (N, 2) for the 2-D mixtures, with integer labels;
what callbacks and metrics may ask of them is ``contract.InMemoryImageData``."""

from dgm_lab.data.base import TensorDataModule
from dgm_lab.data.cifar10 import CIFAR10DataModule
from dgm_lab.data.embedded import DigitsDataModule, MNIST5kDataModule
from dgm_lab.data.image_folder import ImageFolderDataModule
from dgm_lab.data.mnist import FashionMNISTDataModule, MNISTDataModule
from dgm_lab.data.npz import NPZDataModule
from dgm_lab.data.toy2d import Grid25DataModule, Ring8DataModule

__all__ = [
    "TensorDataModule",
    "MNISTDataModule",
    "FashionMNISTDataModule",
    "MNIST5kDataModule",
    "DigitsDataModule",
    "Ring8DataModule",
    "Grid25DataModule",
    "ImageFolderDataModule",
    "CIFAR10DataModule",
    "NPZDataModule",
]
