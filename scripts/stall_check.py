"""Execute the book's chapters under nbclient and report stalls and image outputs.

A *stall* is a cell whose execute reply the kernel sent (its timestamp) long before
nbclient went on: the kernel sat idle while the client waited. The report also gives
each chapter's image-output count (figures on, whatever ``MPLBACKEND`` says).

Usage (from the repository root, ``PYTHONPATH=.``)::

    python scripts/stall_check.py -n 3 -p 2 --load 2          # every chapter 3x, 2 at once
    python scripts/stall_check.py --micro 200 --pattern interactive   # the race, in isolation

``--micro K`` executes a small notebook of K explorer cells instead of the chapters:
``--pattern interactive`` builds them with ``ipywidgets.interactive`` (the old cells),
``--pattern explorer`` with :func:`tts_lib.plotting.explorer` (the current ones).
Exit status 1 when any stall or failed execution was seen.
"""

from __future__ import annotations

import argparse
import glob
import json
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

MICRO_HEAD = """import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display
try:
    from tts_lib.plotting import explorer, use_style
except ImportError:
    from tts_lib.plotting import use_style
use_style()

def draw(a=1.0):
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, a])
    return fig

def draw_show(a=1.0):
    draw(a)
    plt.show()
"""
MICRO_CELL = {
    "interactive": "display(widgets.interactive(draw_show, a=widgets.FloatSlider(value=1.0)))",
    "explorer": "display(explorer(draw, a=widgets.FloatSlider(value=1.0)))",
}


def _micro_notebook(cells: int, pattern: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(MICRO_HEAD)]
    nb.cells += [nbformat.v4.new_code_cell(MICRO_CELL[pattern]) for _ in range(cells)]
    return nb


def _count_images(nb: nbformat.NotebookNode) -> int:
    return sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if any(k.startswith("image/") for k in out.get("data", {}))
    )


def execute_once(job: tuple[str, int, int, float, str, int]) -> dict:
    """Execute one notebook; return its per-cell timings, stalls and image count."""
    path, run, timeout, stall_s, pattern, micro = job
    from nbclient import NotebookClient

    if micro:
        nb = _micro_notebook(micro, pattern)
        cwd = str(ROOT)
    else:
        nb = nbformat.read(path, as_version=4)
        cwd = str(Path(path).parent)
    cells: list[dict] = []

    def on_executed(cell, cell_index, execute_reply):  # noqa: ANN001
        now = datetime.now(UTC)
        sent = execute_reply["header"]["date"]
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=UTC)
        started = cell.metadata.get("execution", {}).get("iopub.execute_input")
        cells.append({"cell": cell_index, "lag_s": (now - sent).total_seconds(),
                      "wall_s": time.monotonic() - t_cell[0], "start": started})

    t_cell = [time.monotonic()]

    def on_start(cell, cell_index):  # noqa: ANN001
        t_cell[0] = time.monotonic()

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": cwd}}, record_timing=True,
                            on_cell_start=on_start, on_cell_executed=on_executed)
    t0 = time.monotonic()
    error = None
    try:
        client.execute()
    except Exception as exc:  # reported, not raised: the run goes on
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    stalls = [c for c in cells if c["lag_s"] > stall_s]
    return {"notebook": Path(path).name if not micro else f"micro-{pattern}-{micro}",
            "run": run, "seconds": round(time.monotonic() - t0, 1),
            "images": _count_images(nb), "stalls": stalls,
            "max_lag_s": round(max((c["lag_s"] for c in cells), default=0.0), 3),
            "slowest_cell": max(cells, key=lambda c: c["wall_s"], default=None),
            "error": error}


def _burn() -> None:
    while True:
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--runs", type=int, default=3, help="executions per chapter")
    ap.add_argument("-p", "--parallel", type=int, default=1, help="executions at once")
    ap.add_argument("--load", type=int, default=0, help="busy-loop processes beside them")
    ap.add_argument("--timeout", type=int, default=120, help="per-cell timeout (s)")
    ap.add_argument("--stall", type=float, default=5.0,
                    help="a cell whose reply waited longer than this (s) is a stall")
    ap.add_argument("--mplbackend", choices=["keep", "unset", "agg"], default="keep",
                    help="MPLBACKEND for the kernels (keep: as in this shell)")
    ap.add_argument("--micro", type=int, default=0, help="K synthetic explorer cells")
    ap.add_argument("--pattern", choices=sorted(MICRO_CELL), default="explorer")
    ap.add_argument("--json", type=Path, help="write every record here")
    ap.add_argument("notebooks", nargs="*", help="default: book/[0-9]*.ipynb")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.parallel < 1 or args.load < 0:
        ap.error("--runs and --parallel must be ≥ 1 and --load ≥ 0")
    if args.mplbackend == "unset":
        os.environ.pop("MPLBACKEND", None)
    elif args.mplbackend == "agg":
        os.environ["MPLBACKEND"] = "Agg"
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    paths = ["micro"] if args.micro else (
        args.notebooks or sorted(glob.glob(str(ROOT / "book" / "[0-9]*.ipynb"))))
    jobs = [(p, r, args.timeout, args.stall, args.pattern, args.micro)
            for r in range(args.runs) for p in paths]
    burners = [mp.Process(target=_burn, daemon=True) for _ in range(args.load)]
    for b in burners:
        b.start()
    records = []
    t0 = time.monotonic()
    try:
        with ProcessPoolExecutor(max_workers=args.parallel,
                                 mp_context=mp.get_context("spawn")) as pool:
            for rec in pool.map(execute_once, jobs):
                records.append(rec)
                flag = f" STALL {rec['stalls']}" if rec["stalls"] else ""
                err = f" ERROR {rec['error']}" if rec["error"] else ""
                print(f"{rec['notebook']} run {rec['run']}: {rec['seconds']} s, "
                      f"{rec['images']} images, max reply lag {rec['max_lag_s']} s"
                      f"{flag}{err}", flush=True)
    finally:
        for b in burners:
            b.terminate()
    n_stalls = sum(len(r["stalls"]) for r in records)
    n_err = sum(bool(r["error"]) for r in records)
    images: dict[str, set[int]] = {}
    for r in records:
        images.setdefault(r["notebook"], set()).add(r["images"])
    print(f"== {len(records)} executions in {time.monotonic() - t0:.0f} s "
          f"(parallel {args.parallel}, load {args.load}, MPLBACKEND="
          f"{os.environ.get('MPLBACKEND', '(unset)')}): {n_stalls} stalls, {n_err} errors")
    for name, counts in images.items():
        print(f"   {name}: images {sorted(counts)}")
    if args.json:
        args.json.write_text(json.dumps(records, indent=1, default=str))
    return 1 if n_stalls or n_err else 0


if __name__ == "__main__":
    sys.exit(main())
