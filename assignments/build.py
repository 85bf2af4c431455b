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

``grade`` grades every ``*.ipynb`` in a folder. Each submission's cells run in a bubblewrap
sandbox (fresh size-capped folders, no network, resource limits, own process namespace killed
whole at the timeout) in a fresh kernel of the *current* Python environment; then every test
runs *here*, outside the sandbox, and only calls the student's functions in the sandbox, which
answers with plain values (``_grading_codec``): the score depends only on those values. It
writes ``scores.csv``, ``final_grades.csv`` (otter grade's layout), ``scores.json`` (per-test
details) and ``feedback/<submission>.txt`` / ``.public.txt`` (hidden tests' messages / their
property names only), rewritten as each submission finishes.

``build NAME --variant SEED`` builds a private variant: the hidden tests' random inputs are
drawn from the seed (the student notebook does not change).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import queue
import re
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


def _load_codec():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_grading_codec", HERE / "_grading_codec.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


codec = _load_codec()
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


def public_test_message(public: list[str], hidden: list[str]) -> str:
    """What ``grader.check`` adds when the public tests pass: they are not the grade."""
    text = f"These are the public tests only ({'; '.join(public)})."
    if hidden:
        text += f" Your grade also counts hidden tests of: {'; '.join(hidden)}."
    return text


def _with_messages(source: str, hidden: list[str]) -> str:
    """An OK-format public test file whose last case says what the hidden tests also check.

    otter prints "All test cases passed!" when the public tests pass, which students read as
    a grade (otter-grader#138); the case's ``success_message`` follows that line.
    """
    import pprint

    test = _ok_test(source)
    cases = [c for suite in test["suites"] for c in suite["cases"]]
    public = []
    for c in cases:
        m = re.search(r"^>>> PROPERTY\s*=\s*(['\"])(.+?)\1\s*$", c["code"], re.M)
        public.append(m.group(2) if m else "a first check")
    cases[-1]["success_message"] = public_test_message(public, hidden)
    return "OK_FORMAT = True\n\ntest = " + pprint.pformat(test, width=100, sort_dicts=False) + "\n"


def embed_public_tests(student_path: Path, hidden: dict[str, list[str]] | None = None) -> None:
    """Insert a cell that writes ``student/tests/*.py`` before the cell creating ``otter.Notebook``.

    otter's Colab route keeps the tests in files (``runs_on: colab``, ``tests: files: true``), so
    a notebook opened alone would find no ``tests/`` folder; the cell carries them along.
    ``hidden`` (question -> the properties its hidden tests check) goes into the message that
    ``grader.check`` shows when the public tests pass.
    """
    nb = json.loads(student_path.read_text(encoding="utf-8"))
    for path in sorted((student_path.parent / "tests").glob("*.py")):
        text = _with_messages(path.read_text(encoding="utf-8"), (hidden or {}).get(path.stem, []))
        path.write_text(text, encoding="utf-8")
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

MARKER = ".made-by-build-py"  # in each dist/NAME folder build.py made: the only ones it deletes


