"""Boltzmann machines: the RBM, the deep belief net and the deep Boltzmann machine, the Lightning
base they share and the math of one RBM layer (``RBMLayer``) they are built from."""

from dgm_lab.models.boltzmann.dbm import DBM, DBMParams
from dgm_lab.models.boltzmann.dbn import DBN
from dgm_lab.models.boltzmann.layer import RBMLayer
from dgm_lab.models.boltzmann.module import BoltzmannModule
from dgm_lab.models.boltzmann.rbm import RBM

__all__ = ["RBM", "DBN", "DBM", "DBMParams", "RBMLayer", "BoltzmannModule"]
