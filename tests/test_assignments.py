"""The autograded assignments: generation, solution stripping, local grading, variants (otter-grader 7).

Runs the two documented commands of ``assignments/README.md`` once per module (fixtures):
``python assignments/build.py --dist TMP --no-run-tests`` (the reference solutions' full marks
are checked by grading them) and, per assignment,
``python assignments/build.py grade --assignment NAME --submissions DIR --out DIR``, on the
reference solutions, the unanswered student notebook, notebooks with plausible wrong answers
(each losing exactly the points of the tests that catch them, as the README's table of classic
mistakes says), a forbidden reference call, a check cell that uses the reference functions, a
symlinked submission and the solutions of another assignment; plus hostile submissions (a
GIL-holding endless loop, a snooper, a writer outside its folder, a killer of its grader, two
forgeries that the former in-kernel grader scored 9 / 9, a leaking answer, disk and memory
hogs, 600 threads) and a notebook whose metadata was lost, all graded in the bubblewrap
sandbox side by side. Also: the command line's refusals, private variants for 5 seeds (every
test run as the grader runs it), the student notebook checked alone in an empty folder under
another name with Colab's interpreter simulated, and otter's Gradescope entry point
``run_autograder`` in an emulated ``/autograder`` folder. Measured on 2 cores shared with
other jobs: 5 min 59 s at load average 10-14 and 8-10 min at load average 15-22 (the former
version of this file: 10 min 33 s at load average 25-35, 2 min 56 s at load average 4-6).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "assignments"
BUILD = SRC / "build.py"
NAMES = ("hardness", "scaling", "overthinking", "noise")
TIMEOUT = 900

# Points per question, as the source notebooks declare them.
POINTS = {
    "hardness": {"q1": 5, "q2": 2, "q3": 3},
    "scaling": {"q1": 3, "q2": 5, "q3": 3, "q4": 4},
    "overthinking": {"q1": 4, "q2": 4, "q3": 3, "q4": 3},
    "noise": {"q1": 5, "q2": 4, "q3": 3},
}

# Plausible wrong answers (a replacement for the solution cell that starts with the key) and the
# score each question must get with them.
WRONG = {
    # hardness = tr/λ_max: right for isotropic tasks (public test) and scale-free (hidden test),
    # wrong on rotated power laws, finite on a missing skill, wrong on float32 power laws: 2 of 5.
    "hardness": (
        {
            "def hardness(": (
                "def hardness(cov):\n"
                "    strengths = np.linalg.eigvalsh(np.asarray(cov, dtype=float))\n"
                "    return float(strengths.sum() / strengths.max())\n"
            ),
        },
        {"q1": 2, "q2": 2, "q3": 3},
    ),
    # Γ without the tr(Λ)/n ridge: only the n → ∞ limit (public test) survives: 1 of 3.
    # n*(k) from Corollary 3.5's bound instead of the exact error: exact for isotropic tasks
    # (public test), too large on power laws (two hidden tests): 1 of 3.
    # min_steps that starts at k = 1 and returns max_steps instead of raising: loses "no step
    # needed (k = 0)" and "eps out of reach: ValueError": 2 of 4.
    "scaling": (
        {
            "def gamma(": (
                "def gamma(cov, n):\n"
                "    return (1 + 1 / n) * np.asarray(cov, dtype=float)\n"
            ),
            "def min_context_len(": (
                "def min_context_len(cov, k, eps):\n"
                "    import math\n"
                "    lam = np.linalg.eigvalsh(np.asarray(cov, dtype=float))\n"
                "    hard = lam.sum() / lam.min()\n"
                "    return max(1, math.ceil((1 + hard) * ((len(lam) / eps) ** (1 / (2 * k)) - 1)))\n"
            ),
            "def min_steps(": (
                "def min_steps(cov, n, eps, max_steps=1000):\n"
                "    lam = np.linalg.eigvalsh(np.asarray(cov, dtype=float))\n"
                "    factor2 = ((lam + lam.sum()) / ((n + 1) * lam + lam.sum())) ** 2\n"
                "    for k in range(1, max_steps + 1):\n"
                "        if np.sum(factor2**k) <= eps:\n"
                "            return k\n"
                "    return max_steps\n"
            ),
        },
        {"q1": 1, "q2": 5, "q3": 1, "q4": 2},
    ),
    # overthinking iff σ_i > γ_i (instead of 2γ_i): passes the clear-cut public cases, fails the
    # borderline σ ∈ (γ, 2γ], σ = 2γ and random spectra: 1 of 4. γ_i of a *sorted* spectrum:
    # right on sorted inputs, loses "the order of the input": 3 of 4.
    "overthinking": (
        {
            "def overthinking_skills(": (
                "def overthinking_skills(lam, n, sig):\n"
                "    lam, sig = np.asarray(lam, dtype=float), np.asarray(sig, dtype=float)\n"
                "    return sig > (1 + 1 / n) * lam + lam.sum() / n\n"
            ),
            "def skill_gammas(": (
                "def skill_gammas(lam, n):\n"
                "    lam = np.sort(np.asarray(lam, dtype=float))[::-1]\n"
                "    return (1 + 1 / n) * lam + lam.sum() / n\n"
            ),
        },
        {"q1": 3, "q2": 1, "q3": 3, "q4": 3},
    ),
    # noise term in the inputs' dtype and without the σ_i <= 0 ValueError: right on float64
    # inputs (public and random hidden tests), loses the float32 and ValueError tests: 3 of 5.
    # k* = round(k°) instead of the better of ⌊k°⌋, ⌈k°⌉: passes the public case (k° ≈ 6.66)
    # and the random hidden ones, loses the cases where k° rounds to the worse neighbour: 3 of 4.
    # least-squares limit σ² tr(Σ⁻¹)/m (the first-order formula) instead of /(m − d − 1), with
    # the required ValueError: loses the public and the exact hidden test: 1 of 3.
    "noise": (
        {
            "def noise_term(": (
                "def noise_term(g, sig, k, m, noise_std):\n"
                "    g, sig = np.asarray(g), np.asarray(sig)\n"
                "    rho = 1 - g * sig\n"
                "    return float(noise_std**2 / m * np.sum((1 - rho**k) ** 2 / sig))\n"
            ),
            "def best_steps(": (
                "def best_steps(rho, tau):\n"
                "    if not (0 < rho < 1 and tau > 0):\n"
                "        raise ValueError('need 0 < rho < 1 and tau > 0')\n"
                "    return round(math.log1p(1 / tau) / -math.log(rho))\n"
            ),
            "def ls_limit(": (
                "def ls_limit(sig, m, noise_std):\n"
                "    sig = np.asarray(sig, dtype=float)\n"
                "    if m <= sig.size + 1:\n"
                "        raise ValueError('m must exceed d + 1')\n"
                "    return float(noise_std**2 * np.sum(1 / sig) / m)\n"
            ),
        },
        {"q1": 3, "q2": 3, "q3": 1},
    ),
}

# A second wrong hardness notebook: q1 calls the reference function the question forbids (the
# grader refuses it while q1's tests run, so every test of q1 fails: 0 of 5), q2's cell has a
# syntax error (0 of 2).
WRONG2 = (
    {
        "def hardness(": "def hardness(cov):\n    return float(tasks.hardness(cov))\n",
        "def power_law_hardness(": "def power_law_hardness(d, alpha)\n    return d ** alpha\n",
    },
    {"q1": 0, "q2": 0, "q3": 3},
)

# A second wrong noise notebook: q1 calls the forbidden tts_lib.noise.skill_noise_curves (refused
# while q1's tests run: 0 of 5); q2 takes ⌊k°⌋ (fails the public
# case k° ≈ 6.66, the random hidden cases and the rounding cases; keeps the ValueError test:
# 1 of 4); q3 has the exact formula but no ValueError for m <= d + 1: 2 of 3.
WRONG2_NOISE = (
    {
        "def noise_term(": (
            "def noise_term(g, sig, k, m, noise_std):\n"
            "    return float(noise.skill_noise_curves(g, sig, k, m, noise_std)[1][k].sum())\n"
        ),
        "def best_steps(": (
            "def best_steps(rho, tau):\n"
            "    if not (0 < rho < 1 and tau > 0):\n"
            "        raise ValueError('need 0 < rho < 1 and tau > 0')\n"
            "    return math.floor(math.log1p(1 / tau) / -math.log(rho))\n"
        ),
        "def ls_limit(": (
            "def ls_limit(sig, m, noise_std):\n"
            "    sig = np.asarray(sig, dtype=float)\n"
            "    return float(noise_std**2 * np.sum(1 / sig) / (m - sig.size - 1))\n"
        ),
    },
    {"q1": 0, "q2": 1, "q3": 2},
)

# Hostile submissions (hardness), graded side by side in one run: (cell inserted after the
# solution's set-up cell, expected score or None for 0 with an error).
SNOOP = """\
import glob, os
import tts_lib
found = []
package = os.path.dirname(os.path.abspath(tts_lib.__file__))  # in a source tree: its root is one up
roots = {os.getcwd(), "/tmp", "/opt", package, os.path.dirname(package)}
for root in sorted(roots):
    for pattern in ("**/hardness*.ipynb", "**/tests/q*.py", "**/*autograder*.zip", "**/assignments"):
        found += glob.glob(os.path.join(root, pattern), recursive=True)
