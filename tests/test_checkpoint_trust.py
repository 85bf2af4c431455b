"""Tamper-evident checkpoints and bounded loading (issue 29's checkpoint items).

A committed checkpoint's manifest is pinned by the library (``tts_lib._checkpoint_registry``):
an edit with a recomputed ``digest`` is refused unless the caller opts out; sizes are
checked before any allocation; absurd weights and deeply nested JSON are refused.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from tts_lib import fetch
from tts_lib._checkpoint_registry import MANIFEST_SHA256
from tts_lib.gpt2 import build_model
from tts_lib.gpt2_checkpoint import (
    checkpoint_stem,
    load_checkpoint,
    manifest_digest,
    save_checkpoint,
    sha256_file,
    verify_checkpoint,
)
from tts_lib.gpt2_config import TrainResult, preset

CKPT = Path(__file__).resolve().parents[1] / "book" / "checkpoints"
NAME = "gpt2_cpu20_compact_isotropic_n20_seed0"


def _copy(tmp_path: Path, name: str = NAME) -> Path:
    for ext in (".json", ".pt"):
        shutil.copy(CKPT / f"{NAME}{ext}", tmp_path / f"{name}{ext}")
    return tmp_path / f"{name}.json"


def _edit(path: Path, change) -> None:  # noqa: ANN001
    manifest = json.loads(path.read_text())
    change(manifest)
    manifest["digest"] = manifest_digest(manifest)  # what an attacker recomputes
    path.write_text(json.dumps(manifest, indent=1))


def test_committed_checkpoints_verify_against_the_registry():
    from tts_lib.euclid_sweep import verify_lm_checkpoint

    paths = sorted(CKPT.glob("*.json"))
    assert {p.name for p in paths} == set(MANIFEST_SHA256), "registry and committed manifests differ"
    for path in paths:  # default: registry checked
        verify_lm_checkpoint(path) if path.name.startswith("euclid_") else verify_checkpoint(path)


def test_an_edited_committed_manifest_is_refused(tmp_path):
    path = _copy(tmp_path)
    _edit(path, lambda m: m["config"]["model"].update(heads=4))
    with pytest.raises(ValueError, match="pinned"):
        load_checkpoint(path)
    model, _ = load_checkpoint(path, registry=False)  # checksummed only: the edit goes through
    assert model.config.heads == 4


def test_unedited_copy_loads(tmp_path):
    model, manifest = load_checkpoint(_copy(tmp_path))
    assert manifest["seed"] == 0 and model.config.dim == 20


def _tiny_checkpoint(tmp_path: Path, scale: float = 1.0) -> Path:
    cfg, tcfg = preset("tiny", train_steps=1)
    model = build_model(cfg, seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    result = TrainResult([1.0], 1, 0.1, 0, "cpu")
    return save_checkpoint(model, tmp_path, "mine", train_cfg=tcfg, train_cov="isotropic", result=result,
                           preset_name="tiny")


def test_absurd_weights_are_refused(tmp_path):
    load_checkpoint(_tiny_checkpoint(tmp_path))  # a normal one loads (checksummed: not a course name)
    (tmp_path / "big").mkdir()
    with pytest.raises(ValueError, match="beyond"):
        load_checkpoint(_tiny_checkpoint(tmp_path / "big", 1e38))


def test_huge_configuration_is_refused_before_allocation(tmp_path):
    path = _tiny_checkpoint(tmp_path)
    _edit(path, lambda m: m["config"]["model"].update(width=65536, layers=1024, heads=1))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="GiB"):
        load_checkpoint(path)
    assert time.perf_counter() - t0 < 5


def test_deep_json_is_refused(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested deeper"):
        verify_checkpoint(path)


def test_oversized_weights_file_is_refused_before_loading(tmp_path):
    path = _tiny_checkpoint(tmp_path)
    pt = path.with_suffix(".pt")
    pt.write_bytes(pt.read_bytes() + b"\0" * (8 << 20))
    _edit(path, lambda m: m.update(sha256=sha256_file(pt)))
    with pytest.raises(ValueError, match="bytes, more than"):
        load_checkpoint(path)


def test_stem_cannot_leave_the_folder():
    cfg, tcfg = preset("tiny")
    with pytest.raises(ValueError, match="`preset_name`"):
        checkpoint_stem("../../etc", cfg, tcfg, "isotropic", 0)


def test_fetch_cli_rejects_unknown_arguments(capsys):
    for argv in (["--bogus"], ["--write-registry", "/etc"]):
        with pytest.raises(SystemExit) as info:
            fetch.main(argv)
        assert info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
