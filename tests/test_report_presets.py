"""What a preset tells the report (docs/design.md §8, ``report:``): its claim and the comparisons
that test it, the keys of its conditions and its place in ``make figures``, read from the run
folder's recorded config, and from the preset file for runs recorded before a key existed.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest
import yaml
from cli_support import compose_config, config_error
from report_rundirs import make_run

from flossrun.report import collect, report
from flossrun.report import presets as presets_module
from flossrun.report.claims import SUMMARIES, comparisons, rank_comparisons, summarize
from flossrun.report.conditions import as_keys
from flossrun.report.index import index_markdown, preset_section
from flossrun.report.presets import PRESET_DIR, Claim, preset_report, presets, with_preset

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
CUSTOM_CLAIM = {
    "number": "42",
    "text": "Flossing helps my task.",
    "compare": "floss.name",
    "pairs": [["pre", "none"]],
}


def _runs(root: Path, name: str, node: dict | None, delays=(10, 30)) -> Path:
    """floss none/pre × ``delays``, 4 realizations each, named ``name``, recording ``node``."""
    for floss in ("none", "pre"):
        for d in delays:
            settings = {"name": name, "floss.name": floss, "task.delay": d, "realizations": 4}
            if node is not None:
                settings["report"] = node
            success = [floss == "pre" or d == 10] * 3 + [False]
            make_run(root / name / f"floss={floss},task.delay={d}", settings, success)
    return root / name


def test_every_preset_declares_its_claim_grid_and_a_unique_order():
    names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    assert sorted(presets()) == names  # make figures lists configs/experiment/, every file
    orders = [preset_report(name)["order"] for name in presets()]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    for name in names:
        node = preset_report(name)
        claim = Claim.of(node)
        assert claim is not None and claim.number and claim.text, name
        assert node["grid"] and node["figures"], name
        assert node["summary"] in SUMMARIES, name
        grid = set(node["grid"])  # the colours and the x axis are conditions of the grid
        assert set(as_keys(node["condition"])) <= grid, name
        assert node.get("x", node["grid"][0]) in grid, name
        if claim.compare:
            assert claim.compare in grid, name


@pytest.mark.parametrize("preset", presets())
def test_every_preset_report_node_passes_the_check_before_compute(preset):
    from flossrun.cli import check_report

    check_report(compose_config(f"experiment={preset}"))  # raises on a name it does not know


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["report.summary=k_swep"], "report.summary=k_swep: allowed: success, lyapunov_control"),
        (["report.figures=[k_sweep,k_swep]"], "report.figures=k_swep: allowed: lyapunov_control"),
        (["report.x=task.dely"], "report.x=task.dely: not a key of the config"),
        (["report.grid=[floss.k,task.chanels]"], "report.grid=task.chanels: not a key of"),
        (["report.claim.compare=floss.kk"], "report.claim.compare=floss.kk: not a key of"),
        (["+report.claim.ranks=jacobain"], "report.claim.ranks=jacobain: allowed: target_distance"),
        (["report.summary=[k_sweep]"], "report.summary=[k_sweep]: allowed: success"),
        (["report.claim=5"], "report.claim=5: must be a mapping"),
        (["report=5"], "report=5: must be a mapping"),
    ],
)
def test_a_report_node_the_report_cannot_use_fails_in_one_line(args, line):
    """A typo in a preset's ``report:`` fails before any compute, not as a note after the
    sweep (docs/design.md §8)."""
    assert config_error("experiment=k_sweep", *args).startswith(f"flossrun: error: {line}")


def test_presets_are_listed_by_order_and_presets_without_one_come_last(tmp_path, monkeypatch):
    for name, order in (("b", 2), ("a", None), ("c", 1), ("z", None)):
        node = {"report": {"order": order}} if order is not None else {"report": {}}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(node))
    (tmp_path / "broken.yaml").write_text("report: [unclosed\n")
    monkeypatch.setattr(presets_module, "PRESET_DIR", tmp_path)
    assert presets() == ["c", "b", "a", "broken", "z"]
    assert preset_report("broken") == {} and preset_report("missing") == {}


def test_make_figures_runs_the_listed_presets_by_default(monkeypatch):
    spec = importlib.util.spec_from_file_location("make_figures", SCRIPTS / "make_figures.py")
    mf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mf)
    assert "CLAIMS" not in vars(mf)
    seen = []
    parse = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        seen.append(parse(self, []))  # the defaults of a bare `make figures`
        raise SystemExit

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        mf.main()
    assert seen[0].only == presets()
    assert presets()[:3] == ["lyapunov_control", "spectrum_k", "jacobian"]
    assert presets()[-1] == "regions"
    spec = importlib.util.spec_from_file_location("docs_figures", SCRIPTS / "docs_figures.py")
    df = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(df)
    assert "CLAIMS" not in vars(df)


def test_the_claim_and_its_pairs_are_read_from_the_recorded_report_node(tmp_path: Path):
    node = {"figures": [], "condition": "floss.name", "grid": ["floss.name", "task.delay"]}
    _runs(tmp_path, "mine", {**node, "claim": CUSTOM_CLAIM})
    col = collect([tmp_path]).subset("mine")
    assert col.cell_keys == {"mine": ["floss.name", "task.delay"]}  # the declared order
    table = comparisons(col, "mine")
    assert table[["claim", "setting", "a", "b"]].values.tolist() == [
        ["42", "delay=10", "floss=pre", "floss=none"],
        ["42", "delay=30", "floss=pre", "floss=none"],
    ]
    assert table["successes_a"].tolist() == [3, 3] and table["successes_b"].tolist() == [3, 0]
    result = report([tmp_path / "mine"], out=tmp_path / "figs" / "mine", plots=False)
    lines = preset_section("mine", result, tmp_path / "figs").lines
    assert lines[:3] == ["## mine — claim 42", "", "*Flossing helps my task.*"]


def test_the_summary_sentence_is_the_one_report_summary_names(tmp_path: Path):
    """Chosen by the node, not by the preset's name: a pilot named otherwise gets the k sweep's
    sentence when it says ``summary: k_sweep``; without the key, successes per condition."""
    for name, node in (
        ("pilot", {"condition": "floss.k", "summary": "k_sweep"}),
        ("plain", {"condition": "floss.k"}),
        ("nulled", {"condition": "floss.k", "summary": None}),  # null: as without the key
        ("typo", {"condition": "floss.k", "summary": "k_sweeep"}),
    ):
        for k in (0, 4):
            settings = {"name": name, "floss.k": k, "report": node, "task.delay": 10 + k}
            make_run(tmp_path / name / f"k={k}", settings, [k > 0, True, False])
    col = collect([tmp_path])
    pilot = summarize("pilot", col.subset("pilot"))
    assert (
        pilot.startswith("Successes (95 % CI) and median final test accuracy")
        and "k=4: 2/3" in pilot
    )
    plain = summarize("plain", col.subset("plain"))
    assert plain.startswith("Successes / realizations (95 % CI) — k=0: 1/3"), plain
    assert summarize("nulled", col.subset("nulled")) == plain
    assert summarize("typo", col.subset("typo")).startswith("(unknown report.summary 'k_sweeep';")


def test_a_preset_without_a_claim_has_a_section_but_no_comparisons(tmp_path: Path):
    _runs(tmp_path, "plain", {"figures": [], "condition": "floss.name"})
    result = report([tmp_path / "plain"], out=tmp_path / "figs" / "plain", plots=False)
    col = result["collection"].subset("plain")
    assert Claim.of(col.report_node()) is None
    assert comparisons(col, "plain").empty and rank_comparisons(col, "plain").empty
    section = preset_section("plain", result, tmp_path / "figs")
    assert section.lines[:2] == ["## plain", ""]
    text = index_markdown("quick", [section])
    assert "## plain\n" in text and "Claims at a glance" not in text


def test_an_old_run_folder_gets_the_keys_it_lacks_from_its_preset_file(tmp_path: Path):
    old = {"figures": ["preflossing"], "condition": "task.delay", "x": "task.delay"}
    _runs(tmp_path, "preflossing", old)  # recorded before report.claim and report.grid existed
    col = collect([tmp_path]).subset("preflossing")
    node = col.report_node()
    assert node["condition"] == "task.delay"  # what the run recorded wins
    assert Claim.of(node) == Claim.of(preset_report("preflossing"))  # the rest: the preset file
    assert node == with_preset(old, "preflossing")
    assert col.cell_keys["preflossing"] == ["task.delay", "floss.name"]  # grid, not inferred
    table = comparisons(col, "preflossing")
    assert table[["claim", "a", "b"]].drop_duplicates().values.tolist() == [
        ["3", "floss=none", "floss=pre"]
    ]
    assert table["setting"].tolist() == ["delay=10", "delay=30"]


def test_a_plain_sweep_without_a_preset_infers_the_keys_that_vary(tmp_path: Path):
    _runs(tmp_path, "default", None, delays=(10, 20, 30))
    col = collect([tmp_path])
    assert col.report_node("default") == {}  # no preset file default.yaml
    assert col.cell_keys == {"default": ["floss.name", "task.delay"]}  # group names first
    assert comparisons(col.subset("default"), "default").empty  # no claim, nothing compared


@pytest.mark.parametrize("preset", presets())
def test_a_preset_without_runs_at_a_scale_reports_so_instead_of_failing(tmp_path, preset):
    """``make_figures --no-run`` at a scale a preset was not run at: its section says there are
    no finished runs, and its success and rank tests are empty (no key error on the claim's keys).
    """
    res = report([tmp_path / preset / "medium"], out=tmp_path / "figures" / preset)
    col = res["collection"].subset(preset)
    assert comparisons(col, preset).empty
    assert rank_comparisons(col, preset).empty
    section = preset_section(preset, res, tmp_path / "figures", None)
    assert "No finished runs" in index_markdown("medium", [section])


def test_a_figure_that_plots_against_report_x_names_the_key_when_it_is_missing():
    from flossrun.report.figures import declared_x

    class Exp:  # the one method of Collection that declared_x reads
        def __init__(self, node):
            self.node = node

        def report_node(self):
            return self.node

    assert declared_x(Exp({"x": "task.delay"})) == "task.delay"
    with pytest.raises(ValueError, match=r"report\.x is not set"):
        declared_x(Exp({"figures": ["k_sweep"]}))
