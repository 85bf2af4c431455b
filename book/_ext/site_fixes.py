"""Sphinx extension for the course site (loaded through ``sphinx.local_extensions``).

1. sphinx-thebe 0.3.1 registers its inline configuration script twice under Sphinx 7.4,
   so every page throws "Identifier 'THEBE_JS_URL' has already been declared": drop
   repeated inline scripts.
2. The widget manager (``@jupyter-widgets/html-manager`` 1.x), served locally from
   ``_static/html-manager``, resolves its icon fonts relative to its AMD module id and
   calls the MathJax 2 API (``MathJax.Hub.Queue``) while the book uses MathJax 3: map
   the module id to the served folder and forward typesetting to MathJax 3.
3. A cell that runs past ``execute.timeout`` fails the build with nbclient's message,
   which quotes the cell but gives neither its number nor its id: prefix both (and
   the first line) so the failing cell is found at once.
4. myst-nb registers its hidden-input node (``hide-input`` cells) for the ``html``
   builder only: register it for ``singlehtml`` too (the PDF is printed from that build).
5. Every page's footer links the PDF of the whole book (``book.pdf`` at the site
   root, copied there by ``scripts/build_pdf.py``).
"""

from __future__ import annotations

from typing import Any

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


def _name_timed_out_cells() -> None:
    """Make nbclient's CellTimeoutError say which cell (number, id, first line) timed out."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError

    original = NotebookClient.async_execute_cell
    if getattr(original, "_names_cells", False):
        return

    async def async_execute_cell(self: Any, cell: Any, cell_index: int, *args: Any, **kwargs: Any) -> Any:
        try:
            return await original(self, cell, cell_index, *args, **kwargs)
        except CellTimeoutError as exc:
            first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
            raise CellTimeoutError(
                f"cell {cell_index} (0-based, markdown cells counted; id {cell.get('id', '?')}, "
                f"first line {first[:70]!r}) ran past the per-cell timeout of {self.timeout} s "
                f"(_config.yml execute.timeout).\n{exc}"
            ) from None

    async_execute_cell._names_cells = True  # type: ignore[attr-defined]
    NotebookClient.async_execute_cell = async_execute_cell  # type: ignore[method-assign]


PDF_LINK = '<a href="%s">The whole book as a PDF</a> (typeset math, every figure).'
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
    _name_timed_out_cells()
    _singlehtml_nodes(app)
    app.connect("html-page-context", _fix_scripts, priority=900)
    app.connect("html-page-context", _pdf_footer)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
