"""The autograded assignments: generation, solution stripping and local grading (otter-grader 7).

Runs the two documented commands of ``assignments/README.md`` once per module (fixtures):
``python assignments/build.py --dist TMP`` and, per assignment,
``python assignments/build.py grade --assignment NAME --submissions DIR --out DIR``, on four
submissions: the reference solutions, the unanswered student notebook, a notebook with
plausible wrong answers and the solutions of another assignment (plus one endless notebook
graded with a 10 s limit). Grading runs every notebook in a fresh kernel; the module takes
about 1.5 minutes on 2 busy cores.
"""

from __future__ import annotations

import csv
import json
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
NAMES = ("hardness", "scaling", "overthinking")
TIMEOUT = 900

# Points per question, as the source notebooks declare them.
POINTS = {
    "hardness": {"q1": 4, "q2": 2, "q3": 2},
    "scaling": {"q1": 3, "q2": 3, "q3": 3, "q4": 2},
    "overthinking": {"q1": 2, "q2": 3, "q3": 3, "q4": 3},
}

# Plausible wrong answers (a replacement for the solution cell that starts with the key) and the
# score each question must get with them.
WRONG = {
    # hardness = tr/λ_max: right for isotropic tasks (public test) and scale-free (hidden test),
    # wrong on power laws and finite on a missing skill (two hidden tests): 2 of 4.
    "hardness": (
        {
            "def hardness(": (
                "def hardness(cov):\n"
                "    strengths = np.linalg.eigvalsh(np.asarray(cov, dtype=float))\n"
                "    return float(strengths.sum() / strengths.max())\n"
            ),
        },
        {"q1": 2, "q2": 2, "q3": 2},
    ),
    # Γ without the tr(Λ)/n ridge: only the n → ∞ limit (public test) survives: 1 of 3.
    # n*(k) from Corollary 3.5's bound instead of the exact error: exact for isotropic tasks
    # (public test), too large on power laws (two hidden tests): 1 of 3.
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
        },
        {"q1": 1, "q2": 3, "q3": 1, "q4": 2},
    ),
    # overthinking iff σ_i > γ_i (instead of 2γ_i): passes the clear-cut public cases, fails the
    # borderline σ ∈ (γ, 2γ] and the comparison on random spectra: 1 of 3.
    "overthinking": (
        {
            "def overthinking_skills(": (
                "def overthinking_skills(lam, n, sig):\n"
                "    lam, sig = np.asarray(lam, dtype=float), np.asarray(sig, dtype=float)\n"
                "    return sig > (1 + 1 / n) * lam + lam.sum() / n\n"
            ),
        },
        {"q1": 2, "q2": 1, "q3": 3, "q4": 3},
    ),
}

# The failure message of one hidden test that the wrong answers fail.
HIDDEN_MESSAGE = {
    "hardness": "rotated power law, alpha=",
    "scaling": "rotated power law, n = ",
    "overthinking": "σ between γ and 2γ does not overthink",
}

