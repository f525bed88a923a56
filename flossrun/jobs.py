"""The job seam (docs/design.md §11): what one ``flossrun`` job computes in its run folder.

    analysis=none                           TrainJob: the training schedule (flossrun.runner.Run)
    analysis=orbit                          TrainJob with orbit snapshots during training (both)
    analysis=landscape network=trained      LandscapeJob: train, then the landscape (both)
    analysis=landscape network=chaotic_lstm LandscapeJob of a built-in network (no training)
    analysis=smoothness network=...         SmoothnessJob: the same two cases
    analysis=regions                        RegionsJob: train, then memory and smoothness per
                                            network (the regions preset)

A job is registered for an analysis's config class with :func:`job_for`; an analysis without
one runs in a :class:`TrainJob`, with the training hook it declares
(:meth:`flossrun.analyses.AnalysisConfig.recorder`). Every job has ``execute()`` (run or
resume; False if it had finished), ``summary_rows()`` (``contract.SummaryRow``), ``plot()`` and
``describe(rows)`` (a few lines for the terminal).
:func:`flossrun.cli.job` does the rest the same way for all: validation, the folder checks,
provenance, ``summary.csv``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from flossrun import io
from flossrun.analyses import LandscapeConfig, RegionsConfig, SmoothnessConfig
from flossrun.analyses import landscape as ls
from flossrun.analyses import regions as rg
from flossrun.analyses import smoothness as sm
from flossrun.analyses.orbit import orbit_omegas
from flossrun.config import Settings, resolve_device
from flossrun.contract import (
    CHECKPOINT_FILE,
    LANDSCAPE_COLUMNS,
    LANDSCAPE_CSV,
    LANDSCAPE_PT,
    METRICS_FILE,
    PLOTS_DIR,
    RATE_COLUMNS,
    REGION_COLUMNS,
    REGIONS_CSV,
    REGIONS_PT,
    SMOOTHNESS_POINT_COLUMNS,
    SMOOTHNESS_POINTS_CSV,
    SMOOTHNESS_PT,
    SMOOTHNESS_RATES_CSV,
    SMOOTHNESS_WINDOWS_CSV,
    SPECTRA_FILE,
    SUMMARY_FILE,
    WINDOW_COLUMNS,
    RateRow,
    SummaryRow,
)
from flossrun.models import build_model
from flossrun.runner import Run, summary_rows
from flossrun.tasks import Delayed, build_task


def task_label(cfg: Settings) -> str:
    """``delayed_xor d=20 T=300`` or ``sine_generator T=400``."""
    t = cfg.task
    return f"{t.name}" + (f" d={t.delay}" if isinstance(t, Delayed) else "") + f" T={t.T}"


def with_values(text: str, cfg: Settings) -> str:
    """``test accuracy >= train.success_threshold`` → ``test accuracy >= 0.95``: config keys in
    a task's success rule replaced by their values."""
    import re

    def value(m: re.Match) -> str:
        group, key = m.group(0).split(".")
        v = getattr(getattr(cfg, group), key, None)
        return m.group(0) if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    return re.sub(r"\b(?:train|task)\.\w+", value, text)


