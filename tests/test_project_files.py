"""Project files a course is expected to have: licences, citation, contributing guide, changelog."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_citation_cff_is_valid():
    exe = shutil.which("cffconvert") or str(Path(sys.executable).parent / "cffconvert")
    if not Path(exe).exists():
        pytest.fail("cffconvert is not installed: pip install -r requirements.txt")
    proc = subprocess.run([exe, "--validate", "-i", str(ROOT / "CITATION.cff")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout


def test_invalid_citation_cff_is_refused(tmp_path):
    """The control: cffconvert does reject a broken file (a missing required key)."""
    exe = shutil.which("cffconvert") or str(Path(sys.executable).parent / "cffconvert")
    bad = tmp_path / "CITATION.cff"
    bad.write_text(re.sub(r"(?m)^title:.*\n", "", (ROOT / "CITATION.cff").read_text()))
    proc = subprocess.run([exe, "--validate", "-i", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0


def test_one_version_in_pyproject_citation_and_changelog():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert re.search(rf"(?m)^version: {re.escape(version)}$", (ROOT / "CITATION.cff").read_text())
    init = (ROOT / "tts_lib" / "__init__.py").read_text()
    assert re.search(rf'(?m)^__version__ = "{re.escape(version)}"$', init), "tts_lib.__version__"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"(?m)^## {re.escape(version)}\b", changelog), "CHANGELOG.md has no section for the version"
    assert "MAJOR" in changelog and "MINOR" in changelog and "PATCH" in changelog  # the scheme is stated


def test_licences():
    mit = (ROOT / "LICENSE").read_text()
    assert mit.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in mit
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == "MIT"
    content = (ROOT / "LICENSE-CONTENT.md").read_text()
    assert "CC BY 4.0" in content and "https://creativecommons.org/licenses/by/4.0/legalcode" in content
    readme = (ROOT / "README.md").read_text()
    assert "MIT" in readme and "CC BY 4.0" in readme and "LICENSE-CONTENT.md" in readme


def test_contributing_covers_run_test_chapter_assignment():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    for heading in ("## Run it", "## Test it", "## Add a chapter", "## Add an assignment"):
        assert heading in text
    assert "pip install -r requirements.txt" in text and "python -m pytest" in text
