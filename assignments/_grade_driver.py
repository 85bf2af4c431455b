"""Grade one notebook inside the sandbox (started by ``build.py grade``; not for direct use).

Protocol on stdin/stdout with the grader outside the sandbox:

1. run the student's cells in a fresh kernel (errors recorded, execution goes on); no test
   file exists anywhere in the sandbox while they run;
2. print ``READY`` and read one JSON line ``{"nonce": ..., "tests": {"q1.py": source, ...}}``;
3. write the tests into a fresh folder, run otter's checks in the same kernel, and print
   ``RESULT <nonce> <json record>``.

The student's own ``grader.check(...)`` cells are dropped (the grader runs every check at the
end). Usage: ``python _grade_driver.py NOTEBOOK TIMEOUT_PER_CELL``.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import sys
import tempfile
import traceback

import nbformat
from nbclient import NotebookClient

CHECK_CELL = re.compile(r"^\s*(grader\.check\([^)]*\)\s*)+$")
GATE = "# otter-sandbox: tests arrive here"
EXPORT = """\
from otter.execute import Checker as _Checker
from otter.test_files import GradingResults as _GradingResults
import glob as _glob, pickle as _pickle
for _t in sorted(_glob.glob({tests!r} + "/*.py")):
    _Checker.check_if_not_already_checked(_t)
with open({results!r}, "wb") as _f:
    _pickle.dump(_GradingResults(_Checker.get_results()), _f)
"""


def _errors(nb: nbformat.NotebookNode, first: int, last: int) -> list[dict]:
    """Errors raised by the student's cells ``first..last-1`` (index in the submitted notebook)."""
    out = []
    for cell in nb.cells[first:last]:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                out.append({"cell": int(cell.metadata.get("otter_sandbox_index", -1)), "ename": o.get("ename", ""),
                            "evalue": str(o.get("evalue", ""))[:500]})
    return out


def main() -> None:
    path, cell_timeout = sys.argv[1], float(sys.argv[2])
    nb = nbformat.read(path, as_version=4)
    work = os.path.dirname(os.path.abspath(path))
    tests_dir = tempfile.mkdtemp(prefix="tests-")
    os.rmdir(tests_dir)  # does not exist while student code runs
    results = tempfile.mktemp(suffix=".pkl")
    cells = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or CHECK_CELL.match(cell.source or ""):
            continue
        cell.metadata["otter_sandbox_index"] = i
        cells.append(cell)
    n_student = len(cells)
    init = nbformat.v4.new_code_cell(f"from otter import Notebook as _N\n_N.init_grading_mode({tests_dir!r})")
    gate = nbformat.v4.new_code_cell(GATE)
    export = nbformat.v4.new_code_cell(EXPORT.format(tests=tests_dir, results=results))
    nb.cells = [init, *cells, gate, export]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    state: dict = {}

    def hook(cell, cell_index, **_):
        if cell.source == GATE and "nonce" not in state:
            print("READY", flush=True)
            message = json.loads(sys.stdin.readline())
            state["nonce"] = message["nonce"]
            os.makedirs(tests_dir)
            for name, source in message["tests"].items():
                with open(os.path.join(tests_dir, os.path.basename(name)), "w", encoding="utf-8") as f:
                    f.write(source)

    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": work}}, on_cell_execute=hook)
    record: dict = {"questions": {}, "error": None}
    try:
        client.execute()
    except Exception as err:  # the kernel died, a cell timed out
        record["error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
    record["cell_errors"] = _errors(nb, 1, 1 + n_student)
    if "nonce" not in state:
        print("READY", flush=True)
        state["nonce"] = json.loads(sys.stdin.readline())["nonce"]
    try:
        with open(results, "rb") as f:
            graded = pickle.load(f)
        for q, tf in sorted(graded.results.items()):
            record["questions"][q] = {
                "score": float(tf.score),
                "possible": float(tf.possible),
                "tests": [
                    {"name": r.test_case.name, "hidden": bool(r.test_case.hidden), "passed": bool(r.passed),
                     "points": float(r.test_case.points or 0), "message": "" if r.passed else str(r.message)[-2000:]}
                    for r in tf.test_case_results
                ],
            }
    except Exception:
        if record["error"] is None:
            record["error"] = "no results: " + traceback.format_exc().strip().splitlines()[-1]
    print(f"RESULT {state['nonce']} {json.dumps(record)}", flush=True)


if __name__ == "__main__":
    main()
