"""What the report counts and how sure it is: each network once, code versions and refused
folders shown, success rates with Wilson intervals, comparisons with Fisher's exact test, and
k in numeric order (docs/design.md §6–8).

Statistics are checked against values computed by hand; run folders are written by hand
(``report_rundirs``), so no training runs here.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from report_rundirs import make_run, write_provenance

from flossrun.report import collect, report
from flossrun.report.claims import comparisons, summarize
from flossrun.report.cli import format_report
from flossrun.report.index import index_markdown, preset_section, setting
from flossrun.report.stats import fisher_p, wilson

Z = 1.959963984540054  # two-sided 95 % normal quantile


def test_wilson_interval_of_3_of_10_matches_the_score_formula_by_hand():
    n, p = 10, 0.3
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z / (1 + Z**2 / n) * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    lo, hi = wilson(3, 10)
    assert (lo, hi) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert (lo, hi) == pytest.approx((0.1078, 0.6032), abs=1e-4)


def test_wilson_interval_at_the_edges():
    assert wilson(0, 5)[0] == 0 and 0 < wilson(0, 5)[1] < 1
    assert wilson(5, 5)[1] == pytest.approx(1) and 0 < wilson(5, 5)[0] < 1
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_fisher_p_matches_the_hypergeometric_sum_by_hand():
    # margins 4/4/4/4: P(a successes in A) = C(4,a) C(4,4-a) / C(8,4) = (1, 16, 36, 16, 1) / 70
    assert fisher_p(0, 4, 4, 4) == pytest.approx(2 / 70)  # 0/4 vs 4/4: the two extreme tables
    assert fisher_p(1, 4, 3, 4) == pytest.approx(34 / 70)  # every table as unlikely as 1/4
    assert fisher_p(2, 4, 2, 4) == pytest.approx(1.0)
    assert math.isnan(fisher_p(0, 0, 1, 2))


def _pre(root: Path, name: str, seed: int, realizations: int, success=None, **settings) -> Path:
    settings = {"floss.name": "pre", "seed": seed, "realizations": realizations, **settings}
    return make_run(root / name, settings, success)


def test_overlapping_seeds_count_each_network_once_and_say_so(tmp_path: Path):
    # flossrun -m seed=0,1 realizations=2: networks 0, 1 and 1, 2 — seed 1 trained twice
    _pre(tmp_path, "seed=0", 0, 2, [True, True])
    _pre(tmp_path, "seed=1", 1, 2, [False, False])
    result = report([tmp_path], plots=False)
    row = result["conditions"].iloc[0]
    assert (row["n"], row["successes"], row["duplicates"]) == (3, 2, 1)
    results = result["results"]
    dropped = results[~results["counted"]]
    assert dropped[["seed", "run", "duplicate_of"]].values.tolist() == [
        [1, str(tmp_path / "seed=1"), str(tmp_path / "seed=0")]
    ]
    note = next(n for n in result["notes"] if n.startswith("duplicate"))
    assert "seed(s) 1 of" in note and "differs" in note  # the two copies disagree here
    assert note in format_report(result)  # printed by flossrun-report
    curves = result["collection"].curves
    assert not ((curves["run"] == str(tmp_path / "seed=1")) & (curves["seed"] == 1)).any()
    on_disk = pd.read_csv(tmp_path / "results.csv")
    assert on_disk["counted"].tolist().count(False) == 1


def test_an_ensemble_and_a_multirun_of_the_same_seeds_are_the_same_networks(tmp_path: Path):
    _pre(tmp_path, "ensemble", 0, 3)  # flossrun seed=0 realizations=3
    for s in range(3):  # flossrun -m seed=0,1,2
        _pre(tmp_path, f"multi/seed={s}", s, 1, threads=s + 1)  # threads do not make a network
    result = report([tmp_path], plots=False)
    assert result["conditions"][["condition", "n", "duplicates"]].values.tolist() == [
        ["preflossing", 3, 3]
    ]
    kept = result["results"].query("counted")
    assert kept["seed"].tolist() == [0, 1, 2] and set(kept["run"]) == {str(tmp_path / "ensemble")}


def test_the_same_seed_under_another_config_is_another_network(tmp_path: Path):
    _pre(tmp_path, "d10", 0, 2, **{"task.delay": 10})
    _pre(tmp_path, "d20", 0, 2, **{"task.delay": 20})
    result = report([tmp_path], plots=False)
    assert result["conditions"]["n"].tolist() == [2, 2]
    assert result["results"]["counted"].all()
    assert not [n for n in result["notes"] if n.startswith("duplicate")]


def test_code_version_per_run_and_mixed_versions_in_one_condition_are_noted(tmp_path: Path):
    write_provenance(_pre(tmp_path, "seed=0", 0, 2), commit="1a2b3c4d5e6f", dirty=False)
    write_provenance(_pre(tmp_path, "seed=2", 2, 2), commit="9f8e7d6c5b4a", dirty=True)
    _pre(tmp_path, "seed=4", 4, 2)  # written before provenance.json existed
    broken = _pre(tmp_path, "seed=6", 6, 2)
    (broken / "provenance.json").write_text("{not json")
    result = report([tmp_path], plots=False)
    code = result["results"].drop_duplicates("run").set_index("run")["code"]
    assert code[str(tmp_path / "seed=0")] == "0.1.0 @ 1a2b3c4"
    assert code[str(tmp_path / "seed=2")] == "0.1.0 @ 9f8e7d6 (dirty)"
    assert code[str(tmp_path / "seed=4")] == "unknown version"
    assert code[str(tmp_path / "seed=6")] == "unknown version (provenance.json unreadable)"
    assert result["conditions"]["n"].tolist() == [8]  # an unknown version is still counted
    note = next(n for n in result["notes"] if "different code versions" in n)
    assert "0.1.0 @ 1a2b3c4 (1 run(s))" in note and "dirty" in note.lower()
    assert "0.1.0 @ 9f8e7d6 (dirty)" in result["conditions"]["code_versions"].iloc[0]
    assert note in format_report(result)


def test_one_code_version_gives_no_version_warning_but_two_devices_do(tmp_path: Path):
    for s in (0, 2):
        write_provenance(_pre(tmp_path, f"seed={s}", s, 2))
    assert report([tmp_path], plots=False)["notes"] == []
    write_provenance(_pre(tmp_path, "seed=4", 4, 2), device="cuda")
    assert report([tmp_path], plots=False)["notes"] == [
        "preflossing / preflossing pools runs on different devices: cpu, cuda"
    ]


def test_a_refused_folder_is_listed_and_its_results_count_under_its_stored_config(tmp_path):
    kept = _pre(tmp_path, "d=10", 0, 2, [True, False], **{"task.delay": 10})
    line = "task.delay differs (stored 10, new 12): rerun with a new hydra.run.dir or delete it"
    (kept / "conflict.txt").write_text(line + "\nmore detail\n")
    empty = make_run(tmp_path / "d=20", {"task.delay": 20, "seed": 0}, state="running")
    (empty / "conflict.txt").write_text("")
    result = report([tmp_path], plots=False)
    problems = result["problems"].set_index("run")
    assert problems.loc[str(kept), "status"] == "conflict"
    assert problems.loc[str(kept), "reason"] == line
    assert problems.loc[str(empty), "reason"].tolist() == [
        "no summary.csv or failed.txt (killed or still running)",
        "conflict.txt (empty)",
    ]
    assert result["counts"]["conflict"] == 2 and result["counts"]["finished"] == 1
    table = result["conditions"].set_index("condition")
    assert (table.loc["delay=10", "n"], table.loc["delay=10", "successes"]) == (2, 1)
    text = format_report(result)
    assert "refused by a later job" in text and line in text


def test_conditions_csv_carries_the_wilson_interval_and_quartiles(tmp_path: Path):
    _pre(tmp_path, "a", 0, 10, [True] * 3 + [False] * 7)
    report([tmp_path], plots=False)
    row = pd.read_csv(tmp_path / "conditions.csv").iloc[0]
    assert (row["successes"], row["n"]) == (3, 10)
    assert (row["success_ci_low"], row["success_ci_high"]) == pytest.approx(wilson(3, 10))
    assert row["test_accuracy_median"] == pytest.approx(0.6)
    assert (row["test_accuracy_q25"], row["test_accuracy_q75"]) == pytest.approx((0.6, 0.8775))
    assert row["epochs_to_success_median"] == 150  # over the 3 successful realizations


K = [0, 1, 2, 4, 8, 16, 32, 75]


@pytest.fixture
def k_sweep(tmp_path: Path) -> Path:
    """A k-sweep written in text order of k (0, 1, 16, 2, ...), more successes at larger k."""
    root = tmp_path / "k_sweep" / "quick"
    for k in sorted(K, key=str):
        success = [k >= 4, k >= 16, k >= 32, False]
        settings = {"name": "k_sweep", "floss.k": k, "realizations": 4, "model.N": 80}
        write_provenance(make_run(root / f"floss.k={k}", settings, success))
    return root


def test_k_is_sorted_numerically_in_tables_comparisons_and_index(k_sweep: Path, tmp_path):
    result = report([k_sweep], out=tmp_path / "out" / "k_sweep", plots=False)
    assert result["conditions"]["condition"].tolist() == [f"k={k}" for k in K]
    col = result["collection"].subset("k_sweep")
    table = comparisons(col, "k_sweep")
    assert table["a"].unique().tolist() == ["k=0"]
    assert table["b"].tolist() == [f"k={k}" for k in K[1:]]
    assert "k 0/1/2/4/8/16/32/75" in setting(col)
    text = summarize("k_sweep", col)
    assert [text.index(f"k={k}:") for k in K] == sorted(text.index(f"k={k}:") for k in K)


def test_comparisons_test_each_pair_at_each_setting_with_fisher(tmp_path: Path):
    hits = {("none", 10): 4, ("pre", 10): 4, ("none", 30): 0, ("pre", 30): 4}
    for (floss, d), k in hits.items():
        settings = {"floss.name": floss, "task.delay": d, "realizations": 4}
        make_run(tmp_path / f"{floss},{d}", settings, [True] * k + [False] * (4 - k))
    col = collect([tmp_path]).subset("preflossing")
    table = comparisons(col, "preflossing")
    assert table[["setting", "a", "b", "successes_a", "successes_b"]].values.tolist() == [
        ["delay=10", "floss=none", "floss=pre", 4, 4],
        ["delay=30", "floss=none", "floss=pre", 0, 4],
    ]
    assert table["p_value"].tolist() == pytest.approx([1.0, 2 / 70])
    assert table["rate_difference"].tolist() == pytest.approx([0.0, 1.0])
    assert (table["n_a"] == 4).all() and (table["claim"] == "3").all()


def test_index_md_has_one_table_of_every_comparison_and_notes_per_preset(k_sweep: Path, tmp_path):
    (k_sweep / "floss.k=8" / "conflict.txt").write_text("floss.k differs: stored 8, new 9\n")
    root = tmp_path / "figs"
    result = report([k_sweep], out=root / "k_sweep", plots=False)
    text = index_markdown("quick", [preset_section("k_sweep", result, root, 1.5)])
    lines = text.splitlines()
    head = lines.index("## Claims at a glance")
    assert lines[head + 2].startswith("| claim | preset | setting | A | successes/n (95 % CI)")
    row = next(
        ln for ln in lines if ln.startswith("| 5 | k_sweep | – | k=0 | 0/4") and "k=32" in ln
    )
    assert "3/4 (0.30–0.95)" in row and "+0.75" in row and "| 0.14 |" in row
    assert "- code: 0.1.0 @ 1a2b3c4 (8 run(s))" in lines
    assert any("floss.k=8 (conflict: floss.k differs: stored 8, new 9)" in ln for ln in lines)


TINY = [
    "model.N=12", "task.T=40", "task.delay=4", "train.epochs=10", "train.eval_every=5",
    "train.test_size=32", "train.batch=4", "train.log_every=5", "floss.k=4", "floss.steps=20",
    "floss.transient=5", "floss.pre_epochs=5", "floss.epochs=2", "floss.every=5", "device=cpu",
]  # fmt: skip


def test_real_multirun_with_overlapping_seeds_reports_three_networks(tmp_path: Path):
    exe = Path(sys.executable).parent / "flossrun"
    sweep = tmp_path / "sweep"
    cmd = [str(exe), "-m", "seed=0,1", "realizations=2", *TINY, f"hydra.sweep.dir={sweep}"]
    cmd.append("+hydra.callbacks.report.plots=false")  # tables are enough here
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "duplicate network(s) dropped: seed(s) 1" in done.stdout + done.stderr  # the callback
    row = pd.read_csv(sweep / "conditions.csv").iloc[0]
    assert (row["runs"], row["n"], row["duplicates"]) == (2, 3, 1)
    results = pd.read_csv(sweep / "results.csv")
    assert sorted(results.loc[results["counted"], "seed"]) == [0, 1, 2]


GRID = {1: 30, 2: 20, 10: 5}  # channels S → delay d (text order would put 10 before 2)


@pytest.fixture
def k_grid(tmp_path: Path) -> Path:
    """A k × S grid with one delay per S, written in text order; successes fall with S."""
    root = tmp_path / "k_grid"
    for S, d in sorted(GRID.items(), key=str):
        for k in (16, 0, 4):
            success = [k >= 4 and S < 10, k >= 16 and S == 1, False]
            settings = {"name": "k_sweep", "floss.k": k, "task.channels": S, "task.delay": d}
            make_run(
                root / f"floss.k={k},task.channels={S}", {**settings, "realizations": 3}, success
            )
    return root


def test_k_sweep_grid_compares_each_k_with_k0_per_channels_and_delay(k_grid: Path):
    col = collect([k_grid]).subset("k_sweep")
    table = comparisons(col, "k_sweep")
    settings = [f"channels={S}, delay={d}" for S, d in GRID.items()]
    assert table["setting"].tolist() == [s for s in settings for _ in range(2)]
    assert table[["a", "b"]].values.tolist() == [["k=0", "k=4"], ["k=0", "k=16"]] * 3
    assert table["successes_b"].tolist() == [1, 2, 1, 1, 0, 0]
    assert (table["n_a"] == 3).all() and (table["successes_a"] == 0).all()
    assert table["p_value"].iloc[1] == pytest.approx(fisher_p(0, 3, 2, 3))


def test_k_sweep_summary_states_each_channel_count_in_numeric_order(k_grid: Path):
    text = summarize("k_sweep", collect([k_grid]).subset("k_sweep"))
    blocks = text.split(" — ", 1)[1].split(" | ")
    assert [b.split(":")[0] for b in blocks] == [
        f"channels={S}, delay={d}" for S, d in GRID.items()
    ]
    assert "k=0: 0/3 (0.00–0.56), acc 0.600 [0.600, 0.600] (n=3); k=4: 1/3" in blocks[0]
    assert "k=16: 2/3" in blocks[0] and "k=16: 0/3" in blocks[2]
    assert [blocks[0].index(f"k={k}:") for k in (0, 4, 16)] == sorted(
        blocks[0].index(f"k={k}:") for k in (0, 4, 16)
    )


def test_k_sweep_figure_draws_one_colour_per_channel_count(k_grid: Path):
    from flossrun.report.figures import k_sweep

    fig = k_sweep(collect([k_grid]).subset("k_sweep"))
    success, accuracy, exponents = fig.axes[:3]
    labels = [t.get_text() for t in success.get_legend().get_texts()]
    assert labels == [f"channels={S}, delay={d} (n=3 per point)" for S, d in GRID.items()]
    assert len(accuracy.get_legend().get_texts()) == 3
    colours = {line.get_color() for line in exponents.lines} - {"0.4"}  # less the λ = 0 line
    assert len(colours) == 3  # λ1 and λk after preflossing, λ1 initial: one colour per S


def test_a_pilot_sweep_reported_as_the_k_sweep_keeps_its_channel_blocks(tmp_path: Path):
    for S in (1, 2):
        for k in (0, 4):
            settings = {"name": "pilot_k", "floss.k": k, "task.channels": S, "realizations": 2}
            make_run(tmp_path / f"k={k},S={S}", settings)
    table = comparisons(collect([tmp_path]).subset("pilot_k"), "k_sweep")
    assert table["setting"].tolist() == ["channels=1", "channels=2"]
    assert (table["n_a"] == 2).all()
