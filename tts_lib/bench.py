"""Benchmarks of the course library (a measurement, not a test).

Usage::

    python -m tts_lib.bench [--json PATH] [--device cpu|cuda|all] [--quick] [--threads N] [--only PREFIX]

prints a table and, with ``--json``, writes a JSON list of records
``{"name", "device", "value", "unit"}``. Timings are medians over repeats, taken with
``torch.set_num_threads(--threads)`` (default 1: on the 2-core course VMs two-thread
timings swing by 3–10×); the thread count is recorded as ``torch_num_threads``.

Benchmarks are plain functions ``fn(device: str, quick: bool) -> list[Record]`` listed
in :data:`GPT2_BENCHMARKS` and :data:`LSA_BENCHMARKS`. **LSA hook:** LSA benchmarks (structured-LSA training steps/s,
analytic error-curve sweep time) go into :data:`LSA_BENCHMARKS` below.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ._checks import MAX_STEPS, InputTypeError, check_pos_int, check_real

Record = dict[str, Any]
Benchmark = Callable[[str, bool], list[Record]]


def record(name: str, device: str, value: float, unit: str) -> Record:
    """One benchmark result."""
    for key, text in (("name", name), ("device", device), ("unit", unit)):
        if not isinstance(text, str):
            raise InputTypeError(f"`{key}` must be a string, got {type(text).__name__}")
    value = check_real(value, "value")
    return {"name": name, "device": device, "value": float(value), "unit": unit}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timeit(fn: Callable[[], Any], device: str, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs (after ``warmup`` runs)."""
    if not callable(fn):
        raise InputTypeError(f"`fn` must be a function of no arguments, got {type(fn).__name__}")
    if not isinstance(device, str):
        raise InputTypeError(f"`device` must be a string such as 'cpu' or 'cuda', got {device!r}")
    repeats = check_pos_int(repeats, "repeats", maximum=MAX_STEPS)
    warmup = check_pos_int(warmup, "warmup", minimum=0, maximum=MAX_STEPS)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --------------------------------------------------------------------------- GPT-2


def _median_ratio(num: list[float], den: list[float]) -> float:
    """Median over interleaved rounds of ``num[i] / den[i]`` (a ratio that drift in the
    machine's speed affects alike on both sides)."""
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def bench_gpt2_train(device: str, quick: bool) -> list[Record]:
    """GPT-2 training steps/s and ms/step per preset and layout at the preset's full d and n
    (paper preset: d = 20, n = 40, only 2 steps on a CPU; skipped there with ``--quick``)."""
    from .gpt2 import build_model
    from .gpt2_config import preset
    from .gpt2_trainer import train_gpt2
    from .tasks import isotropic_cov

    out: list[Record] = []
    presets = ["tiny", "cpu"] + ([] if quick and device == "cpu" else ["paper"])
    for name in presets:
        for layout in ("compact", "interleaved"):
            steps = 2 if (name == "paper" and device == "cpu") else (5 if quick else 30)
            # full size from the first step: no curriculum (the paper preset starts at d=5, n=11)
            cfg, tcfg = preset(name, layout=layout, train_steps=steps, warmup=0, curriculum=None)
            model = build_model(cfg, seed=0, device=device)
            cov = isotropic_cov(cfg.dim)
            train_gpt2(model, cov, preset(name, train_steps=1, warmup=0)[1], seed=1, progress=False)  # warm-up
            res = train_gpt2(model, cov, tcfg, seed=0, progress=False)
            tag = f"{name}_{layout}"
            out.append(record(f"gpt2_train_steps_per_s_{tag}", device, steps / res.wall_s, "steps/s"))
            out.append(record(f"gpt2_train_ms_per_step_{tag}", device, res.ms_per_step, "ms"))
    return out


