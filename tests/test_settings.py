"""The composed config is validated once into typed, frozen settings (docs/design.md §7):
:func:`flossrun.config.validate` returns a :class:`~flossrun.config.Settings` whose groups are
the config dataclasses themselves, nothing can change it afterwards, the runner, the jobs and
``build_model`` take it without converting or checking again, and a bad value still ends in the
one line naming the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from cli_support import TINY, compose_config, config_error

from flossrun.analyses import ANALYSES, AnalysisConfig, OrbitConfig
from flossrun.config import (
    ConfigError,
    DiagConfig,
    FlossConfig,
    RunConfig,
    Settings,
    TrainConfig,
    validate,
)
from flossrun.models import MODELS
from flossrun.models.lstm import LSTMConfig
from flossrun.provenance import identity_text, run_identity
from flossrun.registry import Registry
from flossrun.tasks import TASKS, CopyConfig, ParityConfig, TemporalXorConfig
from flossrun.tasks.sine_generator import SineConfig


def test_validate_returns_typed_settings_with_the_composed_values():
    cfg = compose_config(*TINY, "model=lstm", "floss.target=[0,0,-0.1,-0.1]", "train.lr=0.005")
    s = validate(cfg)
    assert isinstance(s, Settings)
    assert type(s.model) is LSTMConfig and s.model.N == 12 and s.model.state_dim == 24
    assert type(s.task) is ParityConfig and (s.task.T, s.task.delay) == (40, 4)
    assert type(s.analysis) is AnalysisConfig  # analysis=none
    assert (type(s.floss), type(s.train), type(s.diag)) == (FlossConfig, TrainConfig, DiagConfig)
    assert s.floss.target == [0, 0, -0.1, -0.1] and s.floss.k == 4
    assert s.train.lr == 0.005 and s.train.milestones == [] and s.diag.lags == cfg.diag.lags
    assert (s.seed, s.realizations, s.device, s.dtype) == (0, 1, "cpu", "float32")


def test_an_analysis_arrives_as_its_own_config_class():
    s = validate(
        compose_config(
            "task=sine_generator", "model=lstm", "model.N=4", "floss=none", "analysis=orbit",
            "analysis.every=25", "device=cpu",
        )
    )  # fmt: skip
    assert type(s.task) is SineConfig and type(s.analysis) is OrbitConfig
    assert s.analysis.every == 25 and s.analysis.trains()


def test_the_settings_and_every_group_in_them_are_frozen():
    s = validate(compose_config(*TINY))
    for obj, key in [
        (s, "seed"), (s, "floss"), (s.floss, "k"), (s.train, "epochs"), (s.diag, "steps"),
        (s.model, "N"), (s.task, "T"), (s.analysis, "name"),
    ]:  # fmt: skip
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, key, getattr(obj, key))
    assert s.floss.k == 4


def test_the_composed_config_stays_writable_for_hydra():
    """The schema's dataclasses are frozen, but what Hydra composes from them is not: command
    line overrides, and a test that changes a composed key, still work."""
    cfg = compose_config(*TINY, "floss.k=3")
    cfg.floss.k = 2
    cfg.model.N = 6
    assert validate(cfg).floss.k == 2 and validate(cfg).model.N == 6


def test_settings_hold_every_key_of_the_schema_but_report():
    """One field per top-level key of ``RunConfig`` (``report`` is read by flossrun-report from
    the recorded config), plus the run identity."""
    schema = [f.name for f in dataclasses.fields(RunConfig) if f.name != "report"]
    settings = [f.name for f in dataclasses.fields(Settings) if f.name != "identity"]
    assert sorted(settings) == sorted(schema)


def test_the_identity_is_that_of_the_composed_config():
    """What a run folder is recognised by is computed from the composed config, as before."""
    cfg = compose_config(*TINY, "model=gru", "train.clip_mode=global")
    assert validate(cfg).identity == identity_text(run_identity(cfg, "cpu"))


def test_runner_jobs_and_build_model_do_not_convert_or_check_again(tmp_path, monkeypatch):
    """Everything a job builds comes from the settings: no registry lookup of config fields
    (the one conversion, with its checks) happens after :func:`validate`."""
    from flossrun.jobs import make_job

    s = validate(compose_config(*TINY, "train.epochs=2", "floss.pre_epochs=2"))

    def refuse(self, fields):
        raise AssertionError(f"{self.group} config built again from {fields}")

    monkeypatch.setattr(Registry, "config", refuse)
    job = make_job(s, tmp_path)
    assert job.run.model.N == 12 and job.run.task.T == 40
    assert job.execute()


def test_a_bad_value_still_ends_in_its_one_line():
    assert config_error(*TINY, "floss.k=500") == (
        "flossrun: error: floss.k=500: must be in [0, 12] (the state size D of model=vanilla)"
    )
    assert config_error("train.gamma=0") == "flossrun: error: train.gamma=0.0: must be in (0, 1]"
    assert config_error("diag.transient=400") == (
        "flossrun: error: diag.transient=400: must be in [0, 299] (< diag.steps)"
    )
    with pytest.raises(ConfigError, match=r"^train\.milestones=\[5,3\]: must be increasing"):
        validate(compose_config("train.milestones=[5,3]"))


# --- defaults defined once: the dataclasses; the YAML files only name a choice ---------------
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
REGISTRIES = {"model": MODELS, "task": TASKS, "analysis": ANALYSES}
GROUP_FILES = sorted(
    p
    for g in ("model", "task", "analysis", "floss", "train")
    for p in (CONFIG_DIR / g).glob("*.yaml")
)


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_group_yaml_only_names_its_choice_and_the_dataclass_gives_every_default(path):
    group, name = path.parent.name, path.stem
    values = yaml.safe_load(path.read_text()) or {}
    if group in REGISTRIES:  # the schema (ConfigStore) holds the defaults of the choice
        assert values.pop("defaults") == [f"{name}_schema", "_self_"]
    assert set(values) <= {"name"}, f"{path} repeats defaults: {sorted(set(values) - {'name'})}"
    composed = compose_config(f"{group}={name}")[group]
    if group in REGISTRIES:
        schema = REGISTRIES[group].lookup(name).config
    else:
        schema = {"floss": FlossConfig, "train": TrainConfig}[group]
    expected = dataclasses.asdict(schema())
    if group != "train":
        assert composed.name == name
        expected["name"] = name
    assert dict(composed) == expected


def test_the_primary_config_sets_no_top_level_default():
    values = yaml.safe_load((CONFIG_DIR / "config.yaml").read_text())
    assert set(values) == {"defaults", "hydra"}
    composed = compose_config()
    for f in dataclasses.fields(RunConfig):
        if f.default is not dataclasses.MISSING and f.default is not None:
            assert composed[f.name] == f.default, f.name


def test_the_parity_tasks_take_their_taps_from_their_own_schemas():
    taps = {n: compose_config(f"task={n}").task.taps for n in ("delayed_copy", "delayed_xor")}
    assert taps == {"delayed_copy": 1, "delayed_xor": 2}
    assert compose_config("task=temporal_xor").task.taps == 4
    assert issubclass(CopyConfig, ParityConfig) and issubclass(TemporalXorConfig, ParityConfig)
    assert "task.taps=2: must be 1 for delayed_copy" in config_error(
        "task=delayed_copy", "task.taps=2"
    )
