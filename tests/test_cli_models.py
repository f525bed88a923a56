"""Every architecture through the real ``flossrun`` command (a subprocess at tiny sizes); bad
model options found in-process (the line the command prints is checked in test_cli.py)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml
from cli_support import SWEEP_TABLES_ONLY, TINY, config_error, flossrun, run_in_process

from flossrun.models import MODELS

N = 12  # model.N in TINY
STATE = {"lstm": 2 * N, "stable_lstm": 2 * N}  # D = N for the others


HALVES = [sorted(MODELS)[0::2], sorted(MODELS)[1::2]]  # two sweeps, run side by side under -n 2


@pytest.mark.parametrize("names", HALVES, ids=["-".join(h) for h in HALVES])
def test_every_model_runs_end_to_end_on_delayed_xor(tmp_path, names):
    flossrun(
        tmp_path,
        "-m",
        *TINY,
        "task=delayed_xor",
        "floss.k=6",
        f"model={','.join(names)}",
        SWEEP_TABLES_ONLY,
    )
    runs = {
        yaml.safe_load((p.parent / ".hydra" / "config.yaml").read_text())["model"]["name"]: p.parent
        for p in tmp_path.glob("outputs/default/*/summary.csv")
    }
    assert sorted(runs) == names
    for name, run in runs.items():
        D = STATE.get(name, N)
        spectra = pd.read_csv(run / "spectra.csv")
        for stage in ("initial", "preflossed", "final"):
            assert sorted(spectra[spectra.stage == stage]["index"]) == list(range(1, D + 1))
        summary = pd.read_csv(run / "summary.csv")
        assert not summary.diverged.any() and summary.test_accuracy.between(0, 1).all()
        ck = torch.load(run / "checkpoint.pt", weights_only=True)
        assert ck["model"]["h0"].shape == (1, D), name


def test_the_halves_cover_every_model():
    assert sorted(HALVES[0] + HALVES[1]) == sorted(MODELS) and all(HALVES)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["model=stable", "model.rho=1.5"], "model.rho"),
        (["model=stable_lstm", "model.l1=[0.1,0.2]"], "model.l1"),
        (["model=gru", "model.N=0"], "model.N"),
        (["model=gru", f"floss.k={N + 1}"], "floss.k"),  # k <= D = N
        (["model=lstm", "model.name=transformer"], "model.name"),
        (["model=lstm", "model.g=2"], "model.g"),  # a vanilla option the LSTM does not have
        (["model.rho=0.5"], "model.rho"),  # default model=vanilla has no rho
    ],
)
def test_bad_model_option_fails_in_one_line_naming_the_key(overrides, key):
    line = config_error(*TINY, *overrides)
    assert "\n" not in line, line
    assert line.startswith((f"flossrun: error: {key}=", f"flossrun: error: {key}:")), line


def test_lstm_accepts_k_up_to_its_state_size(tmp_path):
    run = run_in_process(tmp_path, *TINY, "model=lstm", f"floss.k={2 * N}", "train.epochs=2")
    metrics = pd.read_csv(run / "metrics.csv")
    floss = metrics.query("phase == 'prefloss' and name == 'lambda_1_floss'")
    assert floss.epoch.max() == 20  # floss.pre_epochs of TINY, flossing all 2N exponents
    line = config_error(*TINY, "model=lstm", f"floss.k={2 * N + 1}")
    assert f"must be in [0, {2 * N}]" in line
