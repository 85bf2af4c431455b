"""Sphinx extension for the course site (loaded through ``sphinx.local_extensions``).

1. sphinx-thebe 0.3.1 registers its inline configuration script twice under Sphinx 7.4,
   so every page throws "Identifier 'THEBE_JS_URL' has already been declared": drop
   repeated inline scripts.
2. The widget manager (``@jupyter-widgets/html-manager`` 1.x), served locally from
   ``_static/html-manager``, resolves its icon fonts relative to its AMD module id and
   calls the MathJax 2 API (``MathJax.Hub.Queue``) while the book uses MathJax 3: map
   the module id to the served folder and forward typesetting to MathJax 3.
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


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("html-page-context", _fix_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
