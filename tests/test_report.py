"""flossrun-report on synthetic run directories: discovery, status, statistics, figures, CLI.

Run directories are written here by hand (the contract of docs/design.md §7), so the report is
checked against hand-counted success rates without running any training.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, get_type_hints

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from report_rundirs import make_run

from flossrun.contract import DiagnosticsRow, MetricsRow, SpectrumRow, SummaryRow
from flossrun.report import FIGURES, collect, find_run_dirs, report
from flossrun.report.callback import ReportCallback
from flossrun.report.cli import main
from flossrun.report.conditions import condition_keys
from flossrun.report.rundir import CorruptFile, read_table
from flossrun.report.style import RC

# Hand-counted: none 1 of 6 realizations succeed, pre 5 of 6.
SUCCESS = {
    "none": [[False, False], [True, False], [False, False]],
    "pre": [[True, True], [True, False], [True, True]],
}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A multirun: floss ∈ {none, pre} × seed ∈ {0, 2, 4} with 2 realizations each (networks
    with seeds 0..5, each once), plus one run of each broken kind."""
    root = tmp_path / "multirun" / "2024-01-01" / "sweep"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    for floss, rows in SUCCESS.items():
        for i, success in enumerate(rows):
            seed = 2 * i
            settings = {"floss.name": floss, "seed": seed}
            make_run(root / f"floss={floss},seed={seed}", settings, success)
    make_run(root / "floss=pre,seed=6", {"floss.name": "pre", "seed": 6}, state="failed")
    unfinished = make_run(
        root / "floss=pre,seed=8", {"floss.name": "pre", "seed": 8}, state="running"
    )
    with open(unfinished / "metrics.csv", "a") as f:
        f.write("0,8,train,999,lo")  # the runner was killed mid-line
    corrupt = make_run(root / "floss=none,seed=6", {"floss.name": "none", "seed": 6})
    text = (corrupt / "metrics.csv").read_text()
    (corrupt / "metrics.csv").write_text(text[: len(text) // 2])
    garbage = root / "floss=none,seed=8"
    (garbage / ".hydra").mkdir(parents=True)
    (garbage / ".hydra" / "config.yaml").write_text("name: [unclosed\n  : - :\n\x00")
    return root


def test_find_run_dirs_any_depth_skips_hidden_and_survives_symlink_loops(tmp_path: Path):
    a = make_run(tmp_path / "a")
    deep = make_run(tmp_path / "x" / "y" / "z" / "run")
    (tmp_path / "x" / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / ".hidden").mkdir()
    make_run(tmp_path / ".hidden" / "run")
    assert find_run_dirs([tmp_path]) == [a, deep]
    assert find_run_dirs([a]) == [a]  # a run dir itself
    assert find_run_dirs([tmp_path / "missing"]) == []


def test_results_one_row_per_realization_with_status_and_reason(sweep: Path):
    results = report([sweep], plots=False)["results"]
    assert (sweep / "results.csv").is_file() and (sweep / "curves.csv").is_file()
    by_run = results.groupby("run")["status"].agg(["first", "size"])
    assert by_run["first"].value_counts().to_dict() == {
        "finished": 6,
        "failed": 1,
        "unfinished": 1,
        "corrupt": 2,
    }
    assert len(results) == 6 * 2 + 2 + 2 + 2 + 1
    reason = results.drop_duplicates("run").set_index("run")["reason"]
    assert reason[str(sweep / "floss=pre,seed=6")] == "RuntimeError: boom"
    assert "metrics.csv" in reason[str(sweep / "floss=none,seed=6")]
    assert "config" in reason[str(sweep / "floss=none,seed=8")]
    failed = results[results["status"] == "failed"]
    assert failed["seed"].tolist() == [6, 7] and failed["success"].isna().all()
    on_disk = pd.read_csv(sweep / "results.csv")
    assert len(on_disk) == len(results) and {"task.delay", "floss.k", "base_seed"} <= set(on_disk)


def test_success_rate_per_condition_pools_seeds_and_matches_hand_count(sweep: Path):
    table = report([sweep], plots=False)["conditions"].set_index("condition")
    assert table.loc["floss=none", "success_rate"] == pytest.approx(1 / 6)
    assert table.loc["floss=pre", "success_rate"] == pytest.approx(5 / 6)
    assert table.loc["floss=pre", "n"] == 6 and table.loc["floss=pre", "problem_runs"] == 2
    assert table.loc["floss=none", "test_accuracy_median"] == pytest.approx(0.6)
    on_disk = pd.read_csv(sweep / "conditions.csv").set_index("condition")
    assert on_disk.loc["floss=pre", "successes"] == 5


def test_condition_is_the_overridden_group_not_the_keys_it_implies(sweep: Path):
    coll = collect([sweep])
    assert coll.cell_keys == {"preflossing": ["floss.name"]}  # not floss.pre_epochs/times
    grid = itertools.product(["none", "pre", "pre_during"], [10, 20], [0, 1])
    config = pd.DataFrame(grid, columns=["floss.name", "task.delay", "seed"])
    config["floss.pre_epochs"] = np.where(config["floss.name"] == "none", 0, 30)
    assert condition_keys(config) == ["floss.name", "task.delay"]  # group names first
    assert condition_keys(config, ["task.delay"]) == ["task.delay", "floss.name"]
    assert condition_keys(config, ["task.delay", "floss.name"]) == ["task.delay", "floss.name"]


def test_partial_files_of_unfinished_runs_are_read_tolerantly(sweep: Path):
    curves = collect([sweep]).curves
    running = curves[curves["status"] == "unfinished"]
    assert len(running) and 999 not in running["epoch"].tolist()
    assert set(curves["status"]) == {"finished", "unfinished", "failed"}  # corrupt runs left out


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("summary.csv", b"\x89PNG\r\n\x1a\n\x00\x00garbage"),
        ("summary.csv", b""),
        ("summary.csv", b"realization,success\n0,maybe\n"),
        ("spectra.csv", b"realization,seed,stage,epoch,index,value\n0,0,initial,0,one,0.1\n"),
        ("metrics.csv", b"a,b\n1,2,3,4\n"),
        (".hydra/overrides.yaml", b"{not: a list}\n"),
        (".hydra/config.yaml", b"- just\n- a list\n"),
    ],
)
def test_corrupt_files_mark_the_run_corrupt_and_never_crash(tmp_path: Path, name: str, content):
    run = make_run(tmp_path / "run")
    (run / name).write_bytes(content)
    result = report([tmp_path], plots=True)
    assert set(result["results"]["status"]) == {"corrupt"}
    assert result["problems"]["reason"].str.len().min() > 0


