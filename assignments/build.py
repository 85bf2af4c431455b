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
pass; this script then embeds the public tests in the student notebook (so that it checks alone,
on Colab, under any name), pins ``tts_lib`` in the bundle to a commit, and checks that no
solution line and no hidden test reached the student notebook.

``grade`` grades every ``*.ipynb`` in a folder, each in a bubblewrap sandbox (fresh folder with
only the notebook, no network, own process namespace killed whole at the timeout) and a fresh
kernel of the *current* Python environment, with otter's checker; it writes ``scores.csv``,
``final_grades.csv`` (otter grade's layout), ``scores.json`` (per-test details) and
``feedback/<submission>.txt`` / ``.public.txt`` (hidden tests' messages / counts only), rewritten
as each submission finishes.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ASSIGNMENTS = ("hardness", "scaling", "overthinking", "noise")
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
    for path in sorted((student_path.parent / "tests").glob("*.py")):
        if any(case.get("hidden") for suite in _ok_test(path.read_text())["suites"] for case in suite["cases"]):
            raise RuntimeError(f"{path}: a hidden test in the student's public tests")


def _ok_test(source: str) -> dict:
    """The ``test`` dict of an OK-format test file."""
    scope: dict = {}
    exec(source, scope)  # our own generated file
    return scope["test"]


PUBLIC_TESTS_DIR = "public_tests"  # never ``tests``: otter's Gradescope runner keeps all tests there
PUBLIC_TESTS_CELL = """\
# The public tests that grader.check runs, written to ./{folder} so that the checks work wherever
# this notebook is opened (Colab, Binder, an empty folder, a renamed copy). Do not edit this
# cell; the autograder uses its own copy of all tests.
import os as _os

_PUBLIC_TESTS = {tests}
_os.makedirs("{folder}", exist_ok=True)
for _name, _source in _PUBLIC_TESTS.items():
    with open(_os.path.join("{folder}", _name), "w", encoding="utf-8") as _f:
        _f.write(_source)
"""


def embed_public_tests(student_path: Path) -> None:
    """Insert a cell that writes ``student/tests/*.py`` before the cell creating ``otter.Notebook``.

    otter's Colab route keeps the tests in files (``runs_on: colab``, ``tests: files: true``), so
    a notebook opened alone would find no ``tests/`` folder; the cell carries them along.
    """
    nb = json.loads(student_path.read_text(encoding="utf-8"))
    tests = {p.name: p.read_text(encoding="utf-8") for p in sorted((student_path.parent / "tests").glob("*.py"))}
    if not tests:
        raise RuntimeError(f"no public tests in {student_path.parent / 'tests'}: is `tests: files: true` set?")
    where = next((i for i, c in enumerate(nb["cells"]) if "otter.Notebook(" in _source(c)), None)
    if where is None or f'otter.Notebook(tests_dir="{PUBLIC_TESTS_DIR}")' not in _source(nb["cells"][where]):
        raise RuntimeError(f'{student_path}: no cell creates otter.Notebook(tests_dir="{PUBLIC_TESTS_DIR}")')
    cell = {"cell_type": "code", "execution_count": None, "id": "public-tests", "outputs": [],
            "metadata": {"deletable": False, "editable": False, "jupyter": {"source_hidden": True},
                         "tags": ["remove-cell"]},
            "source": PUBLIC_TESTS_CELL.format(tests=json.dumps(tests, indent=1, ensure_ascii=False),
                                               folder=PUBLIC_TESTS_DIR)}
    nb["cells"].insert(where, cell)
    student_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _repository_url() -> str:
    import yaml

    return yaml.safe_load((HERE.parent / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]


def _head_commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True)
    if proc.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40}", proc.stdout.strip()):
        raise SystemExit("cannot read the git commit to pin tts_lib to; pass --tts-lib-ref COMMIT")
    return proc.stdout.strip()


def pin_bundle(bundle: Path, ref: str) -> str:
    """Pin ``tts_lib`` in the bundle's ``environment.yml`` to ``ref``; return the new file."""
    with zipfile.ZipFile(bundle) as z:
        items = {n: z.read(n) for n in z.namelist()}
    env = items["environment.yml"].decode("utf-8")
    if "TTS_LIB_COMMIT" not in env:
        raise RuntimeError(f"{bundle}: environment.yml has no TTS_LIB_COMMIT placeholder")
    if f"tts_lib @ git+{_repository_url()}@TTS_LIB_COMMIT" not in env:
        raise RuntimeError(f"{bundle}: tts_lib is not installed from _config.yml's repository.url")
    env = env.replace("TTS_LIB_COMMIT", ref)
    items["environment.yml"] = env.encode("utf-8")
    tmp = bundle.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for n, data in items.items():
            z.writestr(n, data)
    os.replace(tmp, bundle)
    return env


# --------------------------------------------------------------------------- build


def build(names: list[str], dist: Path, run_tests: bool = True, tts_lib_ref: str | None = None
          ) -> dict[str, dict[str, Path]]:
    """``otter assign`` each named assignment into ``dist/<name>``; return the output paths.

    The bundles pin ``tts_lib`` to ``tts_lib_ref`` (default: the source tree's git commit).
    """
    unknown = [n for n in names if n not in ASSIGNMENTS]
    if unknown:
        raise SystemExit(f"unknown assignment(s) {unknown}; known: {', '.join(ASSIGNMENTS)}")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", _repository_url()):
        raise SystemExit(f"_config.yml repository.url {_repository_url()!r} is not a GitHub repository")
    tts_lib_ref = tts_lib_ref or _head_commit()
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
        embed_public_tests(student)
        pin_bundle(bundle, tts_lib_ref)
        check_student_notebook(src, student)
        out[name] = {"student": student, "autograder": bundle, "solution": target / "autograder" / f"{name}.ipynb"}
        print(f"{name}: {student.relative_to(dist.parent)}  {bundle.relative_to(dist.parent)}"
              f"  ({time.perf_counter() - t0:.1f} s)")
    return out


# --------------------------------------------------------------------------- grade

DRIVER = HERE / "_grade_driver.py"
_FINAL_FIXED = ("file", "total_points_earned", "percent_correct", "grading_status")


def _bundle_tests(bundle: Path) -> tuple[dict[str, str], str | None]:
    """The test files (``tests/*.py``) and the assignment name of an autograder zip."""
    with zipfile.ZipFile(bundle) as z:
        tests = {Path(n).name: z.read(n).decode("utf-8") for n in z.namelist()
                 if n.startswith("tests/") and n.endswith(".py")}
        config = json.loads(z.read("otter_config.json")) if "otter_config.json" in z.namelist() else {}
    if not tests:
        raise SystemExit(f"{bundle} holds no tests/*.py: is it an otter autograder zip?")
    return tests, config.get("assignment_name")


def _bwrap_works() -> str | None:
    """``None`` if bubblewrap can start a sandbox here, else the reason."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap (`bwrap`) is not installed: apt-get install bubblewrap"
    proc = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return f"bwrap cannot create a sandbox here: {proc.stderr.strip()}"
    return None


def _sandbox_command(work: Path, runtime: Path, sandbox: bool) -> tuple[list[str], str]:
    """The command that runs the driver on ``work/submission.ipynb``, and that notebook's path inside.

    With ``sandbox``: bubblewrap, new namespaces for everything (no network, own process ids,
    so killing the sandbox kills every process in it), no /proc, a private /tmp, read-only
    system and Python, read-only ``/opt/grader`` (the driver and a copy of the ``tts_lib``
    package only: no tests, no solutions, no source tree), and ``/submission`` (the only
    writable folder that outlives the run, holding only the student's notebook).
    """
    python = Path(sys.executable)
    env = {"HOME": "/submission", "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
           "PYTHONPATH": "/opt/grader/site", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/mpl", "JUPYTER_RUNTIME_DIR": "/tmp/jupyter",
           "IPYTHONDIR": "/tmp/ipython", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    if not sandbox:
        env = {**env, "PYTHONPATH": str(runtime / "site"), "HOME": str(work), "MPLCONFIGDIR": str(work / ".mpl"),
               "JUPYTER_RUNTIME_DIR": str(work / ".jupyter"), "IPYTHONDIR": str(work / ".ipython")}
        return ["env", "-i", *(f"{k}={v}" for k, v in env.items()), str(python), str(runtime / "driver.py")], \
            str(work / "submission.ipynb")
    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
           "--ro-bind", "/usr", "/usr", "--dev", "/dev", "--tmpfs", "/tmp"]
    for link in ("bin", "lib", "lib64", "sbin"):
        p = Path("/") / link
        if p.is_symlink():
            cmd += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            cmd += ["--ro-bind", str(p), str(p)]
    for f in ("/etc/ld.so.cache", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/localtime"):
        if os.path.exists(f):
            cmd += ["--ro-bind", f, f]
    for prefix in sorted({sys.base_prefix, sys.prefix, str(python.resolve().parents[1])}):
        if not prefix.startswith("/usr/"):
            cmd += ["--ro-bind", prefix, prefix]
    cmd += ["--ro-bind", str(runtime), "/opt/grader", "--bind", str(work), "/submission", "--chdir", "/submission"]
    for k, v in env.items():
        cmd += ["--setenv", k, v]
    return [*cmd, str(python), "/opt/grader/driver.py"], "/submission/submission.ipynb"


def _runtime(root: Path) -> Path:
    """A folder with the driver and a copy of the ``tts_lib`` package (nothing else of the source tree).

    Made once per ``grade`` run, before any submission; the package is located without being
    imported (importing it imports torch: seconds).
    """
    import importlib.util

    spec = importlib.util.find_spec("tts_lib")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("tts_lib is not importable here: `pip install -e .` or set PYTHONPATH to the repository")
    runtime = root / "runtime"
    (runtime / "site").mkdir(parents=True)
    shutil.copyfile(DRIVER, runtime / "driver.py")
    shutil.copytree(Path(list(spec.submodule_search_locations)[0]).resolve(), runtime / "site" / "tts_lib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return runtime


def _empty_record(submission: Path, error: str | None) -> dict:
    return {"submission": submission.name, "total": 0.0, "possible": None, "questions": {}, "error": error,
            "cell_errors": [], "notes": []}


def grade_one(submission: Path, tests: dict[str, str], name: str, root: Path, timeout: float,
              sandbox: bool = True) -> dict:
    """Grade one notebook in a fresh sandboxed kernel; return its score record.

    ``root`` holds the ``runtime`` folder made by :func:`_runtime`.

    The submission is copied alone into a fresh folder; the driver (in the sandbox) runs its
    cells, then receives the tests over a pipe and runs them. The whole sandbox (its own
    process-id namespace and process group) is killed after ``timeout`` seconds.
    """
    record = _empty_record(submission, None)
    try:
        nb = json.loads(submission.read_text(encoding="utf-8"))
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            raise ValueError("no list of cells")
    except (ValueError, UnicodeDecodeError) as err:
        record["error"] = f"not a readable notebook ({type(err).__name__}: {err})"
        return record
    meta = (nb.get("metadata") or {}).get("otter") or {}
    declared = meta.get("assignment_name") if isinstance(meta, dict) else None
    if declared and declared != name:
        record["error"] = f"this is a notebook of assignment {declared!r}, not {name!r}"
        return record
    if not declared:
        record["notes"].append(f"the notebook's metadata was lost: graded as assignment {name!r}")
    work = Path(tempfile.mkdtemp(prefix="sub-", dir=root))
    shutil.copyfile(submission, work / "submission.ipynb")
    cmd, staged = _sandbox_command(work, root / "runtime", sandbox)
    cmd += [staged, f"{timeout:g}"]
    lines: queue.Queue = queue.Queue()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)

    def read() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    nonce = secrets.token_hex(16)
    deadline = time.monotonic() + timeout
    result = None
    try:
        while result is None:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                record["error"] = f"timed out after {timeout:g} s (an endless loop?)"
                break
            if line is None:
                record["error"] = f"the grading process died (exit {proc.poll()}): did the notebook kill it?"
                break
            if line.strip() == "READY":
                try:
                    proc.stdin.write(json.dumps({"nonce": nonce, "tests": tests}) + "\n")
                    proc.stdin.flush()
                except OSError:
                    pass
            elif line.startswith(f"RESULT {nonce} "):
                result = json.loads(line[len(f"RESULT {nonce} "):])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the sandbox and every process in it
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    if result is not None:
        record["questions"] = result["questions"]
        record["cell_errors"] = result["cell_errors"]
        record["error"] = result["error"]
        record["total"] = sum(q["score"] for q in result["questions"].values())
        record["possible"] = sum(q["possible"] for q in result["questions"].values()) or None
        if not result["questions"] and record["error"] is None:
            record["error"] = "no test ran"
    return record


def _short(message: str) -> list[str]:
    """Each failing check of an otter (doctest) failure report and the error it raised, in a few lines."""
    lines = [line.rstrip() for line in message.strip().splitlines()]
    starts = [i for i, line in enumerate(lines) if line.strip() == "Failed example:"]
    if not starts:
        return lines[-6:]
    out = []
    for a, b in zip(starts[:3], [*starts[1:3], len(lines)], strict=True):
        block = lines[a + 1:b]
        out.append(f"check: {block[0].strip()}" if block else "check: ?")
        errors = [line.strip() for line in block if re.match(r"\s*[A-Za-z_.]*(Error|Exception)\b", line)]
        if errors:
            out.append(f"  -> {errors[-1]}")
    return out


def _feedback(rec: dict, name: str, public: bool) -> str:
    """A report the student can act on (``public``: hidden tests only counted), or the full one."""
    possible = rec["possible"] if rec["possible"] is not None else "?"
    lines = [f"Assignment {name}, submission {rec['submission']}: {rec['total']:g} / {possible:g} points"
             if rec["possible"] else f"Assignment {name}, submission {rec['submission']}: 0 points"]
    if rec["error"]:
        lines.append(f"Not fully graded: {rec['error']}")
    lines += [f"Note: {n}" for n in rec.get("notes", [])]
    if rec.get("cell_errors"):
        lines.append("")
        lines.append("Errors while running your notebook from the top (fix them, then Restart & Run All):")
        for e in rec["cell_errors"]:
            hint = (" Python could not read this cell, so nothing in it was defined; the tests of what it "
                    "defines fail with NameError." if e["ename"] in ("SyntaxError", "IndentationError",
                                                                    "TabError") else "")
            lines.append(f"  cell {e['cell'] + 1} (counting from 1): {e['ename']}: {e['evalue']}{hint}")
    for q, v in sorted(rec["questions"].items()):
        lines += ["", f"{q}: {v['score']:g} / {v['possible']:g} points"]
        hidden = [t for t in v["tests"] if t["hidden"]]
        for i, t in enumerate(t for t in v["tests"] if not t["hidden"]):
            lines.append(f"  public test {i + 1} ({t['points']:g} pt): {'passed' if t['passed'] else 'FAILED'}")
            if not t["passed"]:
                lines += ["    " + m for m in _short(t["message"])]
        if hidden:
            lost = sum(t["points"] for t in hidden if not t["passed"])
            lines.append(f"  hidden tests: {sum(t['passed'] for t in hidden)} of {len(hidden)} passed"
                         + (f" ({lost:g} point{'' if lost == 1 else 's'} lost)" if lost else ""))
            if not public:
                for t in hidden:
                    if not t["passed"]:
                        lines += [f"    hidden {t['name']}:"] + ["      " + m for m in _short(t["message"])]
    return "\n".join(lines) + "\n"


def _write_outputs(out: Path, name: str, records: list[dict], questions: list[str]) -> None:
    """scores.csv, final_grades.csv (otter grade's layout), scores.json; atomically replaced."""
    records = sorted(records, key=lambda r: r["submission"])

    def put(path: Path, text: str) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["submission", *questions, "total", "possible", "error"])
    for r in records:
        w.writerow([r["submission"], *(r["questions"].get(q, {}).get("score", 0.0) for q in questions),
                    r["total"], r["possible"], r["error"] or ""])
    put(out / "scores.csv", buf.getvalue())
    possible = {q: next((r["questions"][q]["possible"] for r in records if q in r["questions"]), 0.0)
                for q in questions}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", *questions, "total_points_earned", "percent_correct", "grading_status"])
    w.writerow(["points-per-question", *(possible[q] for q in questions), sum(possible.values()), 1, "--"])
    for r in records:
        total_possible = sum(possible.values()) or 1.0
        w.writerow([r["submission"], *(r["questions"].get(q, {}).get("score", 0.0) for q in questions),
                    r["total"], round(r["total"] / total_possible, 6), r["error"] or "Completed"])
    put(out / "final_grades.csv", buf.getvalue())
    put(out / "scores.json", json.dumps({"assignment": name, "submissions": records}, indent=2))


def grade(
    name: str,
    submissions: Path,
    out: Path,
    bundle: Path | None = None,
    timeout: float = 600.0,
    jobs: int = 1,
    sandbox: bool = True,
) -> list[dict]:
    """Grade every ``*.ipynb`` in ``submissions``; write scores.csv, final_grades.csv, scores.json, feedback/.

    Each submission runs alone in a fresh folder and kernel inside a bubblewrap sandbox
    (``sandbox=False``: a plain child process group, for machines without bubblewrap; not safe
    for untrusted code), killed whole after ``timeout`` seconds; ``jobs`` at a time. The
    output files are rewritten as each submission finishes.
    """
    bundle = (bundle or DEFAULT_DIST / name / f"{name}-autograder.zip").resolve()
    if not bundle.is_file():
        raise SystemExit(f"no autograder bundle {bundle}: run `python assignments/build.py` first")
    if sandbox and (reason := _bwrap_works()):
        raise SystemExit(f"cannot sandbox the submissions: {reason} (or pass --no-sandbox for trusted code)")
    tests, bundle_name = _bundle_tests(bundle)
    if bundle_name and bundle_name != name:
        raise SystemExit(f"{bundle} is the autograder of {bundle_name!r}, not {name!r}")
    files = sorted(p.resolve() for p in submissions.glob("*.ipynb") if p.is_file())
    if not files:
        raise SystemExit(f"no .ipynb files in {submissions}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    questions = sorted(Path(t).stem for t in tests)
    done: list[dict] = []
    lock = threading.Lock()

    with tempfile.TemporaryDirectory(prefix="grading-") as tmp:
        _runtime(Path(tmp))

        def one(path: Path) -> dict:
            t0 = time.perf_counter()
            rec = grade_one(path, tests, name, Path(tmp), timeout, sandbox)
            rec["seconds"] = round(time.perf_counter() - t0, 2)
            with lock:
                (out / "feedback" / f"{path.stem}.txt").write_text(_feedback(rec, name, False), encoding="utf-8")
                (out / "feedback" / f"{path.stem}.public.txt").write_text(_feedback(rec, name, True),
                                                                          encoding="utf-8")
                done.append(rec)
                _write_outputs(out, name, done, questions)
                status = f"ERROR {rec['error']}" if rec["error"] else f"{rec['total']:g} / {rec['possible']:g}"
                print(f"{path.name}: {status}  ({rec['seconds']:.1f} s; {len(done)} of {len(files)} in scores.csv)",
                      flush=True)
            return rec

        with ThreadPoolExecutor(max(1, jobs)) as pool:
            records = list(pool.map(one, files))
    print(f"wrote {out / 'scores.csv'}, {out / 'final_grades.csv'} and {out / 'scores.json'}")
    return records


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    b = sub.add_parser("build", help="generate student notebooks and autograder zips (the default)")
    b.add_argument("names", nargs="*", metavar="NAME", help=f"assignments (default: all of {', '.join(ASSIGNMENTS)})")
    b.add_argument("--dist", type=Path, default=DEFAULT_DIST, help="output folder (default: assignments/dist)")
    b.add_argument("--no-run-tests", action="store_true", help="skip the check of the reference solutions")
    b.add_argument("--tts-lib-ref", default=None,
                   help="commit or tag of tts_lib the Gradescope bundle installs (default: git HEAD)")
    g = sub.add_parser("grade", help="grade a folder of submitted notebooks locally")
    g.add_argument("--assignment", required=True, choices=ASSIGNMENTS)
    g.add_argument("--submissions", required=True, type=Path, help="folder of submitted .ipynb files")
    g.add_argument("--out", required=True, type=Path, help="folder for scores.csv, scores.json, feedback/")
    g.add_argument("--autograder", type=Path, default=None,
                   help="autograder zip (default: assignments/dist/<name>/<name>-autograder.zip)")
    g.add_argument("--timeout", type=float, default=600.0, help="seconds per submission (default 600)")
    g.add_argument("--jobs", type=int, default=1, help="submissions graded at a time (default 1)")
    g.add_argument("--no-sandbox", action="store_true",
                   help="grade without bubblewrap (trusted submissions only: student code runs with your rights)")
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in ("build", "grade", "-h", "--help"):
        argv = ["build", *argv]  # `build` is the default command
    args = parser.parse_args(argv)
    if args.command == "grade":
        grade(args.assignment, args.submissions, args.out, args.autograder, args.timeout, args.jobs,
              sandbox=not args.no_sandbox)
    else:
        build(list(args.names) or list(ASSIGNMENTS), args.dist, run_tests=not args.no_run_tests,
              tts_lib_ref=args.tts_lib_ref)


if __name__ == "__main__":
    main()
