"""Every architecture behind the model seam (docs/design.md §4, §6, §8): exact tangents, the
spectrum sum rule, ensemble independence, checkpoints, constraints and config errors."""

from __future__ import annotations

import io
import math

import pytest
import torch

from flossrun import seeding
from flossrun.config import ConfigError, validate
from flossrun.lyapunov import lyapunov_spectrum
from flossrun.models import MODELS, build_model, model_config
from flossrun.models.stable import clip_singular_values
from flossrun.models.stable_lstm import project_columns_l1
from flossrun.provenance import learning_rates
from flossrun.tasks import make_task
from flossrun.training import floss_epoch, make_adam, train_epoch

NAMES = sorted(MODELS)
GATED = ("lstm", "gru", "stable_lstm")
N, S, O = 5, 2, 2


def make(name: str, seeds=(0, 1, 2), n: int = N, dtype=torch.float64, **options):
    return build_model({"name": name, "N": n, **options}, S, O, list(seeds), dtype=dtype)


def _random(shape, seed, scale=1.0):
    return scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shared_input", [True, False])
def test_tangent_equals_autograd_jacobian_of_step(float64, step_jacobian, name, shared_input):
    model = make(name)
    R, B, D, k = 3, 2, model.state_dim, 4
    h = model.initial_state(B).detach() + _random((R, B, D), 1, scale=0.5)
    x = _random((B, S) if shared_input else (R, B, S), 2)
    Q = _random((R, B, D, k), 3)
    with torch.no_grad():
        J = step_jacobian(model.step, h, x)  # [R, B, D, D]
        torch.testing.assert_close(model.tangent(h, x, Q), J @ Q, rtol=1e-10, atol=1e-12)


def test_state_sizes():
    assert {n: make(n).state_dim for n in NAMES} == {
        "gru": N, "lstm": 2 * N, "orthogonal": N, "stable": N, "stable_lstm": 2 * N, "vanilla": N,
    }  # fmt: skip
    for name in NAMES:
        assert model_config({"name": name, "N": N}).state_dim == make(name).state_dim


