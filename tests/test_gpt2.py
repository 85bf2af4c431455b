"""Tests of the GPT-2 regressor, its training, checkpoints and the benchmark (fast: tiny preset)."""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from pathlib import Path

import pytest
import torch

from tts_lib.gpt2 import GPT2RegressorConfig, build_model, cot_errors, cot_rollout
from tts_lib.gpt2_checkpoint import checkpoint_stem, load_checkpoint, save_checkpoint
from tts_lib.gpt2_train import (
    OVERRIDES,
    GPT2TrainConfig,
    TrainingDivergedError,
    main,
    parser,
    preset,
    sample_starts,
    train_gpt2,
)
from tts_lib.prompts import sample_prompts
from tts_lib.tasks import isotropic_cov, named_cov

HAS_CUDA = torch.cuda.is_available()


def tiny(layout: str = "compact", **kw):
    cfg, train_cfg = preset("tiny", layout=layout, **kw)
    return build_model(cfg, seed=0), cfg, train_cfg


def prompts(dim: int = 3, m: int = 8, batch: int = 6, seed: int = 0, dtype=torch.float32):
    return sample_prompts(isotropic_cov(dim), m, batch, seed=seed, dtype=dtype)


@pytest.mark.parametrize("layout", ["compact", "interleaved"])
@pytest.mark.parametrize("keep_history", [False, True])
def test_cache_matches_recompute(layout: str, keep_history: bool) -> None:
    model, cfg, _ = tiny(layout)
    pr = prompts()
    w0 = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    a = cot_rollout(model, pr.X, pr.y, 6, w0=w0, use_cache=True, keep_history=keep_history)
    b = cot_rollout(model, pr.X, pr.y, 6, w0=w0, use_cache=False, keep_history=keep_history)
    assert a.shape == (6, 7, 3)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a[:, 0], w0)
    # float64: agreement to round-off
    m64 = model.double()
    a = cot_rollout(m64, pr.X.double(), pr.y.double(), 4, keep_history=keep_history)
    b = cot_rollout(m64, pr.X.double(), pr.y.double(), 4, use_cache=False, keep_history=keep_history)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_history_changes_later_steps_only() -> None:
    model, _, _ = tiny()
    pr = prompts()
    a = cot_rollout(model, pr.X, pr.y, 3, keep_history=False)
    b = cot_rollout(model, pr.X, pr.y, 3, keep_history=True)
    torch.testing.assert_close(a[:, :2], b[:, :2])  # first step: a single query token either way
    assert not torch.allclose(a[:, 3], b[:, 3])


def test_forward_shapes_and_multi_query() -> None:
    for layout in ("compact", "interleaved"):
        model, _, _ = tiny(layout)
        pr = prompts(m=5, batch=4)
        assert model(pr.X, pr.y, torch.zeros(4, 3)).shape == (4, 3)
        w = torch.randn(4, 2, 3)
        out = model(pr.X, pr.y, w)
        assert out.shape == (4, 2, 3)
        # query 0 in a two-query sequence equals the single-query prediction (causal attention)
        torch.testing.assert_close(out[:, 0], model(pr.X, pr.y, w[:, 0]), rtol=1e-5, atol=1e-5)


def test_compact_accepts_any_context_interleaved_does_not() -> None:
    model, cfg, _ = tiny("compact")
    pr = prompts(m=40)
    assert cot_rollout(model, pr.X, pr.y, 2).shape == (6, 3, 3)
    model, cfg, _ = tiny("interleaved")
    with pytest.raises(ValueError, match="max_context"):
        cot_rollout(model, pr.X, pr.y, 2)