for path in found:
    if path.endswith(".ipynb"):
        import json
        for cell in json.load(open(path))["cells"]:
            src = "".join(cell["source"])
            if cell["cell_type"] == "code" and src.lstrip().startswith("def "):
                exec(src.replace("# BEGIN SOLUTION", "").replace("# END SOLUTION", ""), globals())
"""
WRITE = """\
import os
import tts_lib
escaped = []
for target in ({outside!r}, tts_lib.__file__, os.path.join(os.path.dirname(tts_lib.__file__), "x.py")):
    try:
        open(target, "a").close()
        escaped.append(target)
    except OSError:
        pass
with open("/tmp/private.txt", "w") as f:  # a private /tmp is fine
    f.write("ok")
if escaped:  # a write escaped its folder: lose question 1's points
    del hardness
"""
KILL = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.killpg(0, signal.SIGKILL)"
GIL_LOOP = "sum(range(10**18))  # holds the GIL: no interrupt gets through"

# The failure message of one hidden test that the wrong answers fail.
HIDDEN_MESSAGE = {
    "hardness": "rotated power law, alpha=",
    "scaling": "rotated power law, n = ",
    "overthinking": "σ between γ and 2γ does not overthink",
    "noise": "k° rounds to the worse neighbour",
}
PUBLIC_MESSAGE = {  # the message of a public test the blank notebook fails
    "hardness": "the isotropic task I_5 has hardness d = 5",
    "scaling": "Γ is a (d, d) matrix",
    "overthinking": "one γ per skill",
    "noise": "k = 1, g = 1/2, σ_i = 1",
}

# The solution and a cell that checks it with the reference functions q1 and q2 forbid in answers.
CHECKER = """\
cov = tasks.power_law_cov(5, 1.0)
assert abs(hardness(cov.numpy()) - tasks.hardness(cov)) < 1e-9
"""
# Forging submissions (blank answers): one answers with an object equal to everything and
# patches otter's checker and its results, one runs a thread that rewrites every result-like
# file it can reach and writes fake protocol lines to its standard streams. Neither changes a
# score: no check runs in the sandbox (whose otter is a stand-in without a checker, so the patch
# fails to import there) and no file decides one.
FORGE_CHECKER = """\
class Anything:  # equal to everything, 5.0 as a float
    def __eq__(self, other):
        return True

    def __float__(self):
        return 5.0


def hardness(cov):
    return Anything()


from otter.execute import Checker

_check = Checker.check.__func__


def _forged(cls, *args, **kwargs):  # every test case passes (scored 9 / 9 by the former grader)
    out = _check(cls, *args, **kwargs)
    for r in out.test_case_results:
        r.passed = True
    return out


Checker.check = classmethod(_forged)
"""
FORGE_THREAD = """\
import glob, json, os, pickle, threading, time


def _forge():  # rewrites otter's results pickle (scored 9 / 9 by the former grader), fakes protocol lines
    fake = json.dumps({"value": 5.0})
    while True:
        for path in glob.glob("/tmp/**/*.pkl", recursive=True):
            try:
                with open(path, "rb") as f:
                    res = pickle.load(f)
                for tf in res.results.values():
                    for r in tf.test_case_results:
                        r.passed = True
                    tf._score = tf.possible
                with open(path + ".x", "wb") as f:
                    pickle.dump(res, f)
                os.replace(path + ".x", path)
            except Exception:
                pass
        for path in glob.glob("/tmp/**/*.json", recursive=True) + glob.glob("/submission/**/*.json", recursive=True):
            try:
                with open(path, "w") as f:
                    json.dump({"q1": 5, "q2": 2, "q3": 3}, f)
            except OSError:
                pass
        for fd in (1, 2):
            try:
                os.write(fd, f"READY {{}}\\nREPLY {fake}\\nRESULT 0 {{}}\\n".encode())
            except OSError:
                pass
        time.sleep(0.02)


threading.Thread(target=_forge, daemon=True).start()
"""
# A leaking answer to q1: it keeps what it was called with and whatever hidden-test text it can
# find in memory or on disk, and raises it all, hoping that a public test's report echoes it.
LEAK = """\
import gc
import glob

_seen = []


