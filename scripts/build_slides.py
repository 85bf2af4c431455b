"""Build a reveal.js lecture deck, and a PDF handout, for every chapter of the book.

    python scripts/build_slides.py              # every chapter in _toc.yml -> _build/html/slides/
    python scripts/build_slides.py --pdf        # and a PDF handout per deck (headless Chromium)
    python scripts/build_slides.py --chapters 04_test_time_scaling --execute

A deck is built from the chapter's own notebook, never written by hand, so it cannot drift
from the book: a title slide (the chapter's opening paragraph), "What you will learn" (the
overview's list), a roadmap of its sections, one slide per section (``##`` and ``###``
headings) with its first paragraph, its display equations (labelled ones numbered as in the
book) and the claims its assert cells print ("✓ ..."), one slide per figure (the image from
the executed notebook, its caption, its alt text; the caption's second paragraph and the
"**What to see.**" markdown cell under the figure become speaker notes), the summary's key
points and the list of exercises. Derivation dropdowns, solutions, code and appendices stay
in the book. The rest of each section's prose becomes speaker notes (press ``s`` in a deck).

Chapters are the ``.ipynb`` entries of ``_toc.yml``: a chapter added there gets a deck with no
change here. Figures and claims come from the executed notebooks that ``jupyter-book build``
leaves in ``_build/jupyter_execute/`` or its execution cache ``_build/.jupyter_cache/`` (used
only when their code equals the source's);
``--execute`` runs a chapter that has none (about a minute each), ``--text-only`` builds decks
without figures and claims (a preview). reveal.js and MathJax are copied from
``node_modules`` (``npm ci``), so the decks work offline. Output: ``OUT/NAME.html``,
``OUT/NAME.pdf`` (``--pdf``), ``OUT/img/``, ``OUT/_assets/``, ``OUT/index.html`` and
``OUT/decks.json`` (what each deck holds, read by ``tests/browser/check_slides.mjs``).
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import re
import shutil
import subprocess
import sys
import time
from base64 import b64decode
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.amsmath import amsmath_plugin
from mdit_py_plugins.colon_fence import colon_fence_plugin
from mdit_py_plugins.deflist import deflist_plugin
from mdit_py_plugins.dollarmath import dollarmath_plugin

ROOT = Path(__file__).resolve().parent.parent
SITE_TITLE = "Training data and test-time scaling"
WIDTH, HEIGHT = 1280, 720
# A rough height model (px on the 1280 x 720 slide) decides what shares a slide; the browser
# test measures every slide, so an estimate that is off shows up as a failure, not a cut slide.
BUDGET = 570  # px of content under the heading (the estimate runs up to ~5% short)
MAX_EQUATIONS = 3  # display equations per section slide
LEAD_CHARS = 420  # a section's lead is cut at a sentence end after about this many characters
# headings that are not lecture sections: where the learning goals, key points and exercises are
SPECIAL_SECTIONS = {"overview": "overview", "what you will learn": "overview", "summary": "summary",
                    "key points": "summary", "exercises": "exercises", "appendix": "skip",
                    "further reading": "skip", "references": "skip"}


def _special(title: str) -> str | None:
    low = title.lower()
    return next((v for k, v in SPECIAL_SECTIONS.items() if low.startswith(k)), None)


class SlidesError(Exception):
    """Bad input or a missing prerequisite; the message says what to do."""


# --------------------------------------------------------------------------- markdown


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    md.use(dollarmath_plugin, allow_labels=True, double_inline=True)
    md.use(amsmath_plugin).use(colon_fence_plugin).use(deflist_plugin)

    def inline(self, tokens, idx, options, env):  # noqa: ANN001, ANN202
        return r"\(" + html.escape(tokens[idx].content, quote=False) + r"\)"

    def block(self, tokens, idx, options, env):  # noqa: ANN001, ANN202
        tex = tokens[idx].content.strip()
        tag = env.get("eq_numbers", {}).get(tokens[idx].info)
        tex = tex + (rf" \tag{{{tag}}}" if tag else "")
        return '<div class="eq">\\[' + html.escape(tex, quote=False) + "\\]</div>\n"

    def ams(self, tokens, idx, options, env):  # noqa: ANN001, ANN202
        return '<div class="eq">\\[' + html.escape(tokens[idx].content.strip(), quote=False) + "\\]</div>\n"

    for name, rule in (("math_inline", inline), ("math_inline_double", inline), ("math_block", block),
                       ("math_block_label", block), ("amsmath", ams)):
        md.add_render_rule(name, rule)
    return md


MD = _markdown()


def _bibliography(path: Path) -> dict[str, str]:
    """``key -> "Surname et al., 2026"`` from a BibTeX file (enough for an in-text citation)."""
    refs: dict[str, str] = {}
    if not path.is_file():
        return refs
    for entry in re.split(r"\n(?=@)", path.read_text(encoding="utf-8")):
        key = re.match(r"@\w+\{([^,]+),", entry.strip())
        author = re.search(r"author\s*=\s*\{(.+?)\},?\s*\n", entry, re.S)
        year = re.search(r"year\s*=\s*\{?(\d{4})", entry)
        if not key:
            continue
        names = [n.strip() for n in re.sub(r"[{}]", "", author.group(1)).split(" and ")] if author else []
        surnames = [n.split(",")[0].strip() if "," in n else n.split()[-1] for n in names if n]
        who = (surnames[0] + (" et al." if len(surnames) > 2 else f" and {surnames[1]}" if len(surnames) == 2
                              else "")) if surnames else key.group(1)
        refs[key.group(1)] = f"{who}, {year.group(1)}" if year else who
    return refs


@dataclass
class Labels:
    """What the MyST roles of one chapter resolve to."""

    figures: dict[str, int] = field(default_factory=dict)  # figure label -> number in the chapter
    equations: dict[str, int] = field(default_factory=dict)  # equation label -> number
    cites: dict[str, str] = field(default_factory=dict)


_ROLE = re.compile(r"\{(\w[\w:-]*)\}`([^`]*)`")


def _resolve_roles(text: str, labels: Labels) -> str:
    """Replace MyST roles by plain text: a citation, "Figure 3", "(2)", a link's text."""

    def one(m: re.Match) -> str:
        role, body = m.group(1), m.group(2)
        explicit = re.match(r"(.*?)\s*<([^>]+)>$", body, re.S)
        text_part, target = (explicit.group(1), explicit.group(2)) if explicit else (None, body)
        if role.startswith("cite"):
            keys = [k.strip() for k in target.split(",")]
            return "(" + "; ".join(labels.cites.get(k, k) for k in keys) + ")"
        if role == "numref":
            n = labels.figures.get(target)
            word = f"Figure {n}" if n else "the figure"
            return text_part.replace("%s", str(n or "")).replace("{number}", str(n or "")) if text_part else word
        if role == "eq":
            return f"({labels.equations[target]})" if target in labels.equations else "the equation"
        if role == "math":
            return f"${body}$"
        return text_part or target.split("/")[-1]

    return _ROLE.sub(one, text)