def test_bad_input_errors() -> None:
    model, _, _ = tiny()
    pr = prompts()
    with pytest.raises(ValueError, match="`X`"):
        model(pr.X[..., :2], pr.y, torch.zeros(6, 3))
    with pytest.raises(ValueError, match="`y`"):
        model(pr.X, pr.y[:, :3], torch.zeros(6, 3))
    with pytest.raises(ValueError, match="`w_hat`"):
        model(pr.X, pr.y, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="`num_steps`"):
        cot_rollout(model, pr.X, pr.y, -1)
    with pytest.raises(ValueError, match="`w0`"):
        cot_rollout(model, pr.X, pr.y, 2, w0=torch.zeros(6, 4))
    with pytest.raises(ValueError, match="NaN"):
        cot_rollout(model, pr.X * float("nan"), pr.y, 2)
    with pytest.raises(ValueError, match="`w_hat`"):
        model.step(model.encode_prompt(pr.X, pr.y), torch.zeros(6, 4))
    with pytest.raises(ValueError, match="`heads`"):
        GPT2RegressorConfig(width=30, heads=4)
    with pytest.raises(ValueError, match="`layout`"):
        GPT2RegressorConfig(layout="bogus")
    with pytest.raises(ValueError, match="`start_noise_min`"):
        GPT2TrainConfig(start_noise_min=2.0, start_noise_max=1.0)
    with pytest.raises(ValueError, match="`name`"):
        preset("huge")
    with pytest.raises(ValueError, match="unknown override"):
        preset("tiny", widht=3)
    with pytest.raises(ValueError, match="`cov`"):
        train_gpt2(model, isotropic_cov(4), GPT2TrainConfig(train_steps=1))


def test_sample_starts() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4000, 3, dtype=torch.float64)
    cfg = GPT2TrainConfig(start_zero_prob=0.25, start_noise_min=0.1, start_noise_max=0.1)
    w0 = sample_starts(w, cfg, g)
    zero = (w0 == 0).all(1)
    assert abs(zero.double().mean().item() - 0.25) < 0.03
    resid = (w0 - w)[~zero]
    assert abs(resid.std().item() - 0.1) < 0.01


def test_training_reduces_loss_and_is_seeded() -> None:
    model, cfg, train_cfg = tiny()
    res = train_gpt2(model, isotropic_cov(cfg.dim), train_cfg, seed=0, progress=False)
    assert len(res.losses) == train_cfg.train_steps
    first = sum(res.losses[:10]) / 10
    assert res.final_loss(20) < 0.5 * first
    assert not model.training
    # CoT from zero: the first step beats the zero estimate (error d in expectation)
    err = cot_errors(model, isotropic_cov(cfg.dim), cfg.max_context, 2, num_prompts=200, seed=5)
    assert err.shape == (200, 3)
    assert err[:, 1].mean() < 0.7 * err[:, 0].mean()
    # same seed, same losses
    model2, _, _ = tiny()
    res2 = train_gpt2(model2, isotropic_cov(cfg.dim), replace_steps(train_cfg, 5), seed=0, progress=False)
    assert res2.losses == res.losses[:5]  # still in warm-up, so the schedule is the same


def replace_steps(cfg: GPT2TrainConfig, steps: int) -> GPT2TrainConfig:
    return dataclasses.replace(cfg, train_steps=steps)


def test_nan_loss_stops_with_clear_error() -> None:
    model, cfg, train_cfg = tiny()
    with torch.no_grad():
        model.read_out.weight.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match="NaN|nan"):
        train_gpt2(model, isotropic_cov(cfg.dim), replace_steps(train_cfg, 3), progress=False)


