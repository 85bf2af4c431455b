"""Benchmarks of Chapter 10's language model (``python -m tts_lib.bench_lm``).

* ``lm_train_*``: one AdamW training step (forward, loss, backward, update) of
  :class:`~tts_lib.lm.TinyLM` at the chapter's size (width 64, 2 layers, 2 heads, vocabulary
  34, batch 32 × 96 tokens), side by side with nanoGPT's ``model.py`` (``GPT``) at the same
  width, depth, heads, context, vocabulary and batch. nanoGPT is MIT-licensed third-party
  code and not part of this project: it is timed only when ``TTS_NANOGPT_SRC`` names a
  local copy of its ``model.py`` (or the folder holding it). The contenders are timed
  **interleaved**, one step each per round; the ratio is the median of the per-round
  ratios (nanoGPT time / ours: above 1 means ours is faster).
* ``lm_generate_*``: greedy generation time per new token at 16, 32, 64 and 96 new tokens
  (batch 256; 64 with ``--quick``), with and without the key/value cache; with it the cost per token should be
  flat in the chain length, without it it grows.

Each benchmark has the ``bench(device, quick) -> list[record]`` form of
:mod:`tts_lib.bench`, so the table there can list them (``LM_BENCHMARKS``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from ._checks import check_path
from .lm import LMConfig, build_lm, generate, lm_loss

Record = dict[str, Any]
#: the chapter's model size and training batch
SIZE = {"vocab_size": 34, "width": 64, "layers": 2, "heads": 2, "max_len": 128}
BATCH, TOKENS = 32, 96


def _record(name: str, device: str, value: float, unit: str) -> Record:
    return {"name": name, "device": device, "value": float(value), "unit": unit}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def nanogpt_module(src: str) -> Any:
    """nanoGPT's ``model`` module loaded from a local file (or the folder holding
    ``model.py``); a clear error when it is not there.

    Defined in Chapter 10.
    """
    path = check_path(src, "src")
    if path.is_dir():
        path = path / "model.py"
    if not path.is_file():
        raise SystemExit(f"error: TTS_NANOGPT_SRC={src!r}: no model.py there (point it at nanoGPT's model.py)")
    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _step_fn(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, betas=(0.9, 0.99))

    def step() -> None:
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def bench_lm_vs_nanogpt(device: str, quick: bool) -> list[Record]:
    """Training-step time of :class:`~tts_lib.lm.TinyLM` and, with ``TTS_NANOGPT_SRC``,
    nanoGPT's ``GPT`` at the same size, interleaved (module docstring).

    Defined in Chapter 10.
    """
    cfg = LMConfig(**SIZE)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(1, cfg.vocab_size, (BATCH, TOKENS + 1), generator=g).to(device)
    mask = torch.ones(BATCH, TOKENS + 1, device=device)
    ours = build_lm(cfg, seed=0, device=device)
    ours.train()
    steps = {"ours": _step_fn(ours, lambda: lm_loss(ours, idx, mask))}
    src = os.environ.get("TTS_NANOGPT_SRC")
    if src:
        ng = nanogpt_module(src)
        conf = ng.GPTConfig(
            block_size=cfg.max_len, vocab_size=cfg.vocab_size, n_layer=cfg.layers, n_head=cfg.heads,
            n_embd=cfg.width, dropout=0.0, bias=True,
        )
        torch.manual_seed(0)
        theirs = ng.GPT(conf).to(device)
        theirs.train()
        x, y = idx[:, :-1].contiguous(), idx[:, 1:].contiguous()
        steps["nanogpt"] = _step_fn(theirs, lambda: theirs(x, y)[1])
    rounds = 10 if quick else 30
    times: dict[str, list[float]] = {k: [] for k in steps}
    for fn in steps.values():  # warm-up
        fn()
    for _ in range(rounds):
        for name, fn in steps.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    out = [_record("lm_train_ms_per_step_ours", device, 1000 * statistics.median(times["ours"]), "ms")]
    if "nanogpt" in times:
        ratio = statistics.median(a / b for a, b in zip(times["nanogpt"], times["ours"], strict=True))
        out += [
            _record("lm_train_ms_per_step_nanogpt", device, 1000 * statistics.median(times["nanogpt"]), "ms"),
            _record("lm_train_speedup_vs_nanogpt", device, ratio, "x"),
        ]
    return out


def bench_lm_generate(device: str, quick: bool) -> list[Record]:
    """Greedy generation, ms per new token at several chain lengths, with and without the
    key/value cache (batch 256, 64 with ``quick``; a 10-token prompt).

    Defined in Chapter 10.
    """
    cfg = LMConfig(**SIZE)
    model = build_lm(cfg, seed=0, device=device)
    batch = 64 if quick else 256
    prompts = torch.randint(1, cfg.vocab_size, (batch, 10), generator=torch.Generator().manual_seed(1))
    out = []
    repeats = 1 if quick else 3
    for new in (16, 32, 64, 96):
        for use_cache in (True, False):
            best = []
            for _ in range(repeats):
                _sync(device)
                t0 = time.perf_counter()
                generate(model, prompts, new, use_cache=use_cache)
                _sync(device)
                best.append(time.perf_counter() - t0)
            tag = "cached" if use_cache else "recomputed"
            out.append(_record(f"lm_generate_{tag}_{new}", device, 1000 * statistics.median(best) / new, "ms/token"))
    return out


LM_BENCHMARKS = [bench_lm_vs_nanogpt, bench_lm_generate]


def main(argv: list[str] | None = None) -> list[Record]:
    """``python -m tts_lib.bench_lm [--device D] [--quick] [--threads T]``: print the language
    model's benchmark records.

    Defined in Chapter 10.
    """
    ap = argparse.ArgumentParser(prog="python -m tts_lib.bench_lm", description="Benchmarks of tts_lib.lm.")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    records = []
    for bench in LM_BENCHMARKS:
        records += bench(args.device, args.quick)
    for r in records:
        print(f"{r['name']:<36} {r['device']:<5} {r['value']:>10.4g} {r['unit']}")
    return records


if __name__ == "__main__":
    main()