def _render(tokens: list[Token], labels: Labels) -> str:
    return MD.renderer.render(tokens, MD.options, {"eq_numbers": labels.equations})


def _blocks(tokens: list[Token]) -> list[list[Token]]:
    """Split a token stream into top-level blocks (a paragraph, a list, an equation, ...)."""
    out, depth, start = [], 0, 0
    for i, t in enumerate(tokens):
        if depth == 0:
            start = i
        depth += t.nesting
        if depth == 0:
            out.append(tokens[start:i + 1])
    return out


def _text_len(block: list[Token]) -> int:
    return sum(len(t.content) for t in block if t.type in ("inline", "math_block", "math_block_label"))


def _cut_sentences(text: str, limit: int) -> tuple[str, str]:
    """Split markdown text after the last sentence end (outside math) before ``limit`` characters."""
    ends, in_math, i = [], False, 0
    while i < len(text):
        if text[i] == "$":
            in_math = not in_math
        elif not in_math and text[i] in ".?!" and (i + 1 == len(text) or text[i + 1] in " \n"):
            ends.append(i + 1)
        i += 1
    cut = max((e for e in ends if e <= limit), default=ends[0] if ends else len(text))
    return text[:cut].strip(), text[cut:].strip()


# --------------------------------------------------------------------------- chapter model


@dataclass
class Figure:
    label: str
    number: int | None
    png: bytes
    caption: str  # first paragraph of the caption (markdown)
    notes: str  # the rest of the caption (markdown)
    alt: str


#: a markdown cell under a figure that starts so is the figure's reading note (speaker notes)
WHAT_TO_SEE = "**What to see.**"


@dataclass
class Section:
    title: str
    level: int
    blocks: list[list[Token]] = field(default_factory=list)  # paragraphs, lists, equations, tables
    claims: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Chapter:
    name: str
    number: str
    title: str
    lead: str = ""  # markdown of the opening paragraph
    learn: list[str] = field(default_factory=list)  # markdown list items
    sections: list[Section] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    exercises: list[tuple[str, str]] = field(default_factory=list)  # (kind, first sentence)
    executed: bool = False