def hardness(cov):
    _seen.append(str(np.asarray(cov).shape))
    keys = ("rot" + "ated power law, al" + "pha", "a float" + "32 covariance: ex" + "pected",
            "infinitely hard, g" + "ot")
    found = []
    for obj in gc.get_objects():
        if isinstance(obj, dict):
            found += [v for v in obj.values() if isinstance(v, str) and any(k in v for k in keys)]
    for path in glob.glob("/tmp/**/*", recursive=True) + glob.glob("/opt/**/*.py", recursive=True):
        try:
            text = open(path, encoding="utf-8").read()
        except (OSError, UnicodeDecodeError):
            continue
        found += [path for k in keys if k in text]
    raise ValueError(f"LEAK seen={_seen} found={found[:20]}")
"""
DISK_HOG = """\
with open("/submission/hog.bin", "wb") as f:  # 2 GiB, 1 MiB at a time
    for _ in range(2048):
        f.write(bytes(2**20))
"""
MEMORY_HOG = "hog = np.ones(2**31)  # 16 GiB"
THREADS = """\
import threading, time
for _ in range(600):  # more than the 512 processes and threads a sandbox may run
    threading.Thread(target=time.sleep, args=(120,), daemon=True).start()
"""

PROBE = """\
import sys
import tts_lib
if sys.prefix != {prefix!r} or not tts_lib.__file__.startswith("/opt/grader/site/tts_lib/"):
    del hardness  # not this environment's Python, or tts_lib not the sandbox's copy: lose q1
"""


def _run(args: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(BUILD), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=TIMEOUT)
    assert proc.returncode == 0, f"build.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _src(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # the documented build command (all assignments), without otter's own run of each
    # reference solution's tests (34 of its 48 s): the grader gives those solutions full
    # marks below (test_reference_solutions_score_full_marks), a stronger check
    _run(["--dist", str(out), "--no-run-tests"])
    return out


def _replace(nb, replacements: dict[str, str]) -> None:
    replaced = set()
    for cell in nb.cells:
        for key, wrong in replacements.items():
            if cell.cell_type == "code" and cell.source.lstrip().startswith(key):
                cell.source = wrong
                replaced.add(key)
    assert replaced == set(replacements), "solution cells not found"


def _stray_sandboxes() -> list[str]:
    """Processes still running a grading driver or sitting in a grading folder."""
    stray = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if "/opt/grader/driver.py" in cmd or "/grading-" in cwd:
            stray.append(f"{pid}: {cmd[:100]} (cwd {cwd})")
    return stray


@pytest.fixture(scope="module")
def graded(dist, tmp_path_factory) -> dict:
    """Grade the submissions of every assignment, and the hostile ones, with the documented command."""
    root = tmp_path_factory.mktemp("grading")
    results = {}
    runs = {}
    for i, name in enumerate(NAMES):
        subs = root / name / "submissions"
        subs.mkdir(parents=True)
        solution = dist / name / "autograder" / f"{name}.ipynb"
        if name == "scaling":  # a symlinked submission is reported under the name it has in the folder
            (root / name / "elsewhere").mkdir(parents=True)
            (root / name / "elsewhere" / "link-target.ipynb").write_bytes(solution.read_bytes())
            (subs / "solution.ipynb").symlink_to(root / name / "elsewhere" / "link-target.ipynb")
        else:
            (subs / "solution.ipynb").write_bytes(solution.read_bytes())
        (subs / "blank.ipynb").write_bytes((dist / name / "student" / f"{name}.ipynb").read_bytes())
        nb = nbformat.read(solution, as_version=4)
        _replace(nb, WRONG[name][0])
        nbformat.write(nb, subs / "wrong.ipynb")
        other = NAMES[(i + 1) % len(NAMES)]  # a notebook of another assignment
        (subs / "other.ipynb").write_bytes((dist / other / "autograder" / f"{other}.ipynb").read_bytes())
        runs[name] = (name, [])
    nb = nbformat.read(dist / "hardness" / "autograder" / "hardness.ipynb", as_version=4)
    _replace(nb, WRONG2[0])
    nbformat.write(nb, root / "hardness" / "submissions" / "wrong2.ipynb")
    nb = nbformat.read(dist / "overthinking" / "autograder" / "overthinking.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(THREADS))
    nbformat.write(nb, root / "overthinking" / "submissions" / "threads.ipynb")
    nb = nbformat.read(dist / "hardness" / "autograder" / "hardness.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(CHECKER))
    nbformat.write(nb, root / "hardness" / "submissions" / "checker.ipynb")
    nb = nbformat.read(dist / "noise" / "autograder" / "noise.ipynb", as_version=4)
    _replace(nb, WRONG2_NOISE[0])
    nbformat.write(nb, root / "noise" / "submissions" / "wrong2.ipynb")
    # hostile submissions and lost metadata, graded in one run; the endless loop alone, with 30 s
    hostile = root / "hostile" / "submissions"
    hostile.mkdir(parents=True)
    (root / "gil" / "submissions").mkdir(parents=True)
    outside = root / "outside" / "escaped.txt"
    outside.parent.mkdir()
    solution = dist / "hardness" / "autograder" / "hardness.ipynb"
    for key, cell in {"gil": GIL_LOOP, "writer": WRITE.format(outside=str(outside)), "killer": KILL}.items():
        nb = nbformat.read(solution, as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(cell))
        nbformat.write(nb, (root / "gil" / "submissions" if key == "gil" else hostile) / f"{key}.ipynb")
    nb = nbformat.read(dist / "hardness" / "student" / "hardness.ipynb", as_version=4)
    sol = nbformat.read(solution, as_version=4)
    answer_q2 = next(c.source for c in sol.cells
                     if c.cell_type == "code" and c.source.startswith("def power_law_hardness("))
    _replace(nb, {"def power_law_hardness(": answer_q2})
    nb.cells.append(nbformat.v4.new_code_cell(SNOOP))
    nbformat.write(nb, hostile / "snoop.ipynb")
    nb = nbformat.read(solution, as_version=4)
    nb.metadata.pop("otter")
    nb.cells.append(nbformat.v4.new_code_cell(PROBE.format(prefix=sys.prefix)))
    nbformat.write(nb, hostile / "nometa.ipynb")
    blank = dist / "hardness" / "student" / "hardness.ipynb"
    for key, cell in {"forge_checker": FORGE_CHECKER, "forge_thread": FORGE_THREAD}.items():
        nb = nbformat.read(blank, as_version=4)  # blank answers, then the forgery
        nb.cells.append(nbformat.v4.new_code_cell(cell))
        nbformat.write(nb, hostile / f"{key}.ipynb")
    nb = nbformat.read(solution, as_version=4)
    _replace(nb, {"def hardness(": LEAK})
    nbformat.write(nb, hostile / "leak.ipynb")
    nb = nbformat.read(solution, as_version=4)
    nb.cells += [nbformat.v4.new_code_cell(DISK_HOG), nbformat.v4.new_code_cell(MEMORY_HOG)]
    nbformat.write(nb, hostile / "hog.ipynb")
    runs["hostile"] = ("hardness", ["--timeout", "150", "--jobs", "2"])  # kernels start slowly on a busy machine
    runs["gil"] = ("hardness", ["--timeout", "12"])  # the loop burns a core until then
    tts_init = Path(__import__("tts_lib").__file__)
    before = hashlib.sha256(tts_init.read_bytes()).hexdigest()
    procs = {
        key: subprocess.Popen(
            [sys.executable, str(BUILD), "grade", "--assignment", name,
             "--submissions", str(root / key / "submissions"), "--out", str(root / key / "out"),
             "--autograder", str(dist / name / f"{name}-autograder.zip"), *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for key, (name, extra) in runs.items()
    }
    for key, proc in procs.items():
        output, _ = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, f"build.py grade ({key}) failed:\n{output}"
        out = root / key / "out"
        data = json.loads((out / "scores.json").read_text())
        results[key] = {"out": out, "by_file": {r["submission"]: r for r in data["submissions"]}, "log": output}
    results["stray"] = _stray_sandboxes()
    results["outside"] = outside
    results["tts_lib_unchanged"] = hashlib.sha256(tts_init.read_bytes()).hexdigest() == before
    return results


# --------------------------------------------------------------------------- generation


@pytest.mark.parametrize("name", NAMES)
def test_build_writes_student_notebook_and_autograder(dist, name):
    student = dist / name / "student" / f"{name}.ipynb"
    bundle = dist / name / f"{name}-autograder.zip"
    assert student.is_file() and bundle.is_file()
    nbformat.validate(nbformat.read(student, as_version=4))
    with zipfile.ZipFile(bundle) as z:
        tests = sorted(n for n in z.namelist() if n.startswith("tests/"))
        assert tests == [f"tests/{q}.py" for q in POINTS[name]]
        assert "otter_config.json" in z.namelist()


def _public_tests(student: dict) -> dict[str, dict]:
    """The OK-format tests that the student notebook's public-tests cell writes."""
    cell = next(c for c in student["cells"] if c.get("id") == "public-tests")
    scope: dict = {}
    exec(_src(cell).split("_os.makedirs")[0], scope)  # defines _PUBLIC_TESTS only
    out = {}
    for fname, source in scope["_PUBLIC_TESTS"].items():
        test_scope: dict = {}
        exec(source, test_scope)
        out[Path(fname).stem] = test_scope["test"]
    return out


