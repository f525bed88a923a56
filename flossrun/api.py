"""The library from Python in a few calls: build a network, compute its spectrum, floss it.

    import flossrun
    net = flossrun.vanilla(N=80, g=3.0, realizations=4, seed=0)   # 4 networks, seeds 0..3
    lam = flossrun.spectrum(net, k=10, steps=500)                  # [4, 10] nats/step
    hist = flossrun.floss(net, k=10, target=0.0, epochs=200)       # λ1 per epoch: [200, 4]
    fig = flossrun.plots.spectrum_figure({"before": lam, "after": flossrun.spectrum(net, 10)})

Thin wrappers over what ``flossrun`` runs use (:func:`flossrun.models.build_model`,
:func:`flossrun.lyapunov.lyapunov_spectrum`, :func:`flossrun.training.floss_epoch`), with the
same random streams: realization ``r`` of a model built with ``seed`` draws its weights, its
input bits and its Lyapunov frames from seed ``seed + r``, as ``flossrun seed=... realizations=R``
does, so a spectrum here equals the ``initial`` spectrum of that run's ``spectra.csv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from flossrun import seeding
from flossrun.fast.ops import realization_mean
from flossrun.lyapunov import lyapunov_spectrum
from flossrun.models import RecurrentEnsemble, build_model
from flossrun.tasks import random_bits
from flossrun.training import floss_epoch, make_adam, model_threads


def build(
    name: str = "vanilla",
    N: int = 80,
    *,
    realizations: int = 1,
    seed: int = 0,
    inputs: int = 1,
    outputs: int = 1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    **keys: Any,
) -> RecurrentEnsemble:
    """An ensemble of ``realizations`` networks of architecture ``name`` (``vanilla``, ``lstm``,
    ``gru``, ``orthogonal``, ``stable``, ``stable_lstm``) with ``N`` hidden units, ``inputs``
    input channels and ``outputs`` outputs; ``keys``: the model's other config keys
    (``configs/model/<name>.yaml``, e.g. ``g=3.0``). Realization ``r`` has seed ``seed + r``.
    Raises ``ValueError`` (one line naming the key) on an impossible value."""
    seeds = seeding.realization_seeds(seed, realizations)
    fields = {"name": name, "N": N, **keys}
    return build_model(fields, inputs, outputs, seeds, dtype=dtype, device=device)


def vanilla(
    N: int = 80, g: float = 1.0, *, realizations: int = 1, seed: int = 0, **kw: Any
) -> RecurrentEnsemble:
    """Vanilla tanh RNNs with gain ``g`` (chaotic for ``g > 1`` at large ``N``); see
    :func:`build` for the other arguments."""
    return build("vanilla", N, g=g, realizations=realizations, seed=seed, **kw)


def _seeds(model: RecurrentEnsemble, seed: int | None) -> list[int]:
    """Per-realization seeds: the model's own, or ``seed + r``."""
    return list(model.seeds) if seed is None else seeding.realization_seeds(seed, model.R)


def drive(
    model: RecurrentEnsemble, steps: int, batch: int = 1, seed: int | None = None,
    stream: str = "diag",
) -> torch.Tensor:  # fmt: skip
    """Random 0/1 input bits ``[steps, R, batch, S]`` from each realization's ``stream``
    (``diag``: what runs compute spectra on; ``floss``: what they floss on)."""
    gens = seeding.generators(_seeds(model, seed), stream)
    p = next(model.parameters())
    return random_bits(gens, steps, batch, model.S, dtype=p.dtype).to(p.device)


