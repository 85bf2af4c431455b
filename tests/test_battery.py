"""scripts/bad_input_battery.py: its outcome rules, and one module it finds clean.

The full battery (about 5,600 calls, 3–4 minutes) is a developer tool, run by hand; here its
classification is checked on known cases, and the overthinking module (about 200 calls, with
divergent spectra over 100 steps) must give no bad outcome.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bad_input_battery.py"


@pytest.fixture(scope="module")
def battery():
    spec = importlib.util.spec_from_file_location("bad_input_battery", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_outcomes_are_classified(battery):
    classify = battery.classify
    assert classify(ValueError("`max_steps` must be <= 10"), None, "max_steps", True)[0] == "clear"
    assert classify(ValueError("`context_len` must be >= 1"), None, "test_len", True)[0] == "unnamed"
    assert classify(RuntimeError("max_steps"), None, "max_steps", True)[0] == "wrong-kind"
    assert classify(ZeroDivisionError(), None, "c", True)[0] == "wrong-kind"
    assert classify(None, float("inf"), "x", False)[0] == "non-finite"
    assert classify(None, [1.0, float("nan")], "x", False)[0] == "non-finite"
    assert classify(None, 1.0, "x", True)[0] == "accepted-bad"
    assert classify(None, 1.0, "x", False)[0] == "accepted"
    assert classify(battery.CallTimeout(), None, "x", True)[0] == "timeout"
    assert classify(MemoryError(), None, "x", True)[0] == "memory"
    # a documented infinity ("never") is not an overflow
    assert classify(None, float("inf"), "x", False, "overthinking.critical_context_len")[0] == "accepted"


def test_overthinking_module_has_no_bad_outcome(tmp_path):
    out = tmp_path / "summary.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(SCRIPT), "--modules", "overthinking", "--json", str(out)],
                   check=True, env=env, cwd=tmp_path, capture_output=True, timeout=300)
    counts = json.loads(out.read_text())["per_module"]["overthinking"]
    assert counts["calls"] > 150, counts
    assert counts.get("bad", 0) == 0, json.loads(out.read_text())["bad"]
    assert counts["clear"] > 100, counts  # most bad values are refused with the argument named
