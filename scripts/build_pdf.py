"""Build the whole book as one PDF: ``_build/pdf/book.pdf`` (also copied to ``_build/html``).

Route: the single-page HTML build (``jupyter-book build --builder singlehtml``, executed
outputs from the same cache as the HTML build) printed by headless Chromium once MathJax
has typeset every formula (``scripts/print_pdf.mjs``). Math, figures, bibliography and
cross-references (as PDF links) are those of the site. Needs ``npm ci`` and Chromium
(``CHROMIUM`` names the browser, default ``/usr/bin/chromium``).

    python scripts/build_pdf.py            # from the repository root
    python scripts/build_pdf.py --toc _toc_part.yml   # a PDF of some chapters only

Worked solutions are printed in an appendix (a link stays in each chapter); the print
layout never cuts a code line, equation or table at the page edge (see print_pdf.mjs).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "_build" / "pdf" / "book.pdf")
    ap.add_argument("--no-copy", action="store_true", help="do not copy into _build/html")
    ap.add_argument("--toc", type=Path,
                    help="another table of contents, e.g. some chapters (default: _toc.yml; warnings then allowed)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    # A singlehtml build from the cache rewrites _build/jupyter_execute/**.ipynb without
    # outputs (myst-nb 1.4); the browser test counts figures there: keep the HTML build's.
    executed = ROOT / "_build" / "jupyter_execute"
    saved = {p: p.read_bytes() for p in executed.rglob("*.ipynb")} if executed.is_dir() else {}
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    # a part of the book has references to the rest: its warnings are not errors
    opts = ["--toc", str(args.toc)] if args.toc else ["--warningiserror", "--keep-going"]
    subprocess.run([jb, "build", "--builder", "singlehtml", *opts, str(ROOT)], check=True, cwd=ROOT)
    for path, data in saved.items():
        path.write_bytes(data)
    index = ROOT / "_build" / "singlehtml" / "index.html"
    if not index.exists():
        raise SystemExit(f"{index} was not built")
    redirect = re.search(r'url=([^"]+)"', index.read_text(encoding="utf8")[:500])
    if redirect:  # Jupyter Book writes index.html as a redirect to the root document
        index = index.parent / redirect.group(1)
    page = index.relative_to(index.parents[0] if not redirect else ROOT / "_build" / "singlehtml")
    subprocess.run(["node", str(ROOT / "scripts" / "print_pdf.mjs"), str(ROOT / "_build" / "singlehtml"),
                    page.as_posix(), str(args.out)],
                   check=True, cwd=ROOT)
    html = ROOT / "_build" / "html"
    if not args.no_copy and html.is_dir():
        shutil.copy2(args.out, html / "book.pdf")
    print(f"{args.out} built in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