class TrainJob:
    """A training run (``analysis=none`` or ``orbit``) of the validated settings ``cfg``."""

    def __init__(self, cfg: Settings, out: Path) -> None:
        self.cfg, self.out = cfg, Path(out)
        self.run = Run(cfg, self.out)

    def execute(self) -> bool:
        return self.run.execute()

    def summary_rows(self) -> list[SummaryRow]:
        return summary_rows(self.run)

    def title(self) -> str:
        c = self.cfg
        return (
            f"{task_label(c)}, {c.model.name} N={c.model.N}, "
            f"floss={c.floss.name} k={c.floss.k}, R={c.realizations}"
        )

    def plot(self) -> None:
        from flossrun import plots

        plots.plot_run(self.out, self.title())
        if self.run.recorder is not None:
            plots.analysis_figure(self.out, self.run.recorder.figure)

    def describe(self, rows: list[SummaryRow]) -> str:
        """Successes, median accuracy (if the task has one) and λ1, where the files are."""
        c = self.cfg
        acc = [r.test_accuracy for r in rows if not math.isnan(r.test_accuracy)]
        score = (
            f"median final test accuracy {statistics.median(acc):.3f}"
            if acc
            else f"median final test loss {statistics.median(r.test_loss for r in rows):.4g}"
        )
        n_ok, n_div = sum(r.success for r in rows), sum(r.diverged for r in rows)
        diverged = f" ({n_div} diverged)" if n_div else ""
        lam = statistics.median(r.lambda_1 for r in rows)
        hook = self.run.recorder
        extra = f"  {hook.files}\n" if hook is not None else ""
        rule = with_values(self.run.task.success_text, c)
        success = f"  success: {n_ok}/{len(rows)} realizations reached {rule}{diverged}\n"
        if c.train.epochs == 0:  # nothing trained for accuracy: report what the job did
            success, score = (f"  no training (train.epochs=0){diverged}\n", "flossing only")
        return (
            f"flossrun: {task_label(c)}, {c.model.name} N={c.model.N}, "
            f"floss={c.floss.name} (k={c.floss.k})\n{success}"
            f"  {score}, median final λ1 {lam:+.3f} nats/step, {rows[0].wall_seconds:.0f} s\n"
            f"  results: {self.out}/{SUMMARY_FILE} ({METRICS_FILE}, {SPECTRA_FILE})\n{extra}"
            f"  plots:   {self.out}/{PLOTS_DIR}/"
        )


JOBS: dict[type, Callable[[Settings, Path], Any]] = {}


def job_for(config: type) -> Callable[[type], type]:
    """Class decorator of a job ``(cfg, out) -> job`` (``cfg``: the validated
    :class:`~flossrun.config.Settings`): run it for an analysis whose config is ``config`` (or
    a subclass of it). Without one, an analysis runs in a :class:`TrainJob`."""

    def add(job: type) -> type:
        JOBS[config] = job
        return job

    return add


