"""The classroom kit: the Canvas gradebook export, the slide decks and the instructors' page.

* ``assignments/export_gradebook.py`` reads what ``assignments/build.py grade`` writes (its own
  writer makes the fixtures), joins the roster, and stops with exit status 2 and one line on
  bad input, writing nothing;
* ``scripts/build_slides.py`` builds a deck for every notebook of ``_toc.yml`` (a chapter added
  there gets one), from the chapter's source and executed outputs only;
* ``book/instructors.md``: its points tables equal the assignment sources, its schedules cover
  every chapter and assignment, it links the decks.
The browser test of the decks is ``tests/browser/check_slides.mjs`` (Chromium, no network).
"""

from __future__ import annotations

import base64
import csv
import html
import importlib.util
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = ("hardness", "scaling", "overthinking", "noise")


def _load(name: str, path: Path):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


export_gradebook = _load("export_gradebook", ROOT / "assignments" / "export_gradebook.py")
build_slides = _load("build_slides", ROOT / "scripts" / "build_slides.py")


# --------------------------------------------------------------------------- gradebook


def _record(name: str, scores: dict[str, tuple[float, float]], error: str | None = None) -> dict:
    qs = {q: {"score": s, "possible": p} for q, (s, p) in scores.items()}
    total = sum(s for s, _ in scores.values())
    possible = sum(p for _, p in scores.values()) or None
    return {"submission": name, "total": total, "possible": possible, "questions": qs, "error": error}


@pytest.fixture
def graded(tmp_path: Path) -> Path:
    """scores.csv and final_grades.csv written by the grader's own writer."""
    build = _load("assignments_build", ROOT / "assignments" / "build.py")
    full = {"q1": (5.0, 5.0), "q2": (2.0, 2.0), "q3": (2.0, 2.0)}
    records = [
        _record("alice.ipynb", full),
        _record("Bob.ipynb", {"q1": (2.0, 5.0), "q2": (2.0, 2.0), "q3": (1.0, 2.0)}),
        _record("carol.ipynb", {}, error="timed out after 600 s"),
    ]
    out = tmp_path / "grades"
    out.mkdir()
    build._write_outputs(out, "hardness", records, ["q1", "q2", "q3"])
    return out


@pytest.fixture
def roster(tmp_path: Path) -> Path:
    """A roster as Canvas exports its gradebook (with its Points Possible row)."""
    path = tmp_path / "roster.csv"
    path.write_text(
        "Student,ID,SIS User ID,SIS Login ID,Section,Old quiz (11)\n"
        "    Points Possible,,,,,10\n"
        '"Doe, Alice",101,S101,alice,Section A,7\n'
        '"Roe, Bob",102,S102,bob,Section A,8\n'
        '"Poe, Carol",103,S103,carol,Section B,9\n'
        '"Loe, Dan",104,S104,dan,Section B,\n',
        encoding="utf-8",
    )
    return path


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


@pytest.mark.parametrize("source", ["scores.csv", "final_grades.csv"])
def test_export_canvas_layout(graded: Path, roster: Path, source: str) -> None:
    rows, warnings = export_gradebook.export(graded / source, roster, "Assignment 1: hardness", "4521")
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Assignment 1: hardness (4521)"]
    assert rows[1][0].strip() == "Points Possible" and rows[1][-1] == "9"
    by_name = {r[0]: r for r in rows[2:]}
    assert [r[0] for r in rows[2:]] == ["Doe, Alice", "Roe, Bob", "Poe, Carol", "Loe, Dan"]  # roster order
    assert by_name["Doe, Alice"][1:] == ["101", "S101", "alice", "Section A", "9"]
    assert by_name["Roe, Bob"][-1] == "5"  # file Bob.ipynb matches login bob: case ignored
    assert by_name["Poe, Carol"][-1] == ""  # grading failed: left for the instructor, with a warning
    assert by_name["Loe, Dan"][-1] == ""  # no submission
    assert len(warnings) == 1 and "carol.ipynb" in warnings[0] and "timed out" in warnings[0]


def test_export_options(graded: Path, roster: Path) -> None:
    rows, _ = export_gradebook.export(graded / "scores.csv", roster, "hardness", out_of=10, missing="zero",
                                      failed="zero")
    assert rows[0][-1] == "hardness" and rows[1][-1] == "10"
    got = {r[0]: r[-1] for r in rows[2:]}
    assert got == {"Doe, Alice": "10", "Roe, Bob": "5.56", "Poe, Carol": "0", "Loe, Dan": "0"}


