"""Analyses of a network's attractors and loss surface (docs/design.md §11), and their configs.

``analysis=`` picks one; each is a config dataclass (fields documented, checked before any
compute against the task and model) registered in ``ANALYSES`` with :func:`register_analysis`:

- ``none``: a plain training run;
- ``orbit``: orbit (bifurcation) diagrams recorded during training (:mod:`.orbit`);
- ``landscape``: loss, steady-state output and λ1 along parameter paths (:mod:`.landscape`),
  of a built-in network (no training) or of the network the run trains;
- ``smoothness``: the cost V_T along a path for several horizons T with its exact first and
  second derivatives, their growth with T and λ1 from a long window (:mod:`.smoothness`);
- ``regions``: a training run on a delayed task, then per network its λ1 (long window), memory
  (error signal and Jacobian conditioning at the longest lag) and the smoothness of its cost
  along a short random path (:mod:`.regions`; the ``regions`` preset).

λ1 everywhere comes from a long window (``lyap_steps`` steps after ``lyap_transient``) and is
classified with a neutral band ε (``neutral_band``, default 0.01 nats/step): contracting
(λ1 ≤ −ε), neutral (|λ1| < ε), chaotic (λ1 ≥ ε). ε is about the spread of a 1000-step
estimate on a limit cycle or a slowly converging orbit; a |λ1| below it is not told from 0.

An analysis declares what it does to a run instead of being recognised by its name:
:meth:`AnalysisConfig.trains` (whether the run trains a network), :meth:`AnalysisConfig.recorder`
(a hook that snapshots during training), ``single_network`` (one realization per run). Which job
runs follows from the config's class: :func:`flossrun.jobs.job_for`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from flossrun.errors import need
from flossrun.provenance import NO_ANALYSIS
from flossrun.registry import Registry
from flossrun.tasks import ConstantInputs, Delayed

NETWORKS = ("chaotic_lstm", "trained")


def check_lyapunov(cfg: Any) -> None:
    """The long-window λ1 keys shared by the analyses: ``lyap_steps``, ``lyap_transient``,
    ``neutral_band``."""
    need(cfg.lyap_steps >= 1, "analysis.lyap_steps", cfg.lyap_steps, "must be >= 1")
    need(cfg.lyap_transient >= 0, "analysis.lyap_transient", cfg.lyap_transient, "must be >= 0")
    need(cfg.neutral_band >= 0, "analysis.neutral_band", cfg.neutral_band, "must be >= 0")


def check_task_kind(cfg: Any, task: Any, kind: type, which: str) -> None:
    """:func:`check_lyapunov`, and that ``task`` is a ``kind`` task (``which``: those tasks,
    for the one-line error)."""
    check_lyapunov(cfg)
    need(isinstance(task, kind), "analysis", cfg.name, f"needs {which}, not task={task.name}")


ANALYSES: Registry[type] = Registry("analysis", default=NO_ANALYSIS)


def register_analysis(name: str) -> Callable[[type], type]:
    """Class decorator of an analysis config dataclass: make ``analysis=<name>`` use it."""

    def add(config: type) -> type:
        return ANALYSES.register(name, config)(config)

    return add


@register_analysis(NO_ANALYSIS)
@dataclass(frozen=True)
class AnalysisConfig:
    """``analysis=none``: no analysis, a plain training run."""

    name: str = "none"  # none | orbit | landscape | smoothness | regions

    # one network per run: the job analyses realization 0 only, so ``realizations`` must be 1
    single_network: ClassVar[bool] = False

    def check(self, task: Any, model: Any) -> None:
        """Raise :class:`flossrun.errors.ConfigError` on the first impossible value; ``task``
        and ``model`` are the checked task and model configs."""

    def trains(self) -> bool:
        """Whether the run trains a network (the training schedule runs in its folder)."""
        return True

    def recorder(self, task: Any, seeds: Sequence[int], D: int, epochs: int) -> Any:
        """A training hook, or ``None``: an object with ``due(epoch)``, ``snapshot(model,
        epoch)``, ``write(out, snapshots)``, ``figure`` and ``files`` that the training run
        calls (``task``: the built task, ``D``: the state size, ``epochs``: training epochs)."""
        return None


@register_analysis("orbit")
@dataclass(frozen=True)
class OrbitConfig(AnalysisConfig):
    """``analysis=orbit``: open-loop trajectories at constant inputs during training."""

    name: str = "orbit"  # analysis
    every: int = 100  # training epochs between snapshots (also epoch 0 and the last epoch)
    n_omega: int = 10  # constant inputs ω, evenly spaced over the task's grid range
    inits: int = 4  # initial states per ω, drawn once per realization from N(0, init_std²)
    init_std: float = 100.0  # standard deviation of the initial states
    steps: int = 1600  # open-loop steps per trajectory
    burn_in: int = 1200  # steps dropped before outputs are kept and λ1 accumulates
    distinct_tol: float = 1e-3  # outputs closer than this (sorted neighbours) count as one value
    lyap_steps: int = 1000  # steps λ1 averages over, after the burn-in (its own open-loop run)
    lyap_transient: int = 0  # unused by orbit (λ1 starts after burn_in); kept for one schema
    neutral_band: float = 0.01  # |λ1| below this (nats/step) counts as neutral

    def check(self, task: Any, model: Any) -> None:
        constant = "a task with constant inputs (task=sine_generator)"
        check_task_kind(self, task, ConstantInputs, constant)
        for key in ("every", "n_omega", "inits"):
            need(getattr(self, key) >= 1, f"analysis.{key}", getattr(self, key), "must be >= 1")
        need(self.init_std >= 0, "analysis.init_std", self.init_std, "must be >= 0")
        need(self.steps >= 2, "analysis.steps", self.steps, "must be >= 2")
        need(
            0 <= self.burn_in < self.steps, "analysis.burn_in", self.burn_in,
            f"must be in [0, {self.steps - 1}] (< analysis.steps)",
        )  # fmt: skip
        need(self.distinct_tol > 0, "analysis.distinct_tol", self.distinct_tol, "must be > 0")

    def recorder(self, task: Any, seeds: Sequence[int], D: int, epochs: int) -> Any:
        """Orbit snapshots during training (:class:`.orbit.OrbitRecorder`)."""
        from flossrun.analyses.orbit import OrbitRecorder

        return OrbitRecorder(self, task, seeds, D, epochs)


class OnePathNetwork:
    """What the path analyses (landscape, smoothness) declare: one network per run, trained
    first only for ``network=trained``. Mixed in before :class:`AnalysisConfig`."""

    single_network = True

    def trains(self) -> bool:
        """Only ``network=trained`` trains (first, in the same folder)."""
        return self.network == "trained"


@register_analysis("landscape")
@dataclass(frozen=True)
class LandscapeConfig(OnePathNetwork, AnalysisConfig):
    """``analysis=landscape``: loss and λ1 along 1-D paths θ(s) and on a 2-D grid."""

    name: str = "landscape"  # analysis
    network: str = "chaotic_lstm"  # chaotic_lstm (built-in, no training) | trained (this run's)
    points: int = 1000  # points on each 1-D path, s evenly spaced in [s_min, s_max] (and s = 1)
    s_min: float = 0.5  # first s of the 1-D paths (θ(1) is the network analysed)
    s_max: float = 2.0  # last s of the 1-D paths
    grid: int = 0  # points per axis of the 2-D grid (0: no grid)
    grid_s1: list[float] = field(default_factory=lambda: [0.0, 2.0])  # range along direction 1
    grid_s2: list[float] = field(default_factory=lambda: [-0.5, 0.5])  # range along direction 2
    steps: int = 200  # steps of the open-loop trajectory (outputs, λ1; the loss for chaotic_lstm)
    burn_in: int = 100  # steps dropped before outputs, loss (chaotic_lstm) and λ1 count
    sequences: int = 10  # trained: fixed test sequences (evenly spaced ω) the loss is taken on
    chunk: int = 256  # points evaluated at once (memory only: results do not depend on it)
    loss_scale: str = "log"  # loss axis of the figure: log | linear (as Ribeiro et al.)
    lyap_steps: int = 1000  # steps λ1 averages over (its own open-loop run from h0)
    lyap_transient: int = 100  # steps dropped before λ1 accumulates
    neutral_band: float = 0.01  # |λ1| below this (nats/step) counts as neutral

    def check(self, task: Any, model: Any) -> None:
        from flossrun.errors import is_number

        check_lyapunov(self)
        check_network(self.network, task, model)
        need(self.points >= 2, "analysis.points", self.points, "must be >= 2")
        need(self.s_max > self.s_min, "analysis.s_max", self.s_max,
             f"must be > analysis.s_min={self.s_min}")  # fmt: skip
        need(self.grid >= 0, "analysis.grid", self.grid, "must be >= 0 (0: no grid)")
        for key in ("grid_s1", "grid_s2"):
            r = list(getattr(self, key))
            need(
                len(r) == 2 and all(is_number(v) for v in r) and r[0] < r[1],
                f"analysis.{key}", r, "must be two increasing numbers [low, high]",
            )  # fmt: skip
        need(self.steps >= 2, "analysis.steps", self.steps, "must be >= 2")
        need(
            0 <= self.burn_in < self.steps, "analysis.burn_in", self.burn_in,
            f"must be in [0, {self.steps - 1}] (< analysis.steps)",
        )  # fmt: skip
        need(self.sequences >= 1, "analysis.sequences", self.sequences, "must be >= 1")
        need(self.chunk >= 1, "analysis.chunk", self.chunk, "must be >= 1")
        need(self.loss_scale in ("log", "linear"), "analysis.loss_scale", self.loss_scale,
             "allowed: log, linear")  # fmt: skip


def check_network(network: str, task: Any, model: Any) -> None:
    """``analysis.network`` against the task and model (landscape and smoothness)."""
    need(network in NETWORKS, "analysis.network", network, f"allowed: {', '.join(NETWORKS)}")
    if network == "chaotic_lstm":
        need(
            model.name == "lstm" and model.N == 2, "analysis.network", network,
            f"is a 2-unit LSTM: needs model=lstm model.N=2 (got {model.name}, N={model.N})",
        )  # fmt: skip
    else:
        need(
            isinstance(task, ConstantInputs), "analysis.network", network,
            f"needs task=sine_generator (its fixed ω sequences), not task={task.name}",
        )  # fmt: skip


@register_analysis("smoothness")
@dataclass(frozen=True)
class SmoothnessConfig(OnePathNetwork, AnalysisConfig):
    """``analysis=smoothness``: V_T(s), V′ and V″ (exact) along 1-D paths for several horizons
    T; per window of s the Lipschitz constants L = max|V′|, L_g = max|V″|, their growth rates
    with T, the local minima per unit s, and λ1 from a long window."""

    name: str = "smoothness"  # analysis
    network: str = "chaotic_lstm"  # chaotic_lstm (built-in, no training) | trained (this run's)
    points: int = 1400  # points on each path, s evenly spaced in [s_min, s_max]
    s_min: float = 0.8  # first s (θ(1) is the network analysed)
    s_max: float = 1.5  # last s
    horizons: list[int] = field(
        default_factory=lambda: [25, 50, 100, 150, 200, 250, 300, 350, 400]
    )  # horizons T (steps) the cost V_T averages over, increasing
    fit_from: int = 100  # growth rates fit ln L, ln L_g against the horizons T >= fit_from
    windows: int = 35  # equal windows of s the statistics are taken over
    lyap_steps: int = 1000  # steps λ1 averages over (its own open-loop run from h0)
    lyap_transient: int = 200  # steps dropped before λ1 accumulates
    neutral_band: float = 0.01  # |λ1| below this (nats/step) counts as neutral
    sequences: int = 10  # trained: fixed sequences (evenly spaced ω) the cost is taken on
    chunk: int = 700  # points differentiated at once (memory only)
    derivatives: str = "forward"  # forward (jvp of jvp, all T at once) | reverse (double backward)

    def check(self, task: Any, model: Any) -> None:
        from flossrun.analyses.smoothness import METHODS

        check_lyapunov(self)
        check_network(self.network, task, model)
        need(self.derivatives in METHODS, "analysis.derivatives", self.derivatives,
             f"allowed: {', '.join(METHODS)}")  # fmt: skip
        need(self.points >= 2, "analysis.points", self.points, "must be >= 2")
        need(self.s_max > self.s_min, "analysis.s_max", self.s_max,
             f"must be > analysis.s_min={self.s_min}")  # fmt: skip
        h = list(self.horizons)
        need(
            len(h) >= 2 and all(isinstance(v, int) and v >= 1 for v in h) and h == sorted(set(h)),
            "analysis.horizons", h, "must be >= 2 increasing integers >= 1 (steps)",
        )  # fmt: skip
        fitted = sum(v >= self.fit_from for v in h)
        need(fitted >= 2, "analysis.fit_from", self.fit_from,
             f"must leave >= 2 of analysis.horizons={h} (T >= fit_from) to fit")  # fmt: skip
        need(1 <= self.windows <= self.points // 2, "analysis.windows", self.windows,
             f"must be in [1, {self.points // 2}] (>= 2 points per window)")  # fmt: skip
        need(self.sequences >= 1, "analysis.sequences", self.sequences, "must be >= 1")
        need(self.chunk >= 1, "analysis.chunk", self.chunk, "must be >= 1")


@register_analysis("regions")
@dataclass(frozen=True)
class RegionsConfig(AnalysisConfig):
    """``analysis=regions``: train (with ``diag.jacobian``), then per realization — as flossing
    placed it (before training) and after training — λ1 from a long
    window, its memory (``diag.*``: error signal and condition number at the longest lag) and
    the smoothness of the task's cost V_T along θ(s) = θ + (s − 1) d, d a seeded Gaussian
    direction scaled per tensor to the tensor's norm: L = max|V′|, L_g = max|V″| over the path
    and their growth rates with T (:mod:`flossrun.analyses.regions`)."""

    name: str = "regions"  # analysis
    span: float = 0.02  # s ∈ [1 − span, 1 + span]: relative size of the weight perturbation
    points: int = 21  # points on the path, evenly spaced (s = 1 included when points is odd)
    horizons: list[int] = field(
        default_factory=lambda: [40, 60, 100, 150]
    )  # horizons T (steps) of the cost V_T, increasing, each > task.delay
    fit_from: int = 40  # growth rates fit ln L, ln L_g against the horizons T >= fit_from
    sequences: int = 8  # fixed input sequences the cost averages over (own seeded stream)
    lyap_steps: int = 1000  # steps λ1 averages over (its own run on a random input from h0)
    lyap_transient: int = 200  # steps dropped before λ1 accumulates
    neutral_band: float = 0.01  # |λ1| below this (nats/step) counts as neutral
    derivatives: str = "forward"  # forward (jvp of jvp) | reverse (double backward)

    def check(self, task: Any, model: Any) -> None:
        from flossrun.analyses.smoothness import METHODS

        check_task_kind(self, task, Delayed, "a delayed task (task=delayed_copy, delayed_xor)")
        need(0 < self.span < 1, "analysis.span", self.span, "must be in (0, 1)")
        need(self.points >= 3, "analysis.points", self.points, "must be >= 3")
        h = list(self.horizons)
        need(
            len(h) >= 2 and all(isinstance(v, int) and v > task.delay for v in h)
            and h == sorted(set(h)),
            "analysis.horizons", h,
            f"must be >= 2 increasing integers > task.delay={task.delay} (steps)",
        )  # fmt: skip
        fitted = sum(v >= self.fit_from for v in h)
        need(fitted >= 2, "analysis.fit_from", self.fit_from,
             f"must leave >= 2 of analysis.horizons={h} (T >= fit_from) to fit")  # fmt: skip
        need(self.sequences >= 1, "analysis.sequences", self.sequences, "must be >= 1")
        need(self.derivatives in METHODS, "analysis.derivatives", self.derivatives,
             f"allowed: {', '.join(METHODS)}")  # fmt: skip

    def recorder(self, task: Any, seeds: Sequence[int], D: int, epochs: int) -> Any:
        """Keeps the networks as flossing placed them (:class:`.regions.PlacementRecorder`)."""
        from flossrun.analyses.regions import PlacementRecorder

        return PlacementRecorder()


def analysis_trains(fields: Mapping[str, Any]) -> bool:
    """Whether a run whose ``analysis.*`` keys hold ``fields`` trains a network, as its analysis
    declares (:meth:`AnalysisConfig.trains`); keys this code's schema lacks (a run of other
    code) are ignored, and an analysis this code does not know counts as training."""
    name = fields.get("name", ANALYSES.default)
    if name not in ANALYSES:
        return True
    config = ANALYSES[name].config
    known = {f.name for f in dataclasses.fields(config)}
    return bool(config(**{k: v for k, v in fields.items() if k in known}).trains())


def analysis_config(fields: Any, task: Any = None, model: Any = None) -> AnalysisConfig:
    """The config of ``fields`` (mapping or DictConfig; ``None`` = ``analysis=none``), checked
    against ``task`` and ``model`` where given.

    Raises :class:`flossrun.errors.ConfigError` naming the key: an unknown name, a key the
    analysis does not have, or an impossible value.
    """
    cfg = AnalysisConfig() if fields is None else ANALYSES.config(fields)
    if task is not None:
        cfg.check(task, model)
    return cfg
