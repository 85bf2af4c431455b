"""Sphinx extension for the course site (loaded through ``sphinx.local_extensions``).

1. sphinx-thebe 0.3.1 registers its inline configuration script twice under Sphinx 7.4,
   so every page throws "Identifier 'THEBE_JS_URL' has already been declared": drop
   repeated inline scripts.
2. The widget manager (``@jupyter-widgets/html-manager`` 1.x), served locally from
   ``_static/html-manager``, resolves its icon fonts relative to its AMD module id and
   calls the MathJax 2 API (``MathJax.Hub.Queue``) while the book uses MathJax 3: map
   the module id to the served folder and forward typesetting to MathJax 3.
3. How the chapters are executed (``execution_guard``, beside this file): a generous
   per-cell limit read in slices, so a slow cell on a busy laptop runs on and says so
   while the client stall of jupyter/nbclient#312 is recovered or named; a line per
   chapter with its expected time; tqdm bars echoed to the build log; a chapter that
   fails is reported as the course's error (named cell, this repository's tracker),
   not with Sphinx's "report this to sphinx-doc".
4. myst-nb registers its hidden-input node (``hide-input`` cells) for the ``html``
   builder only: register it for ``singlehtml`` too (the PDF is printed from that build).
5. Every page's footer links the PDF of the whole book (``book.pdf`` at the site
   root, copied there by ``scripts/build_pdf.py``). The link is rendered hidden and
   ``_static/site.js`` shows it once the file answers: a build without the PDF (the
   README's build command) shows no dead link.
"""

from __future__ import annotations

from typing import Any

import execution_guard  # book/_ext, on sys.path as the local extensions' folder
from sphinx.application import Sphinx
from sphinx.builders.html._assets import _JavaScript

WIDGET_SHIM = """require.config({paths: {"@jupyter-widgets/html-manager/dist": "%s"}});
window.addEventListener("DOMContentLoaded", function () {
  if (window.MathJax && !window.MathJax.Hub) {
    window.MathJax.Hub = {Queue: function (job) {
      var el = job && job[2];
      if (window.MathJax.typesetPromise) { window.MathJax.typesetPromise(el ? [el] : undefined).catch(function () {}); }
    }};
  }
});"""


def _fix_scripts(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        name = getattr(js, "filename", None) or ""
        key = (name, tuple(sorted(getattr(js, "attributes", {}).items())))
        if not name and key in seen:
            continue
        seen.add(key)
        kept.append(js)
    for i, js in enumerate(kept):
        if (getattr(js, "filename", None) or "").endswith("html-manager/embed-amd.js"):
            base = context["pathto"]("_static/html-manager", 1)
            kept.insert(i, _JavaScript("", priority=js.priority, body=WIDGET_SHIM % base))
            break
    context["script_files"] = kept


PDF_LINK = ('<span class="course-pdf-link" hidden><a href="%s">The whole book as a PDF</a> '
            "(typeset math, every figure).</span>")
LICENCE = (
    'Code: <a href="{repo}/blob/main/LICENSE">MIT</a>. Text and figures: '
    '<a href="https://creativecommons.org/licenses/by/4.0/">CC BY 4.0</a> '
    '(<a href="{repo}/blob/main/LICENSE-CONTENT.md">terms</a>). To cite the course: '
    '<a href="{repo}/blob/main/CITATION.cff">CITATION.cff</a>.'
)


def _pdf_footer(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    if app.builder.format == "html" and app.builder.name != "singlehtml":
        footer = PDF_LINK % context["pathto"]("book.pdf", 1)
        # the repository address comes from _config.yml (repository.url), its one home
        repo = (app.config.html_theme_options or {}).get("repository_url", "").rstrip("/")
        if repo:
            footer = f"<p>{footer}</p><p>{LICENCE.format(repo=repo)}</p>"
        context["theme_extra_footer"] = footer


def _singlehtml_nodes(app: Sphinx) -> None:
    from myst_nb.sphinx_ import (
        HideCodeCellNode,
        depart_HideCellInput,
        visit_HideCellInput,
    )

    app.registry.add_translation_handlers(HideCodeCellNode, singlehtml=(visit_HideCellInput, depart_HideCellInput))


def setup(app: Sphinx) -> dict[str, Any]:
    execution_guard.setup(app)
    _singlehtml_nodes(app)
    app.connect("html-page-context", _fix_scripts, priority=900)
    app.connect("html-page-context", _pdf_footer)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
