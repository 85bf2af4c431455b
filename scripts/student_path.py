"""The student's path through each chapter, measured: reading minutes, check share, repeats.

Run ``python scripts/student_path.py`` for the table (``--markdown`` for the README's form);
``tests/test_student_path.py`` holds every chapter to the budgets below.

The measure (a rough reading speed for a first-year PhD student): **words / 70 + visible
code lines / 30** minutes.

* **Core path**: the cells from the chapter's start up to, and including, its
  ``## Summary`` (its key points); the exercises and any appendix are not core. Inside it,
  nothing that the site shows collapsed counts: the body of a ``dropdown`` (an
  ``admonition`` with ``:class: dropdown``, a ``{dropdown}`` or a ``{toggle}``), the input of
  cells tagged ``hide-input`` (the claim checks, whose one-line ``✓`` output still shows) and
  cells tagged ``hide-cell``, ``remove-cell`` or ``remove-input``. A figure's caption counts:
  the site shows it under the figure.
* **Check code**: lines of claim checks (cells tagged ``hide-input`` that assert or call
  ``tts_lib.claims.check``) over all code lines of the chapter; **visible checks**: the part of
  it a student sees on opening the notebook in Jupyter (check cells not collapsed with
  ``jupyter.source_hidden``). The budget (a quarter) is on what is visible; the site hides
  every check's input.
* **Repeated derivations**: for each derivation in :data:`DERIVATIONS`, the paragraphs outside
  its home chapter that redo it (match its pattern) without linking to it.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

BOOK = Path(__file__).resolve().parents[1] / "book"

WORDS_PER_MIN = 70
CODE_LINES_PER_MIN = 30
CORE_BUDGET_MIN = 45.0
TOTAL_CORE_BUDGET_MIN = 360.0  # the whole core path: six hours
CHECK_SHARE_BUDGET = 0.25

#: name -> (home file, pattern of a paragraph that redoes the derivation)
DERIVATIONS: dict[str, tuple[str, str]] = {
    "moment identity E[S²] = ΛΓ (Isserlis)": (
        "03_training_lsa.ipynb",
        r"Isserlis|Wick",
    ),
    "CoT as a pseudo-Newton step": (
        "04_test_time_scaling.ipynb",
        r"(?s)pseudo-Newton.*(Hessian|fixed point)|(Hessian|fixed point).*pseudo-Newton",
    ),
    "the notation table": (
        "intro.md",
        r"\*\*Notation\*\*|Notation:|^\|\s*(Symbol|Notation)\s*\|",
    ),
}

_LINK = re.compile(r"\{(?:ref|numref|doc|eq)\}`(?:[^`<]*<)?([^`>]+)>?`")
_FENCE = re.compile(r"^(\s*)(:{3,}|`{3,})\s*(\{[\w:-]+\})?\s*(.*)$")
_HIDDEN_TAGS = {"hide-input", "hide-cell", "remove-cell", "remove-input"}


@dataclass
class ChapterPath:
    """One chapter's measures (minutes, lines, counts)."""

    name: str
    core_words: int
    core_code_lines: int
    total_words: int
    total_code_lines: int
    check_lines: int
    visible_check_lines: int
    repeats: int

    @property
    def core_minutes(self) -> float:
        return self.core_words / WORDS_PER_MIN + self.core_code_lines / CODE_LINES_PER_MIN

    @property
    def total_minutes(self) -> float:
        return self.total_words / WORDS_PER_MIN + self.total_code_lines / CODE_LINES_PER_MIN

    @property
    def check_share(self) -> float:
        """Check code over all code lines (collapsed or not)."""
        return self.check_lines / max(self.total_code_lines, 1)

    @property
    def visible_check_share(self) -> float:
        """Check code a student sees on opening the notebook in Jupyter, over all code lines."""
        return self.visible_check_lines / max(self.total_code_lines, 1)


