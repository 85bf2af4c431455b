"""The PDF of the whole book (``python scripts/build_pdf.py`` → ``_build/pdf/book.pdf``).

Besides pages, figures, math and links: every line of every code cell the reader sees
(not the collapsed ``hide-input`` cells) is in the PDF's text, so no code line was cut
at the page edge, and the worked solutions are in an appendix at the end, each exercise
linking to its solution.

.ci/run builds the PDF after the HTML and runs this file with ``TTS_REQUIRE_PDF=1``: the
PDF must then exist. In a plain ``python -m pytest`` before any build it is skipped.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pypdf
import pytest

ROOT = Path(__file__).resolve().parents[1]
PDF = ROOT / "_build" / "pdf" / "book.pdf"
CHAPTERS = sorted(glob.glob(str(ROOT / "book" / "[0-9]*.ipynb")))

if not PDF.exists() and not os.environ.get("TTS_REQUIRE_PDF"):
    pytest.skip("no PDF built (python scripts/build_pdf.py); .ci/run requires it", allow_module_level=True)


@pytest.fixture(scope="module")
def reader() -> pypdf.PdfReader:
    assert PDF.exists(), f"{PDF} missing: .ci/run builds it with python scripts/build_pdf.py"
    return pypdf.PdfReader(PDF)


@pytest.fixture(scope="module")
def text(reader: pypdf.PdfReader) -> str:
    """The PDF's text: poppler's ``pdftotext`` where it is installed (2 s for the book;
    .ci/run installs it), else pypdf's extraction (30 s). Both pass the tests below."""
    exe = shutil.which("pdftotext")
    if exe and not os.environ.get("TTS_PDF_TEXT_PYPDF"):
        return subprocess.run([exe, "-raw", "-enc", "UTF-8", "-q", str(PDF), "-"], capture_output=True, text=True,
                              timeout=300, check=True).stdout
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def executed_figures() -> int:
    """Image outputs of the executed chapters of the build (what the PDF must show), less those
    inside a worked solution (between ``solution-start`` and ``solution-end``): the PDF prints
    solutions collapsed to their titles (tested below)."""
    files = glob.glob(str(ROOT / "_build" / "jupyter_execute" / "**" / "*.ipynb"), recursive=True)
    assert len(files) >= len(CHAPTERS), f"executed notebooks missing under _build/jupyter_execute: {files}"
    count = 0
    for f in files:
        nb = json.loads(Path(f).read_text(encoding="utf8"))
        in_solution = False
        for cell in nb["cells"]:
            src = "".join(cell["source"])
            if cell["cell_type"] == "markdown":
                in_solution = ("{solution-start}" in src or in_solution) and "{solution-end}" not in src
                continue
            if not in_solution:
                for out in cell.get("outputs", []):
                    count += any(k.startswith("image/") for k in out.get("data", {}))
    return count


def test_page_count(reader: pypdf.PdfReader) -> None:
    assert 3 * len(CHAPTERS) <= len(reader.pages) <= 1000, len(reader.pages)


def images_drawn(obj: Any, depth: int = 0) -> int:
    """Image XObjects a page (or a form inside it) draws, counted as ``page.images`` counts
    them but without decoding them (0.1 s for the book instead of 15 s)."""
    res = obj.get("/Resources")
    res = res.get_object() if res is not None else None
    xobjects = res.get("/XObject") if res is not None else None
    count = 0
    for ref in (xobjects.get_object() if xobjects is not None else {}).values():
        x = ref.get_object()
        if x.get("/Subtype") == "/Image":
            count += 1
        elif x.get("/Subtype") == "/Form" and depth < 10:
            count += images_drawn(x, depth + 1)
    return count


def test_every_figure_embedded(reader: pypdf.PdfReader) -> None:
    figures = executed_figures()
    assert figures >= len(CHAPTERS), f"only {figures} figures in the executed chapters"
    drawn = [images_drawn(page) for page in reader.pages]
    # the counter agrees with pypdf's decoding page.images, on the first three pages with a figure
    first = [i for i, n in enumerate(drawn) if n][:3]
    assert len(first) == 3 and [drawn[i] for i in first] == [len(reader.pages[i].images) for i in first]
    embedded = sum(drawn)
    assert embedded >= figures, f"{embedded} images in the PDF, {figures} figures in the book"


def code_sources() -> str:
    """All code-cell sources: they print verbatim in the PDF (matplotlib labels hold TeX)."""
    parts = []
    for path in CHAPTERS:
        nb = json.loads(Path(path).read_text(encoding="utf8"))
        parts += ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    return "\n".join(parts)


