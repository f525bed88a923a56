"""The recipes of docs/design.md §13: a model, a task and an analysis added the way the docs say
(a config dataclass registered in its registry) are found, validated with the one-line error
and usable. Each throwaway entry is registered for one test and removed after it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from cli_support import TINY, compose_config
from omegaconf import OmegaConf

from flossrun.analyses import ANALYSES, AnalysisConfig, analysis_config, register_analysis
from flossrun.config import ConfigError, validate
from flossrun.errors import need
from flossrun.fast.ops import realization_mean
from flossrun.jobs import JOBS, TrainJob, job_for, make_job
from flossrun.lyapunov import lyapunov_spectrum
from flossrun.models import MODELS, ModelConfig, RecurrentEnsemble, build_model, model_config
from flossrun.models.base import bmm_columns, bmv, per_row, register, with_realization_axis
from flossrun.tasks import TASKS, TaskConfig, build_task, random_bits, register_task, task_config
from flossrun.training import make_adam, train_epoch

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
REGISTRIES = {"model": MODELS, "task": TASKS, "analysis": ANALYSES}


# --- a throwaway model: h_t = tanh(W h_{t-1} + V x_t + b), z = w_out h -------------------------
@dataclass(frozen=True)
class ToyModelConfig(ModelConfig):
    name: str = "toy_rnn"
    gain: float = 0.5  # scale of W ~ N(0, gain²/N)

    def check(self) -> None:
        super().check()
        need(self.gain > 0, "model.gain", self.gain, "must be > 0")


class ToyRNN(RecurrentEnsemble):
    def init_one(self, gen: torch.Generator, seed: int) -> dict[str, torch.Tensor]:
        N, S, O = self.N, self.S, self.O
        f64 = torch.float64
        return {
            "W": torch.randn(N, N, generator=gen, dtype=f64) * self.cfg.gain / N**0.5,
            "V": torch.randn(N, S, generator=gen, dtype=f64),
            "b": torch.zeros(N, dtype=f64),
            "w_out": torch.randn(O, N, generator=gen, dtype=f64) / N**0.5,
            "h0": torch.zeros(N, dtype=f64),
        }

    def floss_parameters(self) -> list[torch.nn.Parameter]:
        return [self.W, self.V, self.b]

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x = with_realization_axis(x, h)
        return torch.tanh(bmv(self.W, h) + bmv(self.V, x) + per_row(self.b, h))

    def tangent(self, h: torch.Tensor, x: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        slope = 1 - self.step(h, x) ** 2  # [R, *B, N]
        return slope.unsqueeze(-1) * bmm_columns(self.W, Q)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        return bmv(self.w_out, h)


# --- a throwaway task: echo the input bit (MSE) ------------------------------------------------
@dataclass(frozen=True)
class EchoConfig(TaskConfig):
    name: str = "toy_echo"
    T: int = 20
    amplitude: float = 1.0  # input scale

    def check(self) -> None:
        super().check()
        need(self.amplitude > 0, "task.amplitude", self.amplitude, "must be > 0")


@dataclass(frozen=True)
class Echo:
    T: int
    amplitude: float
    S = 1
    O = 1
    success_text = "test loss <= 0.01"

    def sample(self, gens, batch, *, dtype=torch.float32, device="cpu"):
        bits = random_bits(gens, self.T, batch, 1, dtype=dtype)
        return (bits * self.amplitude).to(device), bits.to(device)

    test_set = sample

    def drive(self, gens, steps, batch, *, dtype=torch.float32, device="cpu"):
        return (random_bits(gens, steps, batch, 1, dtype=dtype) * self.amplitude).to(device)

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return realization_mean((z - y) ** 2, dim=1)

    def metrics(self, z: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def succeeded(self, test, cfg) -> torch.Tensor:
        return test["test_loss"] <= 0.01


# --- a throwaway analysis: a training hook that notes the epochs it saw ----------------------
@dataclass(frozen=True)
class ProbeConfig(AnalysisConfig):
    name: str = "toy_probe"
    every: int = 10  # training epochs between probes

    def check(self, task, model) -> None:
        need(self.every >= 1, "analysis.every", self.every, "must be >= 1")

    def recorder(self, task, seeds, D, epochs):
        return Probe(self.every, D)


class Probe:
    figure = "toy_probe"
    files = "probe:   probe.txt"

    def __init__(self, every: int, D: int) -> None:
        self.every, self.D = every, D

    def due(self, epoch: int) -> bool:
        return epoch % self.every == 0

    def snapshot(self, model, epoch: int) -> dict:
        return {"epoch": epoch, "D": model.state_dim}

    def write(self, out: Path, snapshots: list[dict]) -> None:
        (out / "probe.txt").write_text(" ".join(str(s["epoch"]) for s in snapshots))


@pytest.fixture
def toy_model():
    register("toy_rnn", ToyModelConfig)(ToyRNN)
    yield ToyRNN
    MODELS.remove("toy_rnn")


@pytest.fixture
def toy_task():
    register_task("toy_echo", EchoConfig)(lambda c: Echo(T=c.T, amplitude=c.amplitude))
    yield "toy_echo"
    TASKS.remove("toy_echo")


@pytest.fixture
def toy_analysis():
    register_analysis("toy_probe")(ProbeConfig)
    yield ProbeConfig
    ANALYSES.remove("toy_probe")
    JOBS.pop(ProbeConfig, None)


# --- the recipes ----------------------------------------------------------------------------------
def test_a_new_model_is_found_validated_and_trains(toy_model, float64):
    assert "toy_rnn" in MODELS.names()
    with pytest.raises(ConfigError, match=r"^model\.gain=-1\.0: must be > 0$"):
        model_config({"name": "toy_rnn", "gain": -1.0})
    with pytest.raises(ConfigError, match=r"^model\.leak: not an option of model=toy_rnn "):
        model_config({"name": "toy_rnn", "leak": 0.1})
    net = build_model({"name": "toy_rnn", "N": 6, "gain": 0.9}, 1, 1, [0, 1], dtype=torch.float64)
    assert isinstance(net, ToyRNN) and net.R == 2 and net.cfg.gain == 0.9
    # its analytic tangent is the Jacobian autograd finds
    h, x = torch.randn(2, 3, 6, dtype=torch.float64), torch.randn(2, 3, 1, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda v: net.step(v, x), h)  # [2,3,6,2,3,6]
    Jd = torch.stack([torch.stack([J[r, b, :, r, b] for b in range(3)]) for r in range(2)])
    Q = torch.eye(6, dtype=torch.float64).expand(2, 3, 6, 6)
    torch.testing.assert_close(net.tangent(h, x, Q), Jd)
    res = lyapunov_spectrum(net, net.initial_state(1), torch.zeros(40, 2, 1, 1), k=3)
    assert res.exponents.shape == (2, 1, 3) and torch.isfinite(res.exponents).all()
    task = build_task({"name": "delayed_copy", "delay": 2, "T": 12, "taps": 1})
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    opt, alive = make_adam(list(net.parameters()), 1e-2), torch.ones(2, dtype=torch.bool)
    before = net.W.detach().clone()
    losses = []
    for _ in range(3):
        x, y = task.sample(gens, 4, dtype=torch.float64)
        losses.append(train_epoch(net, task, x, y, opt, 0.03, alive)["loss"])
    assert alive.all() and torch.isfinite(torch.stack(losses)).all()
    assert not torch.equal(net.W, before)


def test_a_new_task_is_found_validated_and_makes_batches(toy_task):
    assert "toy_echo" in TASKS.names()
    with pytest.raises(ConfigError, match=r"^task\.amplitude=0\.0: must be > 0$"):
        task_config({"name": "toy_echo", "amplitude": 0.0})
    with pytest.raises(ConfigError, match=r"^task\.name=toy_eco: allowed: .*toy_echo"):
        task_config({"name": "toy_eco"})
    task = build_task({"name": "toy_echo", "T": 8, "amplitude": 2.0})
    gens = [torch.Generator().manual_seed(s) for s in range(3)]
    x, y = task.sample(gens, 5)
    assert x.shape == y.shape == (8, 3, 5, 1)
    torch.testing.assert_close(x, 2.0 * y)
    net = build_model({"name": "vanilla", "N": 4}, task.S, task.O, [0, 1, 2])
    assert task.loss(net.predict(x), y).shape == (3,)


def test_a_new_analysis_is_found_validated_and_its_declarations_pick_the_job(
    toy_analysis, tmp_path
):
    assert "toy_probe" in ANALYSES.names()
    with pytest.raises(ConfigError, match=r"^analysis\.every=0: must be >= 1$"):
        analysis_config({"name": "toy_probe", "every": 0}, object(), object())
    cfg = compose_config(*TINY, "floss=none", "train.epochs=20")
    cfg.analysis = OmegaConf.create({"name": "toy_probe", "every": 10})
    settings = validate(cfg)
    job = make_job(settings, tmp_path)  # no job registered for it: training, with its hook
    assert type(job) is TrainJob and isinstance(job.run.recorder, Probe)
    job.execute()
    assert (tmp_path / "probe.txt").read_text() == "0 10 20"

    @job_for(ProbeConfig)
    class ProbeJob:
        def __init__(self, cfg, out) -> None:
            self.cfg = cfg

    assert type(make_job(settings, tmp_path)) is ProbeJob
    ProbeConfig.single_network = True  # declared, not recognised by name
    try:
        cfg.realizations = 2
        with pytest.raises(ConfigError, match=r"^realizations=2: must be 1 for analysis=toy_probe"):
            validate(cfg)
    finally:
        del ProbeConfig.single_network


# --- every registered entry has its config file, and the file only sets schema keys -------------
@pytest.mark.parametrize(
    ("group", "name"), [(g, n) for g, reg in REGISTRIES.items() for n in reg.names()]
)
def test_every_registered_name_has_a_config_file_with_only_its_keys(group, name):
    path = CONFIGS / group / f"{name}.yaml"
    assert path.is_file(), f"{group}={name} is registered but {path} is missing"
    values = yaml.safe_load(path.read_text()) or {}
    fields = {f.name for f in dataclasses.fields(REGISTRIES[group].lookup(name).config)}
    assert set(values) - {"defaults"} <= fields
    assert values.get("name", name) == name


@pytest.mark.parametrize("group", sorted(REGISTRIES))
def test_every_config_file_of_a_group_is_registered(group):
    files = {p.stem for p in (CONFIGS / group).glob("*.yaml")}
    assert files == set(REGISTRIES[group].names())


@pytest.mark.parametrize("name", TASKS.names())
def test_every_task_from_its_config_file_keeps_the_seam(name):
    """Each registered task, at its schema defaults with a short T, gives batches, held-out
    sets and drives of the documented shapes and a loss per realization."""
    values = yaml.safe_load((CONFIGS / "task" / f"{name}.yaml").read_text())
    values.pop("defaults", None)
    values["T"] = 2 * values.get("delay", 10) + 2
    task = build_task(values)
    gens = [torch.Generator().manual_seed(s) for s in range(2)]
    x, y = task.sample(gens, 3)
    assert x.shape[:3] == y.shape[:3] == (values["T"], 2, 3)
    assert (x.shape[-1], y.shape[-1]) == (task.S, task.O)
    xt, yt = task.test_set(gens, 4)  # its own size where a task fixes it (the sine grid)
    assert xt.shape[:2] == yt.shape[:2] == (values["T"], 2) and xt.shape[2] == yt.shape[2]
    assert task.drive(gens, 7, 1).shape == (7, 2, 1, task.S)
    net = build_model({"name": "vanilla", "N": 4}, task.S, task.O, [0, 1])
    loss = task.loss(net.predict(x), y)
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    assert isinstance(task.success_text, str) and task.success_text
