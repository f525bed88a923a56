"""scripts/docs_numbers.py: the measured-results tables of README.md and PAPER_MAP.md are
exactly what the committed CSVs under docs/figures/ render (issue 17 item 6)."""

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "docs_numbers.py"


def load():
    spec = importlib.util.spec_from_file_location("docs_numbers", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


dn = load()


def test_every_generated_block_matches_the_committed_csvs():
    stale = dn.stale(ROOT)
    blocks = [f"{doc}: {', '.join(names)}" for doc, names in stale.items()]
    assert not stale, (
        f"generated block(s) differ from docs/figures/*.csv: {'; '.join(blocks)}; "
        f"run `{dn.COMMAND}`"
    )


def test_every_block_with_committed_csvs_appears_in_the_docs_at_most_once_per_document():
    seen = []
    for doc in dn.DOCUMENTS:
        names = [m["name"] for m in dn.BLOCK.finditer((ROOT / doc).read_text(encoding="utf-8"))]
        assert len(names) == len(set(names)), doc
        seen += names
    figures = ROOT / dn.FIGURES
    ready = [n for n, b in dn.BLOCKS.items() if all((figures / s).is_file() for s in b.sources)]
    assert set(ready) <= set(seen) <= set(dn.BLOCKS)
    assert {"medium_headline", "medium_comparisons"} <= set(seen)


@pytest.fixture
def copy_root(tmp_path):
    """The two documents and docs/figures/*.csv in a scratch root."""
    for doc in dn.DOCUMENTS:
        shutil.copyfile(ROOT / doc, tmp_path / doc)
    figures = tmp_path / dn.FIGURES
    figures.mkdir(parents=True)
    for csv in (ROOT / dn.FIGURES).glob("*.csv"):
        shutil.copyfile(csv, figures / csv.name)
    return tmp_path


def _edit_csv(path: Path, preset: str, setting: str, column: str, value) -> None:
    df = pd.read_csv(path)
    row = (df["preset"] == preset) & (df["setting"] == setting)
    assert row.sum() >= 1
    df.loc[row, column] = value
    df.to_csv(path, index=False)


def test_a_changed_csv_value_changes_the_rendered_block(copy_root):
    figures = copy_root / dn.FIGURES
    before = dn.render("medium_headline", figures)
    path = figures / "comparisons_medium.csv"
    df = pd.read_csv(path)
    row = (df["preset"] == "preflossing") & (df["setting"] == "task=delayed_copy, delay=30")
    a, n_a, b, n_b = df.loc[row, ["successes_a", "n_a", "successes_b", "n_b"]].iloc[0]
    new = b - 1 if b > 0 else b + 1
    _edit_csv(path, "preflossing", "task=delayed_copy, delay=30", "successes_b", new)
    after = dn.render("medium_headline", figures)
    assert before != after
    assert f"| {a}/{n_a} | {new}/{n_b} |" in after and f"| {a}/{n_a} | {b}/{n_b} |" in before
    assert dn.stale(copy_root) == {
        "README.md": ["medium_headline"],
        "PAPER_MAP.md": ["medium_comparisons"],
    }
    changed = dn.update(copy_root)
    assert changed == ["README.md: medium_headline", "PAPER_MAP.md: medium_comparisons"]
    assert dn.stale(copy_root) == {}
    assert f"| {a}/{n_a} | {new}/{n_b} |" in (copy_root / "README.md").read_text(encoding="utf-8")


def test_a_number_edited_by_hand_is_caught_with_the_block_and_the_command(copy_root, capsys):
    readme = copy_root / "README.md"
    text = readme.read_text(encoding="utf-8")
    start = text.index(dn.BLOCKS["medium_headline"].marker("medium_headline"))
    m = re.compile(r"\| (\d+)/(\d+) \|").search(text, start)  # a rate of the block: A of a row
    edited = f"| {int(m[1]) + 1}/{m[2]} |"
    readme.write_text(text[: m.start()] + edited + text[m.end() :], encoding="utf-8")
    assert dn.stale(copy_root) == {"README.md": ["medium_headline"]}
    assert dn.main(["--root", str(copy_root)]) == 1
    err = capsys.readouterr().err
    assert "medium_headline" in err and dn.COMMAND in err
    assert dn.main(["--root", str(copy_root), "--write"]) == 0
    assert dn.main(["--root", str(copy_root)]) == 0
    assert (copy_root / "README.md").read_text(encoding="utf-8") == text


def test_a_row_the_block_needs_is_missing_is_a_clear_error(copy_root, capsys):
    path = copy_root / dn.FIGURES / "comparisons_medium.csv"
    df = pd.read_csv(path)
    df[df["preset"] != "during_training"].to_csv(path, index=False)
    with pytest.raises(dn.DocsNumbersError, match=r"delayed XOR d = 40.*during_training"):
        dn.render("medium_headline", copy_root / dn.FIGURES)
    assert dn.main(["--root", str(copy_root)]) == 2
    assert "docs_numbers: error:" in capsys.readouterr().err


def test_a_marker_naming_other_sources_or_an_unknown_block_is_refused(tmp_path):
    figures = ROOT / dn.FIGURES
    wrong = "<!-- generated: medium_headline from docs/figures/other.csv -->\nx\n" + dn.END
    with pytest.raises(dn.DocsNumbersError, match="the marker must read"):
        dn.rewrite(wrong, figures)
    unknown = "<!-- generated: nope from docs/figures/x.csv -->\n" + dn.END
    with pytest.raises(dn.DocsNumbersError, match="unknown generated block 'nope'"):
        dn.rewrite(unknown, figures)


def test_formatting_is_deterministic():
    assert dn.number(0.3980569392442703) == "0.398"
    assert dn.number(1.1621651813212225e-06) == "1.16e-06"
    assert dn.number(float("nan")) == "–"
    assert dn.cell("|λ1 − λ*|") == "\\|λ1 − λ*\\|"
    assert dn._effect("log10 σ1/σk", 11.49, 5.80) == "-5.7 decades"
    assert dn._effect("‖∂L/∂h‖", 1.16e-6, 1.54) == "×1.3e+06"


def test_quick_summaries_render_one_row_per_preset_with_its_wall_time(tmp_path):
    rows = [
        {"claim": "1", "preset": "lyapunov_control", "wall_minutes": 1.26, "result": "λ1 |x| 0.5"},
        {"claim": "7", "preset": "loss_landscape", "wall_minutes": None, "result": "rough 1.4"},
        {"claim": "6", "preset": "orbit_diagram", "wall_minutes": 3.0, "result": "a.\n\n| x |\n"},
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "summaries_quick.csv", index=False)
    body = dn.render("quick_summaries", tmp_path).splitlines()
    assert body[2] == "| `lyapunov_control` (1.3 min) | 1 | λ1 \\|x\\| 0.5 |"
    assert body[3] == "| `loss_landscape` | 7 | rough 1.4 |"
    assert body[4] == "| `orbit_diagram` (3.0 min) | 6 | a. |"
    assert body[5:] == ["", "`orbit_diagram`:", "", "| x |"]  # its own table, verbatim


def test_make_figures_writes_the_summaries_that_docs_figures_copies(tmp_path):
    spec = importlib.util.spec_from_file_location("make_figures", SCRIPT.parent / "make_figures.py")
    mf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mf)
    row = {"claim": "5", "preset": "k_sweep", "result": "S = 1: 2/2", "wall_minutes": 5.5}
    path = mf.write_summaries(tmp_path, [row])
    assert path.name == "summaries.csv"
    df = pd.read_csv(path)
    assert df.columns.tolist() == ["claim", "preset", "wall_minutes", "result"]
    assert df.iloc[0].to_dict() == {**row, "claim": 5}


def test_medium_wall_times_sum_the_timed_presets_and_name_the_untimed(tmp_path):
    rows = [
        {"claim": "1", "preset": "lyapunov_control", "wall_minutes": 0.25, "result": "a"},
        {"claim": "3", "preset": "preflossing", "wall_minutes": 6.15, "result": "b"},
        {"claim": "7", "preset": "loss_landscape", "wall_minutes": None, "result": "c"},
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "summaries_medium.csv", index=False)
    (line,) = dn.render("medium_wall_times", tmp_path).splitlines()
    assert "**6.4** for 2 presets (`lyapunov_control` 0.2, `preflossing` 6.2)" in line
    assert line.endswith("; not timed: `loss_landscape`.")
    summary = dn.render("medium_summaries", tmp_path).splitlines()
    assert summary[2] == "| `lyapunov_control` (0.2 min) | 1 | a |"