def test_math_typeset_no_raw_tex(text: str) -> None:
    code = code_sources()
    for raw in (r"\frac", "$$", r"\begin", r"\mathbb", r"\left(", r"\sum_", r"\operatorname"):
        # more occurrences than the code cells hold = untypeset math from the prose
        assert text.count(raw) <= code.count(raw), (
            f"raw TeX {raw!r} {text.count(raw)}x in the PDF text, {code.count(raw)}x in code cells: "
            "math was not typeset")


def test_whole_book_and_bibliography(text: str) -> None:
    flat = re.sub(r"\s+", " ", text)
    for title in ("weight prediction", "hardness", "overthinking", "GPT-2", "Bibliography"):
        assert title.lower() in flat.lower(), f"{title!r} not in the PDF"
    assert "Javanmard" in flat  # the cited paper, from references.bib


def test_cross_references_are_links(reader: pypdf.PdfReader) -> None:
    internal = 0
    for page in reader.pages:
        for annot in page.get("/Annots") or []:
            a = annot.get_object()
            action = a.get("/A")
            if "/Dest" in a or (action is not None and action.get_object().get("/S") == "/GoTo"):
                internal += 1
    assert internal >= 20, f"only {internal} internal links (cross-references) in the PDF"


HIDDEN_TAGS = {"hide-input", "hide-cell", "remove-input", "remove-cell"}  # collapsed in the PDF too


def _squash(text: str) -> str:
    """Text without whitespace (wrapped lines join up) and with typographic quotes plain."""
    text = text.translate(str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"'}))
    return re.sub(r"\s+", "", text)


def built_chapters() -> list[Path]:
    """The chapters of this build (a PDF of some chapters: ``build_pdf.py --toc``)."""
    executed = {Path(p).name for p in glob.glob(str(ROOT / "_build" / "jupyter_execute" / "**" / "*.ipynb"),
                                                   recursive=True)}
    return [Path(p) for p in CHAPTERS if Path(p).name in executed]


def test_no_code_line_lost(text: str) -> None:
    """Every line of every shown code cell is in the text: none was cut at the right edge."""
    flat = _squash(text)
    chapters = built_chapters()
    assert chapters, "no executed chapters under _build/jupyter_execute"
    lost, total = [], 0
    for path in chapters:
        nb = json.loads(path.read_text(encoding="utf8"))
        in_solution = False  # worked solutions print collapsed to their titles (tested below)
        for i, cell in enumerate(nb["cells"]):
            src = "".join(cell["source"])
            if cell["cell_type"] == "markdown":
                in_solution = ("{solution-start}" in src or in_solution) and "{solution-end}" not in src
            if (cell["cell_type"] != "code" or in_solution
                    or HIDDEN_TAGS & set(cell.get("metadata", {}).get("tags", []))):
                continue
            for line in "".join(cell["source"]).splitlines():
                if line.strip():
                    total += 1
                    if _squash(line) not in flat:
                        lost.append(f"{path.name} cell {i}: {line.strip()[:70]}")
    assert total > 100, total
    assert not lost, f"{len(lost)} of {total} code lines not in the PDF text:\n" + "\n".join(lost[:30])


def _solution_openings(path: Path) -> list[str]:
    """The first line of plain prose (no math, code or markup) of each worked solution."""
    out, inside = [], False
    for cell in json.loads(path.read_text(encoding="utf8"))["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        src = "".join(cell["source"])
        if "{solution-start}" in src:
            inside, src = True, src.split("{solution-start}", 1)[1].split(":::", 1)[-1]
        if not inside:
            continue
        ended = "{solution-end}" in src
        src = src.split("{solution-end}", 1)[0]
        lines = [ln.strip() for ln in src.splitlines()
                 if len(ln.strip()) > 30 and not re.search(r"[$`{}\\|*_:<>\[]", ln)]
        if lines:
            out.append(lines[0])
        inside = not (lines or ended)
    return out


def test_solutions_printed_collapsed(text: str) -> None:
    """Each worked solution shows its title with a pointer, not its content."""
    flat = re.sub(r"\s+", " ", text)
    solutions = sum("".join(c["source"]).count("{solution-start}") for path in built_chapters()
                    for c in json.loads(path.read_text(encoding="utf8"))["cells"] if c["cell_type"] == "markdown")
    assert solutions > 0
    assert flat.count("worked solution: in the notebook and on the website") >= solutions, "collapsed titles"
    squashed = _squash(text)
    openings = [line for path in built_chapters() for line in _solution_openings(path)]
    assert len(openings) >= solutions // 2, openings
    shown = [line for line in openings if _squash(line) in squashed]
    assert not shown, f"solution text printed: {shown[:5]}"
