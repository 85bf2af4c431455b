"""One repository address: ``_config.yml``'s ``repository.url`` is the single source.

Every other mention of a GitHub address of this repository (notebook install cells,
Colab clone hints, assignment requirements, README, instructors' notes, pyproject,
CITATION, workflows) must agree with it, so a fork changes one line and this test
lists the rest.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
#: Other projects' repositories that the text may cite (owner/name, lower case).
THIRD_PARTY: set[str] = {
    "jupyter/nbclient", "jupyter/nbconvert", "rhysd/actionlint", "executablebooks/jupyter-book",
    "dtsip/in-context-learning", "actions/checkout", "actions/deploy-pages",
    "containers/bubblewrap",
    "owner/name",  # the placeholder in tts_lib.fetch's error message
    "a/b",  # a deliberately wrong address in tests/test_bad_inputs.py
    "example/mini",  # the throw-away book of tests/test_execution_guard.py
}
ADDRESS = re.compile(
    r"(?:github\.com[/:]|raw\.githubusercontent\.com/|colab\.research\.google\.com/github/)"
    r"([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?(?=[/\s\"'`)#@?]|\\|$)"
)
PAGES = re.compile(r"([A-Za-z0-9-]+)\.github\.io/([A-Za-z0-9_.-]+)")
CLONE_CD = re.compile(r"git clone \S*?/([A-Za-z0-9_.-]+?)(?:\.git)?[`\s\"].{0,200}?%?cd ([A-Za-z0-9_.-]+)", re.S)


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))


def repo_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    skip = ("package-lock.json", "book/checkpoints/", "tests/test_site_config.py")
    files = []
    for name in out.splitlines():
        p = ROOT / name
        if name.startswith(skip) or not p.is_file() or p.suffix in {".pt", ".png", ".pdf", ".safetensors"}:
            continue
        files.append(p)
    return files


def source() -> tuple[str, str]:
    url = config()["repository"]["url"]
    m = re.fullmatch(r"https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)", url)
    assert m, f"repository.url must be https://github.com/OWNER/NAME, got {url!r}"
    return m.group(1), m.group(2)


def test_repository_url_is_well_formed() -> None:
    cfg = config()
    owner, name = source()
    assert cfg["repository"]["branch"] == "main"
    assert cfg["html"]["use_repository_button"] is True  # launch/repository buttons derive from it


def test_every_mention_agrees_with_config() -> None:
    owner, name = source()
    ours = f"{owner}/{name}".lower()
    found, wrong = [], []
    for path in repo_files():
        try:
            text = path.read_text(encoding="utf8")
        except UnicodeDecodeError:
            continue
        rel = path.relative_to(ROOT).as_posix()
        if rel == "_config.yml":
            continue
        for m in ADDRESS.finditer(text):
            slug = f"{m.group(1)}/{m.group(2)}".lower()
            if slug == ours:
                found.append(rel)
            elif slug not in THIRD_PARTY and not slug.startswith("actions/"):
                wrong.append(f"{rel}: {m.group(0)} (expected {owner}/{name} or a listed third party)")
        for m in PAGES.finditer(text):
            if (m.group(1).lower(), m.group(2).lower()) != (owner.lower(), name.lower()):
                wrong.append(f"{rel}: {m.group(0)} (expected {owner}.github.io/{name})")
        for m in CLONE_CD.finditer(text):
            if m.group(1) != name or m.group(2) != name:
                wrong.append(f"{rel}: clone of {m.group(1)!r} then cd {m.group(2)!r} (expected {name})")
    assert not wrong, "mentions that disagree with _config.yml repository.url:\n" + "\n".join(wrong)
    chapters = sorted(p.name for p in (ROOT / "book").glob("[0-9]*.ipynb"))
    missing = [c for c in chapters if f"book/{c}" not in found]
    assert not missing, f"chapters without an install cell naming the repository: {missing}"
    assert "assignments/requirements.txt" in found


@pytest.mark.parametrize("text, ok", [
    ('%pip install -q "tts_lib @ git+https://github.com/tts-course/training-data-tts"', True),
    ("!git clone https://github.com/someone/fork` then `%cd fork/book", False),
    ("see https://github.com/other/repo/blob/main/x.md", False),
])
def test_address_pattern(text: str, ok: bool) -> None:
    slugs = {f"{a}/{b}" for a, b in ADDRESS.findall(text)}
    assert ("tts-course/training-data-tts" in slugs) is ok


def test_launch_links_have_no_dot_segment() -> None:
    """sphinx-book-theme builds launch links as .../blob/BRANCH/{path_to_book}/PAGE: "." gave "/./"."""
    path = config()["repository"].get("path_to_book", "")
    rel = path.strip("/")
    assert rel in ("",) or not ({".", ".."} & set(rel.split("/"))), f"path_to_book {path!r} puts /./ in links"


def test_execution_limits_fit_a_busy_laptop() -> None:
    """A per-cell limit for runaway cells (not slow ones), read in slices shorter than the stall bound."""
    cfg = config()
    timeout = cfg["execute"]["timeout"]
    sphinx = cfg["sphinx"]["config"]
    poll, stall = sphinx["course_exec_poll"], sphinx["course_exec_stall"]
    assert timeout >= 600, f"execute.timeout {timeout} s: a loaded 2-core laptop needs minutes for ch7's cells"
    assert 0 < poll < stall < timeout, (poll, stall, timeout)
    assert "site_fixes" in cfg["sphinx"]["local_extensions"]