PROBE = """\
import json, sys
import tts_lib.tasks
with open({path!r}, "w") as f:
    json.dump({{"prefix": sys.prefix, "executable": sys.executable, "tts_lib": tts_lib.tasks.__file__}}, f)
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
    _run(["--dist", str(out)])  # the documented build command (all assignments)
    return out


@pytest.fixture(scope="module")
def graded(dist, tmp_path_factory) -> dict:
    """Grade four submissions per assignment with the documented grade command."""
    root = tmp_path_factory.mktemp("grading")
    probe_file = root / "probe.json"
    results = {}
    for i, name in enumerate(NAMES):
        subs = root / name / "submissions"
        subs.mkdir(parents=True)
        solution = dist / name / "autograder" / f"{name}.ipynb"
        (subs / "solution.ipynb").write_bytes(solution.read_bytes())
        (subs / "blank.ipynb").write_bytes((dist / name / "student" / f"{name}.ipynb").read_bytes())
        nb = nbformat.read(solution, as_version=4)
        replaced = set()
        for cell in nb.cells:
            for key, wrong in WRONG[name][0].items():
                if cell.cell_type == "code" and cell.source.lstrip().startswith(key):
                    cell.source = wrong
                    replaced.add(key)
        assert replaced == set(WRONG[name][0]), f"solution cells not found in {solution}"
        if name == "hardness":  # record which Python the grading kernel runs
            nb.cells.append(nbformat.v4.new_code_cell(PROBE.format(path=str(probe_file))))
        nbformat.write(nb, subs / "wrong.ipynb")
        other = NAMES[(i + 1) % len(NAMES)]  # a notebook of another assignment
        (subs / "other.ipynb").write_bytes((dist / other / "autograder" / f"{other}.ipynb").read_bytes())
    # a submission that never finishes, graded with a short time limit
    loop = root / "loop" / "submissions"
    loop.mkdir(parents=True)
    nb = nbformat.read(dist / "hardness" / "autograder" / "hardness.ipynb", as_version=4)
    nb.cells.insert(4, nbformat.v4.new_code_cell("while True:\n    pass"))
    nbformat.write(nb, loop / "endless.ipynb")
    runs = {name: (name, []) for name in NAMES}
    runs["loop"] = ("hardness", ["--timeout", "10"])
    # the grade commands run side by side (each grades its notebooks one after another)
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
        results[key] = {"out": out, "by_file": {r["submission"]: r for r in data["submissions"]}}
    results["probe"] = json.loads(probe_file.read_text())
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
    meta = student["metadata"]["otter"]["tests"]
    with zipfile.ZipFile(dist / name / f"{name}-autograder.zip") as z:
        for q, cells in tests.items():
            assert cells["public"] and cells["hidden"], f"{name}/{q} needs public and hidden tests"
            cases = meta[q]["suites"][0]["cases"]
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
                if s and not s.startswith(("import ", "from ", "#")) and s not in public:
                    assert s not in student_text, f"{name}/{q}: hidden test line in the student notebook: {s}"


# --------------------------------------------------------------------------- grading


def _scores(rec: dict) -> dict[str, float]:
    return {q: v["score"] for q, v in rec["questions"].items()}


@pytest.mark.parametrize("name", NAMES)
def test_reference_solutions_score_full_marks(graded, name):
    rec = graded[name]["by_file"]["solution.ipynb"]
    assert rec["error"] is None
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


@pytest.mark.parametrize("name", NAMES)
def test_notebook_of_another_assignment_is_reported(graded, name):
    rec = graded[name]["by_file"]["other.ipynb"]
    assert rec["error"] and rec["total"] == 0


@pytest.mark.parametrize("name", NAMES)
def test_grade_writes_csv_and_feedback(graded, name):
    out = graded[name]["out"]
    with open(out / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["submission"] for r in rows] == ["blank.ipynb", "other.ipynb", "solution.ipynb", "wrong.ipynb"]
    assert list(rows[0]) == ["submission", *POINTS[name], "total", "possible", "error"]
    by = {r["submission"]: r for r in rows}
    assert float(by["solution.ipynb"]["total"]) == sum(POINTS[name].values())
    assert float(by["wrong.ipynb"]["total"]) == sum(WRONG[name][1].values())
    full = (out / "feedback" / "wrong.txt").read_text()
    public = (out / "feedback" / "wrong.public.txt").read_text()
    hidden_message = HIDDEN_MESSAGE[name]  # the message of a hidden test the wrong answer fails
    assert "Test case failed" in full and hidden_message in full
    assert hidden_message not in public, "the public report must not show hidden tests"


def test_grading_kernel_is_the_current_environment(graded):
    """otter run (no Docker) runs submissions with this Python, where tts_lib is importable."""
    import tts_lib.tasks

    probe = graded["probe"]
    assert probe["prefix"] == sys.prefix
    assert Path(probe["tts_lib"]).resolve() == Path(tts_lib.tasks.__file__).resolve()


def test_endless_submission_times_out(graded):
    rec = graded["loop"]["by_file"]["endless.ipynb"]
    assert rec["total"] == 0 and "timed out" in rec["error"]
    assert rec["seconds"] < 60
