"""Static checks of the chapter notebooks (``book/*.ipynb``): what a reader gets.

Stored without outputs, kernel ``python3``, code that fits the page (88 characters),
numbered MyST figures from cell metadata (caption, name, alt text) instead of
hand-written "**Figure X.Y.**" captions, ``{numref}`` targets that exist, and exercises
as ``sphinx-exercise`` directives whose solutions are gated by a
``solution-start``/``solution-end`` pair (so the solution's code and output collapse).

The explorer cells (the one cell per chapter that builds an ipywidgets explorer) are
exempt from the line-length and figure-metadata checks: their output is a widget, not a
top-level image, and they belong to the site's execution fixes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
MAX_LINE = 88
FIGURE_CALL = re.compile(r"plt\.show\(\)|plt\.subplots\(|plt\.figure\(")
EXPLORER_CALL = re.compile(r"\b(explorer|interact|interactive)\(")
#: widget patterns that race nbclient (see tts_lib.plotting.explorer): never in a chapter
STALLING_WIDGET = re.compile(r"\b(interact|interactive|Output)\(")
EXERCISE = re.compile(r"^(:{3,}|`{3,})\{exercise\}[^\n]*\n:label: (\S+)", re.M)
SOL_START = re.compile(r"^(:{3,}|`{3,})\{solution-start\} (\S+)", re.M)
SOL_END = re.compile(r"^(:{3,}|`{3,})\{solution-end\}", re.M)
ADMONITION_EXERCISE = re.compile(r"\{admonition\}\s*(Exercise|Solution)")
NUMREF = re.compile(r"\{numref\}`(?:[^`<]*<)?([^`>]+)>?`")
LABEL = re.compile(r"^:label: (\S+)", re.M)
MD_TARGET = re.compile(r"^\(([\w-]+)\)=", re.M)


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _is_explorer(cell: dict) -> bool:
    return cell["cell_type"] == "code" and bool(EXPLORER_CALL.search(_source(cell)))


def _figure_cells(nb: dict) -> list[tuple[int, dict]]:
    return [
        (i, c)
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and not _is_explorer(c) and FIGURE_CALL.search(_source(c))
    ]


def _all_targets() -> set[str]:
    """Every label a {numref} may point to: figure names and directive labels."""
    targets: set[str] = set()
    for path in NOTEBOOKS:
        for cell in _load(path)["cells"]:
            fig = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
            if fig.get("name"):
                targets.add(fig["name"])
            if cell["cell_type"] == "markdown":
                targets.update(LABEL.findall(_source(cell)))
                targets.update(MD_TARGET.findall(_source(cell)))
    for md in BOOK.glob("*.md"):
        text = md.read_text(encoding="utf-8")
        targets.update(LABEL.findall(text))
        targets.update(MD_TARGET.findall(text))
    return targets


def test_there_are_chapters() -> None:
    assert len(NOTEBOOKS) >= 7, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_clean(path: Path) -> None:
    nb = _load(path)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs", []) == [], f"{path.name} cell {i} has outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_fits(path: Path) -> None:
    long = [
        (i, len(line))
        for i, cell in enumerate(_load(path)["cells"])
        if cell["cell_type"] == "code"
        for line in _source(cell).split("\n")
        if len(line) > MAX_LINE
    ]
    assert not long, f"{path.name}: (cell, length) of lines over {MAX_LINE}: {long}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_hand_numbered_captions(path: Path) -> None:
    for i, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] == "markdown":
            src = _source(cell)
            assert not re.search(r"\*\*Fig(ure|\.)", src), f"{path.name} cell {i}"
            assert not re.search(r"\bFigure \d+\.\d+", src), f"{path.name} cell {i}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_are_myst_figures(path: Path) -> None:
    nb = _load(path)
    for i, cell in _figure_cells(nb):
        meta = cell.get("metadata", {}).get("mystnb", {})
        fig, image = meta.get("figure", {}), meta.get("image", {})
        where = f"{path.name} cell {i}"
        assert fig.get("caption", "").strip(), f"{where}: no mystnb.figure.caption"
        assert re.fullmatch(r"fig-[a-z0-9-]+", fig.get("name", "")), f"{where}: name"
        alt = image.get("alt", "")
        assert len(alt.split()) >= 5 and alt.rstrip().endswith("."), f"{where}: alt"
        assert len(FIGURE_CALL.findall(_source(cell))) <= 2, f"{where}: one figure"
        assert _source(cell).count("plt.show()") == 1, f"{where}: one plt.show()"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_explorers_draw_without_output_widgets(path: Path) -> None:
    """Each chapter has an explorer built with tts_lib.plotting.explorer, with alt text.

    ``interact``/``interactive``/``Output`` capture output in an Output widget, which races
    nbclient's execute reply (the stall explained in ``tts_lib.plotting.explorer``).
    """
    cells = _load(path)["cells"]
    explorers = [(i, c) for i, c in enumerate(cells) if _is_explorer(c)]
    assert explorers, f"{path.name}: no explorer cell"
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            assert not STALLING_WIDGET.search(_source(cell)), f"{path.name} cell {i}"
    for i, cell in explorers:
        assert "explorer(" in _source(cell), f"{path.name} cell {i}: use plotting.explorer"
        alt = cell.get("metadata", {}).get("mystnb", {}).get("image", {}).get("alt", "")
        assert len(alt.split()) >= 5 and alt.rstrip().endswith("."), f"{path.name} cell {i}"


def test_figure_names_unique() -> None:
    names = [
        c["metadata"]["mystnb"]["figure"]["name"]
        for path in NOTEBOOKS
        for c in _load(path)["cells"]
        if "name" in c.get("metadata", {}).get("mystnb", {}).get("figure", {})
    ]
    assert names, "no named figures"
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_numref_targets_exist() -> None:
    targets = _all_targets()
    texts = [md.read_text(encoding="utf-8") for md in BOOK.glob("*.md")]
    for path in NOTEBOOKS:
        for cell in _load(path)["cells"]:
            if cell["cell_type"] == "markdown":
                texts.append(_source(cell))
            fig = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
            texts.append(fig.get("caption", ""))
    refs = {r for text in texts for r in NUMREF.findall(text)}
    assert refs, "no {numref} at all"
    missing = sorted(refs - targets)
    assert not missing, f"{{numref}} targets that do not exist: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_are_directives_with_gated_solutions(path: Path) -> None:
    nb = _load(path)
    md = [(i, _source(c)) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown"]
    for i, src in md:
        assert not ADMONITION_EXERCISE.search(src), f"{path.name} cell {i}: admonition"
    labels = [m.group(2) for _, src in md for m in EXERCISE.finditer(src)]
    assert labels, f"{path.name}: no {{exercise}} directive"
    assert len(labels) == len(set(labels)), labels
    # walk the cells: every solution-start names a known exercise, is closed by a
    # solution-end before the next solution or exercise, and nothing is left open
    opened: str | None = None
    solved = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        src = _source(cell)
        events = sorted(
            [(m.start(), "start", m.group(2)) for m in SOL_START.finditer(src)]
            + [(m.start(), "end", "") for m in SOL_END.finditer(src)]
            + [(m.start(), "exercise", m.group(2)) for m in EXERCISE.finditer(src)]
        )
        if opened and not events:
            raise AssertionError(f"{path.name} cell {i}: prose inside solution {opened}")
        for _, kind, label in events:
            if kind == "start":
                assert opened is None, f"{path.name} cell {i}: nested solution"
                assert label in labels, f"{path.name} cell {i}: unknown {label}"
                assert ":class: dropdown" in src, f"{path.name} cell {i}: not collapsed"
                opened = label
                solved.append(label)
            elif kind == "end":
                assert opened, f"{path.name} cell {i}: solution-end without start"
                opened = None
            else:
                assert opened is None, f"{path.name} cell {i}: exercise inside solution"
    assert opened is None, f"{path.name}: solution {opened} never ends"
    assert sorted(solved) == sorted(labels), (solved, labels)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_check_cells_start_collapsed_in_jupyter(path: Path) -> None:
    """A claim's check (a ``hide-input`` cell, hidden on the site) also starts collapsed when a
    student opens the notebook in JupyterLab or Notebook 7 (``jupyter.source_hidden``): its
    "✓" output stays visible, its code is one click away, as on the site."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    open_checks = [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code"
        and "hide-input" in cell.get("metadata", {}).get("tags", [])
        and cell["metadata"].get("jupyter", {}).get("source_hidden") is not True
    ]
    assert not open_checks, f"hide-input cells {open_checks} lack metadata jupyter.source_hidden = true"
