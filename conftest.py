"""pytest plugin for the chapters (nbval): one execution of a chapter serves build and tests.

``python -m pytest`` runs every chapter with nbval (``--nbval-lax``: a cell that raises
fails, asserts carry the claims). The book build (``jupyter-book build``) executes every
chapter too, with the same rule (``nb_execution_raise_on_error``: any cell that raises
fails the build). When the build has executed a chapter cleanly it records a
fingerprint in ``_build/executed.json``: the chapter's code, ``tts_lib``, the checkpoints,
the installed packages and the Python (``book/_ext/execution_guard.py``). If that
fingerprint still matches, nbval's cells of that chapter are skipped, with the reason
shown; anything changed since (a cell, the library, a package), or ``TTS_NBVAL_ALWAYS=1``,
and nbval executes it again.

While a book build is running (``_build/building.json`` names its process), a chapter
the build has not yet stamped is waited for rather than executed a second time: so the
tests can run beside the build (CI starts ``python -m pytest`` with the build; the unit
tests come first, the chapters last). If the build ends without stamping a chapter
(it failed, or was stopped), nbval executes that chapter.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent
STAMPS = ROOT / "_build" / "executed.json"
BUILDING = ROOT / "_build" / "building.json"
POLL_S = 5.0  # how often a waiting chapter reads executed.json again
_VERDICTS: dict[str, str | None] = {}  # chapter -> skip reason, or None: execute it


def _guard():  # noqa: ANN202
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        import execution_guard
    finally:
        sys.path.pop(0)
    return execution_guard


def _stamp(name: str) -> dict[str, Any] | None:
    try:
        return json.loads(STAMPS.read_text(encoding="utf8")).get(name)
    except (OSError, ValueError, AttributeError):
        return None


def build_running() -> int | None:
    """The process id of a book build that is running now, else None."""
    try:
        pid = int(json.loads(BUILDING.read_text(encoding="utf8"))["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid


def _verdict(name: str, path: Path, config: pytest.Config) -> str | None:
    """Why nbval may skip chapter ``name`` (the build executed this code), or None."""
    guard = _guard()
    mine = guard.fingerprint(guard.code_of(json.loads(path.read_text(encoding="utf8"))))
    waited, said = time.monotonic(), False
    while True:
        stamp = _stamp(name)
        if stamp and stamp.get("fingerprint") == mine:
            return (f"{name} was executed cleanly by the book build at {stamp['at']} "
                    f"({stamp['seconds']} s) with this code, library, checkpoints and packages "
                    "(_build/executed.json); TTS_NBVAL_ALWAYS=1 executes it again")
        pid = build_running()
        if pid is None:
            return None
        if not said:
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"\n{name}: waiting for the book build (process {pid}) to "
                                    "execute it, instead of executing it a second time")
            said = True
        time.sleep(POLL_S)
        if time.monotonic() - waited > 4 * 3600:
            return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    path = Path(str(item.path))
    if os.environ.get("TTS_NBVAL_ALWAYS") or path.suffix != ".ipynb" or path.parent != ROOT / "book":
        return
    name = f"book/{path.name}"
    if name not in _VERDICTS:
        _VERDICTS[name] = _verdict(name, path, item.config)
    if _VERDICTS[name]:
        pytest.skip(_VERDICTS[name])