@job_for(LandscapeConfig)
class LandscapeJob:
    """Loss and λ1 along paths through a built-in network, or through the one this run trains
    (which is trained first, resumably, by a :class:`TrainJob` in the same folder)."""

    def __init__(self, cfg: Settings, out: Path) -> None:
        self.cfg, self.out, self.a = cfg, Path(out), cfg.analysis
        self.device, self.dtype = resolve_device(cfg.device), getattr(torch, cfg.dtype)
        self.trainer = TrainJob(cfg, out) if self.a.trains() else None
        self.stats: dict[str, dict[str, float]] = {}
        self.lambda_1 = math.nan  # λ1 of the network analysed (s = 1 of the first path)
        self.wall = 0.0

    # --- the two networks -----------------------------------------------------------------
    def chaotic(self) -> dict[str, dict[str, torch.Tensor]]:
        """The paths through the chaotic LSTM: ``scale`` (and ``grid``)."""
        a, seed = self.a, int(self.cfg.seed)
        net = ls.chaotic_lstm(seed, dtype=self.dtype, device=self.device)
        x = torch.zeros(a.steps, 1, 1, dtype=self.dtype, device=self.device)
        with torch.no_grad():
            ref = net(x, net.initial_state(1))[a.burn_in :, :, :, : net.N]  # [T_keep, 1, 1, N]
        loss = ls.state_mse(ref, a.burn_in, net.N)
        zero = {k: torch.zeros_like(v) for k, v in ls.parameters_of(net, ls.CHAOTIC_PARAMS).items()}
        theta = ls.parameters_of(net, ls.CHAOTIC_PARAMS)
        d = ls.random_direction(theta, seed)
        return self.paths(net, zero, theta, {"scale": (zero, theta)}, d, loss, x)

    def trained(self) -> dict[str, dict[str, torch.Tensor]]:
        """The paths through the trained network: ``from_init``, ``random`` (and ``grid``)."""
        a, run, seed = self.a, self.trainer.run, int(self.cfg.seed)
        init = build_model(
            self.cfg.model, run.task.S, run.task.O, [seed], dtype=self.dtype, device=self.device
        )
        net = copy_first(run.model)
        theta0, theta = ls.parameters_of(init), ls.parameters_of(net)
        delta = {k: theta[k] - theta0[k] for k in theta}
        d = ls.random_direction(theta, seed, norms=delta)
        behind = {k: theta[k] - d[k] for k in theta}  # θ(s) = θ_trained + (s − 1) d
        task = build_task(self.cfg.task)
        omega = orbit_omegas(task, a.sequences).reshape(1, -1)  # [1, B]
        xs, ys = task.sequences(omega, dtype=self.dtype, device=self.device)  # [T, 1, B, 1]
        loss = ls.task_loss(task, xs[:, 0], ys[:, 0])
        mid = float(orbit_omegas(task, 3)[1])
        x = torch.full((a.steps, 1, task.S), mid, dtype=self.dtype, device=self.device)
        paths = {"from_init": (theta0, theta), "random": (behind, theta)}
        return self.paths(net, theta0, theta, paths, d, loss, x)

    def paths(self, net, a0, b0, lines, d, loss, x) -> dict[str, dict[str, torch.Tensor]]:
        """Evaluate the 1-D ``lines`` ({name: (θ_a, θ_b)}) and the grid a0 + s1(b0 − a0) + s2 d."""
        a, seed, out = self.a, int(self.cfg.seed), {}
        s = ls.s_values(a.s_min, a.s_max, a.points)
        x_l = x[:1].expand(a.lyap_transient + a.lyap_steps, *x.shape[1:])  # constant input
        lyap = (x_l, a.lyap_transient)
        for name, (lo, hi) in lines.items():
            res = ls.evaluate_points(
                net, ls.path_points(lo, hi, s), loss, x, a.burn_in, seed=seed, chunk=a.chunk,
                lyap=lyap,
            )  # fmt: skip
            out[name] = {"s1": s, "s2": torch.zeros_like(s), **res}
            self.stats[name] = ls.path_stats(s, res["loss"], res["lambda_1"], a.neutral_band)
            if math.isnan(self.lambda_1):
                self.lambda_1 = self.stats[name]["lambda_1_at_1"]
        if a.grid:
            g1 = ls.grid_axis(*a.grid_s1, a.grid, (0.0, 1.0))  # θ_a and θ_b on the grid
            g2 = ls.grid_axis(*a.grid_s2, a.grid, (0.0,))
            s1, s2 = (t.flatten() for t in torch.meshgrid(g1, g2, indexing="ij"))
            pts = ls.grid_points(a0, b0, d, s1, s2)
            res = ls.evaluate_points(
                net, pts, loss, x, a.burn_in, seed=seed, chunk=a.chunk, lyap=lyap
            )
            out["grid"] = {"s1": s1, "s2": s2, **res}
        return out

    # --- the job --------------------------------------------------------------------------
    def execute(self) -> bool:
        t0 = time.perf_counter()
        if self.trainer is not None:
            self.trainer.execute()  # resumes, or returns at once if training had finished
        from flossrun.models.lstm import LSTM
        from flossrun.training import model_threads

        # loops of small per-step ops: one intra-op thread on CPU, as the models' own passes
        with model_threads(self.trainer.run.model if self.trainer else LSTM, self.device):
            results = self.trained() if self.trainer else self.chaotic()
        self.write(results)
        self.wall = time.perf_counter() - t0
        if self.trainer is None:  # the folder's record that this job finished (cli.check_folder)
            io.save_checkpoint(
                self.out / CHECKPOINT_FILE,
                {"config": self.cfg.identity, "state": {"finished": True}},
            )
        return True

    def write(self, results: dict[str, dict[str, torch.Tensor]]) -> None:
        """``landscape.csv`` (tidy, ``LANDSCAPE_COLUMNS``) and ``landscape.pt`` (per path:
        ``s1, s2, loss, lambda_1 [P]`` and ``outputs [P, steps − burn_in]``)."""
        rows, band = [], self.a.neutral_band
        for name, r in results.items():
            cols = [r[k].tolist() for k in ("s1", "s2", "loss", "lambda_1")]
            rows += [(name, i, *v, sm.classify(v[-1], band))
                     for i, v in enumerate(zip(*cols, strict=True))]  # fmt: skip
        io.write_csv(self.out / LANDSCAPE_CSV, LANDSCAPE_COLUMNS, rows)
        io.save_checkpoint(self.out / LANDSCAPE_PT, {"stats": self.stats, "paths": results})

    def summary_rows(self) -> list[SummaryRow]:
        if self.trainer is not None:
            return self.trainer.summary_rows()
        nan = math.nan
        return [SummaryRow(
            realization=0, seed=int(self.cfg.seed), test_accuracy=nan, test_loss=nan,
            success=False, epochs_to_success=nan, diverged=False, lambda_1=self.lambda_1,
            wall_seconds=round(self.wall, 3),
        )]  # fmt: skip

    def plot(self) -> None:
        from flossrun import plots

        if self.trainer is not None:
            self.trainer.plot()
        plots.analysis_figure(self.out, "loss_landscape")

    def describe(self, rows: list[SummaryRow]) -> str:
        lines = [f"flossrun: loss landscape of {self.a.network} ({self.cfg.model.name})"]
        if self.trainer is not None:
            lines = [self.trainer.describe(rows), lines[0]]
        for name, st in self.stats.items():
            lines.append(
                f"  {name}: λ1 crosses 0 at s = {st['crossing']:.3f}; points contracting / "
                f"neutral / chaotic {st['frac_contracting']:.2f} / {st['frac_neutral']:.2f} / "
                f"{st['frac_chaotic_band']:.2f} (band {self.a.neutral_band}); loss variation "
                f"per unit s at {st['points_per_s']:.0f} points per unit s: "
                f"{st['tv_stable']:.3g} where λ1 < 0, {st['tv_chaotic']:.3g} where λ1 ≥ 0"
            )
        lines.append(f"  results: {self.out}/{LANDSCAPE_CSV} ({LANDSCAPE_PT})")
        lines.append(f"  plots:   {self.out}/{PLOTS_DIR}/loss_landscape.png")
        return "\n".join(lines)


