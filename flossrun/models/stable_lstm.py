"""The stable LSTM (Miller & Hardt, 2019, as used by Ribeiro et al., AISTATS 2020).

An :class:`flossrun.models.lstm.LSTM` whose weights satisfy a sufficient condition for a
contracting state map: every column of each gate's recurrent block ``W_i, W_f, W_g, W_o`` has
a bounded ℓ1 norm, and so has every column of the forget gate's input block ``V_f``.
The constraint is applied at initialisation and after every optimiser step (training and
flossing), as Ribeiro et al.'s code does after each step. Their constants are the defaults:
ℓ1 norms 0.395 (input), 0.155 (forget), 0.099 (cell), 0.395 (output), 0.25 (input-to-forget).
A contracting map has every Lyapunov exponent < 0, so flossing cannot reach λ* = 0 here.

``model.columns`` says how: ``fixed`` (default, Ribeiro et al.'s code) rescales every column to
exactly its ℓ1 norm, scaling small columns up as well as large ones down, so the weights live on
the boundary of the constraint set; ``at_most`` is projected gradient descent on the set itself,
``{‖column‖₁ ≤ bound}``: a column inside it is left alone, one outside is replaced by its
Euclidean projection onto the ℓ1 ball (soft-thresholding, Duchi et al. 2008).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from flossrun.errors import is_number, need
from flossrun.models.base import register
from flossrun.models.lstm import LSTM, LSTMConfig

GATE_L1 = (0.395, 0.155, 0.099, 0.395)  # Ribeiro et al.'s column ℓ1 norms of W_i, W_f, W_g, W_o
TINY = 1e-30  # guards the rescaling of an all-zero column
COLUMNS = ("fixed", "at_most")


@dataclass(frozen=True)
class StableLSTMConfig(LSTMConfig):
    """``model=stable_lstm``: an LSTM with fixed column ℓ1 norms (D = 2N)."""

    name: str = "stable_lstm"  # architecture
    N: int = 80  # hidden units (the state (h, c) has D = 2N)
    lr: float = 1.0e-3  # training Adam lr where train.lr is null (not piloted: the former default)
    floss_lr: float = 1.0e-3  # flossing Adam lr where floss.lr is null
    l1: list[float] = field(default_factory=lambda: list(GATE_L1))  # column ℓ1 norms: W_i, f, g, o
    input_forget_l1: float = 0.25  # ℓ1 norm of each column of V_f (input to forget gate)
    columns: str = "fixed"  # fixed: every column rescaled to its ℓ1 norm; at_most: projected onto ≤

    def check(self) -> None:
        super().check()
        need(
            len(self.l1) == 4 and all(is_number(v) and v > 0 for v in self.l1),
            "model.l1", self.l1, "must be 4 numbers > 0 (gates i, f, g, o)",
        )  # fmt: skip
        need(self.input_forget_l1 > 0, "model.input_forget_l1", self.input_forget_l1, "must be > 0")
        allowed = f"allowed: {', '.join(COLUMNS)}"
        need(self.columns in COLUMNS, "model.columns", self.columns, allowed)


def set_column_l1(M: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """``M [..., G, P, Q]`` with the columns of each block ``g`` rescaled to ℓ1 norm
    ``norms [G]``."""
    col = M.abs().sum(-2, keepdim=True).clamp_min(TINY)  # [..., G, 1, Q]
    return M * (norms.to(M)[:, None, None] / col)


def project_columns_l1(M: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """The Euclidean projection of every column of each block ``g`` of ``M [..., G, P, Q]`` onto
    the ℓ1 ball of radius ``norms [G]``; columns already inside come back bit for bit.

    Per column ``v``: ``sign(v) max(|v| − θ, 0)`` with ``θ ≥ 0`` the threshold that leaves ℓ1
    norm exactly the radius (sort-based, Duchi et al. 2008), computed in float64.
    """
    v = M.to(torch.float64).transpose(-1, -2)  # [..., G, Q, P]: one column per row
    z = norms.to(v)[:, None, None]  # [G, 1, 1]
    u = v.abs().sort(-1, descending=True).values
    j = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype, device=v.device)
    excess = u.cumsum(-1) - z  # [..., G, Q, P]: Σ_{i≤j} u_i − radius
    count = ((u - excess / j) > 0).sum(-1, keepdim=True).clamp_min(1)  # support size
    theta = excess.gather(-1, count - 1) / count  # [..., G, Q, 1]
    inside = v.abs().sum(-1, keepdim=True) <= z
    projected = v.sign() * (v.abs() - theta).clamp_min(0)
    out = torch.where(inside, v, projected).transpose(-1, -2).to(M.dtype)
    return torch.where(inside.transpose(-1, -2), M, out)


@register("stable_lstm", StableLSTMConfig)
class StableLSTM(LSTM):
    """An LSTM ensemble kept stable by :meth:`restrict` (parameters as :class:`LSTM`)."""

    def restrict(self, W: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``W [..., 4N, N]``, ``V [..., 4N, S]`` with the column ℓ1 norms of the config
        (``fixed``: equal to them; ``at_most``: projected onto ≤ them)."""
        N = self.N
        fix = set_column_l1 if self.cfg.columns == "fixed" else project_columns_l1
        W = fix(W.unflatten(-2, (4, N)), torch.tensor(self.cfg.l1)).flatten(-3, -2)
        Vf = fix(V[..., None, N : 2 * N, :], torch.tensor([self.cfg.input_forget_l1]))
        V = torch.cat([V[..., :N, :], Vf.squeeze(-3), V[..., 2 * N :, :]], -2)
        return W, V

    def constrain(self) -> None:
        """Restore the column norms of ``W`` and ``V_f`` in place (after every optimiser step)."""
        W, V = self.restrict(self.W.detach(), self.V.detach())
        self.W.detach().copy_(W)
        self.V.detach().copy_(V)