def _list_items(block: list[Token], source: str) -> list[str]:
    """The markdown source of each top-level item of a bullet list block."""
    lines = source.splitlines()
    items, depth = [], 0
    for t in block:
        if t.type == "list_item_open" and depth == 1:
            items.append(t.map)
        depth += t.nesting if t.type in ("bullet_list_open", "bullet_list_close", "ordered_list_open",
                                         "ordered_list_close") else 0
    out = []
    for a, b in items:
        text = "\n".join(lines[a:b]).strip()
        out.append(re.sub(r"^[*+-]\s+", "", text))
    return out


def _claims(cell: nbformat.NotebookNode) -> list[str]:
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    return [ln.strip()[1:].strip() for ln in text.splitlines() if ln.strip().startswith("✓")]


def _image(cell: nbformat.NotebookNode) -> bytes | None:
    for o in cell.get("outputs", []):
        data = o.get("data", {})
        if "image/png" in data:
            return b64decode(data["image/png"])
    return None


def parse_chapter(src: nbformat.NotebookNode, name: str, executed: nbformat.NotebookNode | None,
                  cites: dict[str, str]) -> Chapter:
    """Read a chapter notebook (and its executed copy, cell for cell) into slide material."""
    labels = Labels(cites=cites)
    figure_cells = [c for c in src.cells if c.metadata.get("mystnb", {}).get("figure", {}).get("name")]
    labels.figures = {c.metadata["mystnb"]["figure"]["name"]: i + 1 for i, c in enumerate(figure_cells)}
    eq_labels = [m for c in src.cells if c.cell_type == "markdown"
                 for m in re.findall(r"^\$\$\s*\(([\w:-]+)\)\s*$", c.source, re.M)]
    labels.equations = {lab: i + 1 for i, lab in enumerate(eq_labels)}

    number = name.split("_")[0].lstrip("0") or "0"
    chapter = Chapter(name=name, number=number, title=name, executed=executed is not None)
    section: Section | None = None
    region = "intro"  # intro, overview, section, summary, exercises, skip
    in_solution = False
    for idx, cell in enumerate(src.cells):
        run = executed.cells[idx] if executed is not None else cell
        if cell.cell_type == "markdown":
            source = _resolve_roles(cell.source, labels)
            if source.lstrip().startswith(":::{solution-start}"):
                in_solution = True
            if in_solution:
                in_solution = ":::{solution-end}" not in source
                continue
            if source.lstrip().startswith(WHAT_TO_SEE) and section is not None and section.figures:
                # the figure's reading note (a markdown cell under it): its speaker notes
                fig = section.figures[-1]
                note = source.strip()
                fig.notes = f"{fig.notes}\n\n{note}".strip() if fig.notes else note
                continue
            tokens = MD.parse(source)
            for block in _blocks(tokens):
                head = block[0]
                if head.type == "heading_open":
                    title = block[1].content.strip()
                    level = int(head.tag[1])
                    if level == 1:
                        chapter.title = re.sub(r"^\d+\.\s*", "", title)
                        region = "intro"
                    elif level <= 3 and _special(title):
                        region = _special(title)
                        section = None
                    elif level == 2 or (level == 3 and region in ("section", "subsection")):
                        section = Section(title=title, level=level)
                        chapter.sections.append(section)
                        region = "section" if level == 2 else "subsection"
                    continue
                if head.type in ("colon_fence", "fence"):
                    if region == "exercises" and head.info.startswith("{exercise}"):
                        kind = head.info.removeprefix("{exercise}").strip()
                        body = "\n".join(ln for ln in head.content.splitlines() if not ln.startswith(":"))
                        chapter.exercises.append((kind, _cut_sentences(body.strip(), 260)[0]))
                    continue  # derivations, notes, directives: the book's, not the slides'
                if head.type == "html_block":
                    continue
                lines = source.splitlines()
                text = "\n".join(lines[head.map[0]:head.map[1]]) if head.map else ""
                label_only = re.fullmatch(r"\*\*[^*]+\*\*[.:]?", text.strip()) is not None
                if region in ("intro", "overview"):
                    if head.type == "paragraph_open" and not chapter.lead and not label_only:
                        chapter.lead = text
                    elif head.type == "bullet_list_open" and not chapter.learn:
                        chapter.learn = _list_items(block, source)
                elif region == "summary":
                    if head.type == "bullet_list_open":
                        chapter.summary += _list_items(block, source)
                elif region in ("section", "subsection") and section is not None:
                    if not re.fullmatch(r"\*≈\s*\d+\s*min\*", text.strip()):  # reading time
                        section.blocks.append(block)
        elif cell.cell_type == "code" and not in_solution and section is not None and region != "skip":
            if "hide-input" in cell.metadata.get("tags", []):
                section.claims += _claims(run)
            fig = cell.metadata.get("mystnb", {}).get("figure", {})
            png = _image(run)
            if png is not None and fig.get("name"):
                caption = _resolve_roles(fig.get("caption", ""), labels)
                first, rest = (caption.split("\n\n", 1) + [""])[:2]
                alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt") or f"Figure: {section.title}"
                section.figures.append(Figure(fig["name"], labels.figures.get(fig["name"]), png, first, rest, alt))
    chapter._labels = labels  # type: ignore[attr-defined]
    return chapter


