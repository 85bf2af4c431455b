"""Build the course's autograded assignments and grade submissions locally (otter-grader 7).

Two commands, run from the repository root in the course environment::

    python assignments/build.py                      # all assignments -> assignments/dist/
    python assignments/build.py grade --assignment hardness --submissions DIR --out DIR

``build`` (the default) runs ``otter assign`` on each source notebook ``assignments/<name>.ipynb``
and writes, for every assignment,

* ``dist/<name>/student/<name>.ipynb``: the notebook to hand out (no solutions, public tests);
* ``dist/<name>/<name>-autograder.zip``: the autograder bundle (all tests, hidden ones included);
* ``dist/<name>/autograder/``: otter's full output, including the solution notebook.

``otter assign`` first runs every test against the reference solutions and fails if one does not
pass; this script then checks that no solution line and no hidden test reached the student
notebook.

``grade`` grades every ``*.ipynb`` in a folder with ``otter run`` (no Docker, no server: each
submission runs in a fresh kernel of the *current* Python environment, so ``tts_lib`` must be
importable there) and writes ``scores.csv`` (one row per submission, one column per question),
``scores.json`` (the same with per-test details), ``feedback/<submission>.txt`` (otter's report,
hidden tests included: for the instructor) and ``feedback/<submission>.public.txt`` (public tests
only: safe to return to the student).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ASSIGNMENTS = ("hardness", "scaling", "overthinking")
DEFAULT_DIST = HERE / "dist"

_MARKERS = re.compile(r"#\s*(BEGIN|END)\s+SOLUTION|#\s*SOLUTION\b")


# --------------------------------------------------------------------------- source parsing


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def solution_lines(source_nb: dict) -> set[str]:
    """Stripped code lines that only the solutions contain.

    Lines between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` comments and lines ending in
    ``# SOLUTION``, minus lines that also occur in non-solution code (such as ``return out``
    in a given scaffold), so that their presence in the student notebook is a leak.
    """
    sol: set[str] = set()
    other: set[str] = set()
    for cell in source_nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        inside = False
        for line in _source(cell).splitlines():
            s = line.strip()
            if re.search(r"#\s*BEGIN\s+SOLUTION", s):
                inside = True
                continue
            if re.search(r"#\s*END\s+SOLUTION", s):
                inside = False
                continue
            if inside or re.search(r"#\s*SOLUTION\b", s):
                sol.add(re.sub(r"\s*#\s*SOLUTION.*$", "", s))
            else:
                other.add(s)
    return {s for s in sol - other if s and s != "..."}


def check_student_notebook(source_path: Path, student_path: Path) -> None:
    """Raise ``RuntimeError`` if a solution line, a marker or a hidden test is in the student notebook."""
    source = json.loads(source_path.read_text(encoding="utf-8"))
    student = json.loads(student_path.read_text(encoding="utf-8"))
    code = [line.strip() for c in student["cells"] for line in _source(c).splitlines()]
    leaked = sorted(solution_lines(source) & set(code))
    if leaked:
        raise RuntimeError(f"{student_path}: solution lines leaked into the student notebook: {leaked}")
    text = json.dumps(student)
    if _MARKERS.search(text) or "# HIDDEN" in text:
        raise RuntimeError(f"{student_path}: a SOLUTION/HIDDEN marker is left in the student notebook")
    tests = student["metadata"].get("otter", {}).get("tests", {})
    for name, test in tests.items():
        for suite in test.get("suites", []):
            if any(case.get("hidden") for case in suite.get("cases", [])):
                raise RuntimeError(f"{student_path}: hidden test of {name} in the student notebook")


# --------------------------------------------------------------------------- build


def build(names: list[str], dist: Path, run_tests: bool = True) -> dict[str, dict[str, Path]]:
    """``otter assign`` each named assignment into ``dist/<name>``; return the output paths."""
    unknown = [n for n in names if n not in ASSIGNMENTS]
    if unknown:
        raise SystemExit(f"unknown assignment(s) {unknown}; known: {', '.join(ASSIGNMENTS)}")
    out: dict[str, dict[str, Path]] = {}
    for name in names:
        src = HERE / f"{name}.ipynb"
        if not src.is_file():
            raise SystemExit(f"no source notebook {src}; known assignments: {', '.join(ASSIGNMENTS)}")
        target = dist / name
        if target.exists():
            shutil.rmtree(target)
        cmd = [sys.executable, "-m", "otter", "assign", str(src), str(target)]
        if not run_tests:
            cmd.append("--no-run-tests")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(f"otter assign failed for {name} (exit {proc.returncode}); see the output above")
        zips = sorted((target / "autograder").glob(f"{name}-autograder_*.zip"))
        if len(zips) != 1:
            raise SystemExit(f"expected one autograder zip in {target / 'autograder'}, found {len(zips)}")
        bundle = target / f"{name}-autograder.zip"
        shutil.move(str(zips[0]), bundle)
        student = target / "student" / f"{name}.ipynb"
        check_student_notebook(src, student)
        out[name] = {"student": student, "autograder": bundle, "solution": target / "autograder" / f"{name}.ipynb"}
        print(f"{name}: {student.relative_to(dist.parent)}  {bundle.relative_to(dist.parent)}"
              f"  ({time.perf_counter() - t0:.1f} s)")
    return out


# --------------------------------------------------------------------------- grade


def grade_one(submission: Path, bundle: Path, name: str) -> dict:
    """Grade one notebook with ``otter run`` (in-process API, no Docker); return a score record."""
    from otter.run import main as otter_run  # imported here: `build` does not need it

    record: dict = {"submission": submission.name, "total": 0.0, "possible": None, "questions": {}, "error": None}
    log = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp:
        # Stage the submission under the assignment's file name: the notebook's set-up cell
        # calls otter.Notebook("<name>.ipynb"), which must find the file it runs in.
        staged = Path(tmp) / f"{name}.ipynb"
        shutil.copyfile(submission, staged)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                results = otter_run(str(staged), autograder=str(bundle), output_dir=None, no_logo=True)
        except Exception as err:  # a broken file or a notebook of another assignment
            record["error"] = f"{type(err).__name__}: {err}"
            record["log"] = log.getvalue()
            return record
    if results.has_catastrophic_failure():
        record["error"] = str(results.catastrophic_error)
    for q, tf in sorted(results.results.items()):
        record["questions"][q] = {
            "score": float(tf.score),
            "possible": float(tf.possible),
            "tests": [
                {"hidden": bool(r.test_case.hidden), "passed": bool(r.passed), "points": r.test_case.points}
                for r in tf.test_case_results
            ],
        }
    record["total"] = float(results.total)
    record["possible"] = float(results.possible)
    record["log"] = results.summary()
    record["public_log"] = results.summary(public_only=True)
    return record


def _grade_in_child(submission: Path, bundle: Path, name: str, timeout: float, tmp: Path) -> dict:
    """Run :func:`grade_one` in a child process (``grade-one`` command), killed after ``timeout`` s."""
    rec_path = tmp / f"{submission.stem}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "grade-one", "--assignment", name,
           "--submission", str(submission), "--autograder", str(bundle), "--record", str(rec_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the kernel exits when its parent is gone
        proc.communicate()
        return {"submission": submission.name, "total": 0.0, "possible": None, "questions": {},
                "error": f"timed out after {timeout:g} s (an endless loop?)", "log": ""}
    if proc.returncode != 0 or not rec_path.is_file():
        return {"submission": submission.name, "total": 0.0, "possible": None, "questions": {},
                "error": f"grading crashed (exit {proc.returncode})", "log": output}
    return json.loads(rec_path.read_text(encoding="utf-8"))


def grade(
    name: str,
    submissions: Path,
    out: Path,
    bundle: Path | None = None,
    timeout: float = 600.0,
    jobs: int = 1,
) -> list[dict]:
    """Grade every ``*.ipynb`` in ``submissions``; write scores.csv, scores.json, feedback/.

    Each submission is graded by ``otter run`` in its own child process (and fresh kernel),
    stopped after ``timeout`` seconds; ``jobs`` submissions are graded at a time.
    """
    bundle = (bundle or DEFAULT_DIST / name / f"{name}-autograder.zip").resolve()
    if not bundle.is_file():
        raise SystemExit(f"no autograder bundle {bundle}: run `python assignments/build.py` first")
    files = sorted(p.resolve() for p in submissions.glob("*.ipynb") if p.is_file())
    if not files:
        raise SystemExit(f"no .ipynb files in {submissions}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)

    def one(path: Path) -> dict:
        t0 = time.perf_counter()
        rec = _grade_in_child(path, bundle, name, timeout, Path(tmp))
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        status = f"ERROR {rec['error']}" if rec["error"] else f"{rec['total']:g} / {rec['possible']:g}"
        print(f"{path.name}: {status}  ({rec['seconds']:.1f} s)", flush=True)
        return rec

    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max(1, jobs)) as pool:
        records = list(pool.map(one, files))
    for path, rec in zip(files, records, strict=True):
        (out / "feedback" / f"{path.stem}.txt").write_text(rec.pop("log", ""), encoding="utf-8")
        public = rec.pop("public_log", None)
        (out / "feedback" / f"{path.stem}.public.txt").write_text(
            public if public is not None else f"not graded: {rec['error']}\n", encoding="utf-8")
    questions = sorted({q for r in records for q in r["questions"]})
    with open(out / "scores.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["submission", *questions, "total", "possible", "error"])
        for r in records:
            w.writerow([r["submission"], *(r["questions"].get(q, {}).get("score", 0.0) for q in questions),
                        r["total"], r["possible"], r["error"] or ""])
    (out / "scores.json").write_text(json.dumps({"assignment": name, "submissions": records}, indent=2),
                                     encoding="utf-8")
    print(f"wrote {out / 'scores.csv'} and {out / 'scores.json'}")
    return records


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    b = sub.add_parser("build", help="generate student notebooks and autograder zips (the default)")
    b.add_argument("names", nargs="*", metavar="NAME", help=f"assignments (default: all of {', '.join(ASSIGNMENTS)})")
    b.add_argument("--dist", type=Path, default=DEFAULT_DIST, help="output folder (default: assignments/dist)")
    b.add_argument("--no-run-tests", action="store_true", help="skip the check of the reference solutions")
    g = sub.add_parser("grade", help="grade a folder of submitted notebooks locally")
    g.add_argument("--assignment", required=True, choices=ASSIGNMENTS)
    g.add_argument("--submissions", required=True, type=Path, help="folder of submitted .ipynb files")
    g.add_argument("--out", required=True, type=Path, help="folder for scores.csv, scores.json, feedback/")
    g.add_argument("--autograder", type=Path, default=None,
                   help="autograder zip (default: assignments/dist/<name>/<name>-autograder.zip)")
    g.add_argument("--timeout", type=float, default=600.0, help="seconds per submission (default 600)")
    g.add_argument("--jobs", type=int, default=1, help="submissions graded at a time (default 1)")
    one = sub.add_parser("grade-one", help=argparse.SUPPRESS)  # used by `grade`, one child per submission
    one.add_argument("--assignment", required=True, choices=ASSIGNMENTS)
    one.add_argument("--submission", required=True, type=Path)
    one.add_argument("--autograder", required=True, type=Path)
    one.add_argument("--record", required=True, type=Path)
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in ("build", "grade", "grade-one", "-h", "--help"):
        argv = ["build", *argv]  # `build` is the default command
    args = parser.parse_args(argv)
    if args.command == "grade":
        grade(args.assignment, args.submissions, args.out, args.autograder, args.timeout, args.jobs)
    elif args.command == "grade-one":
        record = grade_one(args.submission, args.autograder, args.assignment)
        args.record.write_text(json.dumps(record), encoding="utf-8")
    else:
        build(list(args.names) or list(ASSIGNMENTS), args.dist, run_tests=not args.no_run_tests)


if __name__ == "__main__":
    main()