def _source_tests(name: str) -> dict[str, dict[str, list[str]]]:
    """Per question, the public and hidden test cells of the source notebook."""
    nb = json.loads((SRC / f"{name}.ipynb").read_text())
    out, question, in_tests = {}, None, False
    for cell in nb["cells"]:
        src = _src(cell)
        if cell["cell_type"] == "raw" and src.startswith("# BEGIN QUESTION"):
            question = re.search(r"name:\s*(\w+)", src).group(1)
            out[question] = {"public": [], "hidden": []}
        elif cell["cell_type"] == "raw" and src.strip() in ("# BEGIN TESTS", "# END TESTS"):
            in_tests = src.strip() == "# BEGIN TESTS"
        elif in_tests and cell["cell_type"] == "code":
            kind = "hidden" if src.startswith("# HIDDEN") else "public"
            out[question][kind].append(src)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_questions_points_and_test_split(dist, name):
    """3-4 questions with the declared points; public tests in the student notebook, hidden ones only in the zip."""
    tests = _source_tests(name)
    assert list(tests) == list(POINTS[name]) and 3 <= len(tests) <= 4
    student = json.loads((dist / name / "student" / f"{name}.ipynb").read_text())
    public = _public_tests(student)
    with zipfile.ZipFile(dist / name / f"{name}-autograder.zip") as z:
        for q, cells in tests.items():
            assert cells["public"] and cells["hidden"], f"{name}/{q} needs public and hidden tests"
            cases = public[q]["suites"][0]["cases"]
            assert len(cases) == len(cells["public"]) and not any(c["hidden"] for c in cases)
            scope: dict = {}
            exec(z.read(f"tests/{q}.py").decode(), scope)  # an OK-format test file: `test = {...}`
            full = scope["test"]["suites"][0]["cases"]
            assert [c["hidden"] for c in full] == [False] * len(cells["public"]) + [True] * len(cells["hidden"])
            assert sum(scope["test"]["points"]) == POINTS[name][q]


def _solution_lines(name: str) -> set[str]:
    nb = json.loads((SRC / f"{name}.ipynb").read_text())
    inside, sol, other = False, set(), set()
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for line in _src(cell).splitlines():
            s = line.strip()
            if s == "# BEGIN SOLUTION":
                inside = True
            elif s == "# END SOLUTION":
                inside = False
            elif inside:
                sol.add(s)
            else:
                other.add(s)
    return {s for s in sol - other if s}


@pytest.mark.parametrize("name", NAMES)
def test_no_solution_or_hidden_test_in_student_notebook(dist, name):
    sol = _solution_lines(name)
    assert len(sol) >= 3 * len(POINTS[name]), "the source notebook has solution blocks"
    student_text = (dist / name / "student" / f"{name}.ipynb").read_text()
    student_lines = {line.strip() for c in json.loads(student_text)["cells"] for line in _src(c).splitlines()}
    solution_nb = (dist / name / "autograder" / f"{name}.ipynb").read_text()
    solution_lines = {line.strip() for c in json.loads(solution_nb)["cells"] for line in _src(c).splitlines()}
    assert sol <= solution_lines, "the grep finds the solutions where they belong (the autograder notebook)"
    assert not sol & student_lines, f"solution lines in the student notebook: {sorted(sol & student_lines)}"
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "# HIDDEN", "ASSIGNMENT CONFIG", "BEGIN QUESTION"):
        assert marker not in student_text
    # every answer cell is left as `...` for the student
    answers = [c for c in json.loads(student_text)["cells"] if "otter_answer_cell" in c["metadata"].get("tags", [])]
    assert len(answers) == len(POINTS[name]) and all("    ..." in _src(c) for c in answers)
    # no line of a hidden test (other than imports and lines shared with public tests) reaches the student
    for q, cells in _source_tests(name).items():
        public = {line.strip() for src in cells["public"] for line in src.splitlines()}
        for src in cells["hidden"]:
            for line in src.splitlines()[1:]:
                s = line.strip()
                # (lines of a dozen characters or fewer, such as `try:`, carry no test)
                if len(s) > 12 and not s.startswith(("import ", "from ", "#")) and s not in public:
                    assert s not in student_text, f"{name}/{q}: hidden test line in the student notebook: {s}"


# --------------------------------------------------------------------------- grading


def _scores(rec: dict) -> dict[str, float]:
    return {q: v["score"] for q, v in rec["questions"].items()}


@pytest.mark.parametrize("name", NAMES)
def test_reference_solutions_score_full_marks(graded, name):
    rec = graded[name]["by_file"]["solution.ipynb"]
    assert rec["error"] is None and rec["cell_errors"] == []
    assert _scores(rec) == POINTS[name]
    assert rec["total"] == rec["possible"] == sum(POINTS[name].values())