def spectrum(
    model: RecurrentEnsemble,
    k: int | None = None,
    steps: int = 300,
    *,
    transient: int = 50,
    seed: int | None = None,
    inputs: torch.Tensor | str = "bits",
    grad: bool = False,
) -> torch.Tensor:
    """The first ``k`` Lyapunov exponents (nats/step, descending) of every realization:
    ``[R, k]`` (default ``k``: the state size D, the full spectrum).

    Along ``steps`` steps from the model's own initial state ``h0`` (one per realization),
    averaged over the steps after ``transient``. ``inputs``: ``"bits"`` (random 0/1 bits, as
    runs' spectra.csv), ``"zeros"`` (autonomous dynamics), or a tensor ``[steps, R, B, S]``
    (exponents then averaged over its ``B`` trajectories). ``seed``: base seed of the bits and
    the initial frames (default: the model's own seeds). ``grad=True`` keeps the graph (the
    exponents are differentiable in the parameters); otherwise under ``torch.no_grad()``.
    """
    k = model.state_dim if k is None else k
    p = next(model.parameters())
    if isinstance(inputs, str):
        if inputs not in ("bits", "zeros"):
            raise ValueError(f"inputs must be 'bits', 'zeros' or a tensor, got {inputs!r}")
        zeros = p.new_zeros(steps, model.R, 1, model.S)
        x = drive(model, steps, 1, seed) if inputs == "bits" else zeros
    else:
        x = inputs.to(device=p.device, dtype=p.dtype)
        if x.dim() != 4 or x.shape[1] != model.R or x.shape[3] != model.S:
            raise ValueError(
                f"inputs must be [steps, R={model.R}, B, S={model.S}], got {list(x.shape)}"
            )
    with torch.set_grad_enabled(grad), model_threads(model, p.device):
        h0 = model.initial_state(x.shape[2])  # [R, B, D]: one state per realization and input
        lam = lyapunov_spectrum(
            model, h0, x, k, transient=transient, seed=_seeds(model, seed)
        ).exponents  # [R, B, k]
    return lam.mean(dim=1)


def floss(
    model: RecurrentEnsemble,
    k: int,
    target: float | Sequence[float] = 0.0,
    epochs: int = 500,
    *,
    lr: float = 1e-3,
    steps: int = 55,
    transient: int = 16,
    batch: int = 1,
    qr_every: int = 1,
    seed: int | None = None,
    task: Any = None,
) -> dict[str, torch.Tensor]:
    """Gradient flossing in place: ``epochs`` Adam steps (lr ``lr``) on the model's flossing
    parameters toward ``λ_i = target`` for ``i ≤ k`` (one number or ``k`` numbers, nats/step),
    each on fresh input of ``batch`` sequences of ``steps`` steps (the first ``transient``
    discarded) — the preflossing of a ``flossrun`` run (``floss.*`` keys, same defaults).

    Input: random 0/1 bits (or ``task.drive`` of a flossrun task) from each realization's
    ``floss`` stream, frames from its ``frame`` stream (``seed``: base seed; default: the
    model's own). A realization whose loss or gradient stops being finite is frozen.
    Returns ``loss [epochs, R]`` (nats²/step²), ``lambda_1 [epochs, R]`` (λ1 of each epoch's
    sequences, nats/step) and ``alive [R]`` (False: frozen).
    """
    seeds = _seeds(model, seed)
    gens, frames = seeding.generators(seeds, "floss"), seeding.generators(seeds, "frame")
    p = next(model.parameters())
    optimizer = make_adam(model.floss_parameters(), lr)
    alive = torch.ones(model.R, dtype=torch.bool, device=p.device)
    losses, lams = [], []
    for _ in range(epochs):
        if task is None:
            x = random_bits(gens, steps, batch, model.S, dtype=p.dtype).to(p.device)
        else:
            x = task.drive(gens, steps, batch, dtype=p.dtype, device=p.device)
        out = floss_epoch(
            model, x, k, transient, target, optimizer, alive, qr_every=qr_every, frames=frames
        )
        losses.append(out["loss"])
        lams.append(realization_mean(out["exponents"][..., 0]))  # [R], as runs log it
    empty = p.new_zeros(0, model.R)
    return {
        "loss": torch.stack(losses) if losses else empty,
        "lambda_1": torch.stack(lams) if lams else empty,
        "alive": alive,
    }
