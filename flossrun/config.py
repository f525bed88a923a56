"""Structured configs (the schema behind ``configs/``) and their validation into settings.

Every field has a type and a one-line doc; the YAML files in ``configs/`` only set values.
:func:`validate` runs before any compute and raises :class:`ConfigError` with one line naming
the key, the value and what is allowed; it returns the composed config as :class:`Settings`,
typed and frozen, which is what the runner, the jobs and ``build_model`` take.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from flossrun.analyses import ANALYSES, AnalysisConfig, analysis_config
from flossrun.errors import ConfigError as ConfigError  # re-exported for callers and tests
from flossrun.errors import is_number, need
from flossrun.models import MODELS, ModelConfig, model_config
from flossrun.provenance import identity_text, run_identity
from flossrun.tasks import TASKS, Delayed, TaskConfig, task_config
from flossrun.training import CLIP_MODES, LOSS_REDUCTIONS

G = TypeVar("G")

FLOSS_NAMES = ("none", "pre", "pre_during")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "float64")
SCALES = ("quick", "medium", "paper")


def find_config_dir() -> Path:
    """The config groups: ``flossrun/configs`` in an installed wheel, ``configs/`` next to the
    package in a checkout or an editable install (both come from the repository's ``configs/``)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "configs", here.parent / "configs"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"flossrun: no configs/config.yaml in {here} or {here.parent}")


CONFIG_DIR = find_config_dir()


@dataclass(frozen=True)
class FlossConfig:
    name: str = (
        "pre_during"  # which phases run: none | pre (before training) | pre_during (also during)
    )
    k: int = 75  # number of flossed Lyapunov exponents (0 = no flossing)
    target: Any = 0.0  # λ* (nats/step): a number or a list of k numbers
    batch: int = 1  # sequences per flossing epoch
    steps: int = 55  # time steps per flossing sequence
    transient: int = 16  # steps discarded before exponents accumulate
    qr_every: int = 1  # steps between QR re-orthonormalisations
    lr: float | None = None  # flossing Adam learning rate (betas 0.9/0.999); null: model.floss_lr
    pre_epochs: int = 500  # flossing epochs before training (preflossing)
    every: int = 100  # training epochs between flossing phases (interflossing)
    epochs: int = 500  # flossing epochs per interflossing phase
    times: int = 2  # maximum number of interflossing phases


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3001  # training epochs (one fresh batch each)
    batch: int = 16  # sequences per training epoch
    lr: float | None = None  # Adam learning rate (betas 0.9/0.999, eps 1e-8); null: model.lr
    clip: float = 0.03  # max gradient norm per realization (per tensor or global: clip_mode)
    clip_mode: str = "per_tensor"  # per_tensor (each tensor on its own) | global (all together)
    loss_reduction: str = "mean"  # gradient of the loss's mean (flossrun) | sum (the reference)
    eval_every: int = 100  # epochs between test-set evaluations
    test_size: int = 512  # held-out test sequences (fixed, own seed)
    success_threshold: float = 0.95  # final test accuracy counted as success
    log_every: int = 10  # epochs between training-metric rows in metrics.csv
    checkpoint_every: int = 500  # epochs between checkpoints (resume points)
    milestones: list[int] = field(
        default_factory=list
    )  # epochs after which lr is multiplied by gamma
    gamma: float = 0.1  # learning-rate factor at each milestone
    freeze_after_success: int = 0  # M > 0: stop training after M successful evaluations in a row


@dataclass(frozen=True)
class DiagConfig:
    steps: int = 300  # trajectory length (steps) for diagnostic spectra
    transient: int = 50  # steps discarded before diagnostic exponents accumulate
    full_spectrum: bool = True  # full spectrum at start, after preflossing and at the end
    jacobian: bool = False  # long-term Jacobian and error-signal norms vs lag (slower)
    lags: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 20, 50, 100, 150])  # τ grid


