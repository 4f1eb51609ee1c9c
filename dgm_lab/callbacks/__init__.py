"""Lightning callbacks of ``conf/callbacks`` (checkpoints and the progress bar come from Lightning):
sample grids, mode coverage on 2-D mixtures, weight filters of Boltzmann machines, the NaN guard.
Each is inert for models and data it does not apply to; the sample-quality evaluator
(``sample_quality.SampleQuality``) is added by the run from the ``metrics`` group."""

from dgm_lab.callbacks.divergence import DivergenceGuard
from dgm_lab.callbacks.modes import ModeCoverage
from dgm_lab.callbacks.samples import ImageSamples
from dgm_lab.callbacks.weight_filters import WeightFilters

__all__ = ["DivergenceGuard", "ImageSamples", "ModeCoverage", "WeightFilters"]
