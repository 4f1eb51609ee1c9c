"""Lightning callbacks that every run can switch on from ``conf/callbacks``."""

from dgm_lab.callbacks.divergence import DivergenceGuard
from dgm_lab.callbacks.modes import ModeCoverage
from dgm_lab.callbacks.samples import ImageSamples

__all__ = ["DivergenceGuard", "ImageSamples", "ModeCoverage"]
