"""One ``flossrun`` job from its validated settings: the schedule of docs/design.md §5,
resumable.

    floss.name selects the phases (none | pre | pre_during); floss.k = 0 means no flossing.
    preflossing (floss.pre_epochs) → evaluate at epoch 0
    for epoch 1..train.epochs: train; evaluate every train.eval_every;
        after every floss.every epochs, a phase of floss.epochs flossing epochs (≤ floss.times)
    full spectra at the start, after preflossing and at the end

All state (weights, both optimisers, every random stream, the logs) lives in ``checkpoint.pt``
so a killed run continues exactly where its last checkpoint left it.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from flossrun import interrupt, io, seeding
from flossrun.config import Settings, resolve_device
from flossrun.contract import (
    CHECKPOINT_FILE,
    DIAGNOSTICS_COLUMNS,
    DIAGNOSTICS_FILE,
    METRICS_COLUMNS,
    METRICS_FILE,
    SPECTRA_COLUMNS,
    SPECTRA_FILE,
    DiagnosticsRow,
    MetricsRow,
    SpectrumRow,
    SummaryRow,
)
from flossrun.diagnostics import condition_number, error_signal_norms, long_term_jacobian
from flossrun.errors import ConfigError
from flossrun.fast.ops import realization_mean
from flossrun.lyapunov import lyapunov_spectrum
from flossrun.models import build_model
from flossrun.provenance import identity_diff, learning_rates
from flossrun.tasks import PreparesModel, build_task
from flossrun.training import (
    evaluate,
    floss_epoch,
    make_adam,
    model_threads,
    one_thread,
    train_epoch,
)

log = logging.getLogger("flossrun")
STREAMS = ("train", "floss", "frame")  # random streams that advance during a run
EVAL_EXPONENTS = 10  # λ_1..λ_min(k,10) at every evaluation


class Run:
    """Builds everything a job needs from the validated settings ``cfg`` and executes the
    schedule, writing into ``out``."""

    def __init__(self, cfg: Settings, out: Path) -> None:
        self.cfg, self.out = cfg, Path(out)
        self.device, self.dtype = resolve_device(cfg.device), getattr(torch, cfg.dtype)
        self.identity = cfg.identity  # what the checkpoint stores and a resume compares
        self.seeds = seeding.realization_seeds(cfg.seed, cfg.realizations)
        self.task = build_task(cfg.task)
        self.model = build_model(
            cfg.model, self.task.S, self.task.O, self.seeds, dtype=self.dtype, device=self.device
        )
        if isinstance(self.task, PreparesModel):  # e.g. task.h0=zero (sine generator)
            self.task.prepare(self.model)
        self.lr, floss_lr = learning_rates(cfg)  # train.lr / floss.lr, else the model's own
        self.train_opt = make_adam(list(self.model.parameters()), self.lr)
        self.floss_opt = make_adam(self.model.floss_parameters(), floss_lr)
        self.gens = {s: seeding.generators(self.seeds, s) for s in STREAMS}
        self.x_test, self.y_test = self.task.test_set(
            seeding.generators(self.seeds, "test"),
            cfg.train.test_size,
            dtype=self.dtype,
            device=self.device,
        )
        self.x_diag = self.task.drive(
            seeding.generators(self.seeds, "diag"), cfg.diag.steps, 1, dtype=self.dtype,
            device=self.device,
        )  # [T_diag, R, 1, S]  # fmt: skip
        # an analysis's training hook (orbit snapshots, docs/design.md §11), or None
        self.recorder = cfg.analysis.recorder(
            self.task, self.seeds, self.model.state_dim, cfg.train.epochs
        )
        target = cfg.floss.target  # a number, or one per flossed exponent
        self.target = list(target) if isinstance(target, list) else float(target)
        self.alive = torch.ones(cfg.realizations, dtype=torch.bool, device=self.device)
        self.state: dict[str, Any] = {
            "train_done": 0, "floss_done": 0, "phases_done": 0, "pre_done": False,
            "finished": False, "wall": 0.0, "epochs_to_success": [math.nan] * cfg.realizations,
            "last_eval": {},
        }  # fmt: skip
        self.logs: dict[str, list] = {"metrics": [], "spectra": [], "diagnostics": [], "orbits": []}
        self._t0 = time.perf_counter()

    @property
    def preflossing(self) -> bool:
        """``floss=pre`` or ``pre_during`` with k > 0: flossing epochs before training."""
        f = self.cfg.floss
        return f.name in ("pre", "pre_during") and f.k > 0 and f.pre_epochs > 0

    @property
    def interflossing(self) -> bool:
        """``floss=pre_during`` with k > 0: flossing phases during training."""
        f = self.cfg.floss
        return f.name == "pre_during" and f.k > 0 and f.epochs > 0 and f.times > 0

    def lr_at(self, epoch: int) -> float:
        """Training learning rate at ``epoch`` (1-based): ``train.lr`` (else ``model.lr``) times
        ``train.gamma`` for every milestone already passed (a step schedule; a function of the
        epoch, so resuming from a checkpoint continues it exactly)."""
        if not hasattr(self, "_lr"):
            t = self.cfg.train
            self._lr = (self.lr, float(t.gamma), list(t.milestones))
        lr, gamma, milestones = self._lr
        return lr * gamma ** sum(m < epoch for m in milestones)

    # --- checkpoints ----------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_FILE

    def save(self) -> None:
        """Write the CSVs written so far, then the checkpoint (both atomic)."""
        self.state["wall"] += time.perf_counter() - self._t0
        self._t0 = time.perf_counter()
        self.write_logs()
        io.save_checkpoint(self.checkpoint_path, {
            "config": self.identity,
            "model": self.model.state_dict(),
            "train_opt": self.train_opt.state_dict(),
            "floss_opt": self.floss_opt.state_dict(),
            "gens": {s: [g.get_state() for g in gs] for s, gs in self.gens.items()},
            "alive": self.alive.cpu(),
            "state": self.state,
            "logs": self.logs,
        })  # fmt: skip

    def restore(self) -> bool:
        """Load ``checkpoint.pt`` if present; False when starting fresh."""
        if not self.checkpoint_path.exists():
            return False
        ck = io.load_checkpoint(self.checkpoint_path)
        if ck["config"] != self.identity:  # flossrun.cli refuses such folders before this
            raise ConfigError(
                f"hydra.run.dir={self.out}: holds a run of another config "
                f"({identity_diff(ck['config'], self.identity)})"
            )
        self.model.load_state_dict(ck["model"])
        self.train_opt.load_state_dict(ck["train_opt"])
        self.floss_opt.load_state_dict(ck["floss_opt"])
        for s, states in ck["gens"].items():
            for g, st in zip(self.gens[s], states, strict=True):
                g.set_state(st)
        self.alive = ck["alive"].to(self.device)
        self.state, self.logs = ck["state"], ck["logs"]
        return True

    def write_logs(self) -> None:
        io.write_csv(self.out / METRICS_FILE, METRICS_COLUMNS, self.logs["metrics"])
        io.write_csv(self.out / SPECTRA_FILE, SPECTRA_COLUMNS, self.logs["spectra"])
        if self.logs["diagnostics"]:
            io.write_csv(self.out / DIAGNOSTICS_FILE, DIAGNOSTICS_COLUMNS, self.logs["diagnostics"])
        if self.recorder is not None:
            self.recorder.write(self.out, self.logs.get("orbits", []))

    # --- logging helpers ------------------------------------------------------------------
    # The logs hold plain tuples (the checkpoint is loaded with weights_only=True), built from
    # the contract's rows by field.
    def record(self, phase: str, epoch: int, values: dict[str, torch.Tensor]) -> None:
        """Append one metrics row per realization and name (values are ``[R]``)."""
        rows = self.logs["metrics"]
        for name, v in values.items():
            for r, x in enumerate(v.tolist()):
                row = MetricsRow(
                    realization=r, seed=self.seeds[r], phase=phase, epoch=epoch, name=name, value=x
                )
                rows.append(tuple(row))

    def record_spectrum(self, stage: str, epoch: int, k: int) -> torch.Tensor:
        """Exponents 1..k (nats/step) on the fixed diagnostic input; returns ``[R, k]``."""
        with torch.no_grad(), model_threads(self.model, self.device):
            h = self.model.initial_state(1)
            lam = lyapunov_spectrum(
                self.model, h, self.x_diag, k, transient=self.cfg.diag.transient, seed=self.seeds
            ).exponents[:, 0]  # [R, k]
        rows = self.logs["spectra"]
        for r, values in enumerate(lam.tolist()):
            for i, v in enumerate(values, start=1):
                row = SpectrumRow(
                    realization=r, seed=self.seeds[r], stage=stage, epoch=epoch, index=i, value=v
                )
                rows.append(tuple(row))
        return lam

    # --- the schedule ---------------------------------------------------------------------
    def execute(self) -> bool:
        """Run (or resume) the schedule; returns False if the run had already finished.

        On SIGINT (:mod:`flossrun.interrupt`) it saves a checkpoint at the next epoch boundary,
        inside a flossing phase too, and raises :class:`~flossrun.interrupt.Interrupted`."""
        resumed = self.restore()
        if self.state["finished"]:
            return False
        if resumed:
            log.info("resuming %s at %s", self.out, self.position())
        cfg, st = self.cfg, self.state
        if not st["pre_done"]:
            if not st.get("initial_done"):
                self.full_spectrum("initial", 0)
                st["initial_done"] = True
            if self.preflossing:
                self.floss_phase(cfg.floss.pre_epochs, "preflossing")
                self.full_spectrum("preflossed", 0)
            self.eval_point(0)
            self.orbit_point(0)
            st["pre_done"] = True
            self.save()
        E = cfg.train.epochs
        bar = tqdm(total=E, initial=st["train_done"], desc="training", disable=None, leave=False)
        while st["train_done"] < E:
            phase = bool(st.get("phase_left"))  # resumed inside this epoch's flossing phase
            epoch = st["train_done"] + (0 if phase else 1)
            if not phase:
                self.train_step(epoch, bar)
                st["train_done"] = epoch
                if epoch % cfg.train.eval_every == 0 or epoch == E:
                    self.eval_point(epoch)
                self.orbit_point(epoch)
                phase_due = epoch % cfg.floss.every == 0 and st["phases_done"] < cfg.floss.times
                phase = self.interflossing and phase_due and epoch < E
                bar.update(1)
            if phase:
                self.floss_phase(cfg.floss.epochs, f"flossing phase {st['phases_done'] + 1}")
                st["phases_done"] += 1
            if (phase or epoch % cfg.train.checkpoint_every == 0) and epoch < E:
                self.save()  # every checkpoint_every epochs and after each flossing phase
            self.interrupt_point()
        bar.close()
        self.full_spectrum("final", st["train_done"])
        st["finished"] = True
        self.save()
        return True

    def position(self) -> str:
        """Where the schedule stands: ``training epoch 212`` or ``preflossing epoch 37/500``."""
        st = self.state
        left = st.get("phase_left") or 0
        if left:
            total = self.cfg.floss.pre_epochs if not st["pre_done"] else self.cfg.floss.epochs
            where = f"{st.get('phase_desc', 'flossing')} epoch {total - left}/{total}"
            return where + (f" after training epoch {st['train_done']}" if st["pre_done"] else "")
        if not st["pre_done"]:
            return "the start (before preflossing)"
        return f"training epoch {st['train_done']}"

    def interrupt_point(self) -> None:
        """At an epoch boundary: after SIGINT, save a checkpoint here and stop."""
        if interrupt.requested():
            self.save()
            where = self.position()
            raise interrupt.Interrupted(
                f"interrupted at {where}; rerun the same command to resume from {where} "
                f"(checkpoint {self.checkpoint_path})"
            )

    def train_step(self, epoch: int, bar) -> None:
        cfg = self.cfg.train
        for group in self.train_opt.param_groups:
            group["lr"] = self.lr_at(epoch)
        x, y = self.task.sample(self.gens["train"], cfg.batch, dtype=self.dtype, device=self.device)
        out = train_epoch(
            self.model, self.task, x, y, self.train_opt, cfg.clip, self.alive, ~self.frozen(),
            loss_reduction=cfg.loss_reduction, clip_mode=cfg.clip_mode,
        )  # fmt: skip
        if epoch % cfg.log_every == 0 or epoch == 1:
            self.record("train", epoch, out)
            shown = {k: f"{v.nanmedian():.3f}" for k, v in out.items() if k != "grad_h0_norm"}
            bar.set_postfix(**shown, **self._lam_postfix())

    def floss_phase(self, epochs: int, desc: str) -> None:
        """``epochs`` flossing epochs (fewer when resuming inside the phase)."""
        f, st = self.cfg.floss, self.state
        if not st.get("phase_left"):  # a new phase; a resumed one goes on where it stopped
            st["phase_left"], st["phase_desc"] = epochs, desc
        bar = tqdm(total=epochs, initial=epochs - st["phase_left"], desc=desc, disable=None,
                   leave=False)  # fmt: skip
        while st["phase_left"] > 0:
            x = self.task.drive(
                self.gens["floss"], f.steps, f.batch, dtype=self.dtype, device=self.device
            )
            active = self.alive & ~self.frozen()  # frozen networks are not flossed either
            out = floss_epoch(
                self.model, x, f.k, f.transient, self.target, self.floss_opt, active,
                qr_every=f.qr_every, frames=self.gens["frame"],
            )  # fmt: skip
            self.alive &= active | self.frozen()
            st["floss_done"] += 1
            st["phase_left"] -= 1
            lam1 = realization_mean(out["exponents"][..., 0])  # [R]
            values = {"floss_loss": out["loss"], "lambda_1_floss": lam1}
            self.record("prefloss" if desc == "preflossing" else "floss", st["floss_done"], values)
            bar.update(1)
            if st["phase_left"] > 0:
                self.interrupt_point()
        bar.close()
        log.info(
            "%s done: median λ1_floss %.3f nats/step (last flossing epoch, %d-step sequences)",
            desc, lam1.median(), f.steps,
        )  # fmt: skip

    def eval_point(self, epoch: int) -> None:
        cfg = self.cfg
        out = evaluate(self.model, self.task, self.x_test, self.y_test)
        n = min(max(cfg.floss.k, 1), EVAL_EXPONENTS, self.model.state_dim)
        lam = self.record_spectrum("eval", epoch, n)
        out["lambda_1_eval"] = lam[:, 0]
        self.alive &= torch.isfinite(out["test_loss"])
        self.record("eval", epoch, out)
        self.state["last_eval"] = {k: v.tolist() for k, v in out.items()}
        ets = self.state["epochs_to_success"]
        streak = self.state.setdefault("success_streak", [0] * cfg.realizations)
        for r, ok in enumerate(self.task.succeeded(out, cfg).tolist()):
            if math.isnan(ets[r]) and ok:
                ets[r] = epoch
            streak[r] = streak[r] + 1 if ok else 0
        shown = "  ".join(
            f"{k.replace('_', ' ')} {v.median():.3f}"
            for k, v in out.items()
            if k != "lambda_1_eval"
        )
        log.info(
            "epoch %d/%d  %s  λ1_eval %.3f (%d-step diagnostic trajectory; medians over %d)",
            epoch, cfg.train.epochs, shown, lam[:, 0].median(),
            cfg.diag.steps - cfg.diag.transient, cfg.realizations,
        )  # fmt: skip

    def frozen(self) -> torch.Tensor:
        """``[R]`` bool: realizations that met the success criterion at the last
        ``train.freeze_after_success`` evaluations in a row (0: none); training skips them."""
        M = self.cfg.train.freeze_after_success
        streak = self.state.get("success_streak", [0] * self.cfg.realizations)
        return torch.tensor([M > 0 and s >= M for s in streak], device=self.device)

    def orbit_point(self, epoch: int) -> None:
        """A snapshot of the analysis's training hook (orbits: docs/design.md §11) when one is due;
        the snapshots are kept in the checkpoint under ``logs["orbits"]``."""
        if self.recorder is None or not self.recorder.due(epoch):
            return
        with model_threads(self.model, self.device):
            self.logs.setdefault("orbits", []).append(self.recorder.snapshot(self.model, epoch))

    def full_spectrum(self, stage: str, epoch: int) -> None:
        """Full spectrum (and, with ``diag.jacobian``, the Jacobian diagnostics) at a stage."""
        if self.cfg.diag.full_spectrum:
            self.record_spectrum(stage, epoch, self.model.state_dim)
        if self.cfg.diag.jacobian:
            self.record_jacobian(stage)

    def record_jacobian(self, stage: str) -> None:
        """Long-term Jacobian singular values, condition numbers and error-signal norms vs lag,
        computed on a float64 copy (small singular values at long lags need it), on one thread:
        LAPACK's results would otherwise depend on the thread count in the last digits."""
        cfg, D = self.cfg, self.model.state_dim
        model = copy.deepcopy(self.model).to(torch.float64)
        lags = sorted(cfg.diag.lags)
        n_err = min(64, cfg.train.test_size)
        x, y = self.x_test[:, :, :n_err].double(), self.y_test[:, :, :n_err].double()
        with one_thread(self.device):
            with torch.no_grad():
                jac = long_term_jacobian(
                    model,
                    model.initial_state(1),
                    self.x_diag.double(),
                    lags,
                    transient=cfg.diag.transient,
                )
            err = error_signal_norms(model, x, y, self.task, lags)  # [L, R]
        log_sv = jac.log_sv[:, :, 0]  # [L, R, D]
        ks = sorted({k for k in (min(cfg.floss.k, D), D) if k >= 2})
        rows = self.logs["diagnostics"]
        for li, lag in enumerate(lags):
            for r, seed in enumerate(self.seeds):
                at = {"realization": r, "seed": seed, "stage": stage, "lag": lag}
                named = [(i, "log_singular_value", v)
                         for i, v in enumerate(log_sv[li, r].tolist(), start=1)]  # fmt: skip
                named += [
                    (k, "log10_condition", condition_number(log_sv[li, r], k).item()) for k in ks
                ]
                bound = jac.log_sv_error[li, r, 0].item()  # certified, nats (NaN values above)
                named += [(0, "log_singular_value_error", bound),
                          (0, "error_signal_norm", err[li, r].item())]  # fmt: skip
                rows += [tuple(DiagnosticsRow(**at, index=i, name=name, value=v))
                         for i, name, v in named]  # fmt: skip

    def _lam_postfix(self) -> dict[str, str]:
        ev = self.state["last_eval"]
        lam = ev.get("lambda_1_eval", ev.get("lambda_1"))  # the name before 2026-12
        return {"λ1": f"{torch.tensor(lam).median():.3f}"} if lam else {}


