"""Bad inputs to the GPT-2 model, its training, checkpoints and CLI get clear, early errors."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch

from tts_lib.gpt2 import GPT2RegressorConfig, build_model, cot_errors, cot_rollout
from tts_lib.gpt2_checkpoint import load_checkpoint, manifest_digest, save_checkpoint, sha256_file
from tts_lib.gpt2_train import (
    GPT2TrainConfig,
    TrainingDivergedError,
    TrainResult,
    config_from_dict,
    main,
    preset,
    train_gpt2,
)
from tts_lib.prompts import sample_prompts
from tts_lib.tasks import isotropic_cov

NAN = float("nan")


def tiny():
    cfg, tcfg = preset("tiny")
    return build_model(cfg, seed=0), cfg, tcfg


def prompts(m: int = 8, batch: int = 4):
    return sample_prompts(isotropic_cov(3), m, batch, seed=0, dtype=torch.float32)


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("lr", [100.0, 1000.0])
def test_large_lr_stops_with_divergence_error(lr: float) -> None:
    """The library's one divergence rule (NaN/inf or 1e6× the first loss, trainer.DIVERGENCE_FACTOR)
    stops these runs; at lr = 10 the tiny model's loss peaks near 2.5e5× its start and is not
    stopped (the earlier GPT-2-only rule of 1e3× did stop it)."""
    model, cfg, tcfg = tiny()
    with pytest.raises(TrainingDivergedError, match=r"diverged at step \d+.*lower `lr`"):
        train_gpt2(model, isotropic_cov(3), preset("tiny", lr=lr, train_steps=100)[1], progress=False)


@pytest.mark.parametrize(
    "field, value, kind",
    [
        ("lr", 1e38, ValueError),
        ("lr", True, TypeError),
        ("lr", 0.0, ValueError),
        ("lr", NAN, ValueError),
        ("lr", "1e-3", TypeError),
        ("label_noise", math.inf, ValueError),
        ("label_noise", -1.0, ValueError),
        ("train_steps", 10**12, ValueError),
        ("batch_size", 10**12, ValueError),
        ("final_lr_frac", 1.5, ValueError),
        ("lr_schedule", "linear", ValueError),
        ("train_steps", 2.5, ValueError),
        ("start_zero_prob", 1.5, ValueError),
        ("grad_clip", math.inf, ValueError),
        ("curriculum", {"every": 3}, TypeError),
        ("target", "magic", ValueError),
        ("unroll", 0, ValueError),
        ("unroll", 1000, ValueError),
    ],
)
def test_train_config_rejects(field: str, value, kind) -> None:
    with pytest.raises(kind, match=f"`{field}`"):
        GPT2TrainConfig(**{field: value})


def test_model_config_bounds() -> None:
    with pytest.raises(ValueError, match="`width`"):
        GPT2RegressorConfig(width=10**12, heads=1)
    with pytest.raises(ValueError, match="`dim`"):
        GPT2RegressorConfig(dim=True)


def test_config_from_dict_errors() -> None:
    with pytest.raises(ValueError, match="'model'"):
        config_from_dict({})
    with pytest.raises(ValueError, match="`data`"):
        config_from_dict([])
    with pytest.raises(ValueError, match="unknown field.*bogus"):
        config_from_dict({"model": {"bogus": 1}})
    with pytest.raises(ValueError, match="`train`.*`lr`"):
        config_from_dict({"model": {}, "train": {"lr": -1}})


def test_save_without_losses_is_a_clear_error(tmp_path: Path) -> None:
    model, _, tcfg = tiny()
    empty = TrainResult(losses=[], train_steps=0, wall_s=0.0, seed=0, device="cpu")
    with pytest.raises(ValueError, match="no losses"):
        save_checkpoint(model, tmp_path, "m", train_cfg=tcfg, train_cov="isotropic", result=empty)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="no losses"):
        empty.final_loss()


# --------------------------------------------------------------------------- model inputs


def test_step_accepts_float64_estimate_and_rejects_nan() -> None:
    model, _, _ = tiny()
    pr = prompts()
    cache = model.encode_prompt(pr.X, pr.y)
    w64 = torch.randn(4, 3, dtype=torch.float64)
    a, _ = model.step(cache, w64)
    b, _ = model.step(cache, w64.float())
    assert a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="`w_hat`.*NaN"):
        model.step(cache, torch.full((4, 3), NAN))
    with pytest.raises(TypeError, match="`cache`"):
        model.step("cache", w64)
    with pytest.raises(TypeError, match="`w_hat`"):
        model.step(cache, None)


def test_nan_prompts_and_w0_and_empty_prompt() -> None:
    model, _, _ = tiny()
    pr = prompts()
    X = pr.X.clone()
    X[0, 0, 0] = NAN
    with pytest.raises(ValueError, match="`X`.*NaN"):
        cot_rollout(model, X, pr.y, 2)
    with pytest.raises(ValueError, match="`y`.*NaN"):
        cot_rollout(model, pr.X, pr.y * math.inf, 2)
    with pytest.raises(ValueError, match="`w0`.*NaN"):
        cot_rollout(model, pr.X, pr.y, 2, w0=torch.full((4, 3), NAN))
    with pytest.raises(ValueError, match="`X`.*at least one example"):
        cot_rollout(model, pr.X[:, :0], pr.y[:, :0], 2)
    with pytest.raises(ValueError, match="`X`"):
        model(pr.X[:0], pr.y[:0], torch.zeros(0, 3))
    with pytest.raises(TypeError, match="`X`.*real"):
        cot_rollout(model, pr.X.to(torch.complex64), pr.y, 2)
    with pytest.raises(ValueError, match="`X`.*meta"):
        cot_rollout(model, pr.X.to("meta"), pr.y, 2)
    # an integer prompt is converted (exact values), not refused
    assert cot_rollout(model, pr.X.round().long(), pr.y.round().long(), 1).dtype == torch.float32


def test_bounded_work() -> None:
    model, _, _ = tiny()
    pr = prompts()
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="`num_steps` must be <="):
        cot_rollout(model, pr.X, pr.y, 10**12)
    with pytest.raises(ValueError, match="`num_prompts` must be <="):
        cot_errors(model, isotropic_cov(3), 8, 2, num_prompts=10**12)
    with pytest.raises(ValueError, match="`num_steps`"):
        cot_errors(model, isotropic_cov(3), 8, 10**12)
    with pytest.raises(ValueError, match="`num_steps`"):
        cot_rollout(model, pr.X, pr.y, 2.0)
    with pytest.raises(ValueError, match="keep_history"):
        cot_rollout(model, pr.X, pr.y, 5_000, keep_history=True)
    with pytest.raises(ValueError, match="multiply-adds"):  # the work estimate, before any step
        cot_errors(model, isotropic_cov(3), 8, 10_000, num_prompts=10**6)
    with pytest.raises(ValueError, match="`chunk`"):
        cot_errors(model, isotropic_cov(3), 8, 2, num_prompts=10, chunk=10**9)
    assert time.perf_counter() - t0 < 5.0


def test_stale_cache_extension_is_refused() -> None:
    model, _, _ = tiny()
    pr = prompts()
    cache = model.encode_prompt(pr.X, pr.y)
    _, first = model.step(cache, torch.zeros(4, 3))
    _, second = model.step(cache, torch.ones(4, 3))  # reuses the slot `first` occupied
    with pytest.raises(ValueError, match="overwritten"):
        model.step(first, torch.zeros(4, 3))
    model.step(second, torch.zeros(4, 3))  # the newest one works
    # history beyond the initial buffer (room for 1 query token) grows it, and matches recomputation
    cache, its = model.encode_prompt(pr.X, pr.y, extra=1), [torch.zeros(4, 3)]
    for _ in range(6):
        w, cache = model.step(cache, its[-1])
        its.append(w)
    assert cache.keys[0].shape[2] > 8 + 1 and cache.num_queries == 6
    ref = cot_rollout(model, pr.X, pr.y, 6, keep_history=True, use_cache=False)
    torch.testing.assert_close(torch.stack(its, 1), ref, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    model, cfg, tcfg = tiny()
    tcfg = preset("tiny", train_steps=2)[1]
    res = train_gpt2(model, isotropic_cov(3), tcfg, progress=False)
    return save_checkpoint(model, tmp_path, "m", train_cfg=tcfg, train_cov="isotropic", result=res)


def _edit(path: Path, change, rehash: bool = False) -> None:
    man = json.loads(path.read_text())
    change(man)
    if rehash:
        man["digest"] = manifest_digest(man)
    path.write_text(json.dumps(man))


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m["config"]["model"].update(heads=4),
        lambda m: m["config"]["model"].update(activation="relu"),
        lambda m: m["config"]["train"].update(context_len=40),
        lambda m: m.update(train_cov="skewed2"),
        lambda m: m.update(seed=7),
    ],
    ids=["heads", "activation", "context_len", "train_cov", "seed"],
)
def test_edited_manifest_is_refused(saved: Path, change) -> None:
    load_checkpoint(saved)
    _edit(saved, change)
    with pytest.raises(ValueError, match=r"m\.json.*`digest`"):
        load_checkpoint(saved)


def test_weights_path_confined_to_manifest_folder(saved: Path, tmp_path: Path) -> None:
    outside = tmp_path / "ok"
    outside.mkdir()
    (outside / "x.pt").write_bytes((saved.with_suffix(".pt")).read_bytes())
    for name in ("../ok/x.pt", "/etc/passwd", "ok/x.pt", ".."):
        _edit(saved, lambda m, name=name: m.update(checkpoint=name), rehash=True)
        with pytest.raises(ValueError, match="field `checkpoint`"):
            load_checkpoint(saved)
    (saved.parent / "link.pt").symlink_to(outside / "x.pt")
    _edit(saved, lambda m: m.update(checkpoint="link.pt"), rehash=True)
    with pytest.raises(ValueError, match="outside"):
        load_checkpoint(saved)


def _resave_weights(saved: Path, change) -> None:
    """Write changed weights and recompute both hashes (a consistent but broken checkpoint)."""
    pt = saved.with_suffix(".pt")
    state = torch.load(pt, weights_only=True)
    change(state)
    torch.save(state, pt)
    _edit(saved, lambda m: m.update(sha256=sha256_file(pt)), rehash=True)


def test_nonfinite_shape_and_key_errors(saved: Path) -> None:
    _resave_weights(saved, lambda s: s["read_out.weight"].fill_(NAN))
    with pytest.raises(ValueError, match=r"m\.pt.*`read_out\.weight`.*NaN"):
        load_checkpoint(saved)
    _resave_weights(saved, lambda s: s.update({"read_out.weight": torch.zeros(3, 5)}))
    with pytest.raises(ValueError, match=r"`read_out\.weight` has shape"):
        load_checkpoint(saved)
    _resave_weights(saved, lambda s: s.update({"extra.weight": torch.zeros(1)}))
    with pytest.raises(ValueError, match="unexpected key `extra.weight`"):
        load_checkpoint(saved)
    _resave_weights(saved, lambda s: [s.pop("extra.weight"), s.pop("wpe.weight")])
    with pytest.raises(ValueError, match="missing key `wpe.weight`"):
        load_checkpoint(saved)


def test_manifest_format_errors(saved: Path) -> None:
    text = saved.read_text()
    saved.write_text("{not json")
    with pytest.raises(ValueError, match=r"m\.json: not a JSON manifest"):
        load_checkpoint(saved)
    saved.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_checkpoint(saved)
    for field in ("digest", "config", "sha256", "checkpoint"):
        man = json.loads(text)
        del man[field]
        saved.write_text(json.dumps(man))
        with pytest.raises(ValueError, match=f"m\\.json: missing field `{field}`"):
            load_checkpoint(saved)
    man = json.loads(text)
    man["config"]["model"]["bogus"] = 1
    man["digest"] = manifest_digest(man)
    saved.write_text(json.dumps(man))
    with pytest.raises(ValueError, match=r"m\.json: field `config`.*bogus"):
        load_checkpoint(saved)


# --------------------------------------------------------------------------- CLI


def _cli(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


def test_cli_user_errors_exit_2_with_one_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    rc, err = _cli(capsys, "--preset", "tiny", "--out", str(out), "--stem", "../../x", "--no-progress")
    assert rc == 2 and "`stem`" in err and err.count("\n") == 1
    assert not (tmp_path / "x.json").exists() and not (tmp_path.parent / "x.json").exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    t0 = time.perf_counter()
    rc, err = _cli(capsys, "--preset", "cpu", "--out", str(blocker / "sub"), "--no-progress")
    assert rc == 2 and "not a writable folder" in err and err.count("\n") == 1
    assert time.perf_counter() - t0 < 10  # refused before training (the cpu preset takes minutes)
    rc, err = _cli(capsys, "--preset", "tiny", "--out", str(out), "--device", "foo")
    assert rc == 2 and "--device 'foo'" in err and err.count("\n") == 1
    rc, err = _cli(capsys, "--preset", "tiny", "--out", str(out), "--lr", "1e38")
    assert rc == 2 and "`lr`" in err
    rc, err = _cli(capsys, "--preset", "tiny", "--out", str(out), "--lr", "100", "--no-progress")
    assert rc == 2 and "diverged" in err and err.count("\n") == 1
    rc, err = _cli(capsys, "--preset", "tiny", "--out", str(out), "--train-steps", "0")
    assert rc == 2 and "`train_steps`" in err


def test_cli_sweep_runs_every_combination(tmp_path: Path, capsys) -> None:
    argv = ["sweep", "--context-len", "4", "6", "--seed", "0", "1", "--train-cov", "isotropic", "skewed"]
    rc = main([*argv, "--dry-run", "--preset", "tiny", "--out", str(tmp_path)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(lines) == 8 and all(s.startswith("python -m tts_lib.gpt2_train ") for s in lines)
    rc = main([*argv[:4], "--seed", "0", "--preset", "tiny", "--steps", "2", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    names = sorted(p.name for p in tmp_path.glob("*.json"))
    assert names == ["gpt2_tiny_compact_isotropic_n4_seed0.json", "gpt2_tiny_compact_isotropic_n6_seed0.json"]
    rc = main([*argv[:4], "--seed", "0", "--preset", "tiny", "--steps", "2", "--out", str(tmp_path), "--skip-existing"])
    assert rc == 0 and capsys.readouterr().out.count("exists, skipped") == 2
    for p in tmp_path.glob("*.json"):
        load_checkpoint(p, train_cov="isotropic")


def test_newton_targets_checks_its_inputs() -> None:
    """The public Newton-target helper names a bad argument; the values match the formula."""
    from tts_lib.gpt2_train import newton_targets

    g = torch.Generator().manual_seed(0)
    X, y, w0 = torch.randn(4, 6, 3, generator=g), torch.randn(4, 6, generator=g), torch.zeros(4, 3)
    P = torch.eye(3)
    want = (X.transpose(1, 2) @ y.unsqueeze(-1)).squeeze(-1) / 6  # from ŵ0 = 0: Xᵀy/n
    torch.testing.assert_close(newton_targets(X, y, w0, P), want)
    for kwargs, name in ((dict(y=torch.randn(4, 5)), "y"), (dict(w0=torch.zeros(3)), "w0"),
                         (dict(precond=torch.eye(4)), "precond"), (dict(X=torch.zeros(4, 6)), "X"),
                         (dict(y=torch.full((4, 6), float("nan"))), "y")):
        args = dict(X=X, y=y, w0=w0, precond=P) | kwargs
        with pytest.raises((ValueError, TypeError), match=f"`{name}`"):
            newton_targets(**args)
