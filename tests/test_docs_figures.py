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
