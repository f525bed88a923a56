"""``train.loss_reduction`` and ``train.clip_mode`` (docs/design.md §11, the reference code of
Ribeiro et al.): the global per-realization clip, the summed loss, and their one-line errors."""

from __future__ import annotations

import pytest
import torch
from cli_support import config_error

from flossrun import seeding
from flossrun.models import build_model
from flossrun.tasks import build_task
from flossrun.training import clip_per_realization, loss_terms, make_adam, train_epoch


def _params(*grads: torch.Tensor) -> list[torch.nn.Parameter]:
    out = []
    for g in grads:
        p = torch.nn.Parameter(torch.zeros_like(g))
        p.grad = g.clone()
        out.append(p)
    return out


def test_global_clip_of_a_known_gradient_is_the_manual_formula(float64):
    g1 = torch.tensor([[3.0, 0.0], [0.1, 0.0]])  # [R=2, 2]
    g2 = torch.tensor([[[0.0, 4.0]], [[0.0, 0.2]]])  # [R=2, 1, 2]
    params = _params(g1, g2)
    clip_per_realization(params, 0.25, "global")
    # realization 0: joint norm 5 > 0.25 → factor 0.25 / (5 + 1e-6); realization 1: 0.2236 < 0.25
    f0 = 0.25 / (5.0 + 1e-6)
    torch.testing.assert_close(params[0].grad[0], f0 * g1[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(params[1].grad[0], f0 * g2[0], rtol=1e-12, atol=0)
    joint = torch.cat([params[0].grad[0].flatten(), params[1].grad[0].flatten()]).norm()
    assert abs(float(joint) - 0.25) < 1e-6
    f1 = min(1.0, 0.25 / (float(torch.tensor([0.1, 0.2]).norm()) + 1e-6))
    assert f1 == 1.0
    torch.testing.assert_close(params[0].grad[1], g1[1], rtol=0, atol=0)
    torch.testing.assert_close(params[1].grad[1], g2[1], rtol=0, atol=0)
    # the same gradients clipped per tensor: each tensor to 0.25 on its own
    per = _params(g1, g2)
    clip_per_realization(per, 0.25, "per_tensor")
    torch.testing.assert_close(per[0].grad[0], 0.25 / (3.0 + 1e-6) * g1[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(per[1].grad[0], 0.25 / (4.0 + 1e-6) * g2[0], rtol=1e-12, atol=0)


def test_global_clip_matches_torch_clip_grad_norm_per_network(float64):
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, 5, generator=gen), torch.randn(3, 7, generator=gen)]
    params = _params(*grads)
    clip_per_realization(params, 0.5, "global")
    for r in range(3):
        alone = _params(*(g[r] for g in grads))
        torch.nn.utils.clip_grad_norm_(alone, 0.5)
        for p, q in zip(params, alone, strict=True):
            torch.testing.assert_close(p.grad[r], q.grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("task_name", ["sine_generator", "delayed_copy"])
def test_summed_loss_gradient_is_the_mean_gradient_times_the_terms(float64, task_name):
    fields = {"name": task_name, "T": 15}
    if task_name == "delayed_copy":
        fields.update(delay=4, taps=1)
    task = build_task(fields)
    seeds = [0, 1]
    x, y = task.sample(seeding.generators(seeds, "train"), 6, dtype=torch.float64)
    terms = loss_terms(task, y)
    assert terms == (15 * 6 if task_name == "sine_generator" else (15 - 4) * 6)
    grads = {}
    for red in ("mean", "sum"):
        model = build_model({"name": "lstm", "N": 5}, task.S, task.O, seeds, dtype=torch.float64)
        opt = make_adam(list(model.parameters()), 1e-3)
        alive = torch.ones(2, dtype=torch.bool)
        out = train_epoch(model, task, x, y, opt, 1e30, alive, loss_reduction=red)  # no clip
        grads[red] = {n: p.grad.clone() for n, p in model.named_parameters()}
        grads[f"loss_{red}"] = out["loss"]
    torch.testing.assert_close(grads["loss_sum"], grads["loss_mean"])  # logged as the mean
    for name, g in grads["mean"].items():
        torch.testing.assert_close(grads["sum"][name], terms * g, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("train.clip_mode=joint", "train.clip_mode=joint: allowed: per_tensor, global"),
        ("train.loss_reduction=total", "train.loss_reduction=total: allowed: mean, sum"),
    ],
)
def test_bad_clip_mode_and_loss_reduction_fail_in_one_line(override, line):
    assert config_error(override) == f"flossrun: error: {line}"
