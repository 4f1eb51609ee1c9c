"""Boltzmann machines: the RBM, the deep belief net and the deep Boltzmann machine, the Lightning
base they share and the math of one RBM layer (``RBMLayer``) they are built from.

The classes are imported on first use (``dgm_lab.lazy``): ``config.py`` loads without torch."""

from dgm_lab.lazy import lazy_exports

_EXPORTS = {"RBM": "rbm", "DBN": "dbn", "DBM": "dbm", "DBMParams": "dbm", "RBMLayer": "layer",
            "BoltzmannModule": "module"}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