@job_for(SmoothnessConfig)
class SmoothnessJob(LandscapeJob):
    """V_T, V′ and V″ (exact) along paths for several horizons T, their growth with T per
    window of s and λ1 from a long window (:mod:`flossrun.analyses.smoothness`), through the
    built-in chaotic LSTM (path ``scale``) or the network this run trains (``from_init``,
    ``random``)."""

    def __init__(self, cfg: Settings, out: Path) -> None:
        super().__init__(cfg, out)
        self.dtype = torch.float64  # derivatives of e^{2 λ1 T} size: float64 whatever cfg.dtype
        self.rates: list[tuple] = []

    def chaotic(self) -> dict:
        a, seed = self.a, int(self.cfg.seed)
        net = ls.chaotic_lstm(seed, dtype=self.dtype, device=self.device)
        x = torch.zeros(max(a.horizons), 1, 1, dtype=self.dtype, device=self.device)
        zero = {k: torch.zeros_like(v) for k, v in ls.parameters_of(net, ls.CHAOTIC_PARAMS).items()}
        theta = ls.parameters_of(net, ls.CHAOTIC_PARAMS)
        steps = a.lyap_transient + a.lyap_steps
        xl = torch.zeros(steps, 1, 1, dtype=self.dtype, device=self.device)
        cost = sm.state_cost(net, x, list(a.horizons))
        return self.smooth_paths(net, {"scale": (zero, theta)}, cost, xl)

    def trained(self) -> dict:
        a, run, seed = self.a, self.trainer.run, int(self.cfg.seed)
        init = build_model(
            self.cfg.model, run.task.S, run.task.O, [seed], dtype=self.dtype, device=self.device
        )
        net = copy_first(run.model).to(self.dtype)
        theta0, theta = ls.parameters_of(init), ls.parameters_of(net)
        delta = {k: theta[k] - theta0[k] for k in theta}
        d = ls.random_direction(theta, seed, norms=delta)
        behind = {k: theta[k] - d[k] for k in theta}
        task = build_task(self.cfg.task)
        omega = orbit_omegas(task, a.sequences)
        cost = sm.sine_cost(net, omega, list(a.horizons), self.dtype)
        mid = float(orbit_omegas(task, 3)[1])
        steps = a.lyap_transient + a.lyap_steps
        xl = torch.full((steps, 1, task.S), mid, dtype=self.dtype, device=self.device)
        paths = {"from_init": (theta0, theta), "random": (behind, theta)}
        return self.smooth_paths(net, paths, cost, xl)

    def smooth_paths(self, net, lines, cost, xl) -> dict:
        """Derivatives, λ1 and the window statistics of every path in ``lines``."""
        a, seed, out = self.a, int(self.cfg.seed), {}
        s = torch.linspace(a.s_min, a.s_max, a.points, dtype=torch.float64)
        H = list(a.horizons)
        for name, (lo, hi) in lines.items():
            V, d1, d2 = sm.chunked(cost, lo, hi, s, a.chunk, a.derivatives)
            pts = ls.path_points(lo, hi, s)
            lam = sm.long_lambda(net, pts, xl, a.lyap_transient, seed=seed, chunk=a.chunk)
            xT = xl[:1].expand(max(H), *xl.shape[1:])  # the constant input over the horizon
            lam_T = sm.long_lambda(net, pts, xT, 0, seed=seed, chunk=a.chunk)
            wins, rates = sm.window_table(
                name, s, H, d1, d2, lam, lam_T, a.windows, a.neutral_band, a.fit_from
            )
            out[name] = {"s": s, "horizons": torch.tensor(H), "V": V, "d1": d1, "d2": d2,
                         "lambda_1": lam, "lambda_1_T": lam_T,
                         "windows": wins, "rates": rates}  # fmt: skip
            self.rates += rates
            if math.isnan(self.lambda_1):
                self.lambda_1 = float(lam[(s - 1).abs().argmin()])
        return out

    def write(self, results: dict) -> None:
        """``smoothness_points.csv`` (one row per path, point and horizon:
        ``SMOOTHNESS_POINT_COLUMNS``), ``smoothness_windows.csv`` (``WINDOW_COLUMNS``),
        ``smoothness_rates.csv`` (``RATE_COLUMNS``) and ``smoothness.pt`` (the tensors)."""
        band, points, wins, rates = self.a.neutral_band, [], [], []
        for name, r in results.items():
            lam = r["lambda_1"].tolist()
            for i, T in enumerate(r["horizons"].tolist()):
                cols = zip(r["s"].tolist(), r["V"][i].tolist(), r["d1"][i].tolist(),
                           r["d2"][i].tolist(), lam, strict=True)  # fmt: skip
                points += [(name, p, s, T, v, g, g2, la, sm.classify(la, band))
                           for p, (s, v, g, g2, la) in enumerate(cols)]  # fmt: skip
            wins += r["windows"]
            rates += r["rates"]
        io.write_csv(self.out / SMOOTHNESS_POINTS_CSV, SMOOTHNESS_POINT_COLUMNS, points)
        io.write_csv(self.out / SMOOTHNESS_WINDOWS_CSV, WINDOW_COLUMNS, wins)
        io.write_csv(self.out / SMOOTHNESS_RATES_CSV, RATE_COLUMNS, rates)
        keep = {n: {k: v for k, v in r.items() if torch.is_tensor(v)} for n, r in results.items()}
        io.save_checkpoint(
            self.out / SMOOTHNESS_PT,
            {"paths": keep, "rates": rates, "rate_columns": RATE_COLUMNS,
             "neutral_band": band, "fit_from": int(self.a.fit_from)},
        )  # fmt: skip

    def plot(self) -> None:
        super().plot()
        import matplotlib as mpl

        from flossrun.report.attractors import smoothness_panels
        from flossrun.report.style import RC, save

        data = io.load_checkpoint(self.out / SMOOTHNESS_PT)
        with mpl.rc_context(RC):
            fig = smoothness_panels({self.a.network: data})
            if fig is not None:
                save(fig, self.out / PLOTS_DIR, "smoothness")

    def describe(self, rows: list[SummaryRow]) -> str:
        lines = [f"flossrun: smoothness of the cost along paths ({self.a.network})"]
        if self.trainer is not None:
            lines = [self.trainer.describe(rows), lines[0]]
        for r in map(RateRow._make, self.rates):
            lines.append(
                f"  {r.path} s∈[{r.s_low:.3f},{r.s_high:.3f}] λ1 {r.lambda_1:+.3f} (max "
                f"{r.lambda_1_max:+.3f}, {r.regime}): "
                f"rate ln L {r.rate_L:+.4f}, ln L_g {r.rate_L_g:+.4f} per step"
            )
        lines.append(f"  results: {self.out}/{SMOOTHNESS_RATES_CSV} (_windows, _points, .pt)")
        return "\n".join(lines)