class UsageError(SystemExit):
    """A bad argument: one line on stderr, exit status 2."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message


def check_ref(ref: str) -> str:
    """A git commit or tag name that can be pinned in ``environment.yml`` as it is."""
    if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z._/-]{0,99}", ref) or ".." in ref or ref.endswith((".", "/")):
        raise UsageError(f"--tts-lib-ref {ref!r} is not a git commit or tag name (letters, digits, . _ / -)")
    return ref


def check_dist(dist: Path) -> Path:
    """``dist`` made absolute (relative to the current folder) and refused inside the repository.

    Inside the repository, only ``assignments/dist`` (git-ignored) may hold the built files: the
    solutions must never land beside tracked files, where a ``git add`` would publish them.
    """
    dist = Path(os.path.abspath(dist))
    repo = HERE.parent.resolve()
    real = dist.resolve()
    if real.is_relative_to(repo) and not real.is_relative_to(DEFAULT_DIST.resolve()):
        raise UsageError(f"--dist {dist} is inside the repository {repo}: use assignments/dist (git-ignored) "
                         "or a folder outside the repository (the built files contain the solutions)")
    if dist.exists() and not dist.is_dir():
        raise UsageError(f"--dist {dist} is a file, not a folder")
    return dist



_SEEDED = re.compile(r"\b(seed\s*=\s*|default_rng\()(\d+)")


def variant_source(source_nb: dict, variant: int) -> dict:
    """A copy of an assignment's source notebook whose hidden tests draw new random inputs.

    Every ``seed=N`` and ``default_rng(N)`` in a hidden test cell becomes a number derived from
    ``variant`` (and the cell and ``N``), so the random rotations and random spectra of the
    hidden tests change with the variant; the public tests, the crafted edge cases (a missing
    skill, σ = 2γ, the ``ValueError`` cases, ...) and the points stay as they are.
    """
    import copy
    import hashlib

    nb = copy.deepcopy(source_nb)
    for i, cell in enumerate(nb["cells"]):
        src = _source(cell)
        if cell["cell_type"] != "code" or not src.startswith("# HIDDEN"):
            continue

        def reseed(m: re.Match, i: int = i) -> str:
            digest = hashlib.sha256(f"{variant}:{i}:{m.group(2)}".encode()).digest()
            return f"{m.group(1)}{int.from_bytes(digest[:4], 'big') % 1_000_000}"

        cell["source"] = _SEEDED.sub(reseed, src)
    return nb


def build(names: list[str], dist: Path, run_tests: bool = True, tts_lib_ref: str | None = None,
          variant: int | None = None) -> dict[str, dict[str, Path]]:
    """``otter assign`` each named assignment into ``dist/<name>``; return the output paths.

    The bundles pin ``tts_lib`` to ``tts_lib_ref`` (default: the source tree's git commit).
    With ``variant`` (an integer seed), the hidden tests' random inputs are drawn from it
    (:func:`variant_source`): a private variant whose hidden inputs are not in the public
    sources; the student notebook is the same as without it.
    """
    unknown = [n for n in names if n not in ASSIGNMENTS]
    if unknown:
        raise UsageError(f"unknown assignment(s) {unknown}; known: {', '.join(ASSIGNMENTS)}")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", _repository_url()):
        raise SystemExit(f"_config.yml repository.url {_repository_url()!r} is not a GitHub repository")
    if tts_lib_ref is not None:
        check_ref(tts_lib_ref)
    tts_lib_ref = tts_lib_ref or _head_commit()
    dist = check_dist(dist)
    out: dict[str, dict[str, Path]] = {}
    for name in names:
        src = HERE / f"{name}.ipynb"
        if not src.is_file():
            raise SystemExit(f"no source notebook {src}; known assignments: {', '.join(ASSIGNMENTS)}")
        target = dist / name
        if target.exists() or target.is_symlink():
            if target.is_symlink() or not target.is_dir() or not (target / MARKER).is_file():
                raise UsageError(f"{target} exists and was not made by build.py (no {MARKER} in it): "
                                 "remove it yourself or choose another --dist")
            shutil.rmtree(target)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"{name}-source-") as tmp:
            source = src
            if variant is not None:  # otter assign reads requirements.txt beside the notebook
                source = Path(tmp) / src.name
                source.write_text(json.dumps(variant_source(json.loads(src.read_text(encoding="utf-8")),
                                                            variant), indent=1, ensure_ascii=False) + "\n",
                                  encoding="utf-8")
                shutil.copyfile(HERE / "requirements.txt", Path(tmp) / "requirements.txt")
            cmd = [sys.executable, "-m", "otter", "assign", str(source), str(target)]
            if not run_tests:
                cmd.append("--no-run-tests")
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=source.parent)
        if target.is_dir():
            (target / MARKER).write_text("made by assignments/build.py; it deletes and rebuilds this folder\n",
                                         encoding="utf-8")
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(f"otter assign failed for {name} (exit {proc.returncode}); see the output above")
        zips = sorted((target / "autograder").glob(f"{name}-autograder_*.zip"))
        if len(zips) != 1:
            raise SystemExit(f"expected one autograder zip in {target / 'autograder'}, found {len(zips)}")
        bundle = target / f"{name}-autograder.zip"
        shutil.move(str(zips[0]), bundle)
        student = target / "student" / f"{name}.ipynb"
        hidden = {q: [c["property"] for c in cs if c["hidden"]]
                  for q, cs in parse_tests(_bundle_tests(bundle)[0]).items()}
        embed_public_tests(student, hidden)
        pin_bundle(bundle, tts_lib_ref)
        check_student_notebook(src, student)
        out[name] = {"student": student, "autograder": bundle, "solution": target / "autograder" / f"{name}.ipynb"}
        print(f"{name}: {student.relative_to(dist.parent)}  {bundle.relative_to(dist.parent)}"
              + (f"  (variant {variant})" if variant is not None else "")
              + f"  ({time.perf_counter() - t0:.1f} s)")
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


# Resource caps per submission (each applies to every process in its sandbox; see the README).
LIMITS = {
    "memory": 6 * 2**30,  # bytes of address space per process (RLIMIT_AS): torch alone maps ~2-3 GiB
    "processes": 512,  # processes and threads (RLIMIT_NPROC, counted in the sandbox's user namespace)
    "file_size": 256 * 2**20,  # bytes per file written (RLIMIT_FSIZE)
    "disk": 256 * 2**20,  # bytes in /submission and in /tmp each (size-capped tmpfs, sandbox only)
    "total_memory": 8 * 2**30,  # resident bytes of all the sandbox's processes together (sampled)
}
MAX_LINE = 80 * 2**20  # bytes of one answer from the sandbox
MAX_REFERENCE_ELEMENTS = 10**6  # numbers in the arguments of one reference call computed for the sandbox
_JUDGE_LOCK = threading.RLock()  # the tests run one submission at a time (they may patch tts_lib)


def tree_usage(root_pid: int) -> tuple[int, int]:
    """(processes and threads, resident bytes) of the process tree under ``root_pid``, from /proc."""
    children: dict[int, list[int]] = {}
    threads: dict[int, int] = {}
    resident: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)  # fields[1]: the parent
        threads[pid] = int(fields[17])  # num_threads
        resident[pid] = int(fields[21]) * page  # rss, in pages
    tasks = rss = 0
    todo = [root_pid]
    while todo:
        pid = todo.pop()
        tasks += threads.get(pid, 0)
        rss += resident.get(pid, 0)
        todo += children.get(pid, [])
    return tasks, rss


def _sandbox_command(runtime: Path, sandbox: bool, limits: dict) -> tuple[list[str], str | None]:
    """The command that runs the driver: in bubblewrap, or (``sandbox=False``) in a bare environment.

    With ``sandbox``: new namespaces for everything (no network, own process ids, so killing the
    sandbox kills every process in it), no /proc, read-only system and Python, read-only
    ``/opt/grader`` (the driver, the value codec and a copy of the ``tts_lib`` package only: no
    tests, no solutions, no source tree), and two size-capped tmpfs folders, ``/submission``
    (the working folder) and ``/tmp``, discarded with the sandbox. The notebook arrives on
    stdin; nothing the sandbox writes outlives it. Returns the command and the folder to start
    it in (``None``: the sandbox sets its own).
    """
    python = Path(sys.executable)
    env = {"HOME": "/submission", "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
           "PYTHONPATH": "/opt/grader/site", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/mpl", "JUPYTER_RUNTIME_DIR": "/tmp/jupyter",
           "IPYTHONDIR": "/tmp/ipython", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    driver_args = [json.dumps({k: limits[k] for k in ("memory", "processes", "file_size")})]
    if not sandbox:
        work = Path(tempfile.mkdtemp(prefix="sub-", dir=runtime.parent))  # private to this run
        env = {**env, "PYTHONPATH": str(runtime / "site"), "HOME": str(work), "MPLCONFIGDIR": str(work / ".mpl"),
               "JUPYTER_RUNTIME_DIR": str(work / ".jupyter"), "IPYTHONDIR": str(work / ".ipython")}
        return ["env", "-i", *(f"{k}={v}" for k, v in env.items()), str(python), str(runtime / "driver.py"),
                *driver_args], str(work)
    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
           "--ro-bind", "/usr", "/usr", "--dev", "/dev",
           "--size", str(limits["disk"]), "--tmpfs", "/tmp"]
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
            # an installed (not editable) tts_lib there would be the full reference: hide it
            for pkg in Path(prefix).glob("lib/python3*/site-packages/tts_lib"):
                cmd += ["--tmpfs", str(pkg)]
    cmd += ["--ro-bind", str(runtime), "/opt/grader",
            "--size", str(limits["disk"]), "--tmpfs", "/submission", "--chdir", "/submission"]
    for k, v in env.items():
        cmd += ["--setenv", k, v]
    return [*cmd, str(python), "/opt/grader/driver.py", *driver_args], None


def _stub_source(source: str, funcs: list[str], module: str) -> str:
    """``source`` with the body of each top-level function in ``funcs`` replaced by a call to the grader.

    The stub keeps the signature and sends its arguments (``locals()`` at entry: the bound
    parameters) to the grader through ``_grading_client.ask``; the reference code itself is
    not in the sandbox.
    """
    import ast

    tree = ast.parse(source)
    found = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in funcs:
            if node.args.vararg or node.args.kwarg or node.args.posonlyargs:
                raise SystemExit(f"tts_lib.{module}.{node.name}: a forbidden function needs named parameters")
            call = ast.parse(f"return __import__('_grading_client').ask('tts_lib.{module}.{node.name}', "
                             "dict(locals()))").body
            node.body = call
            node.decorator_list = []
            found.add(node.name)
    if found != set(funcs):
        raise SystemExit(f"tts_lib.{module} has no function {sorted(set(funcs) - found)} that a test forbids")
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def _runtime(root: Path, forbidden: dict[str, list[str]] | None = None) -> Path:
    """A folder with the driver, the value codec, a copy of the ``tts_lib`` package and a
    stand-in for ``otter`` (``_otter_standin.py``: no check counts in the sandbox).

    ``forbidden`` maps ``tts_lib.MODULE.FUNCTION`` to the questions that forbid it: in the copy,
    those functions are stubs that ask the grader (:func:`_stub_source`), which answers only
    where the question being tested allows it; the reference code is not in the sandbox, so no
    submission can call it behind the grader's back. Made once per ``grade`` run, before any
    submission; the package is located without being imported (importing it imports torch).
    """
    import importlib.util

    spec = importlib.util.find_spec("tts_lib")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("tts_lib is not importable here: `pip install -e .` or set PYTHONPATH to the repository")
    runtime = root / "runtime"
    (runtime / "site").mkdir(parents=True)
    shutil.copyfile(DRIVER, runtime / "driver.py")
    for helper in ("_grading_codec.py", "_grading_client.py"):
        shutil.copyfile(HERE / helper, runtime / "site" / helper)
    (runtime / "site" / "otter").mkdir()  # the sandbox's otter: a stand-in (_otter_standin.py)
    shutil.copyfile(HERE / "_otter_standin.py", runtime / "site" / "otter" / "__init__.py")
    package = runtime / "site" / "tts_lib"
    shutil.copytree(Path(list(spec.submodule_search_locations)[0]).resolve(), package,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    by_module: dict[str, list[str]] = {}
    for qualname in forbidden or {}:
        _, module, func = qualname.split(".")
        by_module.setdefault(module, []).append(func)
    for module, funcs in by_module.items():
        path = package / f"{module}.py"
        path.write_text(_stub_source(path.read_text(encoding="utf-8"), funcs, module), encoding="utf-8")
    return runtime


# --------------------------------------------------------------------------- the tests, run outside


def _doctest_source(code: str) -> str:
    """Python source of an OK-format doctest case (``>>> `` / ``... `` lines)."""
    return "\n".join(line[4:] for line in code.splitlines() if line.startswith((">>> ", "... ", ">>>", "...")))


def parse_tests(tests: dict[str, str]) -> dict[str, list[dict]]:
    """Per question, its test cases: ``name``, ``source``, ``hidden``, ``points``, ``property``.

    ``tests`` are the OK-format files of an autograder bundle (our own: executed to read them).
    A case's property is the string its code assigns to ``PROPERTY`` (the first statement).
    """
    out: dict[str, list[dict]] = {}
    for fname, text in sorted(tests.items()):
        test = _ok_test(text)
        cases = [c for suite in test["suites"] for c in suite["cases"]]
        points = test.get("points")
        if not isinstance(points, list):
            points = [float(points or len(cases)) / len(cases)] * len(cases)
        q = Path(fname).stem
        out[q] = []
        for i, (case, pts) in enumerate(zip(cases, points, strict=True)):
            source = _doctest_source(case["code"])
            m = re.search(r"^PROPERTY\s*=\s*(['\"])(.+?)\1\s*$", source, re.M)
            out[q].append({"name": f"{q} - {i + 1}", "source": source, "hidden": bool(case.get("hidden")),
                           "points": float(pts), "property": m.group(2) if m else f"test {i + 1}"})
    return out


def student_functions(cases: dict[str, list[dict]]) -> list[str]:
    """The names the tests use without defining them: the student's functions."""
    import ast
    import builtins

    free: set[str] = set()
    for case in (c for cs in cases.values() for c in cs):
        tree = ast.parse(case["source"])
        bound = {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
        loaded = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                bound.add(node.name)
        free |= loaded - bound - set(dir(builtins))
    return sorted(free)


def forbidden_calls(cases: dict[str, list[dict]]) -> dict[str, list[str]]:
    """``tts_lib.MODULE.FUNCTION`` -> questions, from the tests that disable a reference function.

    A test forbids a function by swapping its code object (``tasks.hardness.__code__ = ...``)
    for one that raises, which is how the rule works under otter and Gradescope; the local grader
    reads the same lines and removes the function from the sandbox's copy of ``tts_lib``.
    """
    import ast

    out: dict[str, list[str]] = {}
    for q, cs in cases.items():
        for case in cs:
            tree = ast.parse(case["source"])
            alias = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module == "tts_lib":
                    alias.update({a.asname or a.name: f"tts_lib.{a.name}" for a in node.names})
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if (isinstance(target, ast.Attribute) and target.attr == "__code__"
                                and isinstance(target.value, ast.Attribute)
                                and isinstance(target.value.value, ast.Name) and target.value.value.id in alias):
                            qual = f"{alias[target.value.value.id]}.{target.value.attr}"
                            if q not in out.setdefault(qual, []):
                                out[qual].append(q)
    return out


class StudentError(Exception):
    """An exception of a type that is not built in, raised by a student's function."""


class SandboxError(Exception):
    """The sandbox gave no answer (timed out, died, or answered something unreadable)."""


class _Sandbox:
    """The driver in its sandbox, spoken to over its stdin and stdout (JSON lines)."""

    MAX_ASKS = 20_000

    def __init__(self, command: tuple[list[str], str | None], notebook: str, timeout: float,
                 forbidden: dict[str, list[str]] | None = None, limits: dict | None = None):
        cmd, cwd = command
        self.forbidden = forbidden or {}
        self.question: str | None = None  # the question whose test is running (None: the notebook's cells)
        self.asks = 0
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.dead: str | None = None
        self.lines: queue.Queue = queue.Queue()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr(), start_new_session=True, cwd=cwd)
        threading.Thread(target=self._read, daemon=True).start()
        caps = {**LIMITS, **(limits or {})}
        self.max_tasks, self.max_resident = int(caps["processes"]), int(caps["total_memory"])
        threading.Thread(target=self._watch, daemon=True).start()
        self._send({"notebook": notebook, "cell_timeout": timeout})

    @staticmethod
    def _stderr():
        """Where the sandbox's stderr goes: nowhere, or the file ``$TTS_GRADING_STDERR`` (debugging)."""
        path = os.environ.get("TTS_GRADING_STDERR")
        return open(path, "ab") if path else subprocess.DEVNULL  # noqa: SIM115 (the child owns it)

    def _read(self) -> None:
        while True:
            line = self.proc.stdout.readline(MAX_LINE)
            if not line:
                break
            self.lines.put(line)
            if not line.endswith(b"\n"):  # an answer larger than MAX_LINE: stop listening
                break
        self.lines.put(None)

    def _watch(self) -> None:
        """Stop the sandbox once it runs more than ``processes`` tasks (RLIMIT_NPROC spares root) or
        its processes together hold more than ``total_memory`` bytes (RLIMIT_AS is per process)."""
        while self.proc.poll() is None and self.dead is None:
            if os.path.isdir("/proc/self"):
                tasks, resident = tree_usage(self.proc.pid)
                if tasks > self.max_tasks:
                    self.dead = f"started more than {self.max_tasks} processes and threads: stopped"
                elif resident > self.max_resident:
                    self.dead = (f"its processes together used more than {self.max_resident / 2**30:g} GiB "
                                 "of memory: stopped")
                if self.dead:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.5)

    def _send(self, message: dict) -> None:
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode("utf-8"))
            self.proc.stdin.flush()
        except OSError:
            pass

    def _next(self, tag: str) -> dict | None:
        prefix = f"{tag} ".encode()
        while self.dead is None:
            try:
                line = self.lines.get(timeout=max(0.0, self.deadline - time.monotonic()))
            except queue.Empty:
                self.dead = self.dead or f"timed out after {self.timeout:g} s (an endless loop?)"
                break
            if line is None:
                time.sleep(0.1)  # the watcher may have stopped it: its reason first
                self.dead = self.dead or (f"the grading process died (exit {self.proc.poll()}): "
                                          "did the notebook kill it?")
                break
            if not line.endswith(b"\n"):
                self.dead = f"an answer larger than {MAX_LINE // 2**20} MiB"
                break
            if line.startswith(b"ASK "):
                self._send({"answer": self._reference(line[4:])})
                continue
            if line.startswith(prefix):
                try:
                    reply = json.loads(line[len(prefix):])
                except (ValueError, RecursionError):
                    reply = None
                if isinstance(reply, dict):
                    return reply
                self.dead = "an unreadable answer"
        self.close()
        return None

    def _reference(self, text: bytes) -> dict:
        """The grader's answer to a stub's request: the reference value, or a refusal."""
        import importlib

        self.asks += 1
        try:
            request = json.loads(text)
            ref = request["ref"]
            if ref not in self.forbidden:
                return {"refused": f"{str(ref)[:100]} is not a reference function of this assignment"}
            if self.asks > self.MAX_ASKS:
                return {"refused": f"more than {self.MAX_ASKS} calls of reference functions"}
            if self.question in self.forbidden[ref]:
                return {"refused": f"{ref} is not available in the answer to {self.question}: the question "
                                   "asks you to compute this yourself (use it to check your answers, not in them)"}
            kwargs = codec.decode(request["args"])
            sizes = [getattr(v, "size", 0) if not callable(getattr(v, "numel", None)) else v.numel()
                     for v in kwargs.values()]
            if sum(sizes) > MAX_REFERENCE_ELEMENTS:
                return {"refused": f"{ref}: arguments of more than {MAX_REFERENCE_ELEMENTS} numbers in all "
                                   "are too large to check while grading"}
            module, func = ref.rsplit(".", 1)
            with _JUDGE_LOCK:
                value = getattr(importlib.import_module(module), func)(**kwargs)
            return {"value": codec.encode(value)}
        except Exception as err:  # bad arguments: the reference's own error, as text
            return {"refused": f"{type(err).__name__}: {str(err)[:500]}"}

    def ready(self) -> dict | None:
        return self._next("READY")

    def call(self, name: str, args: tuple, kwargs: dict) -> dict:
        if self.dead:
            raise SandboxError(self.dead)
        self._send({"call": name, "args": codec.encode([list(args), kwargs]),
                    "timeout": max(1.0, self.deadline - time.monotonic())})
        reply = self._next("REPLY")
        if reply is None:
            raise SandboxError(self.dead)
        return reply

    def close(self) -> None:
        self._send({"done": True})
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the sandbox and every process in it
        self.proc.wait()