@pytest.mark.parametrize("row", [MetricsRow, SpectrumRow, DiagnosticsRow, SummaryRow])
def test_the_reader_takes_column_kinds_from_the_contracts_rows(tmp_path: Path, row):
    """read_table knows text, whole numbers, numbers and booleans: every field of a row it reads
    is one of them, and a whole-number field holding 1.5 is a malformed row."""
    kinds = get_type_hints(row)
    assert set(kinds.values()) <= {str, int, float, bool}
    cells = {str: "x", int: "1", float: "0.5", bool: "true"}
    path = tmp_path / "table.csv"
    path.write_text(f"{','.join(kinds)}\n{','.join(cells[k] for k in kinds.values())}\n")
    ints = [f for f, kind in kinds.items() if kind is int]  # realization and seed at least
    assert read_table(path, row)[ints].dtypes.eq("int64").all()
    path.write_text(path.read_text().replace(",1,", ",1.5,", 1))  # the seed
    with pytest.raises(CorruptFile, match="malformed row"):
        read_table(path, row)


# Presets rendered to files (slow: matplotlib layout) and presets only built (fast).
RENDERED: dict[str, tuple[dict[str, list[Any]], bool]] = {
    "lyapunov_control": ({"floss.target": [-1.0, -0.5, 0.0]}, False),
    "default": ({"floss.name": ["none", "pre"]}, False),
}
BUILT: dict[str, dict[str, list[Any]]] = {
    "jacobian": {"floss.name": ["none", "pre"]},
    "spectrum_k": {"floss.k": [1, 4, 12]},
    "preflossing": {
        "task.name": ["delayed_copy", "delayed_xor"],
        "task.delay": [10, 20],
        "floss.name": ["none", "pre"],
    },
    "during_training": {"floss.name": ["none", "pre", "pre_during"], "task.delay": [10, 20]},
    "k_sweep": {"floss.k": [0, 1, 2, 4, 12], "task.channels": [2]},
    "temporal_complexity": {
        "task.taps": [1, 2, 4],
        "task.delay": [8, 16],
        "floss.name": ["none", "pre"],
    },
    "architectures": {
        "model.name": ["vanilla", "lstm"],
        "task.delay": [10, 20],
        "floss.name": ["none", "pre"],
    },
}


