"""Refuse, in one line and before any compute, a command-line key the composed config lacks.

``flossrun floss.kk=3`` and ``flossrun +floss.kk=3`` are the same typo: Hydra would reject the
first in many lines and silently add the second (a run that ignores the key, under a new
identity). Each key override is looked up in the config *as composed for this command*: the
config groups chosen on the command line, by ``experiment=`` presets and their ``variant=``
conditions, and, with ``-m``, by every group choice of the preset's own sweep
(``hydra.sweeper.params``). So ``experiment=orbit_diagram variant=orbit_lstm analysis.every=25``
is accepted (the preset selects ``analysis=orbit``) and ``model.g=2`` with ``model=lstm`` is not.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from flossrun.errors import ConfigError

GROUP_NODES = ("task", "model", "analysis")  # nodes whose keys depend on the group's choice
FREE_NODES = ("hydra", "report")  # not checked: Hydra's own keys, a preset's report: node
MAX_COMPOSITIONS = 64  # group-choice combinations composed at most (beyond: the first 64)


def parse(args: list[str]) -> list[Any]:
    """Hydra's parsed overrides of ``args`` (options such as ``-m`` left out); [] if malformed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(
            [a for a in args if "=" in a and not a.startswith("-")]
        )
    except Exception:  # malformed overrides: Hydra's own message is clearer
        return []


def values(ov: Any) -> list[str]:
    """The value(s) of an override as strings (every value of a sweep)."""
    if ov.is_sweep_override():
        return [str(v) for v in ov.sweep_string_iterator()]
    return [ov.get_value_element_as_str()]


def is_group(key: str, groups: tuple[str, ...]) -> bool:
    """``model=lstm`` or ``hydra/launcher=joblib`` chooses a config; ``model.N=8`` sets a key."""
    return key in groups or "/" in key


def combinations(choices: dict[str, list[str]]) -> list[list[str]]:
    """Cartesian product of group choices as override lists, at most :data:`MAX_COMPOSITIONS`."""
    keys = list(choices)
    combos = itertools.product(*(choices[k] for k in keys))
    return [[f"{k}={v}" for k, v in zip(keys, c, strict=True)] for c in combos][:MAX_COMPOSITIONS]


def composed_configs(
    config_dir: Path, groups: tuple[str, ...], choices: dict[str, list[str]], multirun: bool
) -> list[DictConfig]:
    """The configs Hydra would compose for every combination of ``choices`` (and, with
    ``multirun``, of the group choices in each composition's own ``hydra.sweeper.params``)."""
    from hydra import compose, initialize_config_dir

    out: list[DictConfig] = []
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3", job_name="check"):
        for combo in combinations(choices):
            cfg = compose("config", overrides=combo, return_hydra_config=True)
            preset: dict[str, list[str]] = {}
            if multirun:
                params = cfg.hydra.sweeper.get("params") or {}
                for key, value in params.items():
                    if is_group(key, groups) and key not in choices:
                        ov = parse([f"{key}={value}"])
                        preset[key] = values(ov[0]) if ov else []
            if not preset:
                out.append(cfg)
                continue
            for extra in combinations(preset):
                out.append(compose("config", overrides=combo + extra, return_hydra_config=True))
            if len(out) >= MAX_COMPOSITIONS:
                break
    return out


def missing_key(cfg: DictConfig, key: str) -> str | None:
    """One-line reason why ``key`` (``floss.kk``) is not a key of ``cfg``; None if it is."""
    node: Any = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        if isinstance(node, ListConfig) or not isinstance(node, DictConfig):
            return None  # list items and values below a leaf are Hydra's to check
        if part not in node:
            where = ".".join(parts[:i])
            allowed = ", ".join(sorted(str(k) for k in node.keys() if k != "hydra"))
            if not where:
                return f"{key}: not a key of flossrun (allowed: {allowed})"
            if where in GROUP_NODES and "name" in node:
                return f"{key}: not an option of {where}={node.name} (allowed: {allowed})"
            return f"{key}: not an option of {where} (allowed: {allowed})"
        node = node._get_node(part)
    return None


def check_keys(args: list[str], config_dir: Path, groups: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` (one line) for the first key override in ``args`` — with or
    without ``+``/``++`` — that a composition of this command does not have. Keys outside
    ``task``/``model``/``analysis`` are looked up in the schema (no composition needed)."""
    overrides = parse(args)
    choices: dict[str, list[str]] = {}
    keys: list[str] = []
    for ov in overrides:
        if ov.is_delete():
            continue
        key = ov.key_or_group
        if is_group(key, groups):
            if not key.startswith("hydra/"):
                choices[key] = values(ov)
        elif key.split(".")[0] not in FREE_NODES:
            keys.append(key)
    from omegaconf import OmegaConf

    from flossrun.config import RunConfig

    schema = OmegaConf.structured(RunConfig)  # floss.*, train.*, diag.*: fixed by the schema
    for key in [k for k in keys if k.split(".")[0] not in GROUP_NODES]:
        reason = missing_key(schema, key)
        if reason:
            raise ConfigError(reason)
    keys = [k for k in keys if k.split(".")[0] in GROUP_NODES]
    if not keys:  # only the keys of task=, model=, analysis= depend on the composition
        return
    multirun = any(a in ("-m", "--multirun") for a in args)
    try:
        configs = composed_configs(config_dir, groups, choices, multirun)
    except Exception:  # a composition Hydra refuses: its own message follows
        return
    for key in keys:
        for cfg in configs:
            reason = missing_key(cfg, key)
            if reason:
                raise ConfigError(reason)
