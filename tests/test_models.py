"""The vanilla RNN ensemble (docs/design.md §2, §6): tangent, parameters, initialisation,
independence."""

from __future__ import annotations

import pytest
import torch

from flossrun import seeding
from flossrun.lyapunov import lyapunov_spectrum
from flossrun.models import VanillaRNN
from flossrun.tasks import make_task

N, S, O = 6, 2, 2


def _random(shape, seed, scale=1.0):
    return scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shared_input", [True, False])
def test_tangent_equals_autograd_jacobian_of_step(float64, step_jacobian, shared_input):
    model = VanillaRNN(N, S, O, seeds=[0, 1, 2], g=1.5, dtype=torch.float64)
    R, B, k = 3, 2, 4
    h = _random((R, B, N), 1, scale=2.0)
    x = _random((B, S) if shared_input else (R, B, S), 2)
    Q = _random((R, B, N, k), 3)
    with torch.no_grad():
        J = step_jacobian(model.step, h, x)  # [R, B, N, N]
        torch.testing.assert_close(model.tangent(h, x, Q), J @ Q, rtol=1e-12, atol=1e-12)


def test_shared_input_equals_the_same_input_per_realization(float64):
    model = VanillaRNN(N, S, O, seeds=[0, 1, 2], dtype=torch.float64)
    h, x = _random((3, 2, N), 1), _random((2, S), 2)
    torch.testing.assert_close(model.step(h, x), model.step(h, x.expand(3, 2, S)))


def test_public_parameters_have_documented_shapes_and_init():
    R = 3
    model = VanillaRNN(N, S, O, seeds=[4, 5, 6])
    shapes = {
        "W": (R, N, N),
        "V": (R, N, S),
        "b": (R, N),
        "w_out": (R, O, N),
        "b_out": (R, O),
        "h0": (R, N),
    }
    for name, shape in shapes.items():
        assert tuple(getattr(model, name).shape) == shape, name
    assert {n for n, _ in model.named_parameters()} == set(shapes)
    assert [id(p) for p in model.floss_parameters()] == [id(model.W), id(model.V), id(model.b)]
    assert ((model.b >= 0) & (model.b <= 0.1)).all()
    assert torch.all(model.b_out == torch.tensor(0.001))


@pytest.mark.parametrize("g", [0.7, [0.2, 1.3]])
def test_orthogonal_init_is_gain_times_orthogonal(float64, g):
    model = VanillaRNN(N, S, O, seeds=[0, 1, 2], g=g, init="orthogonal", dtype=torch.float64)
    for r, gain in enumerate(model.gains):
        W = model.W[r].detach()
        torch.testing.assert_close(W.T @ W, gain**2 * torch.eye(N), rtol=0, atol=1e-12)
    assert not torch.allclose(model.W[0], model.W[1])


def test_gaussian_init_scale_follows_gain():
    n = 100  # ‖W‖_F²/n ≈ g² with relative sd √2/n ≈ 1.4 %
    model = VanillaRNN(n, 1, 1, seeds=[0, 1], g=[0.1, 2.0], dtype=torch.float64)
    for r, gain in enumerate(model.gains):
        ratio = model.W[r].detach().pow(2).sum().item() / n / gain**2
        assert abs(ratio - 1) < 0.1


def test_gain_pair_draws_one_gain_per_realization_in_range_reproducibly():
    seeds = list(range(20, 30))
    model = VanillaRNN(4, 1, 1, seeds=seeds, g=[0.25, 0.75])
    gains = model.gains
    assert len(gains) == 10 and all(0.25 <= g <= 0.75 for g in gains)
    assert len(set(gains)) == 10
    assert VanillaRNN(4, 1, 1, seeds=seeds, g=[0.25, 0.75]).gains == gains
    for r in (0, 7):  # a realization's gain is its own seed's, alone or in an ensemble
        assert VanillaRNN(4, 1, 1, seeds=[seeds[r]], g=[0.25, 0.75]).gains == [gains[r]]
    assert VanillaRNN(4, 1, 1, seeds=seeds, g=0.4).gains == [0.4] * 10


def test_h0_is_state_after_100_input_free_steps(float64):
    """Mirror the documented draws (W, V, b, w_out, then h) and run the 100 steps here."""
    seeds, g = [3, 8], 1.7
    model = VanillaRNN(N, S, O, seeds=seeds, g=g, dtype=torch.float64)
    for r, seed in enumerate(seeds):
        gen = seeding.generator(seed, "init")
        W = torch.randn(N, N, generator=gen) * g / N**0.5
        V = torch.randn(N, S, generator=gen)
        b = torch.rand(N, generator=gen) * 0.1
        w_out = torch.randn(O, N, generator=gen)
        for name, value in (("W", W), ("V", V), ("b", b), ("w_out", w_out)):
            torch.testing.assert_close(getattr(model, name)[r].detach(), value, msg=name)
        h = torch.randn(N, generator=gen)
        for _ in range(100):
            h = W @ torch.tanh(h) + b
        torch.testing.assert_close(model.h0[r].detach(), h, rtol=1e-12, atol=1e-12)


