"""Chapter 10's language model: shared blocks, KV-cache generation, training, bad inputs."""

import pytest
import torch

from tts_lib import gpt2
from tts_lib.lm import LMConfig, LMTrainConfig, TinyLM, build_lm, eval_mode, generate, lm_loss, train_lm

CFG = LMConfig(vocab_size=13, width=32, layers=2, heads=4, max_len=40)


def test_uses_chapter_7_blocks_and_tied_head():
    model = build_lm(CFG, seed=0)
    assert all(isinstance(b, gpt2.Block) for b in model.blocks) and len(model.blocks) == 2
    idx = torch.randint(13, (3, 7))
    logits = model(idx)
    assert logits.shape == (3, 7, 13)
    # tied head: logits are ln_f(h) @ wteᵀ; no separate head parameters
    assert not any("head" in n for n, _ in model.named_parameters())
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in model.state_dict().values())


def test_causal():
    model = build_lm(CFG, seed=0)
    idx = torch.randint(13, (2, 10))
    other = idx.clone()
    other[:, 6:] = (other[:, 6:] + 1) % 13
    assert torch.allclose(model(idx)[:, :6], model(other)[:, :6], atol=1e-6)


def test_same_seed_same_weights_and_last_flag():
    a, b = build_lm(CFG, seed=3), build_lm(CFG, seed=3)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka
    idx = torch.randint(13, (2, 9))
    assert torch.allclose(a(idx, last=1)[:, -1], a(idx)[:, -1], atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cached_generation_equals_uncached(dtype):
    model = build_lm(CFG, seed=1, dtype=dtype)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(1, 13, (n,), generator=g).tolist() for n in (3, 5, 5, 8, 1, 3)]
    cached = generate(model, prompts, 20, use_cache=True)
    plain = generate(model, prompts, 20, use_cache=False)
    assert cached == plain and all(len(r) == 20 for r in cached)
    # the cached logits equal the full recomputation's
    x = torch.tensor([prompts[1], prompts[2]])
    cache = model.new_cache(2, 12).extend(5)
    steps = [model(x, cache, 0, last=1)[:, -1]]
    seq = x
    for j in range(6):
        nxt = steps[-1].argmax(-1)[:, None]
        seq = torch.cat([seq, nxt], 1)
        cache = cache.extend(1)  # grows past the capacity of 12 at the end: exercises the growth
        steps.append(model(nxt, cache, 5 + j)[:, -1])
    full = model(seq)[:, 4:]
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert torch.allclose(torch.stack(steps, 1), full, atol=tol)


def test_generation_stops_and_respects_max_len():
    model = build_lm(CFG, seed=2)
    out = generate(model, [[1, 2, 3]], 5)
    stop = out[0][1]
    again = generate(model, [[1, 2, 3]], 5, stop_id=stop)
    assert again[0][-1] == stop and len(again[0]) <= 2
    long = generate(model, [[1] * 35], 100)
    assert len(long[0]) == 5  # max_len 40
    assert generate(model, torch.tensor([[1, 2], [3, 4]]), 3) == generate(model, [[1, 2], [3, 4]], 3)


def test_training_lowers_the_loss_and_is_seeded():
    def sampler(batch, g):
        start = torch.randint(0, 6, (batch, 1), generator=g)
        idx = (start + torch.arange(12)) % 13  # count upwards: learnable
        return idx, torch.ones(batch, 12)

    cfg = LMTrainConfig(train_steps=60, batch_size=16, lr=3e-3, warmup=5)
    m1 = build_lm(CFG, seed=0)
    r1 = train_lm(m1, sampler, cfg, seed=4, progress=False)
    assert sum(r1.losses[-10:]) / 10 < 0.5 * sum(r1.losses[:5]) / 5
    m2 = build_lm(CFG, seed=0)
    r2 = train_lm(m2, sampler, cfg, seed=4, progress=False)
    assert r1.losses == r2.losses and r1.tokens == 60 * 16 * 11
    idx, mask = sampler(4, torch.Generator().manual_seed(0))
    assert torch.isfinite(lm_loss(m1, idx, mask))