def test_checkpoint_round_trip_tamper_and_mismatch(tmp_path) -> None:
    model, cfg, train_cfg = tiny()
    train_cfg = replace_steps(train_cfg, 3)
    res = train_gpt2(model, isotropic_cov(cfg.dim), train_cfg, seed=0, progress=False)
    path = save_checkpoint(model, tmp_path, "m", train_cfg=train_cfg, train_cov="isotropic", result=res)
    manifest = json.loads(path.read_text())
    assert manifest["train_steps"] == 3 and len(manifest["sha256"]) == 64
    loaded, _ = load_checkpoint(path, expected=cfg, expected_train=train_cfg, train_cov="isotropic")
    pr = prompts()
    torch.testing.assert_close(cot_rollout(loaded, pr.X, pr.y, 3), cot_rollout(model, pr.X, pr.y, 3))
    # loading through the .pt path works as well
    load_checkpoint(tmp_path / "m.pt")
    with pytest.raises(ValueError, match="does not match.*layers"):
        load_checkpoint(path, expected=GPT2RegressorConfig(**{**manifest["config"]["model"], "layers": 3}))
    with pytest.raises(ValueError, match="train_cov"):
        load_checkpoint(path, train_cov="skewed")
    with pytest.raises(ValueError, match="train_steps"):
        load_checkpoint(path, expected_train=replace_steps(train_cfg, 4))
    # tamper with the weights file: refused before torch.load
    data = bytearray((tmp_path / "m.pt").read_bytes())
    data[-20] ^= 0xFF
    (tmp_path / "m.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_checkpoint(path)


def test_cli_writes_checkpoint(tmp_path, capsys) -> None:
    rc = main(
        [
            "--preset",
            "tiny",
            "--steps",
            "4",
            "--seed",
            "1",
            "--out",
            str(tmp_path),
            "--no-progress",
            "--train-cov",
            "skewed",
        ]
    )
    assert rc == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["gpt2_tiny_compact_skewed_n8_seed1.json", "gpt2_tiny_compact_skewed_n8_seed1.pt"]
    manifest = json.loads((tmp_path / files[0]).read_text())
    assert manifest["command"].startswith("python -m tts_lib.gpt2_train --preset tiny")
    assert manifest["train_cov"] == "skewed" and math.isfinite(manifest["final_loss"])
    assert set(manifest["versions"]) >= {"torch", "python"}
    load_checkpoint(tmp_path / files[0], expected=preset("tiny")[0], train_cov="skewed")


@pytest.mark.skipif(HAS_CUDA, reason="checks the message shown where there is no GPU")
def test_cli_refuses_missing_cuda(tmp_path, capsys) -> None:
    assert main(["--preset", "tiny", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("width,layers,heads", [(16, 2, 2), (32, 3, 4)])
def test_bench_gemm_operands_are_the_steps_products(width, layers, heads) -> None:
    """The bench's GEMM-only contender runs exactly the matrix products (mm/addmm FLOP, as
    the profiler counts them) of the compact model's forward and backward."""
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from tts_lib import bench

    d, n, batch = 5, 6, 4
    cfg, _ = preset(
        "tiny", width=width, layers=layers, heads=heads, dim=d, context_len=n, layout="compact"
    )
    model = build_model(cfg, seed=0)
    pr = sample_prompts(isotropic_cov(d), n, batch, seed=0)
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        F.mse_loss(model(pr.X.float(), pr.y.float(), torch.zeros(batch, d)), pr.w.float()).backward()
    counted = sum(e.flops for e in prof.key_averages() if e.key in ("aten::mm", "aten::addmm"))
    assert bench._gemm_flops(bench._gemm_operands(model, batch, n + 1)) == counted


def test_bench_quick_smoke(tmp_path) -> None:
    from tts_lib import bench

    out = tmp_path / "b.json"
    records = bench.main(["--quick", "--device", "cpu", "--json", str(out), "--only", "gpt2_cot"])
    data = json.loads(out.read_text())
    assert data == records
    names = {r["name"] for r in data}
    assert "gpt2_cot_cache_speedup_k10" in names
    for r in data:
        assert set(r) == {"name", "device", "value", "unit"}
        assert math.isfinite(r["value"]) and r["value"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    model, cfg, train_cfg = tiny()
    pr = prompts()
    cpu = cot_rollout(model, pr.X, pr.y, 4)
    gpu_model = build_model(cfg, seed=0, device="cuda")
    gpu = cot_rollout(gpu_model, pr.X.cuda(), pr.y.cuda(), 4)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(
        cot_rollout(gpu_model, pr.X.cuda(), pr.y.cuda(), 4, use_cache=False), gpu, rtol=1e-4, atol=1e-4
    )
    res = train_gpt2(gpu_model, isotropic_cov(cfg.dim), train_cfg, seed=0, progress=False)
    assert res.device.startswith("cuda")
    assert res.final_loss(20) < 0.5 * sum(res.losses[:10]) / 10


# --------------------------------------------------------------------------- committed checkpoints

# chapter 7's GPT-2 checkpoints (chapter 10's language models, euclid_*, have their own tests)
CHECKPOINTS = sorted((Path(__file__).resolve().parents[1] / "book" / "checkpoints").glob("gpt2_*.json"))


def test_committed_checkpoints_exist() -> None:
    assert len(CHECKPOINTS) >= 5, CHECKPOINTS
    total = sum(p.stat().st_size + p.with_suffix(".pt").stat().st_size for p in CHECKPOINTS)
    assert total < 30e6, f"committed checkpoints take {total / 1e6:.1f} MB"


@pytest.mark.parametrize("path", CHECKPOINTS, ids=lambda p: p.stem)
def test_committed_checkpoint_loads_and_verifies(path: Path) -> None:
    """Each committed checkpoint: sha256 verified, configuration = the manifest's command, and it works."""
    manifest = json.loads(path.read_text())
    # the stored command, parsed again, names this configuration and this file
    argv = shlex.split(manifest["command"])[3:]
    args = parser().parse_args(argv)
    overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    cfg, train_cfg = preset(args.preset, **overrides)
    assert checkpoint_stem(args.preset, cfg, train_cfg, args.train_cov, args.seed) == path.stem
    model, _ = load_checkpoint(path, expected=cfg, expected_train=train_cfg, train_cov=args.train_cov)
    # a trained model: on its own training distribution (test prompts of m = max(n, 2d)
    # examples: m close to d has heavy-tailed errors) one step from zero (a model trained to
    # output w) or ten (one trained on one pseudo-Newton step) is far better than ŵ0 = 0
    m = max(train_cfg.context_len, 2 * cfg.dim)
    k, factor = (1, 0.2) if train_cfg.target == "w" else (10, 0.5)
    err = cot_errors(model, named_cov(args.train_cov, cfg.dim), m, k, num_prompts=200, seed=3)
    assert err[:, k].mean() < factor * err[:, 0].mean()


def test_older_manifest_formats_are_refused_with_the_command_to_retrain(tmp_path: Path) -> None:
    """Formats 1 and 2 (before the December 2026 retraining) are refused by name, with the
    way out (retrain with the manifest's command); the registry still refuses a changed file
    under a committed name first."""
    from tts_lib.gpt2_checkpoint import OLD_FORMATS, manifest_digest, verify_checkpoint

    path = CHECKPOINTS[0]
    raw = json.loads(path.read_text())
    (tmp_path / raw["checkpoint"]).write_bytes(path.with_suffix(".pt").read_bytes())
    mine = tmp_path / path.name
    for old in OLD_FORMATS:
        raw["format"] = old
        raw["digest"] = manifest_digest(raw)
        mine.write_text(json.dumps(raw))
        with pytest.raises(ValueError, match="pinned"):  # a committed name: the library's registry
            verify_checkpoint(mine)
        with pytest.raises(ValueError, match=f"format {old} .*no longer read; retrain"):
            verify_checkpoint(mine, registry=False)


def test_load_preset_checkpoint_names_and_verifies_the_file(tmp_path: Path) -> None:
    from tts_lib.gpt2_checkpoint import load_preset_checkpoint

    folder = CHECKPOINTS[0].parent
    model, manifest = load_preset_checkpoint(folder, "cpu20", "isotropic", 20, 1)
    assert manifest["checkpoint"] == "gpt2_cpu20_compact_isotropic_n20_seed1.pt"
    assert model.config.dim == 20 and not model.training
    # the saved dtype (float32), not torch's default (the chapters set float64)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert next(load_preset_checkpoint(folder, "cpu20", "isotropic", 20, 1)[0].parameters()).dtype == torch.float32
    finally:
        torch.set_default_dtype(before)
    model64, _ = load_preset_checkpoint(folder, "cpu20", "isotropic", 20, 1, dtype=torch.float64)
    assert {p.dtype for p in model64.parameters()} == {torch.float64}
    for a, b in zip(model.parameters(), model64.parameters(), strict=True):
        assert torch.equal(a.double(), b)  # float32 weights widened exactly
    with pytest.raises(ValueError, match="`dtype`"):
        load_preset_checkpoint(folder, "cpu20", "isotropic", 20, dtype=torch.float16)
    with pytest.raises(ValueError, match="`preset_name`"):
        load_preset_checkpoint(folder, "cpu21", "isotropic", 20)
    with pytest.raises(TypeError, match="`folder`"):
        load_preset_checkpoint(3, "cpu20", "isotropic", 20)
    with pytest.raises(ValueError, match="`context_len`"):
        load_preset_checkpoint(folder, "cpu20", "isotropic", 0)
    with pytest.raises(ValueError, match="`train_cov`"):
        load_preset_checkpoint(folder, "cpu20", "skewed3", 20)
    with pytest.raises(ValueError, match="no manifest"):
        load_preset_checkpoint(folder, "cpu20", "isotropic", 25)


@pytest.mark.parametrize("layout", ["compact", "interleaved"])
def test_gpt2_tokens_use_the_token_slots(layout):
    """Every GPT-2 token has the four blocks of ``prompts.token_slots`` (one token layout)."""
    from tts_lib.prompts import token_slots

    cfg, _ = preset("tiny", layout=layout)
    net = build_model(cfg, seed=0)
    pr = sample_prompts(isotropic_cov(cfg.dim), 4, 2, seed=0, dtype=torch.float32)
    slots = token_slots(cfg.dim)
    data, _ = net.prompt_tokens(pr.X, pr.y)
    query = net.query_tokens(pr.w)[:, 0]
    assert data.shape[-1] == query.shape[-1] == slots.size
    assert torch.equal(query[:, slots.w], pr.w) and bool((query[:, slots.flag] == 1).all())
    assert float(query[:, slots.x].abs().sum()) == 0.0 and float(query[:, slots.y].abs().sum()) == 0.0
    xs = data[..., slots.x].reshape(-1, cfg.dim)
    ys = data[..., slots.y].reshape(-1)
    assert torch.equal(xs[xs.abs().sum(-1) > 0], pr.X.reshape(-1, cfg.dim))
    assert torch.equal(ys[ys != 0], pr.y.reshape(-1)[pr.y.reshape(-1) != 0])
    assert float(data[..., slots.w].abs().sum()) == 0.0 and float(data[..., slots.flag].abs().sum()) == 0.0


def test_seed_gives_gpt2_initialisation() -> None:
    """``build_model(seed=s)``: GPT-2's initialisation (N(0, 0.02) weights and positions, the
    residual projections N(0, 0.02/sqrt(2·layers)), zero biases, unit layer norms), the
    same weights for the same seed and other weights for another."""
    cfg, _ = preset("tiny", width=128, layers=4, heads=4)
    net = build_model(cfg, seed=5)
    resid = 0.02 / (2 * cfg.layers) ** 0.5

    def close(w: torch.Tensor, sd: float) -> bool:  # within 4 standard errors of a N(0, sd²) sample
        w, n = w.detach(), w.numel()
        return abs(float(w.std()) / sd - 1) < 4 / (2 * n) ** 0.5 and abs(float(w.mean())) < 4 * sd / n**0.5

    for block in net.blocks:
        for lin, sd in ((block.attn.c_attn, 0.02), (block.attn.c_proj, resid),
                        (block.mlp.c_fc, 0.02), (block.mlp.c_proj, resid)):
            assert close(lin.weight, sd)
            assert not lin.bias.any()
        for ln in (block.ln_1, block.ln_2):
            assert bool((ln.weight == 1).all()) and not ln.bias.any()
    assert close(net.wpe.weight, 0.02)
    again, other = build_model(cfg, seed=5), build_model(cfg, seed=6)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True))
    assert not torch.equal(net.blocks[0].attn.c_attn.weight, other.blocks[0].attn.c_attn.weight)
