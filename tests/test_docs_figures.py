"""scripts/docs_figures.py: README figures are small palette PNGs of the report's figures."""

import importlib.util
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from PIL import Image

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "docs_figures.py"


def load():
    spec = importlib.util.spec_from_file_location("docs_figures", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shrink_caps_the_width_keeps_the_aspect_and_makes_the_file_smaller(tmp_path):
    fig, ax = plt.subplots(figsize=(12, 4), dpi=200)
    ax.plot(range(100), [i**0.5 for i in range(100)])
    src, dst = tmp_path / "big.png", tmp_path / "small.png"
    fig.savefig(src)
    plt.close(fig)
    size = load().shrink(src, dst, width=600)
    with Image.open(src) as a, Image.open(dst) as b:
        assert b.width == 600 and abs(b.height - a.height * 600 / a.width) <= 1
        assert b.mode == "P"  # palette
    assert size == dst.stat().st_size < src.stat().st_size


def test_missing_index_is_a_clear_error(tmp_path, monkeypatch, capsys):
    mod = load()
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    monkeypatch.setattr("sys.argv", ["docs_figures.py", "--scale", "medium"])
    assert mod.main() == 1
    assert "make figures SCALE=medium" in capsys.readouterr().err


def test_copying_a_scales_tables_rewrites_the_generated_blocks_of_the_docs(
    tmp_path, monkeypatch, capsys
):
    import pandas as pd

    real = SCRIPT.parent.parent
    src = tmp_path / "outputs" / "figures" / "medium"
    src.mkdir(parents=True)
    (src / "index.md").write_text("# index\n")
    for doc in ("README.md", "PAPER_MAP.md"):
        (tmp_path / doc).write_text((real / doc).read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "docs" / "figures").mkdir(parents=True)
    for csv in (real / "docs" / "figures").glob("*.csv"):  # the other scales' tables
        if not csv.stem.endswith("_medium"):
            (tmp_path / "docs" / "figures" / csv.name).write_bytes(csv.read_bytes())
    for name in ("comparisons", "median_comparisons"):
        df = pd.read_csv(real / "docs" / "figures" / f"{name}_medium.csv")
        if name == "comparisons":  # the run now gives 1 success more than the docs say
            row = (df["preset"] == "during_training") & (df["setting"] == "delay=40")
            row &= df["b"] == "floss=pre_during"
            df.loc[row, "successes_b"] += 1
            a, n_a, b, n_b = df.loc[row, ["successes_a", "n_a", "successes_b", "n_b"]].iloc[0]
        df.to_csv(src / f"{name}.csv", index=False)
    from flossrun.report.presets import presets

    rows = [{"claim": 1, "preset": p, "wall_minutes": None, "result": "y"} for p in presets()]
    pd.DataFrame(rows).iloc[1:].to_csv(src / "summaries.csv", index=False)  # one preset short
    mod = load()
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    monkeypatch.setattr("sys.argv", ["docs_figures.py", "--scale", "medium", "--only"])
    assert mod.main() == 1  # the tables of a partial make figures call are not copied
    assert "partial make figures call" in capsys.readouterr().err
    assert not (tmp_path / "docs" / "figures" / "summaries_medium.csv").exists()
    pd.DataFrame(rows).to_csv(src / "summaries.csv", index=False)  # every preset
    assert mod.main() == 0
    out = capsys.readouterr().out
    assert "rewrote README.md: medium_headline" in out
    assert "rewrote PAPER_MAP.md: medium_comparisons" in out
    assert (tmp_path / "docs" / "figures" / "summaries_medium.csv").is_file()
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert f"| 4 | delayed XOR d = 40, floss pre vs pre_during | {a}/{n_a} | {b}/{n_b} |" in readme