@pytest.mark.parametrize("name", NAMES)
def test_unanswered_notebook_scores_zero(graded, name):
    rec = graded[name]["by_file"]["blank.ipynb"]
    assert rec["error"] is None
    assert _scores(rec) == {q: 0 for q in POINTS[name]}
    assert rec["possible"] == sum(POINTS[name].values())


@pytest.mark.parametrize("name", NAMES)
def test_wrong_answers_lose_exactly_their_points(graded, name):
    rec = graded[name]["by_file"]["wrong.ipynb"]
    expected = WRONG[name][1]
    assert rec["error"] is None
    assert _scores(rec) == expected
    assert rec["total"] == sum(expected.values())
    # the points lost are the hidden tests' (and the public test's where it catches the error)
    for q, v in rec["questions"].items():
        lost = sum(t["points"] for t in v["tests"] if not t["passed"])
        assert lost == POINTS[name][q] - expected[q]


def test_forbidden_call_and_syntax_error(graded):
    """Calling tts_lib.tasks.hardness in q1's answer is refused while q1's tests run; a syntax error is reported."""
    rec = graded["hardness"]["by_file"]["wrong2.ipynb"]
    assert rec["error"] is None
    assert _scores(rec) == WRONG2[1]
    q1 = rec["questions"]["q1"]["tests"]
    assert not any(t["passed"] for t in q1)
    assert all("not available in the answer to q1" in t["message"] for t in q1)
    assert [e["ename"] for e in rec["cell_errors"]] == ["SyntaxError"]
    public = (graded["hardness"]["out"] / "feedback" / "wrong2.public.txt").read_text()
    assert "SyntaxError" in public and "Python could not read this cell" in public
    assert "q2: 0 / 2 points" in public and "q1: 0 / 5 points" in public
    # the public test's own message says why; the note names the rule; hidden tests: properties only
    assert "public test 1 (the isotropic task, 1 pt): FAILED: hardness raised RuntimeError: " \
           "tts_lib.tasks.hardness is not available in the answer to q1" in public
    assert "Note: your notebook mentions tts_lib.tasks.hardness, which q1 and q2 forbid" in public
    assert "hidden tests: 0 of 4 passed (4 points lost)" in public
    assert "failed: rotated covariance; scale-free; a missing skill; float32 input" in public


def test_reference_functions_are_allowed_in_check_cells(graded):
    """The solution with a cell that checks it against tts_lib.tasks.hardness: full marks, no error."""
    rec = graded["hardness"]["by_file"]["checker.ipynb"]
    assert rec["error"] is None and rec["cell_errors"] == [] and rec["total"] == sum(POINTS["hardness"].values())


def test_noise_forbidden_call_floor_and_missing_value_error(graded):
    """Noise: a forbidden tts_lib.noise call, ⌊k°⌋ and a missing ValueError lose exactly their tests."""
    rec = graded["noise"]["by_file"]["wrong2.ipynb"]
    assert rec["error"] is None and rec["cell_errors"] == []
    assert _scores(rec) == WRONG2_NOISE[1]
    failed = {q: [t for t in v["tests"] if not t["passed"]] for q, v in rec["questions"].items()}
    # every test of q1 that calls noise_term reaches the forbidden call
    assert [t["passed"] for t in rec["questions"]["q1"]["tests"]] == [False] * 5
    assert "not available in the answer to q1" in failed["q1"][0]["message"]
    assert [t["hidden"] for t in failed["q2"]] == [False, True, True]
    assert len(failed["q3"]) == 1 and "must raise ValueError" in failed["q3"][0]["message"]
    assert failed["q3"][0]["property"] == "m ≤ d + 1: ValueError"
    public = (graded["noise"]["out"] / "feedback" / "wrong2.public.txt").read_text()
    assert "3 / 12 points" in public.splitlines()[0] and "q1: 0 / 5 points" in public
    assert "failed: several ρ and τ; which neighbour of k° is best" in public
    assert "must raise ValueError" not in public, "a hidden test's message stays hidden"
    assert "must raise ValueError" in (graded["noise"]["out"] / "feedback" / "wrong2.txt").read_text()
    wrong = graded["noise"]["by_file"]["wrong.ipynb"]  # which tests the first wrong notebook fails
    messages = {q: " ".join(t["message"] for t in v["tests"] if not t["passed"])
                for q, v in wrong["questions"].items()}
    assert "float32 spectra: compute in float64" in messages["q1"] and "must raise ValueError" in messages["q1"]
    assert "k° rounds to the worse neighbour" in messages["q2"]
    assert "5/10" in messages["q3"] and "m = 8" in messages["q3"]


def test_failure_reports_keep_the_head_of_the_message(graded):
    """The instructor's report starts with the assertion's message (the failing check), not a traceback tail."""
    rec = graded["hardness"]["by_file"]["wrong.ipynb"]
    failed = {t["property"]: t["message"] for t in rec["questions"]["q1"]["tests"] if not t["passed"]}
    assert failed["rotated covariance"].startswith("rotated power law, alpha=0.5: expected ")
    assert failed["a missing skill"].startswith("a missing skill makes the task infinitely hard")
    assert all("Traceback" not in m and "\n" not in m for m in failed.values())


@pytest.mark.parametrize("name", NAMES)
def test_notebook_of_another_assignment_is_reported(graded, name):
    rec = graded[name]["by_file"]["other.ipynb"]
    assert rec["error"] and "notebook of assignment" in rec["error"] and rec["total"] == 0