def _proxy(sandbox: _Sandbox, name: str):
    """A stand-in for the student's function ``name``: evaluates it in the sandbox, returns plain values."""
    import builtins

    def call(*args, **kwargs):
        reply = sandbox.call(name, args, kwargs)
        if "value" in reply:
            try:
                return codec.decode(json.dumps(reply["value"]))
            except (ValueError, TypeError, RecursionError) as err:
                raise SandboxError(f"{name} returned a value that cannot be read ({err})") from None
        if "missing" in reply:
            raise NameError(f"name {name!r} is not defined (the notebook does not define it)")
        if "raised" in reply and isinstance(reply["raised"], dict):
            r = reply["raised"]
            message = f"{name} raised {str(r.get('name', '?'))[:100]}: {str(r.get('message', ''))[:2000]}"
            err: Exception = StudentError(message)
            for kind in r.get("types", []) if isinstance(r.get("types"), list) else []:
                cls = getattr(builtins, str(kind), None)
                if isinstance(cls, type) and issubclass(cls, Exception) and not issubclass(cls, StopIteration):
                    err = cls(message)
                    break
            err.raised_by_student = True  # its message already says who raised what
            raise err
        raise SandboxError(str(reply.get("error", "no answer"))[:500])

    call.__name__ = name
    return call


