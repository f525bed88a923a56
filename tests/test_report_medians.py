"""Rank tests of the claims measured by medians (docs/design.md §1, claims 1 and 2): |λ1 − λ*|
before vs after flossing (Wilcoxon signed-rank, paired by network) and the long-term Jacobian of
flossed vs unflossed networks (Mann–Whitney U), checked against exact values and against scipy
called directly on hand-made frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_rundirs import make_run
from scipy.stats import mannwhitneyu, wilcoxon

from flossrun.report import report
from flossrun.report.claims import rank_comparisons, rank_markdown
from flossrun.report.collect import Collection
from flossrun.report.index import index_markdown, preset_section, write_tables
from flossrun.report.stats import mannwhitney_p, wilcoxon_p

EMPTY = pd.DataFrame()


def _collection(runs: pd.DataFrame, spectra=EMPTY, diagnostics=EMPTY) -> Collection:
    """A Collection with only the frames the rank tests read."""
    return Collection(runs, EMPTY, EMPTY, spectra, diagnostics)


def test_ten_pairs_all_in_one_direction_give_the_exact_two_sided_p():
    before = np.arange(10.0)
    assert wilcoxon_p(before, before + 1 + 0.1 * before) == pytest.approx(2 / 1024)
    assert mannwhitney_p([1, 2, 3, 4], [5, 6, 7, 8]) == pytest.approx(2 / 70)
    assert np.isnan(wilcoxon_p([1.0, 2.0], [1.0, 2.0])) and np.isnan(mannwhitney_p([], [1.0]))


def _spectra(target: float, initial: np.ndarray, flossed: np.ndarray) -> pd.DataFrame:
    """λ1 and λ2 of one run per network at ``initial`` and ``preflossed``."""
    rows = []
    for r, (a, b) in enumerate(zip(initial, flossed, strict=True)):
        for stage, lam1 in (("initial", a), ("preflossed", b), ("final", 9.0)):
            rows += [(f"t={target}", r, stage, 1, lam1), (f"t={target}", r, stage, 2, lam1 - 1)]
    return pd.DataFrame(rows, columns=["run", "realization", "stage", "index", "value"])


def test_claim_1_distance_to_the_target_before_vs_after_flossing_per_target():
    rng = np.random.default_rng(0)
    close = (np.arange(10) * 0.1, -0.5 + 0.01 * np.arange(1, 11))  # every network moves closer
    mixed = (rng.normal(0, 0.3, 7), rng.normal(-0.1, 0.3, 7))
    spectra = pd.concat([_spectra(-0.5, *close), _spectra(0.0, *mixed)], ignore_index=True)
    runs = pd.DataFrame({"run": ["t=-0.5", "t=0.0"], "floss.target": [-0.5, 0.0]})
    table = rank_comparisons(_collection(runs, spectra), "lyapunov_control")
    assert table["setting"].tolist() == ["target=-0.5", "target=0"]
    assert (table["claim"] == "1").all() and (table["test"].str.startswith("Wilcoxon")).all()
    first, second = table.iloc[0], table.iloc[1]
    assert (first["n_a"], first["n_b"]) == (10, 10)
    assert first["median_a"] == pytest.approx(np.median(np.abs(close[0] + 0.5)))
    assert first["median_b"] == pytest.approx(np.median(np.abs(close[1] + 0.5)))
    assert first["p_value"] == pytest.approx(2 / 1024)
    a, b = np.abs(mixed[0]), np.abs(mixed[1])
    assert second["p_value"] == pytest.approx(wilcoxon(b - a).pvalue)
    assert (second["n_a"], second["median_b"]) == (7, pytest.approx(np.median(b)))


def _diagnostics() -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Jacobian diagnostics of 4 unflossed and 4 flossed networks (k = 4, lags 1, 10, 100)."""
    rng = np.random.default_rng(1)
    values = {
        ("none", "final"): np.array([3.0, 4.0, 5.0, 6.0]),
        ("pre", "preflossed"): np.array([1.0, 2.0, 2.5, 2.8]),
        ("pre", "final"): rng.normal(4.5, 1.0, 4),
    }
    rows = []
    for (name, stage), kappa in values.items():
        for r, v in enumerate(kappa):
            for lag in (1, 10, 100):
                rows.append((name, r, stage, lag, 4, "log10_condition", v if lag == 100 else 0.0))
                rows.append((name, r, stage, lag, 2, "log10_condition", 99.0))  # not σ1/σk
                rows.append((name, r, stage, lag, 0, "error_signal_norm", v * lag))
    columns = ["run", "realization", "stage", "lag", "index", "name", "value"]
    return pd.DataFrame(rows, columns=columns), values


def test_claim_2_condition_number_and_error_signal_none_vs_pre_with_mann_whitney():
    diagnostics, values = _diagnostics()
    runs = pd.DataFrame({"run": ["none", "pre"], "floss.name": ["none", "pre"], "floss.k": [4, 4]})
    table = rank_comparisons(_collection(runs, diagnostics=diagnostics), "jacobian")
    assert table[["setting", "a", "b"]].values.tolist() == [
        ["k=4, τ=100", "none/final", "pre/preflossed"],
        ["k=4, τ=100", "none/final", "pre/final"],
        ["k=4, τ=10", "none/final", "pre/preflossed"],
        ["k=4, τ=10", "none/final", "pre/final"],
    ]
    assert (table["claim"] == "2").all() and (table[["n_a", "n_b"]] == 4).all().all()
    none, pre = values[("none", "final")], values[("pre", "final")]
    assert table["p_value"].iloc[0] == pytest.approx(2 / 70)  # no overlap, n = 4 + 4
    assert table["p_value"].iloc[1] == pytest.approx(mannwhitneyu(none, pre).pvalue)
    assert table["median_a"].iloc[0] == pytest.approx(4.5)
    assert table["median_b"].iloc[2] == pytest.approx(10 * np.median(values[("pre", "preflossed")]))


def test_a_preset_without_a_rank_comparison_gives_an_empty_table():
    runs = pd.DataFrame({"run": ["a"], "floss.k": [4]})
    for preset in ("k_sweep", "preflossing", "not_a_preset"):
        table = rank_comparisons(_collection(runs), preset)
        assert table.empty and "p_value" in table.columns
    assert len(rank_markdown(rank_comparisons(_collection(runs), "k_sweep"))) == 2  # header only


def test_index_md_has_a_median_comparisons_table_and_both_csvs(tmp_path: Path):
    root = tmp_path / "runs"
    for target in (-0.5, 0.0):
        settings = {"name": "lyapunov_control", "floss.target": target, "realizations": 3}
        make_run(root / f"floss.target={target}", settings)
    figs = tmp_path / "figs"
    result = report([root], out=figs / "lyapunov_control", plots=False)
    sections = [preset_section("lyapunov_control", result, figs)]
    lines = index_markdown("quick", sections).splitlines()
    head = lines.index("## Median comparisons")
    assert lines[head + 2].startswith("| claim | preset | setting | A | median A (n) | B |")
    row = next(ln for ln in lines[head:] if ln.startswith("| 1 | lyapunov_control | target=-0.5"))
    assert "\\|λ1 − λ*\\|" in row and "| initial | 0.45 (3) | preflossed | 0.5 (3) |" in row
    assert "- rank tests: in *Median comparisons* above" in lines
    assert "## Claims at a glance" not in lines  # no success comparison for claim 1
    written = write_tables(figs, sections)
    assert written == [figs / "median_comparisons.csv"]
    assert pd.read_csv(written[0])["setting"].tolist() == ["target=-0.5", "target=0"]
