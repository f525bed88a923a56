"""Checkpointed fused Benettin passes (flossrun.fast.floss.checkpointing): the state and frame are
kept every m steps and each segment's trace is recomputed in the backward pass. Exponents, final
state and every gradient equal the plain pass (float64; the vanilla kernel adds the same products
in the same order, so bit for bit)."""

from __future__ import annotations

import pytest
import torch

from flossrun.fast import floss
from flossrun.lyapunov import lyapunov_spectrum
from flossrun.models import build_model


def _pass(model, x, h0, k, every, **kw):
    model.zero_grad()
    h0 = h0.detach().clone().requires_grad_(True)
    res = lyapunov_spectrum(model, h0, x, k, seed=list(model.seeds), checkpoint_every=every, **kw)
    loss = ((res.exponents - 0.1) ** 2).sum() + 0.01 * res.h.square().sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return res, {**grads, "h0": h0.grad.clone()}


@pytest.mark.parametrize("name", ["vanilla", "lstm"])
@pytest.mark.parametrize(("R", "every", "transient", "qr_every"), [(3, 4, 5, 1), (1, 3, 7, 2)])
def test_checkpointed_pass_equals_the_plain_one(float64, name, R, every, transient, qr_every):
    """Segments that do not divide T, a transient whose QRs span several segments (segments
    without kept QRs), QR every other step, a lone realization (paired) and an ensemble."""
    model = build_model({"name": name, "N": 6}, 2, 1, list(range(R)), dtype=torch.float64)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(23, R, 2, 2, generator=gen)
    h0 = model.initial_state(2).detach() + 0.2 * torch.randn(R, 2, model.state_dim, generator=gen)
    kw = {"transient": transient, "qr_every": qr_every}
    plain, g_plain = _pass(model, x, h0, 5, 0, **kw)
    ckpt, g_ckpt = _pass(model, x, h0, 5, every, **kw)
    assert plain.block_steps == ckpt.block_steps
    torch.testing.assert_close(ckpt.block_logs, plain.block_logs, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(ckpt.h, plain.h, rtol=1e-13, atol=1e-14)
    assert g_ckpt.keys() == g_plain.keys() and {"W", "V", "b", "h0"} <= g_plain.keys()
    for key, g in g_plain.items():
        torch.testing.assert_close(g_ckpt[key], g, rtol=1e-11, atol=1e-12, msg=key)
        if name == "vanilla":
            assert torch.equal(g_ckpt[key], g), key


def test_automatic_checkpointing_starts_past_the_trace_limit(monkeypatch):
    """``None`` checkpoints with m = ⌈√T⌉ once the estimated trace passes the limit of its
    length (long passes: LONG_PASS_BYTES; short ones, such as flossing's: AUTO_CHECKPOINT_BYTES);
    0 never."""
    long_T, short_T = floss.LONG_PASS_STEPS + 144, floss.LONG_PASS_STEPS - 1  # 400, 255
    assert floss.LONG_PASS_BYTES < floss.AUTO_CHECKPOINT_BYTES
    with floss.checkpointing(None):
        assert floss.segment_length(long_T, floss.LONG_PASS_BYTES) == 0
        assert floss.segment_length(long_T, floss.LONG_PASS_BYTES + 1) == 20
        assert floss.segment_length(long_T + 1, floss.LONG_PASS_BYTES + 1) == 21
        assert floss.segment_length(short_T, floss.AUTO_CHECKPOINT_BYTES) == 0
        assert floss.segment_length(short_T, floss.AUTO_CHECKPOINT_BYTES + 1) == 16
    with floss.checkpointing(0):
        assert floss.segment_length(400, 10**12) == 0
    with floss.checkpointing(50):
        assert floss.segment_length(400, 0) == 50
        assert floss.segment_length(40, 0) == 0  # one segment: the plain pass
    with pytest.raises(ValueError, match="checkpoint_every"):
        with floss.checkpointing(-1):
            pass
    # the automatic choice is taken in a real pass (and gives the plain pass's numbers)
    seen = []
    original = floss.segment_length

    def spy(T, trace_bytes):
        seen.append(original(T, trace_bytes))
        return seen[-1]

    monkeypatch.setattr(floss, "segment_length", spy)
    monkeypatch.setattr(floss, "AUTO_CHECKPOINT_BYTES", 1000)
    model = build_model({"name": "vanilla", "N": 8}, 1, 1, [0, 1])
    lyapunov_spectrum(model, model.initial_state(1), torch.zeros(30, 1, 1), 3)
    assert seen == [6]
