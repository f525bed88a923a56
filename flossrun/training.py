"""One training epoch, one flossing epoch and one evaluation (docs/design.md §5), for an ensemble.

Losses are summed over realizations so every realization's gradient is its own; Adam is
elementwise, so one optimiser over ``[R, ...]`` tensors is ``R`` independent optimisers.
A realization whose loss, exponents or gradients stop being finite is frozen (``alive``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch.func import functional_call

from flossrun.fast.ops import realization_norm, realization_sum
from flossrun.fast.parallel import caller_on_one_thread
from flossrun.flossing import floss_exponents, flossing_loss
from flossrun.lyapunov import SeedLike

EVAL_CHUNK = 128  # test sequences per forward pass (bounds memory: T·R·chunk·N floats)


def make_adam(params: Sequence[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with the paper's betas (0.9, 0.999) and eps 1e-8."""
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)


def per_realization(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape ``[R]`` to broadcast against ``like [R, ...]``."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


CLIP_MODES = ("per_tensor", "global")  # train.clip_mode
LOSS_REDUCTIONS = ("mean", "sum")  # train.loss_reduction


def clip_per_realization(
    params: Sequence[torch.nn.Parameter], max_norm: float, mode: str = "per_tensor"
) -> None:
    """Clip gradients to norm ≤ ``max_norm``, separately per realization (a network alone and
    inside an ensemble get the same update).

    ``mode``: ``per_tensor`` (flossrun's default) clips each parameter tensor on its own norm;
    ``global`` (the reference code of Ribeiro et al., ``torch.nn.utils.clip_grad_norm_``) clips
    all of a network's gradients together on their joint norm ‖g‖ = (Σ_tensors ‖g_p‖²)^½.
    Either way the factor is ``min(1, max_norm / (norm + 1e-6))``.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if mode == "per_tensor":
        for g in grads:
            norms = realization_norm(g)  # [R]
            g.mul_(per_realization((max_norm / (norms + 1e-6)).clamp(max=1.0), g))
        return
    if mode != "global":
        raise ValueError(f"clip mode must be one of {CLIP_MODES}, got {mode!r}")
    if not grads:
        return
    sq = None
    for g in grads:  # elementwise adds of [R] sums: the same whatever the ensemble
        part = realization_sum(g.square())
        sq = part if sq is None else sq + part
    scale = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)  # [R]
    for g in grads:
        g.mul_(per_realization(scale, g))


def loss_terms(task, y: torch.Tensor) -> int:
    """How many terms the task's loss averages per realization for targets ``y [T, R, B, O]``
    (the task's ``loss_terms(y)`` where it has one, else T·B·O): the factor between
    ``train.loss_reduction=sum`` and ``mean``."""
    own = getattr(task, "loss_terms", None)
    return int(own(y)) if own is not None else y.numel() // y.shape[1]


def finite_grads(params: Sequence[torch.nn.Parameter]) -> torch.Tensor:
    """``[R]`` bool: every gradient entry of the realization is finite."""
    ok = None
    for p in params:
        if p.grad is not None:
            f = torch.isfinite(p.grad).reshape(p.shape[0], -1).all(dim=1)
            ok = f if ok is None else ok & f
    return ok


def guarded_step(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.nn.Parameter], alive: torch.Tensor
) -> None:
    """Adam step that leaves realizations with ``alive == False`` exactly unchanged."""
    dead = ~alive
    if not dead.any():
        optimizer.step()
        return
    saved = []
    for p in params:
        if p.grad is not None:
            p.grad[dead] = 0.0  # keep the optimiser state of frozen realizations finite
        saved.append(p.detach()[dead].clone())
    optimizer.step()
    with torch.no_grad():
        for p, s in zip(params, saved, strict=True):
            p[dead] = s


@contextmanager
def one_thread(device: torch.device) -> Iterator[None]:
    """One intra-op thread on CPU (for ops whose rounding follows the thread count, or loops of
    small ops); nothing changes on other devices."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def model_threads(model, device: torch.device) -> Iterator[None]:
    """:func:`one_thread` for a model whose passes are loops of small ops
    (``model.one_thread``); otherwise nothing changes."""
    if not getattr(model, "one_thread", False):
        yield
        return
    with one_thread(device):
        yield


def constrain(model) -> None:
    """Restore the model's constraint after an optimiser step (the seam's ``constrain``)."""
    with torch.no_grad():
        model.constrain()


def train_epoch(
    model,
    task,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    clip: float,
    alive: torch.Tensor,
    active: torch.Tensor | None = None,
    *,
    loss_reduction: str = "mean",
    clip_mode: str = "per_tensor",
) -> dict[str, torch.Tensor]:
    """One Adam step on all parameters for the batch ``x, y [T, R, B, S]``, then
    ``model.constrain()``.

    The gradient is that of the task's loss per realization (``loss_reduction=mean``), or of
    its sum over the terms it averages (``sum``: the reference code of Ribeiro et al., the
    mean times :func:`loss_terms`, T·B for the sine generator), then clipped at ``clip`` per
    realization (:func:`clip_per_realization` with ``clip_mode``). The returned ``loss`` is the
    task's mean either way.

    ``task``: any task of the seam (:mod:`flossrun.tasks`). Updates ``alive [R]`` in place;
    returns ``[R]`` tensors ``loss`` (the task's unit), the task's ``metrics`` (``accuracy``)
    and ``grad_h0_norm`` (‖∂L/∂h0‖ of the loss as reduced, before clipping).

    ``active [R]`` (bool, default all): realizations left out (``train.freeze_after_success``)
    are not computed at all — the others run as a sub-ensemble (their parameters gathered by
    index, gradients scattered back) — and keep their parameters exactly; their returned values
    are NaN. The others' numbers are those of the full ensemble: a realization computes the same
    alone as inside any ensemble (docs/design.md §6), ``x``/``y`` are drawn for all ``R`` from
    per-realization streams, and Adam and the clipping act per realization.
    """
    params = list(model.parameters())
    optimizer.zero_grad(set_to_none=False)
    idx = None if active is None or bool(active.all()) else active.nonzero().squeeze(1)
    if idx is not None and idx.numel() == 0:
        names = task.metrics(torch.zeros(*y.shape[:-1], model.O, dtype=x.dtype), y)  # keys only
        nan = torch.full_like(alive, torch.nan, dtype=x.dtype)
        return {"loss": nan, **dict.fromkeys(names, nan), "grad_h0_norm": nan}
    with model_threads(model, x.device):
        if idx is None:
            z = model.predict(x)  # [T, R, B, O]
        else:
            x, y = x[:, idx], y[:, idx]
            sub = {f"m.{n}": p[idx] for n, p in model.named_parameters()}
            z = functional_call(_Predict(model), sub, (x,))  # [T, R', B, O]
        loss = task.loss(z, y)  # [R] (or [R'])
        if loss_reduction == "sum":
            (loss * loss_terms(task, y)).sum().backward()
        elif loss_reduction == "mean":
            loss.sum().backward()
        else:
            raise ValueError(f"loss_reduction must be one of {LOSS_REDUCTIONS}: {loss_reduction!r}")
    grad_h0 = realization_norm(model.h0.grad)
    ok = torch.isfinite(loss) & finite_grads(params)[idx if idx is not None else slice(None)]
    metrics = {"loss": loss.detach(), **task.metrics(z.detach(), y)}
    if idx is None:
        alive &= ok
        step_mask = alive
    else:
        alive[idx] &= ok
        step_mask = alive & active
        metrics = {k: _scatter(v, idx, alive.shape[0]) for k, v in metrics.items()}
        grad_h0 = torch.where(active, grad_h0, torch.nan)
    clip_per_realization(params, clip, clip_mode)
    frozen = [] if idx is None else [p.detach()[~active].clone() for p in params]
    guarded_step(optimizer, params, step_mask)
    constrain(model)
    with torch.no_grad():
        for p, saved in zip(params, frozen, strict=False):  # constrain() may touch them all
            p[~active] = saved
    return {**metrics, "grad_h0_norm": grad_h0}


class _Predict(torch.nn.Module):
    """``model.predict`` as a module's forward, so ``functional_call`` can swap its parameters."""

    def __init__(self, model) -> None:
        super().__init__()
        self.m = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m.predict(x)


def _scatter(v: torch.Tensor, idx: torch.Tensor, R: int) -> torch.Tensor:
    """``[R']`` values at realizations ``idx`` into an ``[R]`` tensor, NaN elsewhere."""
    out = torch.full((R,), torch.nan, dtype=v.dtype, device=v.device)
    out[idx] = v
    return out


def floss_epoch(
    model,
    x: torch.Tensor,
    k: int,
    transient: int,
    target: float | Sequence[float],
    optimizer: torch.optim.Optimizer,
    alive: torch.Tensor,
    qr_every: int = 1,
    frames: SeedLike = 0,
) -> dict[str, torch.Tensor]:
    """One flossing step: exponents 1..k along ``x [T, R, B, S]`` from h0, one Adam step on
    ``model.floss_parameters()`` toward λ*, then ``model.constrain()``.
    Returns ``loss [R]`` and ``exponents [R, B, k]`` (nats/step)."""
    params = model.floss_parameters()
    # the vanilla kernel's slices take every core; other models' loops run on one thread
    with caller_on_one_thread(model.R, x.device), model_threads(model, x.device):
        optimizer.zero_grad(set_to_none=False)
        lam = floss_exponents(model, x, k, transient, frames, qr_every=qr_every)  # [R, B, k]
        loss = flossing_loss(lam, target)  # [R]
        loss.sum().backward()
        alive &= torch.isfinite(loss) & finite_grads(params)
        guarded_step(optimizer, params, alive)
        constrain(model)
    return {"loss": loss.detach(), "exponents": lam.detach()}


@torch.no_grad()
def evaluate(model, task, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """``test_loss`` and ``test_<metric>`` for each of the task's metrics, ``[R]`` each, on a
    fixed set ``x, y [T, R, n, ·]`` (chunked; chunk means weighted by their size)."""
    n = x.shape[2]
    out: dict[str, torch.Tensor] = {}
    for start in range(0, n, EVAL_CHUNK):
        xb, yb = x[:, :, start : start + EVAL_CHUNK], y[:, :, start : start + EVAL_CHUNK]
        with model_threads(model, x.device):
            z = model.predict(xb)
        w = xb.shape[2] / n
        for name, v in {"loss": task.loss(z, yb), **task.metrics(z, yb)}.items():
            out[f"test_{name}"] = out.get(f"test_{name}", 0.0) + w * v
    return out
