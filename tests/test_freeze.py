"""``train.freeze_after_success``: networks that have succeeded stop training (docs/design.md §5).

Success and epochs-to-success are those of the run without freezing; every number a network
writes up to its freezing is bit for bit the same (the others' batch shrinks around it); after
it, its weights stop changing (its evaluations repeat) and its training rows are NaN.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from flossrun.models import MODELS
from flossrun.tasks import make_task
from flossrun.training import make_adam, train_epoch

FLOSSRUN = str(Path(sys.executable).parent / "flossrun")
SWEEP = [  # four networks that succeed at epochs 80, 100, 160 and 240
    "model.N=16", "task.delay=8", "task.T=30", "train.epochs=300", "train.eval_every=20",
    "train.log_every=20", "train.test_size=64", "train.batch=8", "train.lr=1e-2",
    "realizations=4", "dtype=float64", "floss=none", "diag.steps=60", "diag.transient=10",
    "threads=1", "device=cpu",
]  # fmt: skip
M = 2


def _run(tmp_path: Path, name: str, *args: str) -> Path:
    out = tmp_path / name
    proc = subprocess.run(
        [FLOSSRUN, *SWEEP, *args, f"hydra.run.dir={out}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.slow  # two sweeps (~12 s): make test-slow, CI
def test_freezing_keeps_success_and_every_number_up_to_the_freeze(tmp_path):
    plain = _run(tmp_path, "plain")
    frozen = _run(tmp_path, "frozen", f"train.freeze_after_success={M}")
    cols = ["seed", "success", "epochs_to_success", "diverged"]
    a, b = (pd.read_csv(p / "summary.csv")[cols] for p in (plain, frozen))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert a.success.all() and a.epochs_to_success.nunique() > 1

    ma, mb = (pd.read_csv(p / "metrics.csv") for p in (plain, frozen))
    E = ma.epoch.max()
    n_frozen_early = 0
    for seed in a.seed:
        ev = ma[(ma.seed == seed) & (ma.phase == "eval") & (ma.name == "test_accuracy")]
        ok = (ev.sort_values("epoch").value >= 0.95).tolist()
        epochs = sorted(ev.epoch)
        streaks = [i for i in range(M - 1, len(ok)) if all(ok[i - M + 1 : i + 1])]
        freeze = epochs[streaks[0]] if streaks else math.inf  # the eval that freezes it
        n_frozen_early += freeze < E
        ra, rb = ma[ma.seed == seed], mb[mb.seed == seed]
        before = ["epoch", "phase", "name"]
        pd.testing.assert_frame_equal(
            ra[ra.epoch <= freeze].sort_values(before).reset_index(drop=True),
            rb[rb.epoch <= freeze].sort_values(before).reset_index(drop=True),
            check_exact=True,
        )
        after = rb[rb.epoch > freeze]
        assert after[after.phase == "train"].value.isna().all()
        for name in ("test_loss", "test_accuracy", "lambda_1_eval"):
            at = rb[(rb.phase == "eval") & (rb.name == name) & (rb.epoch >= freeze)]
            assert at.value.nunique() <= 1, (seed, name)  # the same weights evaluated again
    assert n_frozen_early >= 3


@pytest.mark.parametrize("name", sorted(MODELS))
def test_inactive_realizations_are_not_computed_and_keep_every_parameter(float64, name):
    task = make_task("delayed_xor", 2, T=12)
    model = MODELS[name].build(6, 1, 1, [0, 1, 2], dtype=torch.float64)
    twin = MODELS[name].build(6, 1, 1, [0, 1, 2], dtype=torch.float64)
    gens = [torch.Generator().manual_seed(s) for s in range(3)]
    x, y = task.sample(gens, 4, dtype=torch.float64)
    opt, opt2 = make_adam(list(model.parameters()), 1e-2), make_adam(list(twin.parameters()), 1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    active = torch.tensor([True, False, True])
    alive = torch.ones(3, dtype=torch.bool)
    out = train_epoch(model, task, x, y, opt, 0.03, alive, active)
    full = train_epoch(twin, task, x, y, opt2, 0.03, torch.ones(3, dtype=torch.bool))
    assert torch.isnan(out["loss"][1]) and torch.isnan(out["grad_h0_norm"][1])
    torch.testing.assert_close(out["loss"][[0, 2]], full["loss"][[0, 2]], rtol=0, atol=0)
    for (n, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert torch.equal(p[1], before[n][1]), n  # left exactly as it was
        assert torch.equal(p[[0, 2]], q[[0, 2]]), n  # the others as in the full ensemble
    none = train_epoch(model, task, x, y, opt, 0.03, alive, torch.zeros(3, dtype=torch.bool))
    assert torch.isnan(none["loss"]).all() and set(none) == set(out)
