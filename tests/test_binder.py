"""Binder configuration: what repo2docker would build (``jupyter-repo2docker --no-build``, no Docker).

``--no-build`` writes the Dockerfile to stdout and the chosen Python to stderr; it needs neither
Docker nor the network. A repository without ``binder/`` is the control: repo2docker then falls
back to Python 3.10 and the root requirements (book, test and grading tooling, CUDA torch).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
R2D = shutil.which("jupyter-repo2docker") or str(Path(sys.executable).parent / "jupyter-repo2docker")
TOOLING = ("jupyter-book", "myst-nb", "sphinx", "pytest", "nbval", "ruff", "otter-grader", "jupyter-repo2docker",
           "cffconvert")


def _repo2docker(repo: Path) -> tuple[str, str]:
    if not Path(R2D).exists():
        pytest.fail("jupyter-repo2docker is not installed: pip install -r requirements.txt")
    env = {**os.environ, "NO_PROXY": "*", "no_proxy": "*"}
    proc = subprocess.run([R2D, "--no-build", str(repo)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_binder_python_and_requirements():
    dockerfile, log = _repo2docker(ROOT)
    assert "python=3.11" in log, log
    assert "environment.py-3.11-linux-64.lock" in dockerfile.replace("-2e", ".").replace("-2d", "-")
    # the Binder requirements file is what pip installs, then postBuild installs tts_lib
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in dockerfile
    assert 'pip install --no-cache-dir -r "requirements.txt"' not in dockerfile
    assert "./binder/postBuild" in dockerfile
    req = (ROOT / "binder" / "requirements.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in req
    binder = _pins(ROOT / "binder" / "requirements.txt")
    # one home per pin: the chapters' file, and requirements.txt for the author's tooling
    root = {**_pins(ROOT / "requirements-chapters.txt"), **_pins(ROOT / "requirements.txt")}
    assert binder["torch"] == root["torch"] + "+cpu", "Binder must get the CPU build of the pinned torch"
    for name, version in binder.items():
        if name != "torch":
            assert root.get(name) == version, f"binder pins {name}=={version}, requirements.txt {root.get(name)}"
    assert not set(TOOLING) & set(binder), f"book/test tooling in binder: {set(TOOLING) & set(binder)}"
    for name in ("numpy", "scipy", "matplotlib", "ipywidgets", "ipykernel", "transformers", "pooch"):
        assert name in binder, f"{name} (needed by the chapters) is missing from binder/requirements.txt"


def test_without_binder_folder_repo2docker_falls_back_to_310(tmp_path):
    """The control: the failure the binder/ folder fixes."""
    shutil.copy(ROOT / "requirements.txt", tmp_path / "requirements.txt")
    dockerfile, log = _repo2docker(tmp_path)
    assert "python=3.10" in log
    assert 'pip install --no-cache-dir -r "requirements.txt"' in dockerfile


def test_one_python_floor_everywhere():
    """3.11 everywhere: pyproject (requires-python, ruff), README, instructors' page, Binder, conda."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == ">=3.11"
    assert project["tool"]["ruff"]["target-version"] == "py311"
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    assert re.search(r"^\s*- python=3\.11$", (ROOT / "environment.yml").read_text(), re.M)
    assert "(Python 3.11+)" in (ROOT / "README.md").read_text()
    assert "Python 3.11 or newer" in (ROOT / "book" / "instructors.md").read_text()
    for path in ("README.md", "book/instructors.md", "pyproject.toml", "CONTRIBUTING.md", "environment.yml"):
        text = (ROOT / path).read_text()
        assert not re.search(r"Python 3\.10|>=3\.10|py310|python=3\.10", text), f"{path} still says 3.10"
    assert sys.version_info >= (3, 11)


def test_environment_yml_uses_the_pins():
    text = (ROOT / "environment.yml").read_text()
    assert "- -r requirements-student.txt" in text and "name: tts-course" in text
    assert "- --extra-index-url https://download.pytorch.org/whl/cpu" in text


def test_installs_share_the_chapters_pins():
    """One home per pin: the chapters' file, included by the student's and the author's."""
    chapters = _pins(ROOT / "requirements-chapters.txt")
    student, author = _pins(ROOT / "requirements-student.txt"), _pins(ROOT / "requirements.txt")
    for path in ("requirements-student.txt", "requirements.txt"):
        assert "-r requirements-chapters.txt" in (ROOT / path).read_text(), path
    assert not set(chapters) & (set(student) | set(author)), "a pin in two files"
    assert not set(TOOLING) & (set(chapters) | set(student)), "book/test tooling in the student install"
    for name in ("torch", "numpy", "matplotlib", "ipywidgets", "ipykernel", "tqdm"):
        assert name in chapters, f"{name} missing from requirements-chapters.txt"
    assert "jupyterlab" in student