@pytest.mark.parametrize("name", NAMES)
def test_full_spectrum_sum_equals_mean_log_det(float64, step_jacobian, name):
    model = make(name, seeds=[3, 4])
    if name == "orthogonal":  # b > 0 keeps every modReLU unit open, so det J_t = det W ≠ 0
        with torch.no_grad():
            model.b.uniform_(0.001, 0.01)
    T, transient, B = 30, 5, 2
    x = _random((T, 2, B, S), 7)
    h = model.initial_state(B).detach()
    with torch.no_grad():
        lam = lyapunov_spectrum(model, h, x, model.state_dim, transient=transient, seed=[3, 4])
        logdet = []
        for t in range(T):
            if t >= transient:
                logdet.append(torch.linalg.slogdet(step_jacobian(model.step, h, x[t]))[1])
            h = model.step(h, x[t])
    expected = torch.stack(logdet).mean(0)  # [R, B]
    torch.testing.assert_close(lam.exponents.sum(-1), expected, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_gated_models_follow_torch_equations(float64, name):
    model = make(name, seeds=[5])
    torch_cls = torch.nn.LSTM if name == "lstm" else torch.nn.GRU
    ref = torch_cls(S, N, dtype=torch.float64)
    with torch.no_grad():
        ref.weight_hh_l0.copy_(model.W[0])
        ref.weight_ih_l0.copy_(model.V[0])
        if name == "lstm":
            ref.bias_ih_l0.copy_(model.b[0])
            ref.bias_hh_l0.zero_()
        else:
            ref.bias_ih_l0.copy_(model.b[0])
            ref.bias_hh_l0.zero_()
            ref.bias_hh_l0[2 * N :] = model.b_hn[0]
        x = _random((12, 1, 3, S), 8)
        h0 = model.initial_state(3)  # [1, 3, D]
        state = (h0[..., :N], h0[..., N:]) if name == "lstm" else h0[..., :N]
        out, _ = ref(x[:, 0], state)
        torch.testing.assert_close(model(x)[:, 0, :, :N], out, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shared_input", [True, False])
def test_predict_equals_readout_of_step_loop(float64, name, shared_input):
    model = make(name)
    x = _random((9, 3, 4, S), 6)
    x = x[:, 0] if shared_input else x
    with torch.no_grad():
        hs = model(x)
        z = model.predict(x)
        h = model.initial_state(4)
        for t in range(9):
            h = model.step(h, x[t])
            torch.testing.assert_close(hs[t], h, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(z[t], model.readout(h), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_predict_gradients_equal_those_of_the_step_loop(float64, name):
    model = make(name)
    task = make_task("delayed_xor", 4, T=12, channels=S)
    x, y = task.sample(seeding.generators(model.seeds, "train"), 3, dtype=torch.float64)
    grads = []
    for z in (lambda: model.predict(x), lambda: model.logits(model(x))):
        model.zero_grad()
        task.loss(z(), y).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for key, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][key], rtol=1e-9, atol=1e-12, msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_ensemble_member_equals_lone_network(float64, name):
    seeds = seeding.realization_seeds(11, 3)
    ens = make(name, seeds=seeds)
    x = _random((15, 3, 2, S), 9)
    with torch.no_grad():
        z = ens.predict(x)
        lam = lyapunov_spectrum(ens, ens.initial_state(2), x, 3, transient=3, seed=seeds)
    for r, seed in enumerate(seeds):
        lone = make(name, seeds=[seed])
        for key, p in lone.named_parameters():
            torch.testing.assert_close(getattr(ens, key)[r : r + 1], p, rtol=0, atol=0)
        with torch.no_grad():
            one = lyapunov_spectrum(lone, lone.initial_state(2), x[:, r : r + 1], 3, 3, seed=[seed])
            torch.testing.assert_close(z[:, r : r + 1], lone.predict(x[:, r : r + 1]))
        torch.testing.assert_close(lam.exponents[r : r + 1], one.exponents, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip(name):
    model, other = make(name, dtype=torch.float32), make(name, seeds=[7, 8, 9], dtype=torch.float32)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    other.load_state_dict(torch.load(buf, weights_only=True))
    x = _random((6, 3, 2, S), 4)
    with torch.no_grad():
        torch.testing.assert_close(other.predict(x), model.predict(x), rtol=0, atol=0)


# --- training and flossing through the seam ----------------------------------------------
def train_and_floss(model, epochs: int = 5, k: int = 3):
    """A few training and flossing epochs (delayed XOR, d = 4)."""
    task = make_task("delayed_xor", 4, T=20, channels=S)
    gens = seeding.generators(model.seeds, "train")
    alive = torch.ones(model.R, dtype=torch.bool)
    train_opt = make_adam(list(model.parameters()), 0.05)
    floss_opt = make_adam(model.floss_parameters(), 0.05)
    frames = seeding.generators(model.seeds, "frame")
    for _ in range(epochs):
        x, y = task.sample(gens, 4, dtype=model.h0.dtype)
        train_epoch(model, task, x, y, train_opt, 1.0, alive)
        floss_epoch(model, x[:15, :, :1], k, 3, 0.0, floss_opt, alive, frames=frames)
    assert alive.all()
    return model


def full_spectrum(model) -> torch.Tensor:
    x = _random((80, model.R, 2, S), 5).round()
    with torch.no_grad():
        h = model.initial_state(2)
        return lyapunov_spectrum(model, h, x, model.state_dim, transient=20, seed=0).exponents


@pytest.mark.parametrize("name", ["stable", "stable_lstm"])
def test_stable_models_contract_and_keep_their_constraint(name):
    model = make(name, n=8, dtype=torch.float32)
    assert (full_spectrum(model) < 0).all()
    before = model.W.detach().clone()
    train_and_floss(model)
    assert not torch.allclose(model.W, before)
    lam = full_spectrum(model)
    assert (lam < 0).all()
    W = model.W.detach().double()
    if name == "stable":
        norms = torch.linalg.matrix_norm(W, ord=2)
        assert (norms <= model.cfg.rho + 1e-6).all(), norms
        assert (lam < math.log(model.cfg.rho) + 1e-5).all(), lam  # ‖J_t‖₂ ≤ ρ at every step
    else:
        cols = W.abs().unflatten(-2, (4, 8)).sum(-2)  # [R, 4, N]: ℓ1 norm of every column
        target = torch.tensor(model.cfg.l1, dtype=W.dtype)[None, :, None]
        torch.testing.assert_close(cols, target.expand_as(cols), rtol=0, atol=1e-6)
        vf = model.V.detach().double()[:, 8:16].abs().sum(-2)  # [R, S]
        torch.testing.assert_close(vf, torch.full_like(vf, 0.25), rtol=0, atol=1e-6)


def test_stable_rnn_step_clips_only_the_singular_values_above_rho(float64):
    """A training step that takes ‖W‖₂ above ρ is followed by the projection onto the ball:
    the singular values above ρ become ρ; the singular values ≤ ρ and every singular vector
    stay as the optimiser left them."""
    model = make("stable", n=8, seeds=[0, 1])
    rho, pre = model.cfg.rho, []
    project = model.constrain
    model.constrain = lambda: (pre.append(model.W.detach().clone()), project())
    task = make_task("delayed_xor", 4, T=20, channels=S)
    x, y = task.sample(seeding.generators(model.seeds, "train"), 4, dtype=torch.float64)
    alive = torch.ones(model.R, dtype=torch.bool)
    train_epoch(model, task, x, y, make_adam(list(model.parameters()), 0.2), 1.0, alive)
    U, s, Vh = torch.linalg.svd(pre[-1])  # W after the Adam step, before the projection
    high, low = s > rho, s <= rho
    assert high.any(-1).all() and low.any(-1).all(), s  # both kinds in every realization
    W = model.W.detach()
    torch.testing.assert_close(torch.linalg.svdvals(W), s.clamp(max=rho), rtol=0, atol=1e-12)
    dW = W - pre[-1]
    for r in range(model.R):  # the change lies in the span of the clipped directions only
        u, v = U[r][:, low[r]], Vh[r][low[r]].T
        assert torch.linalg.matrix_norm(u.T @ dW[r]) < 1e-12
        assert torch.linalg.matrix_norm(dW[r] @ v) < 1e-12
    torch.testing.assert_close(W, U @ torch.diag_embed(s.clamp(max=rho)) @ Vh, rtol=0, atol=1e-12)


def test_clip_singular_values_is_the_projection_onto_the_spectral_ball(float64):
    gen = torch.Generator().manual_seed(4)
    W = torch.randn(3, 6, 6, generator=gen) / 6**0.5
    W[1] *= 0.2  # inside the ball: returned bit for bit
    out = clip_singular_values(W, 0.5)
    assert torch.equal(out[1], W[1])
    assert (torch.linalg.matrix_norm(out, ord=2) <= 0.5 + 1e-12).all()
    dist = torch.linalg.matrix_norm(out - W)  # Frobenius distance moved
    for _ in range(20):  # no other point of the ball is nearer (random feasible points)
        other = clip_singular_values(out + 0.05 * torch.randn(W.shape, generator=gen), 0.5)
        assert (torch.linalg.matrix_norm(other - W) >= dist - 1e-12).all()
    rescaled = W * (0.5 / torch.linalg.matrix_norm(W, ord=2)).clamp(max=1)[..., None, None]
    assert (torch.linalg.matrix_norm(rescaled - W) > dist + 1e-3)[[0, 2]].all()
    assert clip_singular_values(W.float(), 0.5).dtype == torch.float32


def test_stable_rnn_starts_projected_with_exponents_below_log_rho():
    model = make("stable", n=16, seeds=[0, 1, 2], dtype=torch.float32)
    W = model.W.detach().double()
    raw = make("vanilla", n=16, seeds=[0, 1, 2]).W.detach()  # the same draws, unconstrained
    torch.testing.assert_close(W, clip_singular_values(raw, 0.9), rtol=0, atol=1e-6)
    s = torch.linalg.svdvals(raw)
    assert ((s > 0.9).sum(-1) > 1).all()  # several directions clipped, not just the top one
    kept = s <= 0.9
    torch.testing.assert_close(torch.linalg.svdvals(W)[kept], s[kept], rtol=0, atol=1e-6)
    assert (full_spectrum(model) < math.log(0.9) + 1e-5).all()


def test_l1_column_projection_is_the_nearest_point_of_the_ball(float64):
    gen = torch.Generator().manual_seed(2)
    M = torch.randn(2, 3, 7, 5, generator=gen)  # [R, G, P, Q]
    M[:, 1, :, 2] *= 0.01  # columns inside their ball
    radius = torch.tensor([0.5, 1.0, 2.0])
    out = project_columns_l1(M, radius)
    norms = out.abs().sum(-2)  # [R, G, Q]
    inside = M.abs().sum(-2) <= radius[:, None]
    assert inside.any() and (~inside).any()
    assert torch.equal(out[inside.unsqueeze(-2).expand_as(M)], M[inside.unsqueeze(-2).expand_as(M)])
    torch.testing.assert_close(norms[~inside], radius[:, None].expand_as(norms)[~inside])
    # optimality (KKT): v − p = θ·sign(p) on the support, |v| ≤ θ off it, for one θ ≥ 0
    diff = (M - out).transpose(-1, -2)[~inside]  # [n, P]
    v, p = M.transpose(-1, -2)[~inside], out.transpose(-1, -2)[~inside]
    theta = (diff.abs() * (p != 0)).amax(-1, keepdim=True)
    on = p != 0
    torch.testing.assert_close(diff[on], (theta * p.sign()).expand_as(p)[on])
    assert (v.abs()[~on] <= theta.expand_as(v)[~on] + 1e-12).all()
    assert (theta > 0).all()


def test_stable_lstm_at_most_leaves_columns_inside_their_ball_alone(float64):
    model = make("stable_lstm", n=6, seeds=[0, 1], columns="at_most")
    bound = torch.tensor(model.cfg.l1)[None, :, None]
    cols = model.W.detach().abs().unflatten(-2, (4, 6)).sum(-2)  # [R, 4, N]
    assert (cols <= bound + 1e-12).all()
    pre = []
    project = model.constrain
    model.constrain = lambda: (pre.append(model.W.detach().clone()), project())
    train_and_floss(model, epochs=3)
    before = pre[-1].abs().unflatten(-2, (4, 6)).sum(-2)
    after = model.W.detach().abs().unflatten(-2, (4, 6)).sum(-2)
    inside = before <= bound
    assert inside.any() and (~inside).any()  # the last step left some columns outside
    W0, W1 = pre[-1].unflatten(-2, (4, 6)), model.W.detach().unflatten(-2, (4, 6))
    mask = inside.unsqueeze(-2).expand_as(W0)
    assert torch.equal(W1[mask], W0[mask])  # fixed would have scaled these up
    torch.testing.assert_close(after[~inside], bound.expand_as(after)[~inside])
    vf = model.V.detach()[:, 6:12].abs().sum(-2)
    assert (vf <= model.cfg.input_forget_l1 + 1e-12).all()
    assert (full_spectrum(model) < 0).all()


def test_orthogonal_model_stays_orthogonal_through_training_and_flossing():
    model = make("orthogonal", n=8, dtype=torch.float32)
    before = model.W.detach().clone()
    train_and_floss(model)
    W = model.W.detach()
    assert not torch.allclose(W, before)
    eye = torch.eye(8).expand_as(W)
    torch.testing.assert_close(W.transpose(1, 2) @ W, eye, rtol=0, atol=1e-5)
    assert (full_spectrum(model) <= 1e-5).all()


@pytest.mark.parametrize("name", NAMES)
def test_floss_parameters_exclude_readout_and_h0(name):
    model = make(name)
    ids = {id(p) for p in model.floss_parameters()}
    for key in ("w_out", "b_out", "h0"):
        assert id(getattr(model, key)) not in ids
    assert {id(p) for p in model.parameters()} - {id(model.w_out), id(model.b_out),
                                                   id(model.h0)} == ids  # fmt: skip


# --- configs ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "transformer"}, "model.name=transformer: allowed: gru, lstm"),
        ({"name": "lstm", "g": 1.0}, "model.g: not an option of model=lstm"),
        ({"name": "stable", "rho": 1.5}, "model.rho=1.5: must be in (0, 1)"),
        ({"name": "stable_lstm", "l1": [0.1, 0.2]}, "model.l1=[0.1,0.2]: must be 4 numbers"),
        ({"name": "stable_lstm", "columns": "x"}, "model.columns=x: allowed: fixed, at_most"),
        ({"name": "gru", "N": 0}, "model.N=0: must be >= 1"),
        ({"name": "vanilla", "init": "xavier"}, "model.init=xavier: allowed"),
    ],
)
def test_bad_model_options_raise_one_line_naming_the_key(fields, message):
    with pytest.raises(ConfigError) as err:
        model_config(fields)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_long_term_jacobian_matches_product_of_step_jacobians(float64, step_jacobian, name):
    from flossrun.diagnostics import long_term_jacobian

    model = make(name, seeds=[1, 2])
    x = _random((6, 2, 1, S), 3)
    h = model.initial_state(1).detach()
    with torch.no_grad():
        res = long_term_jacobian(model, h, x, [1, 3], transient=2)
        for t in range(2):
            h = model.step(h, x[t])
        P = torch.eye(model.state_dim).expand(2, 1, -1, -1)
        for tau in range(3):
            P = step_jacobian(model.step, h, x[2 + tau]) @ P
            h = model.step(h, x[2 + tau])
            if tau + 1 in (1, 3):
                sv = torch.linalg.svdvals(P).log()
                torch.testing.assert_close(
                    res.log_sv[0 if tau == 0 else 1], sv, rtol=1e-8, atol=1e-8
                )


# --- learning rates: the architecture's own unless train.lr / floss.lr are set ---------------
def composed(*overrides: str):
    from hydra import compose, initialize_config_dir

    from flossrun.cli import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("config", list(overrides))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("floss", ["pre", "pre_during", "none"])
def test_runs_use_the_models_learning_rates_unless_set(tmp_path, name, floss):
    from flossrun.provenance import run_identity
    from flossrun.runner import Run

    own = MODELS[name].config()
    sizes = ("model.N=4", "floss.k=2", "task.T=12", "task.delay=2", "train.test_size=2")
    cases = {(): (own.lr, own.floss_lr), ("train.lr=0.005", "floss.lr=0.002"): (0.005, 0.002)}
    for extra, (lr, floss_lr) in cases.items():
        cfg = composed(f"model={name}", f"floss={floss}", *sizes, *extra)
        run = Run(validate(cfg), tmp_path)
        assert run.train_opt.param_groups[0]["lr"] == lr == run.lr_at(1)
        assert run.floss_opt.param_groups[0]["lr"] == floss_lr
        identity = run_identity(cfg, "cpu")  # records the rates in effect, where they apply
        assert (identity["train"]["lr"], identity["floss"]["lr"]) == (lr, floss_lr)
        assert "lr" not in identity["model"] and "floss_lr" not in identity["model"]


def test_architectures_preset_trains_each_swept_model_at_its_own_rate():
    rates = {}
    for name in ("vanilla", "lstm", "gru", "orthogonal", "stable"):
        for scale in ("quick", "medium"):
            cfg = composed("experiment=architectures", f"model={name}", f"scale={scale}")
            rates[name] = learning_rates(cfg)
            assert rates[name] == (MODELS[name].config().lr, 1e-2)  # the preset flosses at 1e-2
        paper = composed("experiment=architectures", f"model={name}", "scale=paper")
        assert learning_rates(paper) == (MODELS[name].config().lr, 1e-3)
    assert rates["lstm"][0] > rates["vanilla"][0]  # the gated nets learn at a larger rate


def test_bad_learning_rate_names_its_key():
    with pytest.raises(ConfigError, match=r"^model.lr=0: must be > 0$"):
        model_config({"name": "lstm", "lr": 0})
    with pytest.raises(ConfigError, match=r"^train.lr=-1.0: must be > 0 or null"):
        validate(composed("train.lr=-1.0"))
