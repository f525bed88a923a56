"""Every experiment preset composes and validates at both scales, for every point of its sweep
over config groups (e.g. each ``model=`` of the architectures preset)."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from flossrun.cli import CONFIG_DIR
from flossrun.config import validate

PRESETS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
GROUPS = ("task", "model", "floss", "analysis", "variant")


def group_sweeps(preset: str, scale: str) -> list[list[str]]:
    """The overrides of every combination of the preset's config-group sweeps."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        overrides = [f"experiment={preset}", f"scale={scale}"]
        cfg = compose("config", overrides, return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params) or {}
    axes = [[f"{k}={v}" for v in str(vals).split(",")] for k, vals in params.items() if k in GROUPS]
    return [list(c) for c in itertools.product(*axes)]


@pytest.mark.parametrize("scale", ["quick", "medium", "paper"])
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_validates(preset, scale):
    for overrides in group_sweeps(preset, scale):
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("config", [f"experiment={preset}", f"scale={scale}", *overrides])
        validate(cfg)


def test_architectures_preset_sweeps_every_compared_model():
    models = {o[1] for o in group_sweeps("architectures", "quick")}
    assert models == {f"model={m}" for m in ("vanilla", "lstm", "gru", "orthogonal", "stable")}


def test_attractor_presets_sweep_their_named_conditions():
    orbit = {o[0] for o in group_sweeps("orbit_diagram", "quick")}
    assert orbit == {
        f"variant=orbit_{v}" for v in ("lstm", "stable_lstm", "orthogonal", "lstm_floss")
    }
    land = {o[0] for o in group_sweeps("loss_landscape", "paper")}
    assert land == {f"variant=landscape_{v}" for v in ("chaotic", "lstm", "lstm_floss")}