@dataclass
class RunConfig:
    name: str = "default"  # experiment name: the folder under outputs/
    scale: str = "quick"  # preset size: quick | medium | paper
    seed: int = 0  # realization r uses seed + r for weights, data and frames
    realizations: int = 1  # R networks trained at once as one batched program
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "float32"  # float32 | float64
    threads: int = 0  # torch CPU threads (0 = torch default; joblib workers use 1)
    task: Any = None  # the task group: one schema per task (flossrun.tasks.TASKS)
    model: Any = None  # the model group: one schema per architecture (flossrun.models.MODELS)
    analysis: Any = None  # the analysis group: none | orbit | landscape (flossrun.analyses)
    floss: FlossConfig = field(default_factory=FlossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    diag: DiagConfig = field(default_factory=DiagConfig)
    report: Any = None  # what flossrun-report needs: figures, conditions, claim (presets set it)


def scaled(*values: Any, _root_: DictConfig) -> Any:
    """Resolver ``${scaled:quick,paper}`` or ``${scaled:quick,medium,paper}``: pick a value by
    the top-level ``scale`` key (one of :data:`SCALES`).

    ``quick`` is a smoke test of minutes, ``medium`` an evening run (≤ 2 h on 2 cores for all
    presets, ≥ 10 realizations per condition), ``paper`` the reference setting. With two values
    the medium scale takes the quick one: a preset states a medium value only where it differs.
    """
    if len(values) not in (2, 3):
        raise ValueError(f"scaled: expected 2 or 3 values (quick[, medium], paper), got {values}")
    scale = _root_.get("scale")
    if scale == "paper":
        return values[-1]
    if scale == "medium" and len(values) == 3:
        return values[1]
    return values[0]


OmegaConf.register_new_resolver("scaled", scaled, replace=True)


def register_configs() -> None:
    """Register the schema so ``configs/config.yaml`` can build on it (``- flossrun_schema``),
    and each model's, task's and analysis's config as ``<name>_schema`` in its group (the
    default of its YAML)."""
    cs = ConfigStore.instance()
    cs.store(name="flossrun_schema", node=schema_node(RunConfig))
    for registry in (MODELS, TASKS, ANALYSES):
        for name, spec in registry.items():
            cs.store(group=registry.group, name=f"{name}_schema", node=schema_node(spec.config))


def schema_node(config: type) -> DictConfig:
    """The structured config of the dataclass ``config``, writable while Hydra composes it.

    The config dataclasses are frozen (the validated :class:`Settings` must not change), and
    OmegaConf marks the node of a frozen dataclass read-only, which would refuse every
    override; the flag is lifted here, node by node, so only the built objects are frozen.
    """
    node = OmegaConf.structured(config)

    def writable(n: DictConfig) -> None:
        OmegaConf.set_readonly(n, None)
        for child in n.values():
            if isinstance(child, DictConfig):
                writable(child)

    writable(node)
    return node


def validate_floss(f: FlossConfig, D: int, model: str) -> None:
    """The flossing keys (only checked when flossing can run); ``D``: the model's state size."""
    need(0 <= f.k <= D, "floss.k", f.k, f"must be in [0, {D}] (the state size D of model={model})")
    if isinstance(f.target, list):
        need(
            len(f.target) == f.k and all(is_number(v) for v in f.target),
            "floss.target",
            f.target,
            f"must be a number or a list of floss.k={f.k} numbers",
        )
    else:
        need(
            is_number(f.target),
            "floss.target",
            f.target,
            f"must be a number or a list of floss.k={f.k} numbers",
        )
    need(f.batch >= 1, "floss.batch", f.batch, "must be >= 1")
    need(f.steps >= 2, "floss.steps", f.steps, "must be >= 2")
    need(
        0 <= f.transient < f.steps,
        "floss.transient",
        f.transient,
        f"must be in [0, {f.steps - 1}] (< floss.steps)",
    )
    need(f.qr_every >= 1, "floss.qr_every", f.qr_every, "must be >= 1")
    need(f.lr is None or f.lr > 0, "floss.lr", f.lr, "must be > 0 or null")
    for key in ("pre_epochs", "epochs", "times"):
        value = getattr(f, key)
        need(value >= 0, f"floss.{key}", value, "must be >= 0")
    need(f.every >= 1, "floss.every", f.every, "must be >= 1")


@dataclass(frozen=True)
class Settings:
    """A run's composed config, validated once (:func:`validate`) into typed, frozen objects:
    what the runner, the jobs and :func:`flossrun.models.build_model` read.

    The top-level keys are those of :class:`RunConfig` (their docs are there); each group is
    its own config dataclass, frozen too: ``task`` the task's (:class:`~flossrun.tasks.TaskConfig`
    subclass), ``model`` the architecture's, ``analysis`` the analysis's
    (:class:`~flossrun.analyses.AnalysisConfig` for ``analysis=none``). ``report`` is not here:
    only flossrun-report reads it, from the run folder's recorded config. The composed
    ``DictConfig`` itself is kept only to record the run (``.hydra/config.yaml``) and for its
    ``identity``, computed from it here once.
    """

    name: str
    scale: str
    seed: int
    realizations: int
    device: str
    dtype: str
    threads: int
    task: TaskConfig
    model: ModelConfig
    analysis: AnalysisConfig
    floss: FlossConfig
    train: TrainConfig
    diag: DiagConfig
    # the run's identity (flossrun.provenance.run_identity on the device it runs on) as the
    # YAML text that checkpoint.pt stores and a folder's run is recognised by
    identity: str


def group(config: type[G], node: Any) -> G:
    """The frozen config dataclass ``config`` of a composed group node (values resolved)."""
    fields = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    return config(**fields)


def validate(cfg: DictConfig) -> Settings:
    """Check every key of the composed config for impossible values, raising
    :class:`ConfigError` on the first one, and return it as :class:`Settings` (the one
    conversion from the ``DictConfig``)."""
    task = task_config(cfg.task)  # its own keys, checked by the task's config
    model = model_config(cfg.model)  # likewise for the model
    f, tr, dg = (
        group(FlossConfig, cfg.floss),
        group(TrainConfig, cfg.train),
        group(DiagConfig, cfg.diag),
    )
    need(f.name in FLOSS_NAMES, "floss.name", f.name, f"allowed: {', '.join(FLOSS_NAMES)}")
    if f.name != "none":  # floss=none ignores the other floss.* keys
        validate_floss(f, model.state_dim, model.name)
    need(tr.epochs >= 0, "train.epochs", tr.epochs, "must be >= 0")
    for key in ("batch", "eval_every", "test_size", "log_every", "checkpoint_every"):
        value = getattr(tr, key)
        need(value >= 1, f"train.{key}", value, "must be >= 1")
    need(tr.lr is None or tr.lr > 0, "train.lr", tr.lr, "must be > 0 or null")
    ms = list(tr.milestones)
    need(
        all(isinstance(m, int) and m >= 1 for m in ms) and ms == sorted(ms),
        "train.milestones", ms, "must be increasing epochs >= 1",
    )  # fmt: skip
    need(0 < tr.gamma <= 1, "train.gamma", tr.gamma, "must be in (0, 1]")
    need(tr.clip > 0, "train.clip", tr.clip, "must be > 0")
    mode, red = tr.clip_mode, tr.loss_reduction
    need(mode in CLIP_MODES, "train.clip_mode", mode, f"allowed: {', '.join(CLIP_MODES)}")
    need(red in LOSS_REDUCTIONS, "train.loss_reduction", red,
         f"allowed: {', '.join(LOSS_REDUCTIONS)}")  # fmt: skip
    fz = tr.freeze_after_success
    need(fz >= 0, "train.freeze_after_success", fz, "must be >= 0 (0 = off)")
    need(
        0 <= tr.success_threshold <= 1,
        "train.success_threshold",
        tr.success_threshold,
        "must be in [0, 1]",
    )
    need(
        0 <= dg.transient < dg.steps,
        "diag.transient",
        dg.transient,
        f"must be in [0, {dg.steps - 1}] (< diag.steps)",
    )
    if dg.jacobian:
        need(
            isinstance(task, Delayed), "diag.jacobian", dg.jacobian,
            f"needs a delayed-parity task (task={task.name} has no error signal per lag)",
        )  # fmt: skip
        top = min(dg.steps - dg.transient, task.T - 1)
        need(
            all(0 < lag <= top for lag in dg.lags), "diag.lags", dg.lags,
            f"must all be in [1, {top}] (<= diag.steps - diag.transient and < task.T)",
        )  # fmt: skip
    need(cfg.seed >= 0, "seed", cfg.seed, "must be >= 0")
    need(cfg.realizations >= 1, "realizations", cfg.realizations, "must be >= 1")
    need(cfg.device in DEVICES, "device", cfg.device, f"allowed: {', '.join(DEVICES)}")
    if cfg.device == "cuda":
        need(
            torch.cuda.is_available(),
            "device",
            cfg.device,
            "CUDA is not available here (allowed: auto, cpu)",
        )
    need(cfg.dtype in DTYPES, "dtype", cfg.dtype, f"allowed: {', '.join(DTYPES)}")
    need(cfg.scale in SCALES, "scale", cfg.scale, f"allowed: {', '.join(SCALES)}")
    need(cfg.threads >= 0, "threads", cfg.threads, "must be >= 0 (0 = torch default)")
    analysis = analysis_config(cfg.get("analysis"), task, model)  # checked against both
    if analysis.single_network:
        need(
            cfg.realizations == 1, "realizations", cfg.realizations,
            f"must be 1 for analysis={analysis.name} (one network per path; sweep seed= instead)",
        )  # fmt: skip
    identity = identity_text(run_identity(cfg, resolve_device(cfg.device).type))
    return Settings(
        name=cfg.name, scale=cfg.scale, seed=cfg.seed, realizations=cfg.realizations,
        device=cfg.device, dtype=cfg.dtype, threads=cfg.threads, task=task, model=model,
        analysis=analysis, floss=f, train=tr, diag=dg, identity=identity,
    )  # fmt: skip


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