def _head(err: BaseException) -> str:
    """The head of a failure: the assertion's message (or the exception and its message), one line."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else ""
    if getattr(err, "raised_by_student", False):
        pass
    elif isinstance(err, AssertionError):
        first = first or "an assertion failed"
    else:
        first = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return first[:500]


def _failing_line(err: BaseException, filename: str, source: str) -> str:
    """The test's statement that failed (its first line), from the traceback."""
    tb, line = err.__traceback__, 0
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    lines = source.splitlines()
    return lines[line - 1].strip()[:300] if 0 < line <= len(lines) else ""


def run_tests(sandbox: _Sandbox, cases: dict[str, list[dict]], funcs: list[str]) -> dict:
    """Run every test case here (trusted), the student's functions evaluated in the sandbox.

    Public tests of every question first, then the hidden ones: whatever the sandbox produces
    once it has seen a hidden test's input never reaches the student's feedback (only a hidden
    test's pass/fail and its property name do).
    """
    import builtins

    results: dict[str, list[dict]] = {q: [None] * len(cs) for q, cs in cases.items()}
    order = [(q, i) for hidden in (False, True) for q, cs in cases.items()
             for i, c in enumerate(cs) if c["hidden"] == hidden]
    with _JUDGE_LOCK:
        for q, i in order:
            case = cases[q][i]
            sandbox.question = q
            env = {"__builtins__": builtins, "__name__": "__grading__",
                   **{f: _proxy(sandbox, f) for f in funcs}}
            filename = f"<{case['name']}>"
            try:
                exec(compile(case["source"], filename, "exec"), env)
                passed, message, check = True, "", ""
            except Exception as err:
                passed, message, check = False, _head(err), _failing_line(err, filename, case["source"])
            results[q][i] = {"name": case["name"], "property": case["property"], "hidden": case["hidden"],
                             "points": case["points"], "passed": passed, "message": message, "check": check}
    return {q: {"score": float(sum(t["points"] for t in rs if t["passed"])),
                "possible": float(sum(t["points"] for t in rs)), "tests": rs} for q, rs in results.items()}