@job_for(RegionsConfig)
class RegionsJob(TrainJob):
    """A training run (with ``diag.jacobian``), then per realization and stage (as flossing
    placed it, trained: ``flossrun.analyses.regions.STAGES``) λ1 from a long window,
    memory at the longest lag and the smoothness of the cost along a short random path
    (:mod:`flossrun.analyses.regions`): ``REGIONS_CSV`` (``REGION_COLUMNS``) and
    ``REGIONS_PT`` (the path tensors per realization)."""

    def execute(self) -> bool:
        trained = self.run.execute()
        if not trained and (self.out / REGIONS_CSV).exists():
            return False
        self.measure()
        return True

    def measure(self) -> None:
        from flossrun.training import model_threads

        run, a, k = self.run, self.cfg.analysis, int(self.cfg.floss.k)
        rows, out = summary_rows(run), []
        models = {"placed": rg.placed_model(run.model, run.logs["orbits"][0]),
                  "trained": run.model}  # fmt: skip
        tensors: dict[str, dict] = {stage: {} for stage in rg.STAGES}
        with model_threads(run.model, run.device):
            for stage in rg.STAGES:
                diag = rg.diagnostics_stage(stage, run.preflossing)
                for r, seed in enumerate(run.seeds):
                    net = rg.one_realization(models[stage], r)
                    numbers, tensors[stage][r] = rg.smoothness_of(net, run.task, a, int(seed))
                    memory = rg.memory_of(run.logs["diagnostics"], r, k, diag)
                    out.append(rg.network_row(r, seed, stage, numbers, memory,
                                              rows[r].success, rows[r].test_accuracy))  # fmt: skip
        io.write_csv(self.out / REGIONS_CSV, REGION_COLUMNS, out)
        io.save_checkpoint(self.out / REGIONS_PT, {"paths": tensors,
                                                    "horizons": list(a.horizons)})  # fmt: skip

    def describe(self, rows: list[tuple]) -> str:
        import pandas as pd

        df = pd.read_csv(self.out / REGIONS_CSV)
        lines = [super().describe(rows), "flossrun: memory and smoothness per network"]
        for r in df.itertuples(index=False):
            lines.append(
                f"  seed {r.seed} {r.stage}: λ1 {r.lambda_1:+.3f} ({r.regime}), error signal at "
                f"lag {r.lag:g} {r.error_signal_norm:.3g}, log10 cond {r.log10_condition:.2f}; "
                f"rate ln L {r.rate_L:+.4f}, ln L_g {r.rate_L_g:+.4f} per step; success {r.success}"
            )
        return "\n".join(lines)


def copy_first(model):
    """A one-realization copy of realization 0 of an ensemble (the network a landscape of a
    trained run analyses; the landscape presets train one realization)."""
    import copy

    net = copy.deepcopy(model)
    for name, p in model.named_parameters():
        setattr(net, name, torch.nn.Parameter(p.detach()[:1].clone(), requires_grad=False))
    return net


def make_job(cfg: Settings, out: Path) -> TrainJob | LandscapeJob:
    """The job that the settings' ``analysis`` asks for: the one registered for its config
    class with :func:`job_for` (the nearest along the class's bases), else a :class:`TrainJob`."""
    for cls in type(cfg.analysis).__mro__:
        if cls in JOBS:
            return JOBS[cls](cfg, out)
    return TrainJob(cfg, out)