def test_h0_is_an_autonomous_fixed_point_for_contracting_gain(float64):
    model = VanillaRNN(N, S, O, seeds=[0, 1], g=0.3, dtype=torch.float64)
    with torch.no_grad():
        h0 = model.h0.unsqueeze(1)  # [R, 1, N]
        torch.testing.assert_close(model.step(h0, torch.zeros(1, S)), h0, rtol=0, atol=1e-12)


def test_forward_equals_step_loop_and_readout(float64):
    model = VanillaRNN(N, S, O, seeds=[0, 1], dtype=torch.float64)
    x = _random((9, 2, 3, S), 5)
    with torch.no_grad():
        hs = model(x)
        h = model.initial_state(3)
        for t in range(9):
            h = model.step(h, x[t])
            torch.testing.assert_close(hs[t], h, rtol=1e-12, atol=1e-12)
            z = torch.einsum("ron,rbn->rbo", model.w_out, h) + model.b_out[:, None, :]
            torch.testing.assert_close(model.logits(hs)[t], z, rtol=1e-12, atol=1e-12)


# --- ensemble independence (docs/design.md §6) ----------------------------------------------------
SEED, R_ENS = 11, 4


@pytest.fixture(scope="module")
def ensemble_case():
    task = make_task("delayed_xor", 6, T=25)
    seeds = seeding.realization_seeds(SEED, R_ENS)
    x, y = task.sample(seeding.generators(seeds, "train"), batch=3, dtype=torch.float64)
    ens = VanillaRNN(16, 1, 1, seeds=seeds, g=[0.5, 2.0], dtype=torch.float64)
    lone = [VanillaRNN(16, 1, 1, [s], g=[0.5, 2.0], dtype=torch.float64) for s in seeds]
    return task, x, y, ens, lone


def test_ensemble_member_hidden_states_and_logits_equal_lone_network(ensemble_case):
    _, x, _, ens, lone = ensemble_case
    with torch.no_grad():
        hs = ens(x)
        z = ens.logits(hs)
        for r, net in enumerate(lone):
            hr = net(x[:, r : r + 1])
            torch.testing.assert_close(hs[:, r : r + 1], hr, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(z[:, r : r + 1], net.logits(hr), rtol=1e-12, atol=1e-12)


def test_ensemble_member_lyapunov_exponents_equal_lone_network(ensemble_case):
    _, x, _, ens, lone = ensemble_case
    with torch.no_grad():
        lam = lyapunov_spectrum(ens, ens.initial_state(3), x, 5, transient=5, seed=ens.seeds)
        for r, net in enumerate(lone):
            one = lyapunov_spectrum(
                net, net.initial_state(3), x[:, r : r + 1], 5, transient=5, seed=net.seeds
            )
            torch.testing.assert_close(
                lam.exponents[r : r + 1], one.exponents, rtol=1e-10, atol=1e-12
            )


def test_ensemble_member_task_gradients_equal_lone_network(ensemble_case):
    task, x, y, ens, lone = ensemble_case
    ens.zero_grad()
    task.loss(ens.logits(ens(x)), y).sum().backward()
    for r, net in enumerate(lone):
        net.zero_grad()
        task.loss(net.logits(net(x[:, r : r + 1])), y[:, r : r + 1]).sum().backward()
        for name, p in net.named_parameters():
            q = getattr(ens, name)
            assert p.grad is not None and p.grad.abs().sum() > 0, name
            torch.testing.assert_close(q.grad[r : r + 1], p.grad, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"N": 0}, "model.N="), ({"S": 0}, "S "), ({"O": -1}, "O "), ({"seeds": []}, "seeds ")],
)
def test_invalid_model_sizes_raise_naming_the_argument(kwargs, argument):
    args = {"N": 4, "S": 1, "O": 1, "seeds": [0]} | kwargs
    with pytest.raises(ValueError, match=rf"^{argument}"):
        VanillaRNN(**args)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"g": -1.0}, "g"), ({"g": [1.0, 0.5]}, "g"), ({"init": "xavier"}, "init")],
)
def test_invalid_init_options_raise_naming_the_option(kwargs, argument):
    with pytest.raises(ValueError, match=rf"^model.{argument}="):
        VanillaRNN(4, 1, 1, [0], **kwargs)