def bench_gpt2_cot(device: str, quick: bool) -> list[Record]:
    """CoT rollout time with and without the key/value cache (cpu preset, m = n = 20).

    Records ``gpt2_cot_{layout}_k{k}_{cache|recompute}_ms``, the cost per CoT step
    ``gpt2_cot_step_ms_{layout}_{cache|recompute}`` (slope between k = 1 and k = 20) and
    the speed-up at k = 10: ``gpt2_cot_cache_speedup_k10`` (compact layout) and
    ``gpt2_cot_cache_speedup_k10_interleaved``, and ``gpt2_cot_cache_late_over_early_step_*``,
    the cost of a cached step for k = 10..20 over one for k = 1..5 (1: flat in k). Batch:
    256 prompts (64 with ``--quick``).
    """
    from .gpt2 import build_model, cot_rollout
    from .gpt2_config import preset
    from .prompts import sample_prompts
    from .tasks import isotropic_cov

    batch, repeats = (64, 1) if quick else (256, 5)
    out: list[Record] = []
    for layout in ("compact", "interleaved"):
        cfg, tcfg = preset("cpu", layout=layout)
        model = build_model(cfg, seed=0, device=device)
        pr = sample_prompts(isotropic_cov(cfg.dim), tcfg.context_len, batch, seed=0)
        pr = pr.to(device=device, dtype=torch.float32)
        ms: dict[tuple[int, bool], float] = {}

        def run(k: int, cache: bool, model=model, pr=pr) -> None:
            cot_rollout(model, pr.X, pr.y, k, use_cache=cache)

        for k in (1, 5, 10, 20):
            for cache in (True, False):
                t = timeit(lambda k=k, cache=cache: run(k, cache), device, repeats)
                ms[k, cache] = 1000 * t
                kind = "cache" if cache else "recompute"
                out.append(record(f"gpt2_cot_{layout}_k{k}_{kind}_ms", device, ms[k, cache], "ms"))
        for cache in (True, False):
            kind = "cache" if cache else "recompute"
            step = max((ms[20, cache] - ms[1, cache]) / 19, 1e-6)
            out.append(record(f"gpt2_cot_step_ms_{layout}_{kind}", device, step, "ms/step"))
        # flat in k: ten cached steps late in the chain (k = 21..30) over ten early ones
        # (k = 1..10), from cached rollouts of k = 1, 11, 21, 31 timed in interleaved rounds
        # (one rollout each per round; the median of the per-round ratios)
        ratios = []
        for _ in range(3 if quick else 9):
            t = {k: timeit(lambda k=k: run(k, True), device, 1, warmup=0) for k in (1, 11, 21, 31)}
            ratios.append(max(t[31] - t[21], 1e-9) / max(t[11] - t[1], 1e-9))
        out.append(record(f"gpt2_cot_cache_late_over_early_step_{layout}", device, statistics.median(ratios), "x"))
        suffix = "" if layout == "compact" else "_interleaved"
        out.append(record(f"gpt2_cot_cache_speedup_k10{suffix}", device, ms[10, False] / ms[10, True], "x"))
    return out


def bench_gpt2_hf_cache(device: str, quick: bool) -> list[Record]:
    """Cost per cached CoT step, ours vs Hugging Face's own ``past_key_values`` on the same
    weights (cpu preset, compact layout, m = 20, one query token per step: HF's cache is
    cropped back to the prompt after every step). Skipped (no records) without ``transformers``.

    Records ``gpt2_cot_step_ms_compact_hf_cache``, ``gpt2_cot_step_ms_compact_ours_cache``
    (slope between k = 1 and k = 20; medians over interleaved rounds) and
    ``gpt2_cot_cache_speedup_vs_hf`` (HF / ours, median of the per-round ratios).
    """
    try:
        import transformers
    except ImportError:
        return []
    from .gpt2 import build_model, cot_rollout
    from .gpt2_config import preset
    from .prompts import sample_prompts
    from .tasks import isotropic_cov

    batch, repeats = (64, 1) if quick else (256, 5)
    cfg, tcfg = preset("cpu")
    model = build_model(cfg, seed=0, device=device)
    hf = _hf_twin(transformers, model, device)
    pr = sample_prompts(isotropic_cov(cfg.dim), tcfg.context_len, batch, seed=0)
    pr = pr.to(device=device, dtype=torch.float32)

    def hf_rollout(k: int) -> torch.Tensor:
        return _hf_cot_rollout(hf, model, pr.X, pr.y, k)

    gap = float((hf_rollout(5) - cot_rollout(model, pr.X, pr.y, 5)).abs().max())
    if gap > 1e-4:
        raise RuntimeError(f"HF's cached rollout differs from ours by {gap:.2g}; the comparison is void")
    # interleaved rounds (ours, then HF's), so that a drifting machine affects both alike
    rollouts = {"ours": lambda k: cot_rollout(model, pr.X, pr.y, k), "hf": hf_rollout}
    per_step: dict[str, list[float]] = {"ours": [], "hf": []}
    for _ in range(3 * repeats):
        for name, fn in rollouts.items():
            t1 = timeit(lambda fn=fn: fn(1), device, 1, warmup=0)
            t20 = timeit(lambda fn=fn: fn(20), device, 1, warmup=0)
            per_step[name].append(max((t20 - t1) / 19, 1e-9))
    ratio = _median_ratio(per_step["hf"], per_step["ours"])
    return [
        record("gpt2_cot_step_ms_compact_hf_cache", device, 1000 * statistics.median(per_step["hf"]), "ms/step"),
        record("gpt2_cot_step_ms_compact_ours_cache", device, 1000 * statistics.median(per_step["ours"]), "ms/step"),
        record("gpt2_cot_cache_speedup_vs_hf", device, ratio, "x"),
    ]


