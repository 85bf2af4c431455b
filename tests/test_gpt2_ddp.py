"""``python -m tts_lib.gpt2_train`` under ``torchrun``: 2 CPU processes (gloo, DDP) reproduce the
single-process run (the global batch split across the processes, the same data stream)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tts_lib.gpt2 import cot_rollout
from tts_lib.gpt2_checkpoint import load_checkpoint
from tts_lib.prompts import sample_prompts
from tts_lib.tasks import isotropic_cov

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--preset", "tiny", "--steps", "20", "--seed", "3", "--no-progress", "--threads", "1"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_torchrun_two_processes_match_one(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, "-m", "tts_lib.gpt2_train", *ARGS, "--out", str(one), "--losses", str(one / "l.json")])
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    res = _run([*torchrun, "-m", "tts_lib.gpt2_train", *ARGS, "--out", str(two), "--losses", str(two / "l.json")])
    assert "2 process(es)" in res.stdout
    a = torch.tensor(json.loads((one / "l.json").read_text()), dtype=torch.float64)
    b = torch.tensor(json.loads((two / "l.json").read_text()), dtype=torch.float64)
    assert a.shape == b.shape == (20,)
    assert a[-5:].mean() < 0.8 * a[:5].mean()  # it trained (so the comparison is not of a flat curve)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=0.0)
    stem = "gpt2_tiny_compact_isotropic_n8_seed3"
    m1, man1 = load_checkpoint(one / f"{stem}.json")
    m2, man2 = load_checkpoint(two / f"{stem}.json")
    assert man1["world_size"] == 1 and man2["world_size"] == 2
    # the predictions agree (not every weight: the key bias has an exactly-zero gradient, by
    # the softmax's shift invariance, and Adam turns its round-off into lr-sized steps)
    pr = sample_prompts(isotropic_cov(3), 8, 64, seed=0, dtype=torch.float32)
    torch.testing.assert_close(cot_rollout(m2, pr.X, pr.y, 3), cot_rollout(m1, pr.X, pr.y, 3), rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())  # rank 0 writes once
