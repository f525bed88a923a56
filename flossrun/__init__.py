"""flossrun: gradient flossing experiments (Engelken, NeurIPS 2023).

The library core: tasks (:mod:`flossrun.tasks`), RNN ensembles (:mod:`flossrun.models`),
the differentiable Lyapunov engine (:mod:`flossrun.lyapunov`), Jacobian diagnostics
(:mod:`flossrun.diagnostics`) and the flossing loss (:mod:`flossrun.flossing`).
"""

from flossrun.flossing import flossing_loss
from flossrun.lyapunov import LyapunovResult, lyapunov_spectrum
from flossrun.models import VanillaRNN
from flossrun.tasks import DelayedParity, make_task

__all__ = [
    "DelayedParity",
    "LyapunovResult",
    "VanillaRNN",
    "flossing_loss",
    "lyapunov_spectrum",
    "make_task",
]
__version__ = "0.1.0"