def _hf_twin(transformers: Any, model: Any, device: str) -> Any:
    """Hugging Face's ``GPT2Model`` with the backbone weights of our ``model`` (a
    :class:`~tts_lib.gpt2.GPT2Regressor`; the read-in and read-out stay ours)."""
    from .gpt2_checkpoint import state_dict_to_hf

    cfg = model.config
    hf_cfg = transformers.GPT2Config(
        vocab_size=1, n_positions=cfg.n_positions, n_embd=cfg.width, n_layer=cfg.layers, n_head=cfg.heads,
        activation_function=cfg.activation, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=0, eos_token_id=0,
    )
    hf = transformers.GPT2Model(hf_cfg).to(device)
    hf.load_state_dict(state_dict_to_hf(model.state_dict(), cfg.width))
    return hf.eval()


@torch.no_grad()
def _hf_cot_rollout(hf: Any, model: Any, X: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`~tts_lib.gpt2.cot_rollout` (cached, zero start) run through Hugging Face's
    ``hf`` backbone and its ``past_key_values``: the prompt once, then one query token per
    step, the cache cropped back to the prompt after each. X (batch, m, d), y (batch, m) →
    (batch, k + 1, d)."""
    import inspect

    batch, m = y.shape
    data = model.layout.data_tokens(X, y)
    pos = model.layout.data_positions(m, data.device)[None].expand(batch, -1)
    mask = torch.ones(batch, m + 1, dtype=torch.long, device=data.device)
    out = hf(inputs_embeds=model.read_in(data), position_ids=pos, attention_mask=mask[:, :m], use_cache=True)
    cache = out.past_key_values
    key = "cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"  # renamed in 5.x
    qpos = torch.full((batch, 1), model.layout.query_position(m), dtype=torch.long, device=data.device)
    w = X.new_zeros(batch, model.config.dim)
    its = [w]
    for _ in range(k):
        h = hf(
            inputs_embeds=model.read_in(model.query_tokens(w)), position_ids=qpos, attention_mask=mask,
            use_cache=True, **{key: cache},
        ).last_hidden_state
        cache.crop(-1)  # drop the query token: the next step sees the prompt only
        w = model.read_out(h[:, -1])
        its.append(w)
    return torch.stack(its, 1)


def _garg_model_class(src: str) -> type:
    """Garg et al.'s ``TransformerModel`` from a local checkout's ``src`` folder. Their
    ``models.py`` imports scikit-learn and xgboost (for its baselines): without them the
    comparison is refused with the command that installs them (no stand-in modules)."""
    import importlib
    import importlib.util
    import sys

    path = Path(src)
    if not (path / "models.py").is_file():
        raise SystemExit(f"error: TTS_GARG_SRC={src!r} has no models.py (point it at the checkout's src/)")
    for name in ("sklearn", "xgboost"):
        if importlib.util.find_spec(name) is None:
            raise SystemExit(f"error: Garg et al.'s models.py imports {name}; install it to time their model "
                             "(pip install scikit-learn xgboost) or unset TTS_GARG_SRC")
    sys.path.insert(0, str(path))
    try:
        spec = importlib.util.spec_from_file_location("garg_models", path / "models.py")
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    finally:
        sys.path.remove(str(path))
    return module.TransformerModel


def _train_step(model: Any, cov: torch.Tensor, cfg: Any, seed: int = 0) -> Callable[[], None]:
    """One training step of :func:`~tts_lib.gpt2_trainer.train_gpt2` (its own step object:
    fresh prompts and starts, forward, loss, backward, clipping, Adam) as a closure, for
    interleaved timing."""
    from .gpt2_trainer import TrainStep

    model.train()
    one = TrainStep(model, cov.detach().to("cpu", torch.float64), cfg, seed)
    counter = itertools.count()

    def step() -> None:
        one(next(counter))

    return step


def _gemm_operands(model: Any, batch: int, tokens: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The operand pairs of every matrix product (``mm``/``addmm``) in one compact training
    step of ``model`` on ``batch`` prompts of ``tokens`` tokens, forward and backward: each
    linear layer (rows, in) → (rows, out) costs ``x Wᵀ``, then ``dY W`` (not for the read-in,
    whose input is data) and ``dYᵀ x``. The final block runs its queries, attention output
    and MLP on the query token only (:meth:`~tts_lib.gpt2.GPT2Regressor.hidden_states`).
    Attention's batched products (T² per head, not in 6·N·T) are left out."""
    cfg = model.config
    w, d, rows, queries = cfg.width, cfg.dim, batch * tokens, batch
    ref = model.read_in.weight
    full = [(rows, w, 3 * w), (rows, w, w), (rows, w, 4 * w), (rows, 4 * w, w)]
    final = [(rows, w, 2 * w), (queries, w, w), (queries, w, w), (queries, w, 4 * w), (queries, 4 * w, w)]
    shapes = full * (cfg.layers - 1) + final + [(queries, w, d)]
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    cache: dict[tuple[int, int], torch.Tensor] = {}

    def mat(r: int, c: int) -> torch.Tensor:
        if (r, c) not in cache:
            cache[r, c] = torch.randn(r, c, device=ref.device, dtype=ref.dtype)
        return cache[r, c]

    read_in = (rows, ref.shape[1], w)
    for r, i, o in [read_in, *shapes]:
        pairs.append((mat(r, i), mat(o, i).t()))  # forward: x Wᵀ
        if (r, i, o) != read_in:
            pairs.append((mat(r, o), mat(o, i)))  # backward: dY W
        pairs.append((mat(r, o).t(), mat(r, i)))  # backward: dYᵀ x
    return pairs


def _gemm_flops(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
    """FLOP of the products in ``pairs`` (2·m·k·n each)."""
    return sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in pairs)


def _our_steps(
    device: str, d: int, n: int, batch: int, width: int, layers: int, heads: int
) -> tuple[dict[str, Callable[[], None]], int]:
    """Our training steps (``"compact"``, ``"interleaved"``) at one size, the compact step's
    matrix products alone (``"gemms"``), and the model's parameter count."""
    from .gpt2 import build_model, num_parameters
    from .gpt2_config import preset
    from .tasks import isotropic_cov

    steps: dict[str, Callable[[], None]] = {}
    params = 0
    for layout in ("compact", "interleaved"):
        cfg, tcfg = preset(
            "cpu20", width=width, layers=layers, heads=heads, layout=layout, context_len=n,
            warmup=0, target="w", batch_size=batch,
        )
        model = build_model(cfg, seed=0, device=device)
        params = params or num_parameters(model)
        steps[layout] = _train_step(model, isotropic_cov(d), tcfg)
        if layout == "compact":
            pairs = _gemm_operands(model, batch, n + 1)

            def gemms(pairs=pairs) -> None:
                for x, y in pairs:
                    x @ y

            steps["gemms"] = gemms
    return steps, params


def _garg_step(garg: Any, device: str, d: int, n: int, batch: int) -> Callable[[], None]:
    """One Adam step of Garg et al.'s model on fresh prompts (loss on every y), as a closure."""
    opt = torch.optim.Adam(garg.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        xs = torch.randn(batch, n + 1, d, generator=g).to(device)
        w = torch.randn(batch, d, 1, generator=g).to(device)
        ys = (xs @ w)[..., 0]
        opt.zero_grad(set_to_none=True)
        loss = ((garg(xs, ys) - ys) ** 2).mean()
        loss.backward()
        opt.step()

    return step


def _interleaved_times(steps: dict[str, Callable[[], None]], device: str, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each of ``steps``, ``rounds`` rounds of one call each (after one
    warm-up call each), so that a drifting machine affects them alike."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for fn in steps.values():  # warm-up
        timeit(fn, device, 1)
    for _ in range(rounds):
        for name, fn in steps.items():
            times[name].append(timeit(fn, device, 1, warmup=0))
    return times


def bench_gpt2_vs_garg(device: str, quick: bool) -> list[Record]:
    """Training step at equal width/depth/heads and prompt content (d = 20, 40 examples and
    the query, batch 64) for ours (compact, interleaved) and Garg et al.'s
    ``TransformerModel`` (interleaved x, y tokens, loss on every y): 64/3/2 and 256/12/8.

    The contenders (and a float32 matmul) are timed **interleaved**, one step each per round,
    so that a shared machine's drifting speed affects them alike; the records are medians
    over rounds, and the ratios medians of the per-round ratios. Garg's model is timed only
    when ``TTS_GARG_SRC`` names the ``src`` folder of a local checkout of
    github.com/dtsip/in-context-learning (their code is not part of this project). The
    matmul limit of our compact step is ``6·N·T`` FLOP (N parameters, T = batch × tokens) at
    the round's matmul rate; ``gpt2_train_limit_fraction_*`` is limit / measured step. The
    step's own matrix products alone, at their shapes (:func:`_gemm_operands`), are timed
    too: ``gpt2_train_gemm_share_*`` is their time / the step's, and the rest of the step is
    attention, element-wise work and Adam.
    """
    import os

    src = os.environ.get("TTS_GARG_SRC")
    garg_cls = _garg_model_class(src) if src else None
    d, n, batch = 20, 40, 64
    a = torch.randn(1024, 1024, device=device)
    out: list[Record] = []
    sizes = [(64, 3, 2)] + ([] if quick and device == "cpu" else [(256, 12, 8)])
    for width, layers, heads in sizes:
        big = width >= 256
        rounds = (3 if quick else 5) if (big and device == "cpu") else (5 if quick else 30)
        tag = f"{width}_{layers}_{heads}"
        steps, params = _our_steps(device, d, n, batch, width, layers, heads)
        if garg_cls is not None:
            garg = garg_cls(n_dims=d, n_positions=n + 1, n_embd=width, n_layer=layers, n_head=heads)
            steps["garg"] = _garg_step(garg.to(device), device, d, n, batch)
        steps["matmul"] = lambda: a @ a
        times = _interleaved_times(steps, device, rounds)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        flops = 6 * params * batch * (n + 1)
        limits = [flops / (2 * 1024**3 / tm) for tm in times["matmul"]]  # seconds per round
        out.append(record(f"matmul_float32_gflops_{tag}", device, 2 * 1024**3 / med["matmul"] / 1e9, "GFLOP/s"))
        for layout in ("compact", "interleaved"):
            out.append(record(f"gpt2_vs_garg_ms_{layout}_{tag}", device, 1000 * med[layout], "ms"))
        out.append(record(f"gpt2_train_limit_ms_{tag}", device, 1000 * statistics.median(limits), "ms"))
        fraction = _median_ratio(limits, times["compact"])
        out.append(record(f"gpt2_train_limit_fraction_{tag}", device, fraction, "x"))
        out.append(record(f"gpt2_train_gemm_ms_{tag}", device, 1000 * med["gemms"], "ms"))
        share = _median_ratio(times["gemms"], times["compact"])
        out.append(record(f"gpt2_train_gemm_share_{tag}", device, share, "x"))
        if "garg" in steps:
            out.append(record(f"gpt2_vs_garg_ms_garg_{tag}", device, 1000 * med["garg"], "ms"))
            for layout in ("compact", "interleaved"):
                ratio = _median_ratio(times["garg"], times[layout])
                out.append(record(f"gpt2_vs_garg_speedup_{layout}_{tag}", device, ratio, "x"))
    return out


# --------------------------------------------------------------------------- LSA hook


def bench_lsa_train(device: str, quick: bool) -> list[Record]:
    """Structured-LSA training steps/s (d = 20, n = 40, batch 512, float64, SGD)."""
    from .lsa import StructuredLSA
    from .tasks import isotropic_cov
    from .train import TrainConfig, TrainTask, train_lsa

    d, n, steps = 20, 40, (10 if quick else 100)
    task = TrainTask(isotropic_cov(d, device=device), n)
    model = StructuredLSA(d, device=device)
    train_lsa(model, task, TrainConfig(train_steps=2, batch_size=512, lr=1e-3, progress=False))  # warm-up
    cfg = TrainConfig(train_steps=steps, batch_size=512, lr=1e-3, progress=False)
    t = timeit(lambda: train_lsa(model, task, cfg), device, 1, warmup=0)
    return [record("lsa_structured_train_steps_per_s", device, steps / t, "steps/s")]


def bench_theory_sweep(device: str, quick: bool) -> list[Record]:
    """Analytic error-curve sweeps (training λ_i ∝ 1/i, isotropic test).

    ``theory_error_curve_sweep_ms``: population curves k = 0..100 for n = 1..200 (d = 20);
    ``theory_first_order_sweep_ms``: the first-order finite-m term, k = 0..20 for
    n = 1..30 batched (d = 20; the README's sweep, 57× faster than the O(K²d³) version
    it replaced, measured 2.37 s → 41 ms under load);
    ``theory_first_order_d100_k200_ms``: the same term at d = 100, K = 200.
    These two time the expansion itself (``theory.first_order_correction``); its values
    are only returned by ``error_curve`` inside the validity region
    (``theory.first_order_valid_steps``), which these settings mostly are not.
    """
    from .tasks import isotropic_cov, power_law_cov
    from .theory import error_curve, first_order_correction, lsa_precond

    d = 20
    lam = power_law_cov(d, 1.0, trace=float(d), device=device)
    sig = isotropic_cov(d, device=device)
    repeats = 1 if quick else 5

    def sweep(ns: range, k: int) -> None:
        error_curve(torch.stack([lsa_precond(lam, n) for n in ns]), sig, k)

    G30 = torch.stack([lsa_precond(lam, n) for n in range(1, 31)])
    lam100 = power_law_cov(100, 1.0, trace=100.0, device=device)
    G100, sig100 = lsa_precond(lam100, 50), isotropic_cov(100, device=device)
    t_pop = timeit(lambda: sweep(range(1, 201), 100), device, repeats)
    t_fin = timeit(lambda: first_order_correction(G30, sig, 20), device, repeats)
    t_big = timeit(lambda: first_order_correction(G100, sig100, 200), device, 1 if quick else 3)
    return [
        record("theory_error_curve_sweep_ms", device, 1000 * t_pop, "ms"),
        record("theory_first_order_sweep_ms", device, 1000 * t_fin, "ms"),
        record("theory_first_order_d100_k200_ms", device, 1000 * t_big, "ms"),
    ]


#: LSA benchmarks, ``fn(device, quick) -> list[Record]``: structured-LSA training
#: steps/s and analytic error-curve sweep time. Add further LSA/theory benchmarks here.
LSA_BENCHMARKS: list[Benchmark] = [bench_lsa_train, bench_theory_sweep]

GPT2_BENCHMARKS: list[Benchmark] = [bench_gpt2_train, bench_gpt2_cot, bench_gpt2_hf_cache, bench_gpt2_vs_garg]


def all_benchmarks() -> list[Benchmark]:
    """Every registered benchmark (read at call time, so later additions count)."""
    from .bench_lm import LM_BENCHMARKS  # chapter 10's language model

    return [*GPT2_BENCHMARKS, *LSA_BENCHMARKS, *LM_BENCHMARKS]


def _devices(arg: str) -> list[str]:
    if arg == "all":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if arg.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda requested but no CUDA device is available")
    return [arg]


def format_table(records: list[Record]) -> str:
    """Fixed-width table of records."""
    for i, r in enumerate(records):
        if not isinstance(r, dict) or not {"name", "device", "value", "unit"} <= r.keys():
            raise ValueError(f"`records[{i}]` must be a dict with keys name, device, value, unit (see bench.record)")
    w = max([len(r["name"]) for r in records] + [4])
    lines = [f"{'name':<{w}}  {'device':<6}  {'value':>12}  unit"]
    lines += [f"{r['name']:<{w}}  {r['device']:<6}  {r['value']:>12.4g}  {r['unit']}" for r in records]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Record]:
    ap = argparse.ArgumentParser(prog="python -m tts_lib.bench", description="Benchmarks of tts_lib.")
    ap.add_argument("--json", default=None, help="write the records to this file")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or all")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, smaller batches")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for the CPU timings")
    ap.add_argument("--only", default=None, help="run only benchmarks whose function name contains this")
    args = ap.parse_args(argv)
    if args.threads < 1:
        raise SystemExit(f"error: --threads must be >= 1, got {args.threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        records = [record("torch_num_threads", "cpu", torch.get_num_threads(), "threads")]
        for device in _devices(args.device):
            for fn in all_benchmarks():
                if args.only and args.only not in fn.__name__:
                    continue
                records += fn(device, args.quick)
    finally:
        torch.set_num_threads(previous)
    print(format_table(records))
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1) + "\n")
    return records


if __name__ == "__main__":
    main()