def make_grid(root: Path, name: str, grid: dict[str, list[Any]], diagnostics: bool = False) -> None:
    """One run (2 realizations, mixed success) per grid point of a preset."""
    for i, values in enumerate(itertools.product(*grid.values())):
        settings = {"name": name, **dict(zip(grid, values, strict=True))}
        if name == "lyapunov_control":
            settings["model.g"] = [0, 1]  # one g ~ U(0, 1) per realization
        make_run(root / name / str(i), settings, [i % 3 != 0, i % 2 == 0], diagnostics=diagnostics)


@pytest.fixture(scope="module")
def figure_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Render the figures of three presets and of one with its own ``report:`` node."""
    root = tmp_path_factory.mktemp("presets")
    for name, (grid, diagnostics) in RENDERED.items():
        make_grid(root, name, grid, diagnostics)
    custom = {
        "figures": ["preflossing", "nonexistent"],
        "condition": "floss.name",
        "x": "task.delay",
    }
    for i, floss in enumerate(["none", "pre"]):
        settings = {
            "name": "custom",
            "report": custom,
            "floss.name": floss,
            "task.delay": 10 * (i + 1),
        }
        make_run(root / "custom" / str(i), settings)
    return report([root], out=root / "report")


@pytest.mark.parametrize("stem", ["lyapunov_control", "default_generic", "custom_preflossing"])
def test_preset_figures_are_written_as_png_and_pdf(figure_report: dict[str, Any], stem: str):
    figures = figure_report["out"] / "figures"
    for ext in ("png", "pdf"):
        path = figures / f"{stem}.{ext}"
        assert path.is_file() and path.stat().st_size > 1000, path
    assert not [n for n in figure_report["notes"] if "failed" in n]


def test_unknown_figure_names_are_noted_not_fatal(figure_report: dict[str, Any]):
    assert any("nonexistent" in n for n in figure_report["notes"])
    cond = figure_report["conditions"].query("experiment == 'lyapunov_control'")
    assert cond["condition"].tolist() == [
        "target=-1",
        "target=-0.5",
        "target=0",
    ]  # sorted numerically


def _legend_texts(fig) -> list[str]:
    """The texts of every legend of ``fig``: the axes' and the figure's own."""
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    return [t.get_text() for legend in legends for t in legend.get_texts()]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("built")
    for name, grid in BUILT.items():
        make_grid(root, name, grid, diagnostics=name == "jacobian")
    return collect([root])


@pytest.mark.parametrize(
    ("name", "legend"),
    [
        ("spectrum_k", "k=12 (n=2)"),
        ("jacobian", "floss=pre, preflossed"),
        ("preflossing", "floss=pre (n=2 per point)"),  # 2 realizations per delay
        ("during_training", "floss=pre_during (n=2 per point)"),
        ("k_sweep", "channels=2, delay=20 (n=10)"),  # the preset file's report.condition
        ("temporal_complexity", "floss=none (n=2 per point)"),
        ("architectures", "task=delayed_copy, floss=pre (n=2 per point)"),  # as k_sweep
    ],
)
def test_preset_figure_colours_the_conditions_left_after_axes_and_panels(built, name, legend):
    with mpl.rc_context(RC):
        fig = FIGURES[name](built.subset(name))
    assert fig is not None and legend in _legend_texts(fig)
    assert sum(len(ax.lines) for ax in fig.axes) >= 2


def test_success_panel_plots_the_pooled_rate(sweep: Path):
    fig = FIGURES["preflossing"](collect([sweep]).subset("preflossing"))
    lines = {c.get_label(): c.lines[0].get_ydata() for c in fig.axes[0].containers}
    assert lines["floss=none (n=6 per point)"] == pytest.approx([1 / 6])
    assert lines["floss=pre (n=6 per point)"] == pytest.approx([5 / 6])


def test_rerun_is_idempotent_and_leaves_no_temp_files(sweep: Path):
    first = report([sweep])
    tables = {n: (sweep / n).read_bytes() for n in ("results.csv", "conditions.csv", "curves.csv")}
    second = report([sweep])
    assert {n: (sweep / n).read_bytes() for n in tables} == tables
    assert first["figures"] == second["figures"] and len(first["figures"]) == 2
    assert not list(sweep.rglob("*.tmp"))
    assert len(second["results"]) == len(first["results"])  # report outputs are not runs


def test_cli_in_a_subprocess(sweep: Path, tmp_path: Path):
    exe = Path(sys.executable).parent / "flossrun-report"
    out = tmp_path / "rep"
    done = subprocess.run(  # the installed console script, as a user runs it
        [str(exe), str(sweep), str(sweep / "floss=pre,seed=0"), "--out", str(out), "--no-plots"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "6 finished, 1 failed, 1 unfinished, 2 corrupt" in done.stdout
    assert "RuntimeError: boom" in done.stdout and "floss=pre" in done.stdout
    assert (out / "results.csv").is_file() and not (out / "figures").exists()
    with pytest.raises(SystemExit) as missing:
        main([str(tmp_path / "nope")])
    assert missing.value.code == 2
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 1
    assert not list((tmp_path / "empty").iterdir())  # nothing written where nothing was found


def test_default_out_is_the_single_path_or_outputs_report(sweep: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert report([sweep], plots=False)["out"] == sweep
    two = report([sweep / "floss=pre,seed=0", sweep / "floss=pre,seed=2"], plots=False)
    assert (
        two["out"] == Path("outputs/report") and (tmp_path / "outputs/report/results.csv").is_file()
    )


def test_callback_reports_into_the_sweep_dir_and_never_raises(sweep: Path, caplog):
    shutil.rmtree(sweep / "floss=none,seed=8")
    ReportCallback(plots=False).on_multirun_end(
        OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    )
    assert len(pd.read_csv(sweep / "results.csv")) == 18
    with caplog.at_level(logging.WARNING):
        ReportCallback().on_multirun_end(OmegaConf.create({"hydra": {}}))
    assert "failed" in caplog.text


def test_interpolations_resolve_with_flossrun_resolvers_or_stay_raw(tmp_path: Path):
    run = make_run(tmp_path / "run", state="running")
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    cfg.realizations = "${scaled:3,10}"  # presets size themselves this way
    cfg.task.name = "${hydra:job.name}"  # not resolvable outside Hydra
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    results = collect([tmp_path]).results
    assert len(results) == 3 and set(results["status"]) == {"unfinished"}
    assert results["task.name"].iloc[0] == "${hydra:job.name}"


def test_architectures_panels_state_fishers_p_of_pre_vs_none_per_task_and_delay():
    from flossrun.report.figures import flossing_p_values
    from flossrun.report.stats import fisher_p, format_p

    cells = [("delayed_xor", 12, "none", 1, 10), ("delayed_xor", 12, "pre", 9, 10),
             ("delayed_copy", 24, "none", 4, 4)]  # fmt: skip
    rows = [
        {"task.name": task, "task.delay": d, "floss.name": floss, "success": i < ok,
         "status": "finished", "counted": True}  # as collect's results frame has them
        for task, d, floss, ok, n in cells
        for i in range(n)
    ]  # fmt: skip
    lines = flossing_p_values(pd.DataFrame(rows), "task.delay")
    # only the cell with both conditions; copy d=24 has no floss=pre run
    assert lines == [f"xor d=12: 9/10 vs 1/10, p={format_p(fisher_p(9, 10, 1, 10))}"]
    assert fisher_p(9, 10, 1, 10) < 0.01


def test_landscape_summary_gives_medians_and_ranges_over_a_conditions_networks(monkeypatch):
    from flossrun.report import attractors

    def st(lam: float, crossing: float) -> dict[str, float]:
        return {"lambda_1_at_1": lam, "crossing": crossing, "frac_chaotic": 0.2,
                "tv_stable": 1.0, "tv_chaotic": 2.0}  # fmt: skip

    runs = [("a", "r1", st(0.1, 0.5)), ("a", "r2", st(0.3, 0.7)), ("a", "r3", st(0.2, 0.6)),
            ("b", "r4", st(0.1, 0.5)), ("b", "r5", st(0.1, 0.5))]  # fmt: skip
    found = [(name, run, {"stats": {"scale": stats}}) for name, run, stats in runs]
    monkeypatch.setattr(attractors, "runs_with", lambda col, name: (None, found))
    text = attractors.landscape_summary(None)
    assert "a / scale: n = 3 networks" in text, text
    assert "λ1 +0.200 [+0.100, +0.300] at s = 1, crosses 0 at s = 0.600 [0.500, 0.700]" in text
    assert "b / scale: λ1 +0.100 at s = 1" in text and "the same in 2 runs" in text
