"""Recurrent network ensembles with a leading realization axis ``R``."""

from flossrun.models.base import Dynamics, bmv
from flossrun.models.vanilla import VanillaRNN, dtanh

__all__ = ["Dynamics", "VanillaRNN", "bmv", "dtanh"]
