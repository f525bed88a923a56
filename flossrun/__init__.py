"""flossrun: gradient flossing experiments (Engelken, NeurIPS 2023).

From Python (:mod:`flossrun.api`; README "Use it from Python")::

    import flossrun
    net = flossrun.vanilla(N=80, g=3.0, realizations=4, seed=0)
    lam = flossrun.spectrum(net, k=10)                     # [R, k] nats/step
    flossrun.floss(net, k=10, target=0.0, epochs=200)      # in place; λ1 per epoch
    flossrun.plots.spectrum_figure(lam)                    # a matplotlib Figure

The library core: tasks (:mod:`flossrun.tasks`), RNN ensembles (:mod:`flossrun.models`),
the differentiable Lyapunov engine (:mod:`flossrun.lyapunov`), Jacobian diagnostics
(:mod:`flossrun.diagnostics`) and the flossing loss (:mod:`flossrun.flossing`).
"""

from flossrun.api import build, drive, floss, spectrum, vanilla
from flossrun.flossing import flossing_loss
from flossrun.lyapunov import LyapunovResult, lyapunov_spectrum
from flossrun.models import MODELS, RecurrentEnsemble, VanillaRNN, build_model
from flossrun.models.gru import GRU
from flossrun.models.lstm import LSTM
from flossrun.models.orthogonal import OrthogonalRNN
from flossrun.models.stable import StableRNN
from flossrun.models.stable_lstm import StableLSTM
from flossrun.provenance import flossrun_version
from flossrun.tasks import DelayedParity, build_task, make_task

__all__ = [
    "GRU",
    "LSTM",
    "MODELS",
    "DelayedParity",
    "LyapunovResult",
    "OrthogonalRNN",
    "RecurrentEnsemble",
    "StableLSTM",
    "StableRNN",
    "VanillaRNN",
    "build",
    "build_model",
    "build_task",
    "drive",
    "floss",
    "flossing_loss",
    "lyapunov_spectrum",
    "make_task",
    "plots",
    "spectrum",
    "vanilla",
]
__version__ = flossrun_version()  # the installed distribution's (importlib.metadata)


def __getattr__(name: str):
    """``flossrun.plots`` on first use (matplotlib is imported only when plotting)."""
    if name == "plots":
        import importlib

        return importlib.import_module("flossrun.plots")
    raise AttributeError(f"module 'flossrun' has no attribute {name!r}")
