"""The PDF of the whole book (``python scripts/build_pdf.py`` → ``_build/pdf/book.pdf``).

.ci/run builds the PDF after the HTML and runs this file with ``TTS_REQUIRE_PDF=1``: the
PDF must then exist. In a plain ``python -m pytest`` before any build it is skipped.
"""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path

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
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def executed_figures() -> int:
    """Image outputs of the executed chapters of the build (what the PDF must show)."""
    files = glob.glob(str(ROOT / "_build" / "jupyter_execute" / "**" / "*.ipynb"), recursive=True)
    assert len(files) >= len(CHAPTERS), f"executed notebooks missing under _build/jupyter_execute: {files}"
    count = 0
    for f in files:
        nb = json.loads(Path(f).read_text(encoding="utf8"))
        for cell in nb["cells"]:
            for out in cell.get("outputs", []):
                count += any(k.startswith("image/") for k in out.get("data", {}))
    return count


def test_page_count(reader: pypdf.PdfReader) -> None:
    assert 3 * len(CHAPTERS) <= len(reader.pages) <= 1000, len(reader.pages)


def test_every_figure_embedded(reader: pypdf.PdfReader) -> None:
    figures = executed_figures()
    assert figures >= len(CHAPTERS), f"only {figures} figures in the executed chapters"
    embedded = sum(len(page.images) for page in reader.pages)
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
