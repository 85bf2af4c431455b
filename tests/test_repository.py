"""Repository hygiene: notebooks stored clean, every chapter in the table of contents."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
ASSERT_TAGS = {"remove-input", "hide-input"}


def _toc_files() -> list[str]:
    return re.findall(r"file:\s*(\S+)", (ROOT / "_toc.yml").read_text()) + [
        re.search(r"root:\s*(\S+)", (ROOT / "_toc.yml").read_text()).group(1)
    ]


def test_there_are_notebooks():
    assert NOTEBOOKS, "book/ has no notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3", "kernelspec must be python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip the outputs"
    sources = ["".join(c["source"]) for c in code]
    assert not any("NBVAL_" in s for s in sources), "use nbval cell tags, not comment markers"
    asserts = [
        c for c, s in zip(code, sources, strict=True)
        if re.search(r"^\s*(assert\b|check(_close)?\()", s, re.M)
        and ASSERT_TAGS & set(c.get("metadata", {}).get("tags", []))
    ]
    assert asserts, "claims must be checked by assert or tts_lib.claims.check cells tagged remove-input or hide-input"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_in_the_toc(path):
    assert f"book/{path.stem}" in _toc_files(), f"add book/{path.stem} to _toc.yml"


def test_toc_entries_exist():
    for entry in _toc_files():
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), entry
