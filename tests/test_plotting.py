"""tts_lib.plotting: figures drawn inline in a kernel whatever MPLBACKEND says; explorers."""

from __future__ import annotations

import os

import matplotlib as mpl
import matplotlib.pyplot as plt
import nbformat
import pytest
from nbclient import NotebookClient

from tts_lib import plotting

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(cells: list[str], monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    """Execute ``cells`` in a fresh python3 kernel with MPLBACKEND=Agg exported."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    return nb


def _images(cell: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for out in cell.outputs)


def test_use_style_draws_inline_under_agg(monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _run(
        [
            "import matplotlib.pyplot as plt\nplt.plot([0, 1]); plt.show()",
            "from tts_lib.plotting import use_style\nuse_style()\n"
            "plt.plot([0, 1]); plt.show()\nimport matplotlib; print(matplotlib.get_backend())",
        ],
        monkeypatch,
    )
    assert _images(nb.cells[0]) == 0  # the failure mode: Agg in the kernel draws nothing
    assert _images(nb.cells[1]) == 1
    assert "inline" in nb.cells[1].outputs[-1]["text"]


def test_explorer_renders_initial_state_without_output_widget(monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _run(
        [
            "import ipywidgets as widgets, matplotlib.pyplot as plt\n"
            "from tts_lib.plotting import explorer, use_style\nuse_style()\n"
            "def draw(a=1.0):\n    fig, ax = plt.subplots()\n    ax.plot([0, a])\n    return fig\n"
            "from IPython.display import display\n"
            "ex = explorer(draw, a=widgets.FloatSlider(value=2.0))\ndisplay(ex)",
            "print(len(plt.get_fignums()), ex.box.children[0].value)\n"
            "ex.controls['a'].value = 3.0  # redraws through the display id, no error",
        ],
        monkeypatch,
    )
    outs = nb.cells[0].outputs
    assert [("application/vnd.jupyter.widget-view+json" in o.get("data", {})) for o in outs] == [True, False]
    assert _images(nb.cells[0]) == 1
    assert nb.cells[1].outputs[0]["text"].split() == ["0", "2.0"]  # figure closed, value kept
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    models = {v["model_name"] for v in state.get("state", {}).values()}
    assert "OutputModel" not in models and "HBoxModel" in models


def test_use_style_outside_kernel_keeps_backend() -> None:
    before = mpl.get_backend()
    plotting.use_style()
    assert mpl.get_backend() == before
    assert mpl.rcParams["axes.prop_cycle"].by_key()["color"] == plotting.PALETTE


def test_figure_png_and_bad_input() -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    png = plotting.figure_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and not plt.fignum_exists(fig.number)
    with pytest.raises(TypeError, match="must return its figure"):
        plotting.figure_png(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`inline` must be a bool"):
        plotting.use_style(inline="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs at least one"):
        plotting.explorer(lambda: fig)
    with pytest.raises(TypeError, match="value widget"):
        plotting.explorer(lambda a: fig, a=3)
    with pytest.raises(TypeError, match="callable"):
        plotting.explorer(fig, a=3)


# ---------------------------------------------------------------- readable figures
import json  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

from matplotlib.font_manager import FontProperties  # noqa: E402

CHAPTERS = sorted((Path(ROOT) / "book").glob("[0-9]*.ipynb"))
SMALL_FONT = re.compile(r"\b(legend|fig\.legend|tick_params|set_(?:x|y)ticklabels)\([^()]*?"
                        r"\b(?:fontsize|labelsize|title_fontsize)=([\d.]+)")


def _points(value: object) -> float:
    return FontProperties(size=value).get_size_in_points()


def test_style_text_is_readable() -> None:
    plotting.use_style(inline=False)
    rc = mpl.rcParams
    for key in ("font.size", "axes.labelsize", "xtick.labelsize", "ytick.labelsize", "legend.fontsize",
                "legend.title_fontsize"):
        assert _points(rc[key]) >= plotting.READABLE_PT, f"{key} = {rc[key]}"
    fig, ax = plt.subplots()
    ax.plot([1, 2], [1, 2], label="a")
    plotting.label(ax, "x", "y")
    legend_pt = ax.get_legend().get_texts()[0].get_fontsize()
    tick_pt = ax.xaxis.get_ticklabels()[0].get_fontsize()
    plt.close(fig)
    assert legend_pt >= plotting.READABLE_PT and tick_pt >= plotting.READABLE_PT, (legend_pt, tick_pt)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapters_do_not_shrink_legends_or_ticks(path: Path) -> None:
    small = []
    for i, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        if cell["cell_type"] == "code":
            for m in SMALL_FONT.finditer("".join(cell["source"])):
                if float(m.group(2)) < plotting.READABLE_PT:
                    small.append((i, m.group(0)[-60:]))
    assert not small, f"{path.name}: text below {plotting.READABLE_PT} pt (drop the fontsize): {small}"


@pytest.mark.parametrize("lo, hi", [(0.3, 2.0), (2.0, 9.0), (1e-3, 1e2), (0.05, 0.6)])
def test_log_axis_tick_labels_do_not_overlap(lo: float, hi: float) -> None:
    plotting.use_style(inline=False)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax in axes:
        ax.plot([lo, hi], [lo, hi], "o", label="data")
        ax.set_xscale("log")
        ax.set_yscale("log")
        plotting.label(ax, "x", "y")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for axis in (axes[1].xaxis, axes[1].yaxis):
        labels = axis.get_ticklabels(which="both")
        boxes = [t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text()]
        assert len(boxes) >= 2, f"{lo}..{hi}: fewer than two tick labels"
        overlaps = [(a, b) for j, a in enumerate(boxes) for b in boxes[j + 1:] if a.overlaps(b)]
        assert not overlaps, f"{lo}..{hi}: {len(overlaps)} overlapping tick labels"
    plt.close(fig)