# --------------------------------------------------------------------------- HTML


def _md_inline(text: str, labels: Labels) -> str:
    """Render markdown; a single paragraph loses its <p>."""
    out = _render(MD.parse(text), labels).strip()
    if out.startswith("<p>") and out.endswith("</p>") and out.count("<p>") == 1:
        out = out[3:-4]
    return out


def _lines(text: str, per_line: int) -> int:
    """Estimated number of lines of ``text`` (markdown, math counted short) at ``per_line`` characters."""
    plain = re.sub(r"\$[^$]*\$", "xxxxxx", text)
    return max(1, -(-len(plain) // per_line))


def _eq_height(block: list[Token]) -> int:
    tex = block[0].content
    return 70 + 34 * tex.count("\\\\") + (20 if re.search(r"\\(frac|sum|underbrace|prod|int)", tex) else 0)


def _pack(heights: list[int], budget: int = BUDGET) -> list[list[int]]:
    """Group consecutive items (by index) into slides of at most ``budget`` px, balanced."""
    total = sum(heights)
    n_slides = max(1, -(-total // budget))
    target = total / n_slides
    groups: list[list[int]] = [[]]
    used = 0
    for i, h in enumerate(heights):
        if groups[-1] and (used + h > budget or (used >= target and len(groups) < n_slides)):
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += h
    return groups


def _section_slides(ch: Chapter, s: Section, labels: Labels) -> list[str]:
    paragraphs = [b for b in s.blocks if b[0].type == "paragraph_open"]
    equations = [b for b in s.blocks if b[0].type in ("math_block", "math_block_label", "amsmath")]
    equations.sort(key=lambda b: b[0].type != "math_block_label")  # labelled (referenced) ones first
    lead_html, notes, lead_h = "", [], 0
    if paragraphs:
        first = "".join(t.content for t in paragraphs[0] if t.type == "inline")
        lead, rest = _cut_sentences(first, LEAD_CHARS)
        lead_html = f'<p class="lead">{_md_inline(lead, labels)}</p>'
        lead_h = 36 * _lines(lead, 95) + 24
        if rest:
            notes.append(_md_inline(rest, labels))
        notes += [_render(p, labels) for p in paragraphs[1:4]]
    title = _md_inline(s.title, labels)
    note_html = f'<aside class="notes">{"".join(notes)}</aside>' if notes else ""
    claim_h = [28 * _lines(c, 120) + 8 for c in s.claims]
    # the lead and the first equations; more equations on continuation slides
    eq_groups = [equations[i:i + MAX_EQUATIONS] for i in range(0, len(equations), MAX_EQUATIONS)] or [[]]
    pages: list[list[str]] = []
    used = 0
    for i, eqs in enumerate(eq_groups):
        pages.append([lead_html if i == 0 else ""] + [_render(e, labels) for e in eqs])
        used = (lead_h if i == 0 else 0) + sum(_eq_height(e) for e in eqs)
    # the checked claims: on the last slide if they fit, else on slides of their own
    claims = list(range(len(s.claims)))
    if claims and used + 50 + sum(claim_h) <= BUDGET:
        pages[-1].append(_claims_html(s.claims))
        claims = []
    extra = [] if not claims else [[_claims_html([s.claims[i] for i in g])]
                                   for g in _pack([claim_h[i] for i in claims], BUDGET - 50)]
    slides = []
    for i, body in enumerate(pages + extra):
        cont = "" if i == 0 else f' <span class="cont">({"checked" if i >= len(pages) else "continued"})</span>'
        slides.append(f'<section class="section-slide"><h2>{title}{cont}</h2>{"".join(body)}'
                      f'{note_html if i == 0 else ""}</section>')
    for f in s.figures:
        num = f"Figure {f.number}" if f.number else "Figure"
        img = f"img/{ch.name}-{f.label}.png"
        fig_notes = f'<aside class="notes">{_md_inline(f.notes, labels)}</aside>' if f.notes.strip() else ""
        slides.append(
            f'<section class="figure-slide"><h3>{title}</h3>'
            f'<figure><img src="{img}" alt="{html.escape(f.alt)}">'
            f'<figcaption><b>{num}.</b> {_md_inline(_cut_sentences(f.caption, 300)[0], labels)}</figcaption>'
            f"</figure>{fig_notes}</section>")
    return slides


def _claims_html(claims: list[str]) -> str:
    items = "".join(f"<li>{html.escape(c)}</li>" for c in claims)
    return f'<div class="claims"><p class="claims-head">Checked when the notebook runs</p><ul>{items}</ul></div>'


def _bullets(title: str, items: list[str], labels: Labels, cls: str, per_line: int = 85,
             footer: str = "") -> list[str]:
    """Bullet slides, as many as the items need, balanced."""
    groups = _pack([36 * _lines(it, per_line) + 12 for it in items], BUDGET - (40 if footer else 0))
    out = []
    for i, g in enumerate(groups):
        cont = f' <span class="cont">({i + 1}/{len(groups)})</span>' if len(groups) > 1 else ""
        lis = "".join(f"<li>{_md_inline(items[j], labels)}</li>" for j in g)
        out.append(f'<section class="{cls}"><h2>{title}{cont}</h2><ul>{lis}</ul>{footer}</section>')
    return out


def learn_items(ch: Chapter) -> list[str]:
    """The overview's list; else the bold lead-ins of the key points; else the section titles."""
    if ch.learn:
        return ch.learn
    leads = [m.group(1).rstrip(".") for it in ch.summary if (m := re.match(r"\*\*(.+?)\*\*", it))]
    if leads and len(leads) == len(ch.summary):
        return leads
    return [s.title for s in ch.sections if s.level == 2]  # the roadmap, then


def deck_html(ch: Chapter, pdf: bool = True) -> tuple[str, int, int]:
    """The deck's HTML, its number of slides and of figures."""
    labels: Labels = ch._labels  # type: ignore[attr-defined]
    book_page = f"../book/{ch.name}.html"
    slides = [
        f'<section class="title-slide"><p class="kicker">{html.escape(SITE_TITLE)} · Chapter {ch.number}</p>'
        f"<h1>{_md_inline(ch.title, labels)}</h1>"
        f'<p class="lead">{_md_inline(_cut_sentences(ch.lead, 520)[0], labels)}</p>'
        f'<p class="links"><a href="{book_page}">the chapter</a> · '
        + (f'<a href="{ch.name}.pdf">PDF handout</a> · ' if pdf else "")
        + '<a href="index.html">all decks</a></p></section>'
    ]
    learn = learn_items(ch)
    if learn:
        slides += _bullets("What you will learn", learn, labels, "learn-slide")
    top = [s for s in ch.sections if s.level == 2]
    if top and learn != [s.title for s in top]:
        lis = "".join(f"<li>{_md_inline(s.title, labels)}</li>" for s in top)
        slides.append(f'<section class="roadmap"><h2>Roadmap</h2><ol class="roadmap-list">{lis}</ol></section>')
    for s in ch.sections:
        if s.blocks or s.claims or s.figures:
            slides += _section_slides(ch, s, labels)
    if ch.summary:
        slides += _bullets("Key points", ch.summary, labels, "summary-slide")
    if ch.exercises:
        items = [f"**{i + 1}** ({kind or 'exercise'}): {text}" for i, (kind, text) in enumerate(ch.exercises)]
        footer = f'<p class="small">Worked solutions: <a href="{book_page}">the chapter</a>.</p>'
        slides += _bullets("Exercises", items, labels, "exercise-slide", per_line=100, footer=footer)
    # static slide numbers (reveal.js's own is a link to "#/", a dangling anchor for link checkers)
    slides = [sl.replace("</section>", f'<p class="slide-no">{i + 1} / {len(slides)}</p></section>', 1)
              if sl.count("</section>") == 1 else sl for i, sl in enumerate(slides)]
    n_fig = sum(len(s.figures) for s in ch.sections)
    title = f"Chapter {ch.number}: {re.sub(r'[$`*]', '', ch.title)} (slides)"
    page = TEMPLATE.format(title=html.escape(title), slides="\n".join(slides), width=WIDTH, height=HEIGHT,
                           generator=GENERATOR)
    return page, len(slides), n_fig


GENERATOR = "scripts/build_slides.py (from the chapter notebook; do not edit)"
TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="{generator}">
<title>{title}</title>
<link rel="stylesheet" href="_assets/reveal/reveal.css">
<link rel="stylesheet" href="_assets/reveal/theme/white.css">
<link rel="stylesheet" href="_assets/slides.css">
</head>
<body>
<div class="reveal"><div class="slides">
{slides}
</div></div>
<script src="_assets/reveal/reveal.js"></script>
<script src="_assets/reveal/plugin/notes.js"></script>
<script>
// MathJax typesets first, then reveal.js lays the slides out (and, with ?print-pdf, paginates).
window.MathJax = {{
  tex: {{inlineMath: [["\\\\(", "\\\\)"]], displayMath: [["\\\\[", "\\\\]"]], tags: "none"}},
  options: {{ignoreHtmlClass: "no-math"}},
  startup: {{pageReady: function () {{
    return MathJax.startup.defaultPageReady().then(function () {{
      // a display formula wider than the slide is scaled down to fit (not below half size)
      var fit = function (root) {{
        root.querySelectorAll(".eq").forEach(function (e) {{
          var m = e.querySelector("mjx-math");
          if (!m || e.clientWidth === 0) return;
          m.parentNode.style.fontSize = "";
          var r = e.getBoundingClientRect().width / m.getBoundingClientRect().width;
          if (r < 1) m.parentNode.style.fontSize = Math.max(0.5, 0.98 * r) * 100 + "%";
        }});
      }};
      Reveal.on("ready", function (ev) {{ fit(ev.currentSlide); }});
      Reveal.on("slidechanged", function (ev) {{ fit(ev.currentSlide); }});
      Reveal.on("pdf-ready", function () {{ fit(document); }});
      return Reveal.initialize({{width: {width}, height: {height}, margin: 0.04, center: false, hash: true,
        slideNumber: false, transition: "none", pdfMaxPagesPerSlide: 1, plugins: [RevealNotes]}});
    }}).then(function () {{ window.slidesReady = true; }});
  }}}}
}};
</script>
<script src="_assets/mathjax/tex-chtml.js"></script>
</body>
</html>
"""

CSS = """/* Written by scripts/build_slides.py. */
.reveal {{ font-size: 28px; }}
.reveal h1, .reveal h2, .reveal h3 {{ text-transform: none; }}
.reveal h1 {{ font-size: 1.9em; }}
.reveal h2 {{ font-size: 1.35em; margin-bottom: 0.5em; }}
.reveal h3 {{ font-size: 1.0em; margin-bottom: 0.3em; }}
.reveal .slides section {{ text-align: left; }}
.reveal p, .reveal li {{ line-height: 1.35; }}
.reveal ul, .reveal ol {{ display: block; margin-left: 1.2em; }}
.reveal li {{ margin-bottom: 0.35em; }}
.reveal .kicker {{ color: #555; font-size: 0.8em; margin-top: 2.5em; }}
.reveal .lead {{ font-size: 0.95em; }}
.reveal .links, .reveal .small, .reveal .cont {{ font-size: 0.7em; color: #444; }}
.reveal .eq {{ margin: 0.4em 0; font-size: 0.95em; overflow: hidden; }}
.reveal .claims {{ border-left: 6px solid #2a7d2e; padding: 0.1em 0 0.1em 0.7em; margin-top: 0.6em;
  font-size: 0.72em; }}
.reveal .claims ul {{ list-style: none; margin-left: 0; }}
.reveal .claims li::before {{ content: "\\2713\\00a0"; color: #2a7d2e; font-weight: bold; }}
.reveal .claims-head {{ margin: 0.2em 0; font-weight: 600; color: #1f5e22; }}
.reveal .figure-slide figure {{ margin: 0; text-align: center; }}
.reveal .figure-slide img {{ max-height: {img_h}px; max-width: 100%; margin: 0.2em auto; display: block; }}
.reveal figcaption {{ font-size: 0.62em; text-align: left; line-height: 1.3; }}
.reveal .roadmap-list li {{ margin-bottom: 0.2em; }}
.reveal .exercise-slide li {{ font-size: 0.85em; }}
.reveal a {{ color: #1a5fb4; text-decoration: underline; }}
.reveal .slide-no {{ position: absolute; top: {no_top}px; right: 0; margin: 0; font-size: 0.55em; color: #555; }}
"""

INDEX = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Lecture slides: {site}</title>
<style>body {{ font-family: system-ui, sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em;
  color: #222; }} td, th {{ padding: 0.3em 0.8em; text-align: left; }} a {{ color: #1a5fb4; }}</style>
</head>
<body>
<main>
<h1>Lecture slides</h1>
<p>One deck per chapter of <a href="../book/intro.html">{site}</a>, built from the chapter's notebook by
<code>scripts/build_slides.py</code>. Arrow keys move, <kbd>s</kbd> opens the speaker notes, <kbd>f</kbd>
goes full screen; each deck has a PDF handout (one slide per page).</p>
<table>
<thead><tr><th>chapter</th><th>deck</th><th>slides</th><th>figures</th><th>handout</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p>See <a href="../book/instructors.html">For instructors</a> for schedules and assignments.</p>
</main>
</body>
</html>
"""


# --------------------------------------------------------------------------- build


def toc_chapters(root: Path) -> list[Path]:
    """Every notebook listed in ``_toc.yml``, in book order."""
    toc_path = root / "_toc.yml"
    if not toc_path.is_file():
        raise SlidesError(f"no {toc_path}: run from the repository (or pass --root)")
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    files: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(str(node["file"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    return [root / f"{f}.ipynb" for f in files if (root / f"{f}.ipynb").is_file()]


def _code_key(nb: nbformat.NotebookNode) -> str:
    return hashlib.sha256(json.dumps([c.source for c in nb.cells if c.cell_type == "code"]).encode()).hexdigest()


def executed_copy(src_path: Path, src: nbformat.NotebookNode, root: Path, execute: bool,
                  cache: Path) -> nbformat.NotebookNode | None:
    """The chapter run cell for cell: the book build's copy or execution cache, our cached run, or a run."""
    rel = src_path.relative_to(root)
    key = _code_key(src)
    for cand in (root / "_build" / "jupyter_execute" / rel, cache / rel.name):
        if cand.is_file():
            nb = nbformat.read(cand, as_version=4)
            has_outputs = any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
            if len(nb.cells) == len(src.cells) and _code_key(nb) == key and has_outputs:
                return nb
    jcache = root / "_build" / ".jupyter_cache"  # the book build's execution cache (keyed on the code)
    if jcache.is_dir():
        from jupyter_cache import get_cache

        try:
            return get_cache(str(jcache)).merge_match_into_notebook(nbformat.from_dict(src))[1]
        except KeyError:
            pass
    if not execute:
        return None
    from nbclient import NotebookClient

    t0 = time.perf_counter()
    print(f"  executing {rel} (no up-to-date executed copy) ...", flush=True)
    nb = nbformat.read(src_path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(src_path.parent)}}).execute()
    cache.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, cache / rel.name)
    print(f"  executed {rel} in {time.perf_counter() - t0:.0f} s", flush=True)
    return nb


def copy_assets(root: Path, out: Path) -> None:
    """reveal.js and MathJax from node_modules (npm ci), served next to the decks."""
    reveal, mathjax = root / "node_modules" / "reveal.js" / "dist", root / "node_modules" / "mathjax" / "es5"
    for p, pkg in ((reveal, "reveal.js"), (mathjax, "mathjax")):
        if not p.is_dir():
            raise SlidesError(f"{p} is missing: run `npm ci` first (package.json pins {pkg})")
    assets = out / "_assets"
    if assets.exists():
        shutil.rmtree(assets)
    (assets / "reveal" / "theme").mkdir(parents=True)
    (assets / "reveal" / "plugin").mkdir()
    for f in ("reveal.css", "reveal.js", "theme/white.css", "plugin/notes.js"):
        shutil.copy2(reveal / f, assets / "reveal" / f)
    shutil.copy2(reveal.parent / "LICENSE", assets / "reveal" / "LICENSE")
    shutil.copytree(mathjax, assets / "mathjax",
                    ignore=lambda d, names: [n for n in names if Path(d) == mathjax and n.endswith(".js")
                                             and n != "tex-chtml.js"])
    (assets / "slides.css").write_text(CSS.format(img_h=int(HEIGHT * 0.62), no_top=HEIGHT - 30), encoding="utf-8")


def build(root: Path, out: Path, chapters: list[str] | None, execute: bool, text_only: bool,
          pdf: bool) -> list[dict]:
    """Build the decks (and handouts); return what each holds."""
    t0 = time.perf_counter()
    paths = toc_chapters(root)
    if chapters:
        known = {p.stem: p for p in paths}
        unknown = [c for c in chapters if c.removesuffix(".ipynb").split("/")[-1] not in known]
        if unknown:
            raise SlidesError(f"--chapters {' '.join(unknown)}: not a notebook of _toc.yml "
                              f"(known: {', '.join(known)})")
        paths = [known[c.removesuffix(".ipynb").split("/")[-1]] for c in chapters]
    if not paths:
        raise SlidesError("_toc.yml lists no notebook: nothing to build")
    node = shutil.which("node")
    if pdf and node is None:
        raise SlidesError("--pdf needs Node.js (node) and `npm ci` (playwright-core)")
    cache = root / "_build" / "slides_execute"
    sources, missing = [], []
    for path in paths:  # every executed copy first: nothing is written when one is missing
        src = nbformat.read(path, as_version=4)
        run = None if text_only else executed_copy(path, src, root, execute, cache)
        if run is None and not text_only:
            missing.append(path.relative_to(root).as_posix())
        sources.append((path, src, run))
    if missing:
        raise SlidesError(f"no up-to-date executed copy of {', '.join(missing)} in _build/jupyter_execute "
                          "or the execution cache: run `jupyter-book build --all .` first, or pass --execute "
                          "(runs them) or --text-only (decks without figures and claims)")
    out.mkdir(parents=True, exist_ok=True)
    copy_assets(root, out)
    (out / "img").mkdir(exist_ok=True)
    cites = _bibliography(root / "book" / "references.bib")
    built = []
    for path, src, run in sources:
        ch = parse_chapter(src, path.stem, run, cites)
        page, n_slides, n_fig = deck_html(ch, pdf)
        for old in (out / "img").glob(f"{ch.name}-*.png"):
            old.unlink()
        for sec in ch.sections:
            for f in sec.figures:
                (out / "img" / f"{ch.name}-{f.label}.png").write_bytes(f.png)
        (out / f"{ch.name}.html").write_text(page, encoding="utf-8")
        if not pdf:
            (out / f"{ch.name}.pdf").unlink(missing_ok=True)  # a stale handout would not match the deck
        built.append({"name": ch.name, "chapter": ch.number, "title": ch.title, "slides": n_slides,
                      "figures": n_fig, "claims": sum(len(sec.claims) for sec in ch.sections),
                      "executed": ch.executed, "html": f"{ch.name}.html",
                      "pdf": f"{ch.name}.pdf" if pdf else None})
        print(f"{ch.name}: {n_slides} slides, {n_fig} figures, {built[-1]['claims']} checked claims", flush=True)
    # with --chapters, the other decks already built stay listed; decks of chapters no longer in
    # _toc.yml (written by this script) are removed
    order = [p.stem for p in toc_chapters(root)]
    by_name = {m["name"]: m for m in _read_manifest(out) if m["name"] in order and (out / m["html"]).is_file()}
    by_name.update({m["name"]: m for m in built})
    manifest = sorted(by_name.values(), key=lambda m: order.index(m["name"]))
    for stale in out.glob("*.html"):
        if stale.name != "index.html" and stale.stem not in by_name and GENERATOR in stale.read_text("utf-8"):
            stale.unlink()
            stale.with_suffix(".pdf").unlink(missing_ok=True)
            for img in (out / "img").glob(f"{stale.stem}-*.png"):
                img.unlink()
    rows = "\n".join(
        f'<tr><td>{m["chapter"]}</td><td><a href="{m["html"]}">{_md_inline(m["title"], Labels())}</a></td>'
        f'<td>{m["slides"]}</td><td>{m["figures"]}</td>'
        + (f'<td><a href="{m["pdf"]}">PDF</a></td></tr>' if m["pdf"] else "<td>(not built)</td></tr>")
        for m in manifest)
    (out / "index.html").write_text(INDEX.format(site=html.escape(SITE_TITLE), rows=rows), encoding="utf-8")
    (out / "decks.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    t_html = time.perf_counter() - t0
    print(f"{len(built)} decks built in {t_html:.1f} s; {len(manifest)} listed in {out / 'index.html'}", flush=True)
    if pdf:
        t1 = time.perf_counter()
        proc = subprocess.run([str(node), str(root / "scripts" / "print_slides.mjs"), str(out),
                               *(m["name"] for m in built)], cwd=root)
        if proc.returncode != 0:
            raise SlidesError(f"printing the handouts failed (exit {proc.returncode}; see above)")
        print(f"{len(built)} PDF handouts in {time.perf_counter() - t1:.1f} s", flush=True)
    return built


def _read_manifest(out: Path) -> list[dict]:
    try:
        data = json.loads((out / "decks.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [m for m in data if isinstance(m, dict) and {"name", "html"} <= m.keys()] if isinstance(data, list) else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: _build/html/slides)")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this script's)")
    parser.add_argument("--chapters", nargs="+", metavar="NAME",
                        help="only these notebooks (e.g. 04_test_time_scaling)")
    parser.add_argument("--execute", action="store_true", help="run chapters that have no executed copy")
    parser.add_argument("--text-only", action="store_true", help="no figures or claims (no executed copy needed)")
    parser.add_argument("--pdf", action="store_true", help="also print a PDF handout per deck (Chromium)")
    args = parser.parse_args(argv)
    if args.execute and args.text_only:
        parser.error("--execute and --text-only exclude each other: pick one")
    root = args.root.resolve()
    out = (args.out or root / "_build" / "html" / "slides").resolve()
    try:
        build(root, out, args.chapters, args.execute, args.text_only, args.pdf)
    except SlidesError as exc:
        print(f"build_slides: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