@pytest.mark.parametrize("name", NAMES)
def test_grade_writes_csv_final_grades_and_feedback(graded, name):
    out = graded[name]["out"]
    with open(out / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    files = ["blank.ipynb", *(["checker.ipynb"] if name == "hardness" else []), "other.ipynb", "solution.ipynb",
             *(["threads.ipynb"] if name == "overthinking" else []),
             *(["wrong.ipynb", "wrong2.ipynb"] if name in ("hardness", "noise") else ["wrong.ipynb"])]
    assert [r["submission"] for r in rows] == files
    assert list(rows[0]) == ["submission", *POINTS[name], "total", "possible", "error"]
    by = {r["submission"]: r for r in rows}
    assert float(by["solution.ipynb"]["total"]) == sum(POINTS[name].values())
    assert float(by["wrong.ipynb"]["total"]) == sum(WRONG[name][1].values())
    # otter grade's final_grades.csv layout: a points-per-question row, then one row per file
    with open(out / "final_grades.csv", newline="") as f:
        final = list(csv.DictReader(f))
    assert list(final[0]) == ["file", *POINTS[name], "total_points_earned", "percent_correct", "grading_status"]
    assert final[0]["file"] == "points-per-question" and final[0]["grading_status"] == "--"
    assert {q: float(final[0][q]) for q in POINTS[name]} == POINTS[name]
    fin = {r["file"]: r for r in final[1:]}
    assert fin["solution.ipynb"]["grading_status"] == "Completed"
    assert float(fin["solution.ipynb"]["percent_correct"]) == 1
    assert "notebook of assignment" in fin["other.ipynb"]["grading_status"]
    # feedback: per-question scores; hidden tests counted, their messages only in the full report
    full = (out / "feedback" / "wrong.txt").read_text()
    public = (out / "feedback" / "wrong.public.txt").read_text()
    hidden_message = HIDDEN_MESSAGE[name]  # the message of a hidden test the wrong answer fails
    assert hidden_message in full
    assert hidden_message not in public, "the public report must not show hidden tests"
    expected, total = WRONG[name][1], sum(POINTS[name].values())
    assert f"{sum(expected.values()):g} / {total:g} points" in public.splitlines()[0]
    for q, score in expected.items():
        assert f"{q}: {score:g} / {POINTS[name][q]:g} points" in public
    # each failed hidden test is named by its property, in the public report too
    for q, v in graded[name]["by_file"]["wrong.ipynb"]["questions"].items():
        failed = [t["property"] for t in v["tests"] if t["hidden"] and not t["passed"]]
        if failed:
            assert "    failed: " + "; ".join(failed) in public.split(f"\n{q}: ")[1].split("\n\n")[0]
    blank = (out / "feedback" / "blank.public.txt").read_text()
    assert re.search(r"public test 1 \([^)]+, 1 pt\): FAILED", blank) and PUBLIC_MESSAGE[name] in blank


# --------------------------------------------------------------------------- safety


def test_hostile_submissions_are_contained_and_the_others_graded(graded):
    by = graded["hostile"]["by_file"]
    full = sum(POINTS["hardness"].values())
    gil = graded["gil"]["by_file"]["gil.ipynb"]
    assert gil["total"] == 0 and "timed out after 12 s" in gil["error"]
    assert gil["seconds"] < 72
    killer = by["killer.ipynb"]
    assert killer["total"] == 0 and "grading process died" in killer["error"]
    snoop = by["snoop.ipynb"]  # found no tests, no solutions: only its own answer to q2 counts
    assert snoop["error"] is None and _scores(snoop) == {"q1": 0, "q2": 2, "q3": 0}
    writer = by["writer.ipynb"]  # every write outside its folder failed: full marks, nothing written
    assert writer["error"] is None and writer["total"] == full
    assert not graded["outside"].exists() and graded["tts_lib_unchanged"]
    assert graded["stray"] == [], "a sandbox outlived its grading"


def test_lost_metadata_is_graded_as_the_assignment_and_kernel_is_this_python(graded):
    """The probe cell removes q1's answer unless the kernel is this Python with the sandbox's tts_lib copy."""
    rec = graded["hostile"]["by_file"]["nometa.ipynb"]
    assert rec["error"] is None and rec["total"] == sum(POINTS["hardness"].values())
    assert any("metadata was lost" in n for n in rec["notes"])
    assert "metadata was lost: graded as assignment 'hardness'" in (
        graded["hostile"]["out"] / "feedback" / "nometa.public.txt").read_text()


def test_scores_are_written_as_each_submission_finishes(graded):
    """Each finished submission rewrites scores.csv at once (the log says how many rows it holds)."""
    log = graded["hostile"]["log"]
    counts = [int(m) for m in re.findall(r"^\w+\.ipynb: .*; (\d+) of 8 in scores\.csv\)$", log, re.M)]
    assert counts == list(range(1, 9)), log
    with open(graded["hostile"]["out"] / "scores.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 8


def test_forging_submissions_score_zero(graded):
    """Blank answers with otter's checker patched, or a thread rewriting files and faking protocol lines: 0."""
    by = graded["hostile"]["by_file"]
    for key in ("forge_checker.ipynb", "forge_thread.ipynb"):
        rec = by[key]
        assert rec["total"] == 0 and rec["possible"] == sum(POINTS["hardness"].values()), (key, rec)
        assert not any(t["passed"] for v in rec["questions"].values() for t in v["tests"]), key
    # the object equal to everything never reaches a comparison: the grader reads plain values only
    q1 = by["forge_checker.ipynb"]["questions"]["q1"]["tests"]
    assert all("returned an object of type Anything" in t["message"] for t in q1)


def test_a_leaking_answer_leaks_nothing_hidden(graded):
    """An answer that raises what it saw: the public report shows only what it saw in public tests."""
    rec = graded["hostile"]["by_file"]["leak.ipynb"]
    assert rec["error"] is None and _scores(rec) == {"q1": 0, "q2": 2, "q3": 3}
    public = (graded["hostile"]["out"] / "feedback" / "leak.public.txt").read_text()
    full = (graded["hostile"]["out"] / "feedback" / "leak.txt").read_text()
    assert "LEAK seen=['(5, 5)'] found=[]" in public  # the public test ran first, on I_5
    assert "(8, 8)" in full, "the leaking answer did see the hidden inputs (the attack was live)"
    for text in ("(8, 8)", "(6, 6)", "(3, 3)", HIDDEN_MESSAGE["hardness"], "infinitely hard, got"):
        assert text not in public, text
    assert "failed: rotated covariance; scale-free; a missing skill; float32 input" in public


def test_too_many_threads_stop_the_submission_with_a_clear_message(graded):
    rec = graded["overthinking"]["by_file"]["threads.ipynb"]
    assert rec["total"] == 0 and rec["error"] == "started more than 512 processes and threads: stopped"
    assert "Not fully graded: started more than 512 processes and threads" in (
        graded["overthinking"]["out"] / "feedback" / "threads.public.txt").read_text()


def test_disk_and_memory_hogs_are_stopped_with_a_clear_message(graded):
    """2 GiB written and 16 GiB allocated: both refused by the caps; the answers are graded as usual."""
    rec = graded["hostile"]["by_file"]["hog.ipynb"]
    assert rec["error"] is None and rec["total"] == sum(POINTS["hardness"].values())
    assert [e["ename"] for e in rec["cell_errors"]] == ["OSError", "MemoryError"], rec["cell_errors"]
    public = (graded["hostile"]["out"] / "feedback" / "hog.public.txt").read_text()
    assert "this cell wrote more than the grader allows (256 MiB in /submission and in /tmp" in public
    assert "this cell ran out of memory: the grader allows 6 GiB per process" in public


# --------------------------------------------------------------------------- Colab and Gradescope

COLAB_SHELL = """\
# simulate Google Colab for otter: its shell's repr names google.colab
import otter.check.utils as _otter_utils


class _ColabShell:
    def __repr__(self):
        return "<google.colab._shell.Shell object>"


_otter_utils.get_ipython = _ColabShell
"""


def test_student_notebook_checks_alone_under_another_name_on_colab(dist, tmp_path):
    """Otter's Colab route: the notebook alone in an empty folder, renamed, with Colab's shell."""
    from nbclient import NotebookClient

    student = nbformat.read(dist / "hardness" / "student" / "hardness.ipynb", as_version=4)
    solution = nbformat.read(dist / "hardness" / "autograder" / "hardness.ipynb", as_version=4)
    answers = {c.source.split("(")[0]: c.source for c in solution.cells
               if c.cell_type == "code" and c.source.startswith("def ")}
    for cell in student.cells:
        key = cell.source.split("(")[0]
        if "otter_answer_cell" in cell.metadata.get("tags", []) and key in answers and key != "def hardness":
            cell.source = answers[key]  # answer q2 and q3; leave q1 unanswered
    student.cells.insert(0, nbformat.v4.new_code_cell(COLAB_SHELL))
    student.cells.append(nbformat.v4.new_code_cell(  # the simulation is what otter sees
        "from otter.check.utils import IPythonInterpreter\nassert grader.interpreter is IPythonInterpreter.COLAB"))
    folder = tmp_path / "content"
    folder.mkdir()
    path = folder / "Copy of hardness.ipynb"
    nbformat.write(student, path)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(folder)}}).execute()
    outputs = {}
    for cell in nb.cells:
        m = re.fullmatch(r'grader\.check\("(q\d)"\)', cell.source.strip())
        if m:
            assert not [o for o in cell.outputs if o.output_type == "error"], f"{m.group(1)}: {cell.outputs}"
            outputs[m.group(1)] = json.dumps([o.get("data", o.get("text")) for o in cell.outputs])
    assert not [o for o in nb.cells[-1].outputs if o.output_type == "error"], "otter did not see Colab"
    assert sorted(outputs) == ["q1", "q2", "q3"]
    assert "passed" in outputs["q2"] and "passed" in outputs["q3"]
    # passing the public tests says that they are not the grade, and what the hidden tests check
    assert "These are the public tests only" in outputs["q3"]
    assert "Your grade also counts hidden tests of: strongest skill first" in outputs["q3"]
    assert "failed" in outputs["q1"].lower() and "hardness d = 5" in outputs["q1"]
    assert sorted(p.name for p in (folder / "public_tests").iterdir()) == ["q1.py", "q2.py", "q3.py"]


