"""The student's path stays a sitting per chapter (scripts/student_path.py measures it).

Budgets: a core path of at most 45 reading minutes per chapter and six hours in all, visible check code at most a
quarter of a chapter's code lines, and each derivation in one place (other chapters link to it).
"""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "student_path", Path(__file__).resolve().parents[1] / "scripts" / "student_path.py"
)
sp = importlib.util.module_from_spec(_SPEC)
sys.modules["student_path"] = sp  # dataclasses look their module up
_SPEC.loader.exec_module(sp)

CHAPTERS = sp.chapters()


def test_every_chapter_is_measured():
    assert len(CHAPTERS) == 11


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_core_path_fits_a_sitting(path):
    m = sp.measure(path)
    assert m.core_minutes <= sp.CORE_BUDGET_MIN, (
        f"{path.name}: core path {m.core_minutes:.0f} min > {sp.CORE_BUDGET_MIN:.0f} "
        "(move deep dives into dropdowns, hide-cell cells or the appendix)"
    )


def test_whole_core_path_fits_six_hours():
    total = sum(sp.measure(p).core_minutes for p in CHAPTERS)
    assert total <= sp.TOTAL_CORE_BUDGET_MIN, (
        f"the core path of all chapters is {total / 60:.1f} h > "
        f"{sp.TOTAL_CORE_BUDGET_MIN / 60:.0f} h"
    )


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_visible_check_code_is_short(path):
    m = sp.measure(path)
    assert m.visible_check_share <= sp.CHECK_SHARE_BUDGET, (
        f"{path.name}: a student opening it in Jupyter sees check code that is "
        f"{100 * m.visible_check_share:.0f}% of its code lines (collapse check cells with "
        "jupyter.source_hidden; write claims with tts_lib.claims.check)"
    )


@pytest.mark.parametrize("path", [*CHAPTERS, sp.BOOK / "intro.md"], ids=lambda p: p.stem)
def test_each_derivation_lives_once(path):
    assert sp.repeats(path) == 0, f"{path.name} redoes a derivation without linking its home"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_sections_state_their_time(path):
    """Each core section opens with ``*≈ N min*`` and N is the measure, within reason."""
    for head, minutes, stated in sp.sections(path):
        assert stated is not None, f"{path.name} § {head!r}: no '*≈ N min*' line"
        assert abs(stated - minutes) <= max(2.0, 0.35 * minutes), (
            f"{path.name} § {head!r}: states {stated} min, measures {minutes:.1f}"
        )


def test_measure_sees_collapsed_blocks():
    text = (
        "seen words here\n\n:::{admonition} Derivation\n:class: dropdown\n\nhidden text\n:::\n"
        "\n::::{dropdown} Going deeper\nnot seen\n::::\nafter"
    )
    shown = sp.visible_markdown(text)
    assert "hidden" not in shown and "not seen" not in shown
    assert "seen words here" in shown and "after" in shown and "Derivation" in shown


def test_instructors_table_shows_the_measure():
    """book/instructors.md's "Time per chapter" states each chapter's measured minutes."""
    text = (sp.BOOK / "instructors.md").read_text(encoding="utf8")
    rows = {int(m.group(1)): (int(m.group(2)), int(m.group(3))) for m in re.finditer(
        r"^\| (\d+) \| \{doc\}`[^`]*` \| (\d+) min \| (\d+) min \|", text, re.M)}
    assert sorted(rows) == list(range(1, len(CHAPTERS) + 1))
    for i, path in enumerate(CHAPTERS, start=1):
        m = sp.measure(path)
        core, everything = rows[i]
        assert abs(core - m.core_minutes) <= 1 and abs(everything - m.total_minutes) <= 1, (
            f"instructors.md, chapter {i}: states {core}/{everything} min, measures "
            f"{m.core_minutes:.0f}/{m.total_minutes:.0f} (python scripts/student_path.py)"
        )


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_time_line_is_its_own_paragraph(path):
    """``*≈ N min*`` followed by text on the next line would run into that paragraph."""
    for cell in json.loads(path.read_text(encoding="utf8"))["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            bad = re.search(r"^\*≈\s*\d+\s*min\*[ \t]*\n[ \t]*\S", src, re.M)
            assert bad is None, f"{path.name}: a blank line must follow {bad.group(0)!r}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_figure_says_what_to_see_in_jupyter(path):
    """A figure's caption lives in cell metadata, which Jupyter does not show: what the figure
    is for is a visible markdown cell right under it (figures of worked solutions aside)."""
    cells = json.loads(path.read_text(encoding="utf8"))["cells"]
    for i, cell in enumerate(cells):
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and re.search(r"^##\s+(Exercises|Appendix)", src, re.M):
            break
        if cell["metadata"].get("mystnb", {}).get("figure", {}).get("caption"):
            after = "".join(cells[i + 1]["source"]).lstrip() if i + 1 < len(cells) else ""
            assert after.startswith("**What to see.**"), (
                f"{path.name} cell {i}: put a '**What to see.**' markdown cell under the figure"
            )