def _mentions(notebook: dict, forbidden: dict[str, list[str]]) -> list[str]:
    """Notes for the forbidden ``tts_lib`` functions the notebook's code mentions (read here, outside)."""
    cells = [c for c in notebook.get("cells", []) if isinstance(c, dict) and c.get("cell_type") == "code"
             and "_PUBLIC_TESTS = " not in _source(c)]
    answers = [c for c in cells if "otter_answer_cell" in ((c.get("metadata") or {}).get("tags") or [])]
    code = "\n".join(_source(c) for c in answers or cells)  # the answer cells where they are marked
    notes = []
    for qual, questions in sorted(forbidden.items()):
        _, module, func = qual.split(".")
        if re.search(rf"\b{module}\s*\.\s*{func}\b|\bimport\b[^\n]*\b{func}\b", code):
            notes.append(f"your notebook mentions {qual}, which {' and '.join(questions)} forbid"
                         f"{'s' if len(questions) == 1 else ''} in the answer: fine in a cell that checks "
                         "your answers, but while the tests of those questions run the grader refuses it, "
                         "so an answer that calls it fails every test that reaches the call")
    return notes


def _empty_record(submission: Path, error: str | None) -> dict:
    return {"submission": submission.name, "total": 0.0, "possible": None, "questions": {}, "error": error,
            "cell_errors": [], "notes": []}


