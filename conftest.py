"""pytest plugin for the chapters (nbval): one execution of a chapter serves build and tests.

``python -m pytest`` runs every chapter with nbval (``--nbval-lax``: a cell that raises
fails, asserts carry the claims). The book build (``jupyter-book build``) executes every
chapter too, with the same rule (``nb_execution_raise_on_error``: any cell that raises
fails the build). When the build has executed a chapter cleanly it records a
fingerprint in ``_build/executed.json``: the chapter's code, ``tts_lib``, the checkpoints,
the installed packages and the Python (``book/_ext/execution_guard.py``). If that
fingerprint still matches, nbval's cells of that chapter are skipped, with the reason
shown; anything changed since (a cell, the library, a package), or ``TTS_NBVAL_ALWAYS=1``,
and nbval executes it again. CI builds the book first, then runs the README's command.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
STAMPS = ROOT / "_build" / "executed.json"


def _guard():  # noqa: ANN202
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        import execution_guard
    finally:
        sys.path.pop(0)
    return execution_guard


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("TTS_NBVAL_ALWAYS") or not STAMPS.is_file():
        return
    try:
        stamps = json.loads(STAMPS.read_text(encoding="utf8"))
    except ValueError:
        return
    guard, verdict = None, {}
    for item in items:
        path = Path(str(item.path))
        if path.suffix != ".ipynb" or path.parent != ROOT / "book":
            continue
        name = f"book/{path.name}"
        if name not in verdict:
            stamp = stamps.get(name)
            if stamp:
                guard = guard or _guard()
                code = guard.code_of(json.loads(path.read_text(encoding="utf8")))
                stamp = stamp if stamp.get("fingerprint") == guard.fingerprint(code) else None
            verdict[name] = stamp
        stamp = verdict[name]
        if stamp:
            item.add_marker(pytest.mark.skip(reason=(
                f"{name} was executed cleanly by the book build at {stamp['at']} ({stamp['seconds']} s) "
                "with this code, library, checkpoints and packages (_build/executed.json); "
                "TTS_NBVAL_ALWAYS=1 executes it again")))