def test_export_canvas_download_names(graded: Path, roster: Path, tmp_path: Path) -> None:
    text = (graded / "scores.csv").read_text()
    text = text.replace("alice.ipynb", "doealice_101_9001_hardness.ipynb")
    text = text.replace("Bob.ipynb", "roebob_LATE_102_9002_hardness-1.ipynb")
    text = text.replace("carol.ipynb", "poecarol_103_9003_hardness.ipynb")
    (tmp_path / "canvas.csv").write_text(text)
    rows, _ = export_gradebook.export(tmp_path / "canvas.csv", roster, "hardness", match="canvas")
    assert {r[0]: r[-1] for r in rows[2:]} == {"Doe, Alice": "9", "Roe, Bob": "5", "Poe, Carol": "", "Loe, Dan": ""}


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "assignments" / "export_gradebook.py"), *args],
                          capture_output=True, text=True, cwd=ROOT)


def test_export_cli_writes_file(graded: Path, roster: Path, tmp_path: Path) -> None:
    out = tmp_path / "canvas.csv"
    proc = _run_cli(str(graded / "final_grades.csv"), "--roster", str(roster), "--assignment", "hardness",
                    "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "4 students, 2 with a score" in proc.stderr and "warning: carol.ipynb" in proc.stderr
    assert _rows(out.read_text())[2][-1] == "9"


def _bad_inputs(graded: Path, roster: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    scores = str(graded / "scores.csv")
    junk = tmp / "junk.csv"
    junk.write_text("name,grade\nalice,3\n")
    extra = tmp / "extra.csv"
    extra.write_text((graded / "scores.csv").read_text() + "mallory.ipynb,1,1,1,3,9,\n")
    twice = tmp / "twice.csv"
    twice.write_text((graded / "scores.csv").read_text() + "ALICE.ipynb,1,1,1,3,9,\n")
    high = tmp / "high.csv"
    high.write_text((graded / "scores.csv").read_text().replace("alice.ipynb,5.0,2.0,2.0,9.0", "alice.ipynb,5,2,2,19"))
    no_login = tmp / "nologin.csv"
    no_login.write_text("Student,ID,Section\nAlice,101,A\n")
    base = ["--roster", str(roster), "--assignment", "hardness"]
    return {
        "unknown layout": ([str(junk), *base], "neither the course's scores.csv"),
        "missing file": ([str(tmp / "nope.csv"), *base], "no such file"),
        "not on the roster": ([str(extra), *base], "match no roster row (mallory.ipynb)"),
        "two per student": ([str(twice), *base], "both belong to Doe, Alice"),
        "score too high": ([str(high), *base], "outside 0..9"),
        "roster column": ([scores, "--roster", str(no_login), "--assignment", "hardness"], "no 'SIS Login ID' column"),
        "assignment id": ([scores, *base, "--assignment-id", "abc"], "Canvas ids are numbers"),
        "out of": ([scores, *base, "--out-of", "0"], "must be a positive number"),
        "out folder": ([scores, *base, "--out", str(tmp / "no" / "x.csv")], "does not exist"),
    }


def test_export_bad_input_exit_2_one_line(graded: Path, roster: Path, tmp_path: Path) -> None:
    for case, (args, message) in _bad_inputs(graded, roster, tmp_path).items():
        proc = _run_cli(*args)
        assert proc.returncode == 2, (case, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("export_gradebook: "), (case, proc.stderr)
        assert message in lines[0], (case, lines[0])
        assert proc.stdout == "", case  # nothing written
    assert not (tmp_path / "no").exists()


def test_export_allow_unmatched(graded: Path, roster: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.csv"
    extra.write_text((graded / "scores.csv").read_text() + "mallory.ipynb,1,1,1,3,9,\n")
    rows, warnings = export_gradebook.export(extra, roster, "hardness", allow_unmatched=True)
    assert len(rows) == 6 and any("mallory.ipynb" in w and "not exported" in w for w in warnings)


def test_export_all_failed_needs_points_possible(roster: Path, tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    path.write_text("submission,q1,total,possible,error\nalice.ipynb,0,0,,kernel died\n")
    with pytest.raises(export_gradebook.GradebookError, match="--points-possible"):
        export_gradebook.export(path, roster, "hardness")
    rows, _ = export_gradebook.export(path, roster, "hardness", points_possible=9)
    assert rows[1][-1] == "9" and rows[2][-1] == ""


# --------------------------------------------------------------------------- slides

PNG = base64.b64encode(
    bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                  "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e5273de9"
                  "0000000049454e44ae426082")).decode()


def _md(src: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(src)


def _toy_chapter() -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    """A small chapter in the book's format, and the same notebook executed."""
    claim = nbformat.v4.new_code_cell("assert True\nprint('✓ the toy claim holds')", metadata={"tags": ["hide-input"]})
    fig = nbformat.v4.new_code_cell("plt.plot([1])", metadata={"mystnb": {"figure": {
        "name": "fig-toy", "caption": "The toy curve, see {cite}`javanmard2025tts`.\n\nWhat to see: it rises."},
        "image": {"alt": "A rising toy curve."}}})
    sol_fig = nbformat.v4.new_code_cell("plt.plot([2])", metadata={"mystnb": {"figure": {"name": "fig-sol",
                                                                                         "caption": "Solution."}}})
    nb = nbformat.v4.new_notebook(cells=[
        _md("# 12. A toy chapter\n\nThe opening paragraph of the toy chapter. Its second sentence.\n\n"
            "## Overview\n\n**What you will learn**\n\n* the first thing, $x^2$;\n* the second thing."),
        _md("## 12.1 A section\n\nThe lead of the section, citing {cite}`javanmard2025tts` and {numref}`fig-toy`."
            "\n\n$$\nE = mc^2\n$$ (eq-toy)\n\nA later paragraph for the notes, see {eq}`eq-toy`.\n\n"
            ":::{admonition} Derivation\n:class: dropdown\nSECRET DERIVATION\n:::"),
        claim, fig,
        _md("## Summary\n\n* **Key one.** It holds.\n* **Key two.** It also holds."),
        _md("## Exercises\n\n:::{exercise} derivation\n:label: ex-toy-1\n\nShow that $1 + 1 = 2$. Then more.\n:::"),
        _md(":::{solution-start} ex-toy-1\n:class: dropdown\n:::\n\nSECRET SOLUTION"),
        sol_fig,
        _md(":::{solution-end}\n:::"),
    ])
    run = nbformat.from_dict(json.loads(nbformat.writes(nb)))
    run.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="✓ the toy claim holds\n")]
    for i in (3, 7):
        run.cells[i].outputs = [nbformat.v4.new_output("display_data", data={"image/png": PNG})]
    return nb, run


def test_deck_from_a_toy_chapter() -> None:
    nb, run = _toy_chapter()
    cites = build_slides._bibliography(ROOT / "book" / "references.bib")
    ch = build_slides.parse_chapter(nb, "12_toy", run, cites)
    page, n_slides, n_fig = build_slides.deck_html(ch)
    assert ch.title == "A toy chapter" and ch.number == "12"
    assert ch.learn == ["the first thing, $x^2$;", "the second thing."]
    assert n_fig == 1 and 'src="img/12_toy-fig-toy.png"' in page and 'alt="A rising toy curve."' in page
    assert "fig-sol" not in page and "SECRET" not in page  # solutions and dropdowns stay in the book
    assert "the toy claim holds" in page
    assert r"E = mc^2 \tag{1}" in page and "see (1)" in page  # labelled equations numbered as in the book
    assert "(Javanmard et al., 2026)" in page and "Figure 1" in page
    assert "What to see: it rises." in page.split('class="notes"')[-1]  # the caption's rest: a speaker note
    assert "Key one." in page and "Show that" in page
    assert page.count("<section") == n_slides >= 6


def test_executed_copy_must_match_the_source(tmp_path: Path) -> None:
    nb, run = _toy_chapter()
    (tmp_path / "book").mkdir()
    src = tmp_path / "book" / "12_toy.ipynb"
    nbformat.write(nb, src)
    executed = tmp_path / "_build" / "jupyter_execute" / "book" / "12_toy.ipynb"
    executed.parent.mkdir(parents=True)
    nbformat.write(run, executed)
    cache = tmp_path / "cache"
    assert build_slides.executed_copy(src, nb, tmp_path, False, cache) is not None
    run.cells[2].source += "\n# edited since the build"
    nbformat.write(run, executed)
    assert build_slides.executed_copy(src, nb, tmp_path, False, cache) is None  # stale: not used


def _toy_repo(tmp_path: Path) -> Path:
    nb, run = _toy_chapter()
    (tmp_path / "book").mkdir()
    nbformat.write(nb, tmp_path / "book" / "12_toy.ipynb")
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nparts:\n  - caption: New\n"
                                       "    chapters:\n      - file: book/12_toy\n")
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    executed = tmp_path / "_build" / "jupyter_execute" / "book" / "12_toy.ipynb"
    executed.parent.mkdir(parents=True)
    nbformat.write(run, executed)
    return tmp_path


@pytest.mark.skipif(not (ROOT / "node_modules" / "reveal.js").is_dir(), reason="npm ci has not run")
def test_a_new_toc_chapter_gets_a_deck(tmp_path: Path) -> None:
    root = _toy_repo(tmp_path)
    out = tmp_path / "slides"
    manifest = build_slides.build(root, out, None, execute=False, text_only=False, pdf=False)
    assert [m["name"] for m in manifest] == ["12_toy"] and manifest[0]["figures"] == 1
    assert (out / "12_toy.html").is_file() and (out / "img" / "12_toy-fig-toy.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "_assets" / "reveal" / "reveal.js").is_file()
    assert (out / "_assets" / "mathjax" / "tex-chtml.js").is_file()
    assert json.loads((out / "decks.json").read_text()) == manifest
    assert "12_toy.html" in (out / "index.html").read_text()


def test_slides_cli_errors(tmp_path: Path) -> None:
    script = str(ROOT / "scripts" / "build_slides.py")
    root = _toy_repo(tmp_path)
    (root / "_build" / "jupyter_execute" / "book" / "12_toy.ipynb").unlink()
    proc = subprocess.run([sys.executable, script, "--root", str(root), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--execute" in proc.stderr and "--text-only" in proc.stderr
    proc = subprocess.run([sys.executable, script, "--root", str(root), "--chapters", "99_nope", "--text-only"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "99_nope" in proc.stderr and "12_toy" in proc.stderr


def _toc_notebooks() -> list[str]:
    toc = (ROOT / "_toc.yml").read_text()
    return [f for f in re.findall(r"file:\s*(\S+)", toc) if (ROOT / f"{f}.ipynb").is_file()]


def test_every_toc_chapter_has_a_deck() -> None:
    """Text-only decks (no execution: seconds): one per notebook of _toc.yml, every section on a slide."""
    paths = build_slides.toc_chapters(ROOT)
    assert [p.relative_to(ROOT).with_suffix("").as_posix() for p in paths] == _toc_notebooks()
    cites = build_slides._bibliography(ROOT / "book" / "references.bib")
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        ch = build_slides.parse_chapter(nb, path.stem, None, cites)
        page, n_slides, _ = build_slides.deck_html(ch)
        assert n_slides >= 8, path.name
        assert ch.title != path.stem and ch.lead and build_slides.learn_items(ch) and ch.summary, path.name
        headings = [m for c in nb.cells if c.cell_type == "markdown"
                    for m in re.findall(r"^## (\d+\.\d+ .+)$", c.source, re.M)]
        for h in headings:  # numbered sections each get a slide
            assert re.split(r"[$`*_]", h)[0].strip()[:20] in html.unescape(page), (path.name, h)


# --------------------------------------------------------------------------- instructors' page

PAGE = ROOT / "book" / "instructors.md"


def assignment_points(name: str) -> dict[str, tuple[float, int, int]]:
    """``question -> (points, public tests, hidden tests)`` from an assignment's source notebook."""
    nb = nbformat.read(ROOT / "assignments" / f"{name}.ipynb", as_version=4)
    out: dict[str, list] = {}
    question, in_tests = None, False
    for cell in nb.cells:
        src = cell.source.strip()
        if cell.cell_type == "raw" and src.startswith("# BEGIN QUESTION"):
            config = yaml.safe_load(src.split("\n", 1)[1])
            question = config["name"]
            points = config.get("points")
            out[question] = [points, 0, 0]
        elif cell.cell_type == "raw" and src.startswith("# END QUESTION"):
            question = None
        elif cell.cell_type == "raw" and src.startswith("# BEGIN TESTS"):
            in_tests = True
        elif cell.cell_type == "raw" and src.startswith("# END TESTS"):
            in_tests = False
        elif in_tests and question and cell.cell_type == "code":
            out[question][2 if src.startswith("# HIDDEN") else 1] += 1
    result = {}
    for q, (points, public, hidden) in out.items():
        total = float(sum(points)) if isinstance(points, list) else float(points)
        result[q] = (total, public, hidden)
    return result


def _table_rows(text: str, first_header: str) -> list[list[str]]:
    """Rows of the markdown table whose header starts with ``| first_header |``."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {first_header} |"))
    rows = []
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
    return rows


def test_points_table_matches_the_sources() -> None:
    rows = _table_rows(PAGE.read_text(), "assignment | question")
    page = {(r[0].strip("`"), r[1]): (float(r[2]), int(r[3]), int(r[4])) for r in rows if r[1].startswith("q")}
    want = {(a, q): v for a in ASSIGNMENTS for q, v in assignment_points(a).items()}
    expected = "\n".join(f"| `{a}` | {q} | {p:g} | {pub} | {hid} |" for (a, q), (p, pub, hid) in want.items())
    assert page == want, f"book/instructors.md's points table is out of date; its rows should be:\n{expected}"
    totals = {r[0].strip("`"): float(r[2]) for r in rows if r[1] == "total"}
    assert totals == {a: sum(v[0] for v in assignment_points(a).values()) for a in ASSIGNMENTS}
    # the overview table's "questions (points)" column agrees too
    for row in _table_rows(PAGE.read_text(), "assignment | after"):
        name = row[0].strip("`")
        q, p = re.match(r"(\d+) \((\d+)\)", row[2]).groups()
        assert (int(q), float(p)) == (len(want_q := assignment_points(name)), sum(v[0] for v in want_q.values()))


def _schedule(text: str, heading: str) -> str:
    part = text.split(f"### {heading}", 1)[1]
    return part.split("\n### ", 1)[0].split("\n## ", 1)[0]


def test_schedules_cover_every_chapter_and_assignment() -> None:
    text = PAGE.read_text()
    chapters = {int(Path(f).name.split("_")[0]) for f in _toc_notebooks()}
    for heading in ("One week", "Two weeks", "Three weeks"):
        block = _schedule(text, heading)
        named = {int(n) for n in re.findall(r"\bCh(?:apters?)?\.? ?(\d+)", block)}
        named |= {int(n) for m in re.findall(r"Chapters ([\d, and]+)", block) for n in re.findall(r"\d+", m)}
        assert chapters <= named, (heading, sorted(chapters - named))
        assert {10, 11} <= named, heading  # the two language-model chapters, landing with this kit
        for a in ASSIGNMENTS:
            assert f"`{a}`" in block, (heading, a)
        assert re.search(r"\d+ min", block), heading  # lesson lengths


def test_page_links_the_decks_and_documents_the_export() -> None:
    text = PAGE.read_text()
    assert "../slides/index.html" in text
    for needle in ("export_gradebook.py", "Gradescope", "JupyterHub", "learning objectives", "Rubric"):
        assert needle.lower() in text.lower(), needle


def test_headings_named_otherwise_are_understood() -> None:
    """'Key points' for the summary and a 'What you will learn' heading work like the usual ones."""
    nb, run = _toy_chapter()
    nb.cells[0].source = nb.cells[0].source.replace("## Overview\n\n**What you will learn**", "## What you will learn")
    nb.cells[4].source = nb.cells[4].source.replace("## Summary", "## Key points")
    ch = build_slides.parse_chapter(nb, "12_toy", run, {})
    assert len(ch.learn) == 2 and len(ch.summary) == 2
    assert [s.title for s in ch.sections] == ["12.1 A section"]


@pytest.mark.skipif(not (ROOT / "node_modules" / "reveal.js").is_dir(), reason="npm ci has not run")
def test_rebuilding_one_chapter_keeps_the_others(tmp_path: Path) -> None:
    root = _toy_repo(tmp_path)
    nb, run = _toy_chapter()
    nb.cells[0].source = nb.cells[0].source.replace("# 12. A toy chapter", "# 13. Another toy")
    run.cells[0].source = nb.cells[0].source
    nbformat.write(nb, root / "book" / "13_more.ipynb")
    nbformat.write(run, root / "_build" / "jupyter_execute" / "book" / "13_more.ipynb")
    toc = root / "_toc.yml"
    toc.write_text(toc.read_text() + "      - file: book/13_more\n")
    out = tmp_path / "slides"
    build_slides.build(root, out, None, execute=False, text_only=False, pdf=False)
    built = build_slides.build(root, out, ["13_more"], execute=False, text_only=False, pdf=False)
    assert [m["name"] for m in built] == ["13_more"]
    listed = json.loads((out / "decks.json").read_text())
    assert [m["name"] for m in listed] == ["12_toy", "13_more"]  # the other deck stays listed
    toc.write_text(toc.read_text().replace("      - file: book/12_toy\n", ""))
    build_slides.build(root, out, None, execute=False, text_only=False, pdf=False)
    assert not (out / "12_toy.html").exists() and not list((out / "img").glob("12_toy-*"))
    assert [m["name"] for m in json.loads((out / "decks.json").read_text())] == ["13_more"]