def grade_one(submission: Path, cases: dict[str, list[dict]], name: str, root: Path, timeout: float,
              sandbox: bool = True, limits: dict | None = None, forbidden: dict | None = None,
              label: str | None = None) -> dict:
    """Grade one notebook; return its score record.

    ``root`` holds the ``runtime`` folder made by :func:`_runtime`. The student's cells run in a
    fresh kernel in the sandbox (killed whole after ``timeout`` seconds, kernel start included);
    then every test runs *here*, in this process, and only calls the student's functions in
    the sandbox, which answers with plain values. The score is decided here.
    """
    limits = {**LIMITS, **(limits or {})}
    record = _empty_record(submission, None)
    if label:
        record["submission"] = label
    try:
        text = submission.read_text(encoding="utf-8")
        nb = json.loads(text)
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            raise ValueError("no list of cells")
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        record["error"] = f"not a readable notebook ({type(err).__name__}: {err})"
        return record
    meta = (nb.get("metadata") or {}).get("otter") or {}
    declared = meta.get("assignment_name") if isinstance(meta, dict) else None
    if declared and declared != name:
        record["error"] = f"this is a notebook of assignment {declared!r}, not {name!r}"
        return record
    if not declared:
        record["notes"].append(f"the notebook's metadata was lost: graded as assignment {name!r}")
    record["notes"] += _mentions(nb, forbidden or {})
    box = _Sandbox(_sandbox_command(root / "runtime", sandbox, limits), text, timeout, forbidden, limits)
    try:
        ready = box.ready()
        if ready is None:
            record["error"] = box.dead
            return record
        errors = ready.get("cell_errors") if isinstance(ready.get("cell_errors"), list) else []
        record["cell_errors"] = [{"cell": int(e.get("cell", -1)), "ename": str(e.get("ename", ""))[:100],
                                  "evalue": str(e.get("evalue", ""))[:500]} for e in errors if isinstance(e, dict)]
        if ready.get("error"):
            record["error"] = (f"{str(ready['error'])[:200]} (out of memory? each process may use "
                               f"{limits['memory'] / 2**30:g} GiB)")
        record["questions"] = run_tests(box, cases, student_functions(cases))
        if box.dead and record["error"] is None:
            record["error"] = box.dead
    finally:
        box.close()
    record["total"] = sum(q["score"] for q in record["questions"].values())
    record["possible"] = sum(q["possible"] for q in record["questions"].values()) or None
    return record


