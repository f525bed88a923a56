"""The state shapes ``lyapunov_spectrum`` accepts for the models ([D], [R, D], [R, B, D]), each
through the fused kernel where the model has one, with the same exponents; ambiguous shapes are
refused with one line naming the expected ones."""

from __future__ import annotations

import pytest
import torch

from flossrun.lyapunov import lyapunov_spectrum
from flossrun.models import build_model


def _count_fused(model, monkeypatch):
    calls = []
    fused = model.lyapunov_fused

    def spy(h0, inputs, Q0, qr_at, keep):
        out = fused(h0, inputs, Q0, qr_at, keep)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(model, "lyapunov_fused", spy)
    return calls


@pytest.mark.parametrize("name", ["vanilla", "lstm", "gru"])
def test_state_shapes_give_the_same_exponents_through_the_fused_kernel(float64, name, monkeypatch):
    R, T, k = 3, 40, 3
    model = build_model({"name": name, "N": 6}, 1, 1, list(range(R)), dtype=torch.float64)
    x = torch.randn(T, 1, generator=torch.Generator().manual_seed(0))
    calls = _count_fused(model, monkeypatch) if hasattr(model, "lyapunov_fused") else None
    h = model.h0.detach()  # [R, D]
    seeds = list(model.seeds)
    ref = lyapunov_spectrum(model, h.unsqueeze(1), x.unsqueeze(1), k, transient=5, seed=seeds)
    assert ref.exponents.shape == (R, 1, k)
    variants = {  # h0, inputs -> exponents shape
        "[R, D], [T, S]": (h, x, (R, k)),
        "[R, D], [T, R, S]": (h, x.unsqueeze(1).expand(T, R, 1), (R, k)),
        "[R, B, D], [T, S]": (h.unsqueeze(1), x, (R, 1, k)),
        "[R, B, D], [T, R, B, S]": (h.unsqueeze(1), x[:, None, None].expand(T, R, 1, 1), (R, 1, k)),
    }
    for label, (h0, inputs, shape) in variants.items():
        res = lyapunov_spectrum(model, h0, inputs, k, transient=5, seed=seeds)
        assert res.exponents.shape == shape, label
        assert res.h.shape == h0.shape and res.block_logs.shape[1:] == shape, label
        torch.testing.assert_close(res.exponents.reshape(R, 1, k), ref.exponents, msg=label)
    # [D] for a lone network, which is realization 1 of the ensemble
    lone = build_model({"name": name, "N": 6}, 1, 1, [1], dtype=torch.float64)
    calls_lone = _count_fused(lone, monkeypatch) if calls is not None else None
    res = lyapunov_spectrum(lone, lone.h0.detach()[0], x, k, transient=5, seed=[1])
    assert res.exponents.shape == (k,) and res.h.shape == (lone.state_dim,)
    torch.testing.assert_close(res.exponents, ref.exponents[1, 0])
    if calls is not None:  # the fused kernel took every shape
        assert calls == [True] * 5 and calls_lone == [True]


@pytest.mark.parametrize(
    ("h0_shape", "x_shape"),
    [
        ((4, 6), (20, 5, 1)),  # [B, D] with B != R, or inputs for 5 trajectories
        ((5, 6), (20, 1)),  # first axis not the 4 realizations
        ((6,), (20, 1)),  # [D] with R = 4: which realization?
        ((4, 2, 6), (20, 3, 1)),  # inputs for 3 trajectories, state for 2
        ((4, 2, 6), (20, 4, 3, 1)),
        ((4, 1, 1, 6), (20, 1)),  # an extra axis
        ((4, 7), (20, 1)),  # not the state size
    ],
)
def test_ambiguous_states_are_refused_in_one_line(h0_shape, x_shape):
    model = build_model({"name": "vanilla", "N": 6}, 1, 1, [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"h0 \[D\] \(R = 1 only\), \[R, D\] or \[R, B, D\]") as e:
        lyapunov_spectrum(model, torch.zeros(h0_shape), torch.zeros(x_shape), 2)
    assert "\n" not in str(e.value) and "R = 4, D = 6" in str(e.value)
