"""Orbit (bifurcation) diagrams during training (docs/design.md §11).

At each snapshot epoch every realization is run open loop — constant input ω, no feedback —
for ``steps`` steps from ``inits`` initial states per ω, and the outputs after ``burn_in`` are
kept. The initial states are drawn once per realization (its ``"orbit"`` stream) from
N(0, init_std²), so every snapshot starts from the same states. λ1 (nats/step) of the same
trajectories comes from :func:`flossrun.lyapunov.lyapunov_spectrum` over ``lyap_steps`` steps
after the burn-in (the same run continued), and is classified with the neutral band
(``regime``: contracting / neutral / chaotic, :func:`flossrun.analyses.smoothness.classify`).
A fixed point leaves one distinct output value per trajectory, a limit cycle of period p leaves
p, a quasi-periodic or chaotic orbit about as many as steps kept.

Files (:meth:`OrbitRecorder.write`): ``orbits.pt`` holds ``epochs [E]``, ``omega [W]``,
``seeds [R]``, ``outputs [E, R, W, I, steps − burn_in]`` (the first output channel) and
``lambda_1 [E, R, W, I]``; ``orbits.csv`` one row per trajectory and snapshot
(``ORBIT_COLUMNS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from flossrun import io, seeding
from flossrun.analyses.smoothness import classify
from flossrun.contract import (
    EXTRAPOLATION_COLUMNS,
    EXTRAPOLATION_CSV,
    ORBIT_COLUMNS,
    ORBITS_CSV,
    ORBITS_PT,
)
from flossrun.lyapunov import lyapunov_spectrum
from flossrun.tasks.sine_generator import EXTRAPOLATION_WINDOWS, extrapolation_mse

QR_EVERY = 5  # steps between renormalisations of the one tangent vector (|λ1| ≪ 1 per step)


def distinct_values(y: torch.Tensor, tol: float) -> torch.Tensor:
    """Number of distinct values along the last axis of ``y [..., n]``: 1 + the gaps larger
    than ``tol`` between sorted neighbours. Returns an int64 tensor ``[...]``."""
    s = torch.sort(y, dim=-1).values
    return 1 + (s.diff(dim=-1) > tol).sum(-1)


def orbit_omegas(task, n: int) -> torch.Tensor:
    """``n`` inputs evenly spaced over the task's ω range (float64 ``[n]``)."""
    return torch.linspace(task.omega_min, task.omega_max, n, dtype=torch.float64)


def initial_states(seeds: Sequence[int], shape: tuple[int, ...], std: float) -> torch.Tensor:
    """``[R, *shape]`` float64 draws from N(0, std²), one ``"orbit"`` stream per realization."""
    gens = seeding.generators(seeds, "orbit")
    return torch.stack([torch.randn(*shape, generator=g, dtype=torch.float64) for g in gens]) * std


