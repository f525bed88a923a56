"""Recurrent network ensembles with a leading realization axis ``R``, behind one seam.

Every module in this package registers its architecture (:func:`flossrun.models.base.register`)
when imported; importing the package imports them all, so a new architecture is one new file
here plus ``configs/model/<name>.yaml``. ``MODELS`` maps ``model=`` names to their config and
class; :func:`build_model` builds one from its config fields.
"""

from flossrun.models.base import (
    MODELS,
    Dynamics,
    ModelConfig,
    RecurrentEnsemble,
    bmv,
    build_model,
    model_config,
)
from flossrun.models.vanilla import VanillaRNN, dtanh
from flossrun.registry import import_modules

import_modules(__name__, __path__)

__all__ = [
    "MODELS",
    "Dynamics",
    "ModelConfig",
    "RecurrentEnsemble",
    "VanillaRNN",
    "bmv",
    "build_model",
    "dtanh",
    "model_config",
]
