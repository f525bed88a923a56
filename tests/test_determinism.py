"""A realization's numbers depend only on its own seed and config (docs/design.md §6).

Not on its batch-mates in the ensemble, on how the ensemble is sliced across cores, or on the
thread count: checked bit for bit, piece by piece (elementwise ops, reductions, batched
products, the QR) and through whole jobs (in-process, at small odd sizes) after enough flossing
epochs for any rounding difference to have grown (flossing drives exponents toward 0, where the
dynamics amplify it). test_cli.py checks the same through the command: ``-m seed=0,1`` equals
``realizations=2``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest
import torch
from cli_support import run_in_process

from flossrun.fast import blas
from flossrun.fast import qr as fast_qr
from flossrun.fast.ops import dtanh, pairwise_sum, realization_sum, sigmoid, softplus
from flossrun.models import MODELS


def _alone_equals_batched(f, x: torch.Tensor) -> bool:
    """``f`` of each row of ``x [R, ...]`` alone equals that row of ``f(x)``, bit for bit."""
    full = f(x.clone())
    return all(torch.equal(f(x[r : r + 1].clone())[0], full[r]) for r in range(x.shape[0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("op", [dtanh, sigmoid, softplus, torch.tanh, torch.exp])
def test_elementwise_ops_give_each_element_the_same_rounding_wherever_it_sits(op, dtype):
    gen = torch.Generator().manual_seed(0)
    for shape in [(4, 1, 24), (4, 3, 7), (4, 16, 80), (4, 5, 33)]:
        x = 3 * torch.randn(shape, generator=gen, dtype=dtype)
        assert _alone_equals_batched(op, x), (op, shape)


def test_the_placement_independent_ops_equal_their_definitions(float64):
    u = torch.linspace(-30, 30, 2001)
    torch.testing.assert_close(dtanh(u), torch.cosh(u) ** -2, rtol=1e-14, atol=0)
    torch.testing.assert_close(sigmoid(u), torch.sigmoid(u), rtol=1e-14, atol=1e-16)
    exact = torch.logaddexp(u, torch.zeros_like(u))  # log(1 + eᵘ)
    torch.testing.assert_close(softplus(u), exact, rtol=1e-14, atol=2.3e-16)  # ≤ ε/2 absolute


@pytest.mark.parametrize("threads", [1, 2])
def test_pairwise_sums_do_not_depend_on_the_batch_or_the_thread_count(threads):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(1)
        for n, inner in itertools.product((1, 2, 3, 39, 4480, 75_000), (1, 20, 75)):
            x = torch.randn(n, 4, inner, generator=gen)
            full = pairwise_sum(x, 0)
            for r in range(4):
                assert torch.equal(full[r], pairwise_sum(x[:, r : r + 1].clone(), 0)[0])
            torch.testing.assert_close(full.double(), x.double().sum(0), rtol=1e-5, atol=1e-3)
            sums = realization_sum(x, 1)
            assert all(
                torch.equal(sums[r], realization_sum(x[:, r : r + 1].clone(), 1)[0])
                for r in range(4)
            )
    finally:
        torch.set_num_threads(old)


def _layout(x: torch.Tensor, transposed: bool) -> torch.Tensor:
    """``x`` as a fresh tensor, its matrices row-major or (``transposed``) column-major."""
    return x.transpose(1, 2).contiguous().transpose(1, 2) if transposed else x.contiguous()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_products_give_each_matrix_the_same_result_alone_and_in_a_batch(dtype):
    gen = torch.Generator().manual_seed(2)
    dims = (1, 3, 16, 75, 80)
    for (M, K, N), (ta, tb) in itertools.product(
        itertools.product(dims, (3, 80), dims), [(False, False), (False, True), (True, False)]
    ):
        a = _layout(torch.randn(7, M, K, generator=gen, dtype=dtype), ta)
        b = _layout(torch.randn(7, K, N, generator=gen, dtype=dtype), tb)
        c = torch.randn(7, M, N, generator=gen, dtype=dtype)
        full = blas.bmm(a, b)
        acc = blas.baddbmm_(c.clone(), a, b, alpha=-1.0)
        torch.testing.assert_close(full, torch.bmm(a, b))
        for i, n in itertools.product((0, 3, 5), (1, 2)):
            s = slice(i, i + n)
            one_a, one_b = _layout(a[s], ta), _layout(b[s], tb)
            assert torch.equal(blas.bmm(one_a, one_b), full[s]), (M, K, N, ta, tb, i, n)
            assert torch.equal(blas.baddbmm_(c[s].clone(), one_a, one_b, alpha=-1.0), acc[s])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cholesky_qr_takes_its_route_per_matrix(dtype):
    """An ill-conditioned batch-mate (float64 route, Householder fallback) leaves the others'
    factors exactly as they are alone."""
    gen = torch.Generator().manual_seed(3)
    At = torch.randn(5, 20, 24, generator=gen, dtype=dtype)
    At[1, -1] = At[1, 0] * (1 + 1e-7)  # κ ~ 1e7: past every threshold
    At[3, 0] *= 300.0  # κ ~ 300: float64 solve for float32 input
    full = fast_qr.cholesky_qr_rows(At.clone())
    for r in range(5):
        alone = fast_qr.cholesky_qr_rows(At[r : r + 1].clone())
        for got, want in zip(alone, full, strict=True):
            assert torch.equal(got[0], want[r]), r


def test_slices_and_the_one_thread_caller_with_two_threads(monkeypatch):
    """Two intra-op threads (the test session runs on one): the ensemble is cut into two
    slices, the caller's own ops run on one thread meanwhile, and the sliced flossing pass
    equals the unsliced one bit for bit."""
    from flossrun.fast import floss
    from flossrun.fast.parallel import caller_on_one_thread, ensemble_slices
    from flossrun.models import VanillaRNN

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cpu = torch.device("cpu")
        assert ensemble_slices(16, cpu) == [slice(0, 8), slice(8, 16)]
        with caller_on_one_thread(16, cpu):
            assert torch.get_num_threads() == 1
            assert len(ensemble_slices(16, cpu)) == 2
        assert torch.get_num_threads() == 2
        m = VanillaRNN(24, 1, 1, range(5))
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(0, 2, (30, 5, 1, 1), generator=gen).float()
        Q0 = torch.linalg.qr(torch.randn(5, 1, 24, 20, generator=gen))[0]
        qr_at, keep = [True] * 30, [t >= 5 for t in range(30)]
        sliced = floss.vanilla_lyapunov(m.W, m.drive(x), m.initial_state(1), Q0, qr_at, keep)
        monkeypatch.setattr(floss, "ensemble_slices", lambda R, device: [slice(0, R)])
        whole = floss.vanilla_lyapunov(m.W, m.drive(x), m.initial_state(1), Q0, qr_at, keep)
        assert len(sliced) == len(whole) > 0
        assert all(torch.equal(a, b) for a, b in zip(sliced, whole, strict=True))
    finally:
        torch.set_num_threads(old)


# --- whole jobs, in-process at small odd sizes ------------------------------------------------
ISSUE = [  # the setting of the report that found the batch-mate dependence, at N = 13, k = 11
    "floss=pre", "model.N=13", "floss.k=11", "floss.pre_epochs=60", "train.epochs=1",
    "task.T=60", "task.delay=10", "train.test_size=32", "diag.full_spectrum=false", "device=cpu",
]  # fmt: skip
TRAINING = [  # training with interflossing; odd-sized QR matrices (N = 17, k = 15)
    "model.N=17", "floss.k=15",
    "floss=pre_during", "floss.pre_epochs=30", "floss.epochs=15", "floss.every=15",
    "floss.times=2", "train.epochs=45", "train.eval_every=15", "train.log_every=5",
    "task.T=60", "task.delay=20", "train.test_size=64", "diag.steps=120", "device=cpu",
]  # fmt: skip


def _run(tmp_path: Path, name: str, *args: str, threads: int) -> Path:
    return run_in_process(tmp_path / name, *args, threads=threads)


def _network(run: Path, seed: int) -> dict[str, pd.DataFrame]:
    """Every number a run wrote for one seed (wall time and realization index aside)."""
    frames = {}
    for name in ("metrics.csv", "spectra.csv", "summary.csv"):
        df = pd.read_csv(run / name)
        df = df[df.seed == seed].drop(columns=["realization", "wall_seconds"], errors="ignore")
        assert len(df), (run, name, seed)
        frames[name] = df.reset_index(drop=True)
    return frames


def _assert_same_network(a: dict, b: dict) -> None:
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


def test_flossed_exponents_alone_equal_inside_an_ensemble_with_any_thread_count(tmp_path):
    four_two = _run(tmp_path, "r4t2", *ISSUE, "realizations=4", "seed=0", threads=2)
    four_one = _run(tmp_path, "r4t1", *ISSUE, "realizations=4", "seed=0", threads=1)
    alone = _run(tmp_path, "r1", *ISSUE, "realizations=1", "seed=2", threads=2)
    metrics = pd.read_csv(four_two / "metrics.csv")
    floss = metrics.query("phase in ('prefloss', 'floss') and name == 'lambda_1_floss'")
    assert floss.epoch.max() == 60
    for seed in range(4):
        _assert_same_network(_network(four_two, seed), _network(four_one, seed))
    _assert_same_network(_network(four_two, 2), _network(alone, 2))


def test_training_with_interflossing_alone_equals_inside_an_ensemble(tmp_path):
    ensemble = _run(tmp_path, "r3", *TRAINING, "realizations=3", "seed=0", threads=2)
    alone = _run(tmp_path, "r1", *TRAINING, "realizations=1", "seed=1", threads=1)
    net = _network(alone, 1)
    assert set(net["metrics.csv"].phase) == {"train", "prefloss", "floss", "eval"}
    _assert_same_network(_network(ensemble, 1), net)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_alone_equals_itself_inside_an_ensemble(name):
    """Training and flossing steps of realization seed 1 alone and inside seeds 0..2, float32:
    every parameter equal bit for bit (the architectures go through the same seam)."""
    from flossrun import seeding, training
    from flossrun.models import build_model
    from flossrun.tasks import make_task

    task = make_task("delayed_xor", 4, T=30, channels=1, amplitude=1.0, taps=2)

    def run(seeds: list[int]) -> dict[str, torch.Tensor]:
        model = build_model({"name": name, "N": 12}, 1, 1, seeds)
        train_opt = training.make_adam(list(model.parameters()), 1e-3)
        floss_opt = training.make_adam(model.floss_parameters(), 1e-3)
        alive = torch.ones(len(seeds), dtype=torch.bool)
        frames = seeding.generators(seeds, "frame")
        for epoch in range(3):
            x, y = task.sample(seeding.generators(seeds, f"train{epoch}"), 8)
            training.train_epoch(model, task, x, y, train_opt, 1.0, alive)
            bits = torch.randint(0, 2, (40, 1, 1, 1), dtype=torch.float32) * 2 - 1
            x_floss = bits.expand(40, len(seeds), 1, 1).contiguous()
            training.floss_epoch(model, x_floss, 4, 10, 0.0, floss_opt, alive, frames=frames)
        return {k: v.detach()[seeds.index(1)] for k, v in model.named_parameters()}

    torch.manual_seed(0)
    together = run([0, 1, 2])
    torch.manual_seed(0)
    alone = run([1])
    for key, value in together.items():
        assert torch.equal(value, alone[key]), (name, key, (value - alone[key]).abs().max())


@pytest.mark.parametrize("modes", [("mean", "per_tensor"), ("sum", "global")])
@pytest.mark.parametrize("name", ["lstm", "orthogonal"])
def test_sine_training_and_orbit_snapshots_alone_equal_inside_an_ensemble(name, modes):
    """The sine generator (docs/design.md §10) and the orbit analysis (§11): seed 1 trained alone
    and inside seeds 0..2, then its open-loop orbits and their λ1, equal bit for bit — with
    flossrun's mean loss and per-tensor clip and with the reference's summed loss and global
    clip (``train.loss_reduction``, ``train.clip_mode``: each network on its own norm)."""
    from flossrun import seeding, training
    from flossrun.analyses import OrbitConfig
    from flossrun.analyses.orbit import OrbitRecorder
    from flossrun.models import build_model
    from flossrun.tasks import build_task

    task = build_task({"name": "sine_generator", "T": 30})
    orbit = OrbitConfig(n_omega=3, inits=2, steps=50, burn_in=30)

    def run(seeds: list[int]) -> dict[str, torch.Tensor]:
        model = build_model({"name": name, "N": 8}, task.S, task.O, seeds)
        opt = training.make_adam(list(model.parameters()), 1e-2)
        alive = torch.ones(len(seeds), dtype=torch.bool)
        gens = seeding.generators(seeds, "train")
        for _ in range(3):
            x, y = task.sample(gens, 5)
            training.train_epoch(model, task, x, y, opt, 0.25, alive, loss_reduction=modes[0],
                                 clip_mode=modes[1])  # fmt: skip
        snap = OrbitRecorder(orbit, task, seeds, model.state_dim, 3).snapshot(model, 3)
        i = seeds.index(1)
        out = {k: v.detach()[i] for k, v in model.named_parameters()}
        return {**out, "orbit": snap["outputs"][i], "orbit_lambda_1": snap["lambda_1"][i]}

    together, alone = run([0, 1, 2]), run([1])
    for key, value in together.items():
        assert torch.equal(value, alone[key]), (name, key, (value - alone[key]).abs().max())


JACOBIAN = [  # long-term Jacobian diagnostics of a network large enough for LAPACK to thread
    "floss=none", "model.N=64", "train.epochs=1", "task.T=160", "task.delay=10",
    "train.test_size=32", "diag.full_spectrum=false", "diag.jacobian=true", "diag.steps=160",
    "diag.transient=10", "diag.lags=[1,50,150]", "device=cpu", "model.g=1.5",
]  # fmt: skip


def test_jacobian_diagnostics_do_not_depend_on_the_thread_count(tmp_path):
    two = pd.read_csv(
        _run(tmp_path, "t2", *JACOBIAN, "realizations=3", threads=2) / "diagnostics.csv"
    )
    one = pd.read_csv(
        _run(tmp_path, "t1", *JACOBIAN, "realizations=3", threads=1) / "diagnostics.csv"
    )
    assert set(two.stage) == {"initial", "final"} and len(two) > 500
    pd.testing.assert_frame_equal(two, one, check_exact=True)