def test_gradescope_run_autograder_in_an_emulated_autograder_folder(dist, tmp_path):
    """otter's Gradescope entry point on the bundle (run in this environment: no image build)."""
    bundle = dist / "hardness" / "hardness-autograder.zip"
    env_yml = zipfile.ZipFile(bundle).read("environment.yml").decode()
    assert re.search(r"tts_lib @ git\+https://github\.com/tts-course/training-data-tts@[0-9a-f]{40}$", env_yml, re.M)
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in env_yml
    assert re.search(r"^\s*- torch==\d+\.\d+\.\d+\+cpu$", env_yml, re.M)
    assert re.search(r"^\s*- python=3\.11$", env_yml, re.M)
    ag = tmp_path / "autograder"
    for sub in ("source", "submission", "results"):
        (ag / sub).mkdir(parents=True)
    zipfile.ZipFile(bundle).extractall(ag / "source")
    # a student notebook (it carries the public-tests cell) with the solutions filled in
    student = nbformat.read(dist / "hardness" / "student" / "hardness.ipynb", as_version=4)
    solution = nbformat.read(dist / "hardness" / "autograder" / "hardness.ipynb", as_version=4)
    answers = {c.source.split("(")[0]: c.source for c in solution.cells
               if c.cell_type == "code" and c.source.startswith("def ")}
    for cell in student.cells:
        if "otter_answer_cell" in cell.metadata.get("tags", []):
            cell.source = answers[cell.source.split("(")[0]]
    nbformat.write(student, ag / "submission" / "alice.ipynb")
    code = "import sys\nfrom otter.run.run_autograder import main\nmain(sys.argv[1])"
    proc = subprocess.run([sys.executable, "-c", code, str(ag)], capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((ag / "results" / "results.json").read_text())
    summary = [t for t in results["tests"] if t["name"] == "Public Tests"]
    assert len(summary) == 1 and summary[0]["status"] == "passed", results
    by_name = {t["name"]: t["score"] for t in results["tests"] if "score" in t}
    assert by_name == POINTS["hardness"], results
    assert {t["name"]: t["max_score"] for t in results["tests"] if "score" in t} == POINTS["hardness"]
    assert sum(by_name.values()) == sum(POINTS["hardness"].values())


# --------------------------------------------------------------------------- command line

BAD_GRADE_ARGS = {
    "timeout 0": ["--timeout", "0"],
    "timeout -5": ["--timeout", "-5"],
    "timeout nan": ["--timeout", "nan"],
    "timeout inf": ["--timeout", "inf"],
    "jobs 0": ["--jobs", "0"],
    "out /proc/x": ["--out", "/proc/x"],
    "autograder /etc/passwd": ["--autograder", "/etc/passwd"],
    "unknown argument": ["--bogus"],
}


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BUILD), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("case", sorted(BAD_GRADE_ARGS))
def test_grade_rejects_bad_arguments_in_one_line(case, tmp_path):
    (tmp_path / "subs").mkdir()
    args = ["grade", "--assignment", "hardness", "--submissions", str(tmp_path / "subs"), "--out", str(tmp_path / "o")]
    extra = BAD_GRADE_ARGS[case]
    if extra[0] == "--out":
        args = args[:-2]
    proc = _cli([*args, *extra], tmp_path)
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("args", [["--bogus"], ["hardness", "--tts-lib-ref", "x y"], ["nosuch"],
                                  ["hardness", "--tts-lib-ref", "--upgrade"]])
