"""Analyses of a network's attractors and loss surface (docs/design.md §11), and their configs.

``analysis=`` picks one; each is a config dataclass (fields documented, checked before any
compute against the task and model) registered in ``ANALYSES``:

- ``none``: a plain training run;
- ``orbit``: orbit (bifurcation) diagrams recorded during training (:mod:`.orbit`);
- ``landscape``: loss, steady-state output and λ1 along parameter paths (:mod:`.landscape`),
  of a built-in network (no training) or of the network the run trains.

Which job runs (training, analysis, or both) follows from the analysis: :mod:`flossrun.jobs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NETWORKS = ("chaotic_lstm", "trained")


@dataclass
class AnalysisConfig:
    """``analysis=none``: no analysis, a plain training run."""

    name: str = "none"  # none | orbit | landscape

    def check(self, task: Any, model: Any) -> None:
        """Raise :class:`flossrun.config.ConfigError` on the first impossible value; ``task``
        and ``model`` are the checked task and model configs."""


@dataclass
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

    def check(self, task: Any, model: Any) -> None:
        from flossrun.errors import need

        need(
            hasattr(task, "omega_min"), "analysis", self.name,
            f"needs a task with constant inputs (task=sine_generator), not task={task.name}",
        )  # fmt: skip
        for key in ("every", "n_omega", "inits"):
            need(getattr(self, key) >= 1, f"analysis.{key}", getattr(self, key), "must be >= 1")
        need(self.init_std >= 0, "analysis.init_std", self.init_std, "must be >= 0")
        need(self.steps >= 2, "analysis.steps", self.steps, "must be >= 2")
        need(
            0 <= self.burn_in < self.steps, "analysis.burn_in", self.burn_in,
            f"must be in [0, {self.steps - 1}] (< analysis.steps)",
        )  # fmt: skip
        need(self.distinct_tol > 0, "analysis.distinct_tol", self.distinct_tol, "must be > 0")


@dataclass
class LandscapeConfig(AnalysisConfig):
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

    def check(self, task: Any, model: Any) -> None:
        from flossrun.errors import is_number, need

        need(self.network in NETWORKS, "analysis.network", self.network,
             f"allowed: {', '.join(NETWORKS)}")  # fmt: skip
        if self.network == "chaotic_lstm":
            need(
                model.name == "lstm" and model.N == 2, "analysis.network", self.network,
                f"is a 2-unit LSTM: needs model=lstm model.N=2 (got {model.name}, N={model.N})",
            )  # fmt: skip
        else:
            need(
                hasattr(task, "omega_min"), "analysis.network", self.network,
                f"needs task=sine_generator (its fixed ω sequences), not task={task.name}",
            )  # fmt: skip
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


@dataclass(frozen=True)
class AnalysisSpec:
    """A registry entry: the name and its config dataclass."""

    name: str
    config: type[AnalysisConfig]


ANALYSES: dict[str, AnalysisSpec] = {
    c.name: AnalysisSpec(c.name, c) for c in (AnalysisConfig, OrbitConfig, LandscapeConfig)
}


def analysis_config(fields: Any, task: Any = None, model: Any = None) -> AnalysisConfig:
    """The checked config of ``fields`` (mapping or DictConfig; ``None`` = ``analysis=none``).

    Raises :class:`flossrun.config.ConfigError` naming the key: an unknown name, a key the
    analysis does not have, or an impossible value (checked against ``task`` and ``model``).
    """
    from omegaconf import OmegaConf

    from flossrun.errors import ConfigError, need

    if fields is None:
        return AnalysisConfig()
    if OmegaConf.is_config(fields):
        fields = OmegaConf.to_container(fields, resolve=True)
    fields = dict(fields)
    name = fields.get("name", "none")
    need(name in ANALYSES, "analysis.name", name, f"allowed: {', '.join(ANALYSES)}")
    config = ANALYSES[name].config
    known = set(config.__dataclass_fields__)
    for key in fields:
        if key not in known:
            raise ConfigError(
                f"analysis.{key}: not an option of analysis={name} "
                f"(allowed: {', '.join(sorted(known))})"
            )
    cfg = config(**fields)
    if task is not None:
        cfg.check(task, model)
    return cfg