def summary_rows(run: Run) -> list[SummaryRow]:
    """One row per realization from the final evaluation; its ``lambda_1`` is λ1 of the final
    full spectrum (stage ``final`` of spectra.csv), or without ``diag.full_spectrum`` the last
    evaluation's ``lambda_1_eval``."""
    ev, st = run.state["last_eval"], run.state
    spectra = map(SpectrumRow._make, run.logs["spectra"])
    final = [r for r in spectra if r.stage == "final" and r.index == 1]
    last = ev.get("lambda_1_eval", ev.get("lambda_1"))  # a checkpoint of before 2026-12
    lam1 = {r.realization: r.value for r in final} or dict(enumerate(last))
    ok = run.task.succeeded({k: torch.tensor(v) for k, v in ev.items()}, run.cfg).tolist()
    acc = ev.get("test_accuracy", [math.nan] * len(run.seeds))  # tasks without an accuracy: nan
    rows = []
    for r, seed in enumerate(run.seeds):
        diverged = not bool(run.alive[r])
        success = bool(ok[r]) and not diverged
        rows.append(SummaryRow(
            realization=r, seed=seed, test_accuracy=acc[r], test_loss=ev["test_loss"][r],
            success=success, epochs_to_success=st["epochs_to_success"][r], diverged=diverged,
            lambda_1=lam1[r], wall_seconds=round(st["wall"], 3),
        ))  # fmt: skip
    return rows