@torch.no_grad()
def open_loop(
    model,
    omega: torch.Tensor,
    h0: torch.Tensor,
    steps: int,
    burn_in: int,
    seeds: Sequence[int],
    lyap_steps: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs and λ1 of the open-loop runs of ``model`` from ``h0 [R, W, I, D]`` at the
    constant inputs ``omega [W]``.

    Returns ``outputs [R, W, I, steps − burn_in]`` (first output channel, after the burn-in)
    and ``lambda_1 [R, W, I]`` (nats/step, over the ``lyap_steps`` steps after the burn-in;
    default ``steps − burn_in``).
    """
    R, W, I, D = h0.shape
    h = h0.reshape(R, W * I, D).to(model.h0)
    x = omega.repeat_interleave(I).reshape(1, W * I, 1).to(model.h0)  # [1, W·I, 1]
    n = burn_in + (steps - burn_in if lyap_steps is None else lyap_steps)
    x = x.expand(max(steps, n), W * I, model.S)  # shared by every realization
    hs = model(x[burn_in:steps], model(x[:burn_in], h)[-1]) if burn_in else model(x[:steps], h)
    z = model.logits(hs)[..., 0]  # [T_keep, R, W·I]
    lam = lyapunov_spectrum(
        model, h, x[:n], 1, transient=burn_in, qr_every=QR_EVERY, seed=list(seeds)
    ).exponents
    outputs = z.permute(1, 2, 0).reshape(R, W, I, -1)
    return outputs, lam[..., 0].reshape(R, W, I)


ATTRACTORS = ("fixed_point", "limit_cycle", "other")


def attractor_kinds(snap: dict, cfg) -> list[str]:
    """Per realization, the most common attractor over its open-loop trajectories (ω × initial
    states) of a snapshot: ``fixed_point`` (one distinct output after the burn-in),
    ``limit_cycle`` (several, λ1 below the neutral band: a periodic orbit or an invariant
    circle) or ``other`` (λ1 ≥ the band: chaotic)."""
    band = float(getattr(cfg, "neutral_band", 0.01))
    n = distinct_values(snap["outputs"], cfg.distinct_tol)  # [R, W, I]
    lam = snap["lambda_1"]
    kind = torch.where(n == 1, 0, torch.where(lam < band, 1, 2)).reshape(len(n), -1)
    return [ATTRACTORS[int(torch.mode(k).values)] for k in kind]


class OrbitRecorder:
    """Takes the snapshots of one run; its ``snapshots`` list lives in the run's checkpoint."""

    figure = "orbit_diagram"  # the run's figure of the snapshots (plots/)
    files = f"orbits:  {ORBITS_PT}, {ORBITS_CSV}"  # what it writes, for the terminal summary

    def __init__(self, cfg, task, seeds: Sequence[int], D: int, epochs: int) -> None:
        """``cfg``: the ``analysis`` node (an :class:`~flossrun.analyses.OrbitConfig`'s keys),
        ``D`` the model's state size, ``epochs`` the run's training epochs."""
        self.cfg, self.seeds, self.epochs, self.task = cfg, list(seeds), epochs, task
        self.every = int(cfg.every)  # read once: a DictConfig lookup costs more than a step
        self.omega = orbit_omegas(task, cfg.n_omega)  # [W]
        self.h0 = initial_states(self.seeds, (cfg.n_omega, cfg.inits, D), cfg.init_std)

    def due(self, epoch: int) -> bool:
        """Snapshot at epoch 0, every ``every`` epochs and at the last epoch."""
        return epoch % self.every == 0 or epoch == self.epochs

    def snapshot(self, model, epoch: int) -> dict:
        """One snapshot: ``{"epoch", "outputs" [R, W, I, T_keep], "lambda_1" [R, W, I]}``
        (float32 on the CPU); at the last epoch also ``"extrapolation" [R, 3]`` (test MSE on
        the training horizon, the next 1× and 4×: :func:`extrapolation_mse`)."""
        c = self.cfg
        extra = {}
        if epoch == self.epochs:
            extra["extrapolation"] = extrapolation_mse(model, self.task)
        out, lam = open_loop(
            model, self.omega, self.h0, c.steps, c.burn_in, self.seeds,
            getattr(c, "lyap_steps", None),
        )  # fmt: skip
        return {
            "epoch": epoch, "outputs": out.float().cpu(), "lambda_1": lam.float().cpu(), **extra,
        }  # fmt: skip

    def rows(self, snapshots: list[dict]) -> list[tuple]:
        """Tidy rows (``ORBIT_COLUMNS``): one per snapshot, realization, ω and initial state."""
        rows, band = [], float(getattr(self.cfg, "neutral_band", 0.01))
        for snap in snapshots:
            out, lam = snap["outputs"], snap["lambda_1"]
            n = distinct_values(out, self.cfg.distinct_tol)
            low, high = out.amin(-1), out.amax(-1)
            R, W, I = lam.shape
            for r in range(R):
                for w in range(W):
                    for i in range(I):
                        rows.append((
                            r, self.seeds[r], snap["epoch"], w, float(self.omega[w]), i,
                            int(n[r, w, i]), float(low[r, w, i]), float(high[r, w, i]),
                            float(lam[r, w, i]), classify(float(lam[r, w, i]), band),
                        ))  # fmt: skip
        return rows

    def write(self, out: Path, snapshots: list[dict]) -> None:
        """``orbits.pt`` and ``orbits.csv`` (atomic) from the snapshots so far."""
        if not snapshots:
            return
        data = {
            "epochs": torch.tensor([s["epoch"] for s in snapshots]),
            "omega": self.omega,
            "seeds": torch.tensor(self.seeds),
            "outputs": torch.stack([s["outputs"] for s in snapshots]),
            "lambda_1": torch.stack([s["lambda_1"] for s in snapshots]),
        }
        last = snapshots[-1]
        if "extrapolation" in last:
            data["extrapolation"] = last["extrapolation"]
            kinds = attractor_kinds(last, self.cfg)
            data["attractor"] = kinds
            rows = [
                (r, self.seeds[r], last["epoch"], name, a * self.task.T, b * self.task.T,
                 float(last["extrapolation"][r, j]), kinds[r])
                for r in range(len(self.seeds))
                for j, (name, a, b) in enumerate(EXTRAPOLATION_WINDOWS)
            ]  # fmt: skip
            io.write_csv(Path(out) / EXTRAPOLATION_CSV, EXTRAPOLATION_COLUMNS, rows)
        io.save_checkpoint(Path(out) / ORBITS_PT, data)
        io.write_csv(Path(out) / ORBITS_CSV, ORBIT_COLUMNS, self.rows(snapshots))