def test_build_rejects_bad_arguments_in_one_line(args, tmp_path):
    proc = _cli([*args, "--dist", str(tmp_path / "d")], tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc
    assert not (tmp_path / "d").exists()


def test_build_never_deletes_a_folder_it_did_not_make(dist, tmp_path):
    """dist/NAME without build.py's marker is refused (and kept); --dist is relative to the current folder."""
    mine = tmp_path / "d" / "hardness"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    (tmp_path / "cwd").mkdir()
    proc = _cli(["hardness", "--no-run-tests", "--dist", "../d"], tmp_path / "cwd")  # relative to cwd
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc
    assert f"{mine} exists and was not made by build.py" in proc.stderr
    assert (mine / "notes.txt").read_text() == "mine"
    assert all((dist / name / ".made-by-build-py").is_file() for name in NAMES)  # what it made, it marks
    # inside the repository, only assignments/dist may receive the solutions
    proc = _cli(["hardness", "--no-run-tests", "--dist", "built"], ROOT)
    assert proc.returncode == 2 and "inside the repository" in proc.stderr and not (ROOT / "built").exists()


def test_documented_classic_mistakes_score_what_grading_gives():
    """The README's table of classic mistakes: each row is a wrong notebook above, with its measured score."""
    text = (SRC / "README.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| .+? \| (q\d): (\d+) of (\d+) \|$", text, re.M)
    assert len(rows) >= 8, rows
    documented = {(name, q) for name, q, _, _ in rows}
    for name, q, got, possible in rows:
        assert int(possible) == POINTS[name][q], (name, q)
        assert WRONG[name][1][q] == int(got), f"README says {name} {q}: {got} of {possible}"
    lossy = {(name, q) for name in NAMES for q, v in WRONG[name][1].items() if v < POINTS[name][q]}
    assert lossy <= documented, f"classic mistakes graded but not documented: {sorted(lossy - documented)}"


# --------------------------------------------------------------------------- private variants


def _load_build():
    import importlib.util

    spec = importlib.util.spec_from_file_location("assignments_build", BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _LocalFunctions:
    """The grader's view of a notebook's functions, evaluated in this process (no sandbox, no kernel).

    Answers as the sandbox's driver does: arguments and values through the same JSON codec.
    """

    def __init__(self, namespace: dict, codec):
        self.namespace, self.codec, self.question, self.dead = namespace, codec, None, None

    def call(self, name: str, args: tuple, kwargs: dict) -> dict:
        import builtins

        args, kwargs = self.codec.decode(self.codec.encode([list(args), kwargs]))
        try:
            value = self.namespace[name](*args, **kwargs)
        except Exception as err:
            kinds = [k.__name__ for k in type(err).__mro__ if getattr(builtins, k.__name__, None) is k]
            return {"raised": {"types": kinds, "name": type(err).__name__, "message": str(err)}}
        return {"value": json.loads(self.codec.encode(value))}


def _answers(name: str, replacements: dict[str, str]) -> dict:
    """The namespace a student notebook would make: the set-up imports and the (replaced) solutions."""
    ns: dict = {}
    exec("import math\nimport numpy as np\nimport torch\nfrom tts_lib import noise, overthinking, tasks, theory", ns)
    nb = json.loads((SRC / f"{name}.ipynb").read_text())
    for cell in nb["cells"]:
        src = _src(cell)
        if cell["cell_type"] == "code" and src.startswith("def "):
            key = next((k for k in replacements if src.startswith(k)), None)
            exec(replacements[key] if key else src, ns)
    return ns


def _variant_cases(nb: dict) -> dict[str, list[dict]]:
    """Test cases of a source notebook, in the grader's format (one point each)."""
    out, question, in_tests = {}, None, False
    for cell in nb["cells"]:
        src = _src(cell)
        if cell["cell_type"] == "raw" and src.startswith("# BEGIN QUESTION"):
            question = re.search(r"name:\s*(\w+)", src).group(1)
            out[question] = []
        elif cell["cell_type"] == "raw" and src.strip() in ("# BEGIN TESTS", "# END TESTS"):
            in_tests = src.strip() == "# BEGIN TESTS"
        elif in_tests and cell["cell_type"] == "code":
            out[question].append({"name": f"{question} - {len(out[question]) + 1}", "source": src,
                                  "hidden": src.startswith("# HIDDEN"), "points": 1.0,
                                  "property": re.search(r'^PROPERTY = "(.+)"$', src, re.M).group(1)})
    return out


VARIANT_SEEDS = (1, 2, 3, 4, 5)


@pytest.mark.parametrize("name", NAMES)
def test_private_variants_keep_full_marks_and_each_mistake_its_points(name):
    """For 5 seeds: new hidden random inputs, the same public tests; the reference scores full marks
    and the classic mistake loses exactly its points (the tests run as the grader runs them)."""
    build = _load_build()
    source = json.loads((SRC / f"{name}.ipynb").read_text())
    base = _variant_cases(source)
    reference, wrong = _answers(name, {}), _answers(name, WRONG[name][0])
    for seed in VARIANT_SEEDS:
        cases = build.variant_source(source, seed)
        cases = _variant_cases(cases)
        assert [[c["source"] for c in cs if not c["hidden"]] for cs in cases.values()] == \
               [[c["source"] for c in cs if not c["hidden"]] for cs in base.values()], "public tests unchanged"
        assert any(c["source"] != b["source"] for q in cases for c, b in zip(cases[q], base[q], strict=True))
        funcs = build.student_functions(cases)
        for ns, expected in ((reference, POINTS[name]), (wrong, WRONG[name][1])):
            result = build.run_tests(_LocalFunctions(ns, build.codec), cases, funcs)
            got = {q: v["score"] for q, v in result.items()}
            failed = {q: [t["message"] for t in v["tests"] if not t["passed"]] for q, v in result.items()}
            assert got == expected, f"variant {seed}: {got} != {expected}; {failed}"


def test_build_variant_changes_only_the_hidden_tests(dist, tmp_path):
    """`build.py NAME --variant SEED`: the same student notebook, other hidden inputs in the bundle."""
    proc = _cli(["hardness", "--no-run-tests", "--variant", "3", "--dist", str(tmp_path)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "(variant 3)" in proc.stdout
    build = _load_build()
    base = build.parse_tests(build._bundle_tests(dist / "hardness" / "hardness-autograder.zip")[0])
    variant = build.parse_tests(build._bundle_tests(tmp_path / "hardness" / "hardness-autograder.zip")[0])
    for q in base:
        for b, v in zip(base[q], variant[q], strict=True):
            assert (b["property"], b["points"], b["hidden"]) == (v["property"], v["points"], v["hidden"])
            if not b["hidden"]:
                assert b["source"] == v["source"]
    assert sum(b["source"] != v["source"] for q in base for b, v in zip(base[q], variant[q], strict=True)) == 5
    cells = [json.loads((d / "hardness" / "student" / "hardness.ipynb").read_text())["cells"] for d in (dist, tmp_path)]
    assert [_src(c) for c in cells[0]] == [_src(c) for c in cells[1]]
    assert _cli(["hardness", "--variant", "-1", "--dist", str(tmp_path)], tmp_path).returncode == 2


def test_total_memory_of_a_process_tree_is_measured():
    """The grader's watcher sums resident memory over the sandbox's whole process tree (RLIMIT_AS
    bounds one process only): a parent and a child holding 200 MiB each count about 400 MiB."""
    import time

    build = _load_build()
    code = ("import os, sys, time\n"
            "b = bytearray(200 * 2**20)\n"  # zero pages: touch them so they are resident
            "for i in range(0, len(b), 4096): b[i] = 1\n"
            "if len(sys.argv) == 1:  # the parent starts one child running the same code\n"
            "    os.spawnv(os.P_NOWAIT, sys.executable, [sys.executable, '-c', CODE, 'child'])\n"
            "print('ready', flush=True)\n"
            "time.sleep(30)\n")
    code = "CODE = " + repr(code) + "\n" + code
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 20
        while True:
            tasks, rss = build.tree_usage(proc.pid)
            if rss > 380 * 2**20 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert tasks >= 2 and rss > 380 * 2**20, (tasks, rss / 2**20)
        assert build.LIMITS["total_memory"] < 24 * 2**30  # below this machine's memory
    finally:
        subprocess.run(["pkill", "-P", str(proc.pid)], check=False)
        proc.kill()
        proc.wait()