@pytest.mark.parametrize(
    ("call", "err"),
    [
        (lambda: LMConfig(width=30, heads=4), ValueError),
        (lambda: LMConfig(vocab_size=0), ValueError),
        (lambda: LMConfig(activation="tanh"), ValueError),
        (lambda: LMConfig(layers=1.5), TypeError),
        (lambda: TinyLM("cfg"), TypeError),
        (lambda: build_lm(CFG, seed=-1), ValueError),
        (lambda: build_lm(CFG, dtype=torch.int64), ValueError),
        (lambda: build_lm(CFG, device="nope"), ValueError),
        (lambda: LMTrainConfig(lr=0), ValueError),
        (lambda: LMTrainConfig(train_steps=0), ValueError),
        (lambda: LMTrainConfig(final_lr_frac=2), ValueError),
        (lambda: generate("model", [[1]], 3), TypeError),
        (lambda: generate(build_lm(CFG), [], 3), TypeError),
        (lambda: generate(build_lm(CFG), "abc", 3), TypeError),
        (lambda: generate(build_lm(CFG), [[]], 3), ValueError),
        (lambda: generate(build_lm(CFG), [[13]], 3), ValueError),
        (lambda: generate(build_lm(CFG), [[1.0]], 3), ValueError),
        (lambda: generate(build_lm(CFG), [[1]], 0), ValueError),
        (lambda: generate(build_lm(CFG), [[1]], 3, stop_id=99), ValueError),
        (lambda: generate(build_lm(CFG), [[1]], 3, use_cache=1), TypeError),
        (lambda: generate(build_lm(CFG), [[1] * 40], 3), ValueError),
        (lambda: generate(build_lm(CFG), torch.ones(2, 3), 3), ValueError),
        (lambda: build_lm(CFG)(torch.zeros(1, 41, dtype=torch.long)), ValueError),
        (lambda: train_lm("m", lambda b, g: None, LMTrainConfig()), TypeError),
        (lambda: train_lm(build_lm(CFG), None, LMTrainConfig()), TypeError),
        (lambda: train_lm(build_lm(CFG), lambda b, g: None, {"train_steps": 3}), TypeError),
        (lambda: train_lm(build_lm(CFG), lambda b, g: None, LMTrainConfig(), seed=-2), ValueError),
    ],
)
def test_bad_inputs(call, err):
    with pytest.raises(err):
        call()


def test_same_weights_under_any_default_dtype():
    ref = build_lm(CFG, seed=5)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        other = build_lm(CFG, seed=5)
    finally:
        torch.set_default_dtype(previous)
    for k, v in ref.state_dict().items():
        assert other.state_dict()[k].dtype == torch.float32 and torch.equal(v, other.state_dict()[k]), k


def test_bench_lm_runs_without_nanogpt_and_refuses_a_missing_copy(monkeypatch, tmp_path):
    from tts_lib import bench_lm

    monkeypatch.delenv("TTS_NANOGPT_SRC", raising=False)
    monkeypatch.setattr(bench_lm, "BATCH", 2)
    monkeypatch.setattr(bench_lm, "TOKENS", 8)
    records = bench_lm.bench_lm_vs_nanogpt("cpu", True)
    assert [r["name"] for r in records] == ["lm_train_ms_per_step_ours"] and records[0]["value"] > 0
    with pytest.raises(SystemExit, match="TTS_NANOGPT_SRC"):
        bench_lm.nanogpt_module(str(tmp_path / "missing"))


def test_cache_take_keeps_the_original_cache_usable():
    model = build_lm(CFG, seed=4)
    x = torch.randint(1, 13, (3, 6))
    cache = model.new_cache(3, 10).extend(6)
    model(x, cache, 0)
    part = cache.take(torch.tensor([2, 0]))
    nxt = torch.tensor([[5], [7], [9]])
    full = model(nxt, cache.extend(1), 6)[:, -1]
    kept = model(nxt[[2, 0]], part.extend(1), 6)[:, -1]
    assert torch.allclose(kept, full[[2, 0]], atol=1e-6)


def test_eval_mode_restores_the_training_flag_even_after_an_error():
    model = build_lm(LMConfig(vocab_size=8, width=16, layers=1, heads=2, max_len=16))
    for flag in (True, False):
        model.train(flag)
        with pytest.raises(RuntimeError, match="inside"):
            with eval_mode(model):
                assert not model.training
                raise RuntimeError("inside")
        assert model.training is flag
    model.train()
    generate(model, [[1, 2]], 2)  # generation runs in eval mode and leaves the flag
    assert model.training