_LIMIT_HINTS = (
    (re.compile(r"MemoryError|Unable to allocate|Cannot allocate memory|DefaultCPUAllocator"),
     "this cell ran out of memory: the grader allows {memory} GiB per process"),
    (re.compile(r"No space left on device|File too large|Errno 28|Errno 27"),
     "this cell wrote more than the grader allows ({disk} MiB in /submission and in /tmp, "
     "{file_size} MiB per file)"),
    (re.compile(r"Resource temporarily unavailable|can't start new thread|Errno 11"),
     "this cell started more processes or threads than the grader allows ({processes})"),
)


def _limit_hint(error: dict, limits: dict) -> str:
    text = f"{error['ename']}: {error['evalue']}"
    values = {"memory": f"{limits['memory'] / 2**30:g}", "disk": f"{limits['disk'] / 2**20:g}",
              "file_size": f"{limits['file_size'] / 2**20:g}", "processes": limits["processes"]}
    for pattern, hint in _LIMIT_HINTS:
        if pattern.search(text):
            return " (" + hint.format(**values) + ")"
    return ""


def _feedback(rec: dict, name: str, public: bool, limits: dict | None = None) -> str:
    """The student's report (``public``: hidden tests named by property, nothing else) or the full one.

    The public report is built from the scores, the public tests' results (which ran before
    any hidden input reached the sandbox), the hidden tests' pass/fail and property names, and
    the errors the notebook raised before any test ran: no text the sandbox produced while the
    hidden tests ran, and no hidden input or expected value.
    """
    limits = {**LIMITS, **(limits or {})}
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
                                                                    "TabError") else _limit_hint(e, limits))
            lines.append(f"  cell {e['cell'] + 1} (counting from 1): {e['ename']}: {e['evalue']}{hint}")
    for q, v in sorted(rec["questions"].items()):
        lines += ["", f"{q}: {v['score']:g} / {v['possible']:g} points"]
        shown = [t for t in v["tests"] if not t["hidden"]]
        hidden = [t for t in v["tests"] if t["hidden"]]
        for i, t in enumerate(shown):
            status = "passed" if t["passed"] else f"FAILED: {t['message']}"
            lines.append(f"  public test {i + 1} ({t['property']}, {t['points']:g} pt): {status}")
            if not t["passed"] and t.get("check"):  # the public test's code is in the student's notebook
                lines.append(f"    check: {t['check']}")
        if hidden:
            lost = sum(t["points"] for t in hidden if not t["passed"])
            failed = [t for t in hidden if not t["passed"]]
            lines.append(f"  hidden tests: {len(hidden) - len(failed)} of {len(hidden)} passed"
                         + (f" ({lost:g} point{'' if lost == 1 else 's'} lost)" if lost else ""))
            if failed:
                lines.append("    failed: " + "; ".join(t["property"] for t in failed))
            if not public:
                for t in failed:
                    lines.append(f"    hidden {t['name']} ({t['property']}): {t['message']}")
                    if t.get("check"):
                        lines.append(f"      check: {t['check']}")
    if public and any(t["hidden"] for v in rec["questions"].values() for t in v["tests"]):
        lines += ["", "Hidden tests are named by the property they check; they do not show their inputs. "
                  "Test your function on such cases yourself (the question says what each means)."]
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
    limits: dict | None = None,
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
    cases = parse_tests(tests)
    forbidden = forbidden_calls(cases)
    # the name the user gave (a symlink is reported as itself, not as its target)
    files = sorted(p for p in submissions.glob("*.ipynb") if p.is_file())
    if not files:
        raise SystemExit(f"no .ipynb files in {submissions}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    questions = sorted(cases)
    done: list[dict] = []
    lock = threading.Lock()

    with tempfile.TemporaryDirectory(prefix="grading-") as tmp:
        _runtime(Path(tmp), forbidden)

        def one(path: Path) -> dict:
            t0 = time.perf_counter()
            rec = grade_one(path, cases, name, Path(tmp), timeout, sandbox, limits, forbidden, label=path.name)
            rec["seconds"] = round(time.perf_counter() - t0, 2)
            with lock:
                (out / "feedback" / f"{path.stem}.txt").write_text(_feedback(rec, name, False, limits),
                                                                   encoding="utf-8")
                (out / "feedback" / f"{path.stem}.public.txt").write_text(_feedback(rec, name, True, limits),
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


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (exit 2), without the usage block."""

    def error(self, message: str) -> None:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive, finite number of seconds, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _variant_seed(text: str) -> int:
    if not re.fullmatch(r"\d{1,18}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer seed")
    return int(text)


def _check_grade_paths(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output folder that cannot be written or a bundle that is not a zip."""
    if not args.submissions.is_dir():
        raise UsageError(f"--submissions {args.submissions} is not a folder")
    if args.autograder is not None:
        if not args.autograder.is_file():
            raise UsageError(f"--autograder {args.autograder} is not a file")
        if not zipfile.is_zipfile(args.autograder):
            raise UsageError(f"--autograder {args.autograder} is not an autograder zip (build one with build.py)")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        probe = args.out / f".write-test-{os.getpid()}"
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as err:
        raise UsageError(f"--out {args.out} cannot be written ({err.strerror or err})") from None


def main(argv: list[str] | None = None) -> None:
    parser = _Parser(prog="build.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    b = sub.add_parser("build", help="generate student notebooks and autograder zips (the default)")
    b.add_argument("names", nargs="*", metavar="NAME", help=f"assignments (default: all of {', '.join(ASSIGNMENTS)})")
    b.add_argument("--dist", type=Path, default=DEFAULT_DIST,
                   help="output folder (default: assignments/dist; relative to the current folder)")
    b.add_argument("--no-run-tests", action="store_true", help="skip the check of the reference solutions")
    b.add_argument("--tts-lib-ref", default=None,
                   help="commit or tag of tts_lib the Gradescope bundle installs (default: git HEAD)")
    b.add_argument("--variant", type=_variant_seed, default=None, metavar="SEED",
                   help="a private variant: the hidden tests' random inputs drawn from SEED (an integer)")
    g = sub.add_parser("grade", help="grade a folder of submitted notebooks locally")
    g.add_argument("--assignment", required=True, choices=ASSIGNMENTS)
    g.add_argument("--submissions", required=True, type=Path, help="folder of submitted .ipynb files")
    g.add_argument("--out", required=True, type=Path, help="folder for scores.csv, scores.json, feedback/")
    g.add_argument("--autograder", type=Path, default=None,
                   help="autograder zip (default: assignments/dist/<name>/<name>-autograder.zip)")
    g.add_argument("--timeout", type=_positive_seconds, default=600.0, help="seconds per submission (default 600)")
    g.add_argument("--jobs", type=_positive_int, default=1, help="submissions graded at a time (default 1)")
    g.add_argument("--no-sandbox", action="store_true",
                   help="grade without bubblewrap (trusted submissions only: student code runs with your rights)")
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in ("build", "grade", "-h", "--help"):
        argv = ["build", *argv]  # `build` is the default command
    try:
        args = parser.parse_args(argv)
        if args.command == "grade":
            _check_grade_paths(args)
            grade(args.assignment, args.submissions, args.out, args.autograder, args.timeout, args.jobs,
                  sandbox=not args.no_sandbox)
        else:
            build(list(args.names) or list(ASSIGNMENTS), args.dist, run_tests=not args.no_run_tests,
                  tts_lib_ref=args.tts_lib_ref, variant=args.variant)
    except UsageError as err:
        print(err.message, file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