def visible_markdown(text: str) -> str:
    """``text`` without the bodies of collapsed blocks (dropdowns, toggles) and comments."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    out: list[str] = []
    stack: list[tuple[str, bool]] = []  # (fence, collapsed)
    pending: int | None = None  # index in stack of an admonition whose class is unknown
    for line in text.splitlines():
        m = _FENCE.match(line)
        if m and stack and m.group(3) is None and m.group(2) == stack[-1][0]:
            stack.pop()  # a closing fence
            pending = None
            continue
        if m and m.group(3) is not None:
            kind = m.group(3)
            stack.append((m.group(2), kind in ("{dropdown}", "{toggle}")))
            pending = len(stack) - 1 if kind == "{admonition}" else None
            if not any(c for _, c in stack):
                out.append(m.group(4))  # a visible directive's title
            continue
        if pending is not None and re.match(r"\s*:class:.*\bdropdown\b", line):
            stack[pending] = (stack[pending][0], True)
            continue
        if not any(c for _, c in stack) and not re.match(r"\s*:\w[\w-]*:", line):
            out.append(line)
    return "\n".join(out)


def _words(text: str) -> int:
    return len(text.split())


def _code_lines(src: str) -> int:
    return sum(1 for ln in src.splitlines() if ln.strip() and not ln.lstrip().startswith("%"))


def _is_check(cell: dict) -> bool:
    """A claim check: a ``hide-input`` cell that asserts or calls ``tts_lib.claims``."""
    tags = set(cell["metadata"].get("tags", []))
    src = "".join(cell["source"])
    return "hide-input" in tags and re.search(r"\bassert|\bcheck(_close)?\(", src) is not None


def _collapsed_in_jupyter(cell: dict) -> bool:
    return bool(cell["metadata"].get("jupyter", {}).get("source_hidden"))


def _cells(path: Path) -> list[dict]:
    if path.suffix == ".md":
        return [{"cell_type": "markdown", "metadata": {}, "source": path.read_text()}]
    return json.loads(path.read_text())["cells"]


def _paragraphs(path: Path) -> list[str]:
    paras: list[str] = []
    for cell in _cells(path):
        if cell["cell_type"] == "markdown":
            paras += re.split(r"\n\s*\n", "".join(cell["source"]))
    return paras


def labels(path: Path) -> set[str]:
    """The targets a link to ``path`` may name: its stem, ``(label)=`` and ``:name:``."""
    found = {path.stem}
    for cell in _cells(path):
        src = "".join(cell["source"])
        found |= set(re.findall(r"^\(([\w-]+)\)=", src, re.M))
        found |= set(re.findall(r"^\s*:name:\s*([\w-]+)", src, re.M))
        fig = cell["metadata"].get("mystnb", {}).get("figure", {})
        if fig.get("name"):
            found.add(fig["name"])
    return found


def repeats(path: Path) -> int:
    """Paragraphs of ``path`` that redo a derivation whose home is elsewhere.

    A paragraph that links to its home chapter (the page, or a label defined there) is a
    reminder, not a repeat."""
    count = 0
    for home, pattern in DERIVATIONS.values():
        if path.name == home:
            continue
        home_labels = labels(BOOK / home)
        rx = re.compile(pattern, re.M)
        for para in _paragraphs(path):
            targets = {t.strip().lstrip("./").removesuffix(".ipynb") for t in
                       _LINK.findall(para)}
            if rx.search(para) and not targets & home_labels:
                count += 1
    return count


_SECTION = re.compile(r"^##\s+(.*)$", re.M)
_STATED = re.compile(r"^\*≈\s*(\d+)\s*min\*\s*$", re.M)
#: sections that carry no reading-time line
UNTIMED = re.compile(r"Overview|Summary|Key points|Exercises|Appendix|References", re.I)


def sections(path: Path) -> list[tuple[str, float, int | None]]:
    """Core sections of a chapter: (heading, measured minutes, stated minutes or None).

    A section states its time in the line ``*≈ N min*`` under its heading."""
    out: list[list] = []
    for cell in _cells(path):
        src = "".join(cell["source"])
        tags = set(cell["metadata"].get("tags", []))
        if cell["cell_type"] == "markdown":
            parts = _SECTION.split(src)  # [before, head1, body1, head2, body2, ...]
            if out:
                out[-1][1] += _words(visible_markdown(parts[0])) / WORDS_PER_MIN
            for head, body in zip(parts[1::2], parts[2::2], strict=True):
                stated = _STATED.search(body)
                out.append([head.strip(), _words(visible_markdown(body)) / WORDS_PER_MIN,
                            int(stated.group(1)) if stated else None])
        elif cell["cell_type"] == "code" and out:
            fig = cell["metadata"].get("mystnb", {}).get("figure", {})
            out[-1][1] += _words(fig.get("caption", "")) / WORDS_PER_MIN
            if not tags & _HIDDEN_TAGS:
                out[-1][1] += _code_lines(src) / CODE_LINES_PER_MIN
    core = []
    for head, minutes, stated in out:
        if re.match(r"(Exercises|Appendix)", head):
            break
        if not UNTIMED.search(head):
            core.append((head, minutes, stated))
    return core


def measure(path: Path) -> ChapterPath:
    """The measures of one chapter notebook (or the intro page)."""
    core = True
    cw = cc = tw = tc = chk = vis = 0
    for cell in _cells(path):
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            if re.search(r"^##\s+(Exercises|Appendix)", src, re.M):
                core = False
            words = _words(visible_markdown(src))
            tw += words
            cw += words if core else 0
            continue
        if cell["cell_type"] != "code":
            continue
        tags = set(cell["metadata"].get("tags", []))
        lines = _code_lines(src)
        tc += lines
        chk += lines if _is_check(cell) else 0
        vis += lines if _is_check(cell) and not _collapsed_in_jupyter(cell) else 0
        caption = cell["metadata"].get("mystnb", {}).get("figure", {}).get("caption", "")
        tw += _words(caption)
        cw += _words(caption) if core else 0
        if core and not tags & _HIDDEN_TAGS:
            cc += lines
    return ChapterPath(path.stem, cw, cc, tw, tc, chk, vis, repeats(path))


def chapters() -> list[Path]:
    return sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))


def table(markdown: bool = False) -> str:
    rows = [measure(p) for p in chapters()]
    head = ["chapter", "core min", "all min", "check code", "visible checks", "repeats"]
    lines = []
    if markdown:
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.name, f"{r.core_minutes:.0f}", f"{r.total_minutes:.0f}",
                 f"{100 * r.check_share:.0f}%", f"{100 * r.visible_check_share:.0f}%",
                 str(r.repeats)]
        lines.append("| " + " | ".join(cells) + " |" if markdown else "  ".join(
            f"{c:>{w}}" for c, w in zip(cells, (26, 8, 7, 10, 14, 7), strict=True)))
    core = sum(r.core_minutes for r in rows)
    lines.append(f"\ncore path, all chapters: {core / 60:.1f} h")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--sections", action="store_true",
                    help="also list each core section's measured and stated minutes")
    args = ap.parse_args(argv)
    print(table(markdown=args.markdown))
    if args.sections:
        for path in chapters():
            print(f"\n{path.stem}")
            for head, minutes, stated in sections(path):
                said = "no *≈ N min* line" if stated is None else f"states {stated}"
                print(f"  {minutes:5.1f} min  {said:>18}  {head[:60]}")


if __name__ == "__main__":
    main()
