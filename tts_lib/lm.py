"""A tiny character-level language model on the course's GPT-2 blocks (Chapter 10).

:class:`TinyLM` is a token embedding, learned position embeddings, the *same*
:class:`~tts_lib.gpt2.Block` stack as Chapter 7's regressor (pre-norm, causal
self-attention, 4×-wide MLP), a final layer norm and a language-model head. The head is
**tied** to the token embedding (``logits = ln_f(h) @ wteᵀ``), as in GPT-2 and nanoGPT:
fewer parameters, and the benchmark against nanoGPT compares like with like.

Generation is batched greedy decoding with Chapter 7's :class:`~tts_lib.gpt2.KVCache`:
the prompt runs once, then each new token runs alone against the cached keys and values.
Prompts of different lengths share one batch without padding: every sequence starts at
position 0, the batch runs from the shortest prompt's end, and a longer prompt's next token
is its own (forced) until it ends; only then do its greedy tokens count. So each sequence
sees exactly its own tokens, and cached and uncached generation give the same tokens
(``tests/test_lm.py``).

Training (:func:`train_lm`) runs AdamW with warm-up and cosine decay (the trainer core's
:class:`~tts_lib.trainer.OptimizerStep`) on batches a caller-supplied sampler draws; the
loss is the cross-entropy of the tokens a ``loss_mask`` marks (in Chapter 10: the completion
after the problem statement).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import (
    InputTypeError,
    check_device,
    check_dtype,
    check_memory,
    check_pos_int,
    check_real,
    make_generator,
)
from .gpt2 import ACTIVATIONS, Block, GPT2RegressorConfig, KVCache
from .trainer import OptimizerStep

__all__ = [
    "LMConfig",
    "LMTrainConfig",
    "LMTrainResult",
    "TinyLM",
    "build_lm",
    "eval_mode",
    "generate",
    "lm_loss",
    "train_lm",
]

#: bounded work: most tokens one generate call may produce per sequence
MAX_NEW_TOKENS = 4096
MAX_TRAIN_STEPS = 1_000_000


@dataclass(frozen=True)
class LMConfig:
    """Architecture of :class:`TinyLM`.

    Attributes:
        vocab_size: number of token ids (the pad id included).
        width: hidden size; heads: attention heads (must divide ``width``); layers: blocks.
        max_len: longest sequence (prompt + generated tokens); sizes the position table.
        activation: MLP activation (one of :data:`tts_lib.gpt2.ACTIVATIONS`).

    Defined in Chapter 10.
    """

    vocab_size: int = 40
    width: int = 64
    layers: int = 2
    heads: int = 2
    max_len: int = 128
    activation: str = "gelu"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "width", "layers", "heads", "max_len"):
            check_pos_int(getattr(self, name), name, maximum=65536)
        if self.width % self.heads:
            raise ValueError(f"`heads` must divide `width`; got width={self.width}, heads={self.heads}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {ACTIVATIONS}, got {self.activation!r}")

    @property
    def block_config(self) -> GPT2RegressorConfig:
        """The Chapter 7 configuration the shared blocks and cache are built from."""
        return GPT2RegressorConfig(
            dim=1, width=self.width, layers=self.layers, heads=self.heads, activation=self.activation
        )


class TinyLM(nn.Module):
    """Token embedding + Chapter 7's GPT-2 blocks + tied language-model head.

    Defined in Chapter 10.
    """

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        if not isinstance(config, LMConfig):
            raise TypeError(f"`config` must be an LMConfig, got {type(config).__name__}")
        self.config = config
        bc = config.block_config
        self.wte = nn.Embedding(config.vocab_size, config.width)
        self.wpe = nn.Embedding(config.max_len, config.width)
        self.blocks = nn.ModuleList(Block(bc) for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(config.width, eps=1e-5)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """GPT-2's initialisation: N(0, 0.02) weights and tables, residual projections
        N(0, 0.02/√(2·layers)), zero biases, unit layer norms (global generator)."""
        std, resid = 0.02, 0.02 / math.sqrt(2 * self.config.layers)
        self.wte.weight.normal_(0.0, std)
        self.wpe.weight.normal_(0.0, std)
        for block in self.blocks:
            for lin in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
                lin.weight.normal_(0.0, resid if lin is block.attn.c_proj or lin is block.mlp.c_proj else std)
                lin.bias.zero_()
            block.ln_1.reset_parameters()
            block.ln_2.reset_parameters()
        self.ln_f.reset_parameters()

    def forward(
        self,
        idx: torch.Tensor,
        cache: KVCache | None = None,
        start: int = 0,
        last: int | None = None,
    ) -> torch.Tensor:
        """Logits (batch, t', vocab) of token ids ``idx`` (batch, t) at positions
        ``start … start + t - 1``. With ``cache`` (already extended by ``t``) the tokens
        attend to the cached ones and their keys/values are stored. ``last``: logits of
        the last ``last`` tokens only (t' = last)."""
        _check_ids(idx, "idx", self.config.vocab_size, self.wte.weight.device)
        start = check_pos_int(start, "start", minimum=0, maximum=self.config.max_len)
        if last is not None:
            last = check_pos_int(last, "last", maximum=idx.shape[1])
        if cache is not None and not isinstance(cache, KVCache):
            raise InputTypeError(f"`cache` must be a KVCache from `new_cache` or None, got {type(cache).__name__}")
        t = idx.shape[1]
        if start + t > self.config.max_len:
            raise ValueError(
                f"sequence of {start + t} tokens exceeds the model's max_len={self.config.max_len}; "
                "use shorter sequences or a larger max_len"
            )
        pos = torch.arange(start, start + t, device=idx.device)
        h = self.wte(idx) + self.wpe(pos)
        final = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            h = block(h, cache, i, last if i == final else None)
        return F.linear(self.ln_f(h), self.wte.weight)

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        """An empty key/value cache for ``batch`` sequences of up to ``capacity`` tokens."""
        batch = check_pos_int(batch, "batch", maximum=1 << 16)
        capacity = check_pos_int(capacity, "capacity", maximum=self.config.max_len)
        cfg = self.config
        check_memory(2 * cfg.layers * batch * capacity * cfg.width, "batch",
                     what=f"the keys and values of {batch} sequences of {capacity} tokens",
                     itemsize=self.wte.weight.element_size())
        return KVCache.empty(batch, self.config.block_config, capacity, 0, self.wte.weight)


def build_lm(
    config: LMConfig, *, seed: int = 0, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> TinyLM:
    """A freshly initialised :class:`TinyLM` (drawn on the CPU in float32 with ``seed``, then
    cast to ``dtype``: the same weights on every device and under any default dtype).

    Defined in Chapter 10.
    """
    seed = check_pos_int(seed, "seed", minimum=0)
    dtype = check_dtype(dtype)
    device = check_device(device) if device is not None else None
    previous = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_default_dtype(torch.float32)  # the same draws under any default dtype
        try:
            model = TinyLM(config)
        finally:
            torch.set_default_dtype(previous)
    return model.to(device=device, dtype=dtype)


def _check_ids(idx: Any, name: str, vocab: int, device: torch.device) -> None:
    """Token ids: an integer tensor (batch, t), t >= 1, values in [0, vocab), on the model's device."""
    if not isinstance(idx, torch.Tensor):
        raise InputTypeError(f"`{name}` must be a tensor of token ids (batch, t), got {type(idx).__name__}")
    if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool or idx.ndim != 2 or idx.shape[1] < 1:
        raise ValueError(f"`{name}` must be integer token ids of shape (batch, t), got {idx.dtype} "
                         f"of shape {tuple(idx.shape)}")
    if idx.device != device:
        raise ValueError(f"`{name}` is on {idx.device} but the model is on {device}; move it with .to()")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= vocab):
        raise ValueError(f"`{name}` holds ids outside [0, {vocab}) (the model's vocab_size)")


# --------------------------------------------------------------------------- generation


def _check_prompts(prompts: Any, vocab: int) -> list[list[int]]:
    if isinstance(prompts, torch.Tensor):
        if prompts.ndim != 2 or prompts.is_floating_point():
            raise ValueError(f"`prompts` as a tensor must be integer ids of shape (batch, t), got {prompts.dtype}")
        prompts = prompts.tolist()
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence) or len(prompts) == 0:
        raise TypeError("`prompts` must be a non-empty list of token-id lists (encode the text first)")
    out = []
    for i, p in enumerate(prompts):
        if isinstance(p, (str, bytes)) or not isinstance(p, Sequence) or len(p) == 0:
            raise ValueError(f"`prompts[{i}]` must be a non-empty list of token ids, got {p!r}")
        ids = []
        for v in p:
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < vocab:
                raise ValueError(f"`prompts[{i}]` holds {v!r}, not a token id in [0, {vocab})")
            ids.append(v)
        out.append(ids)
    return out


@torch.no_grad()
def generate(
    model: TinyLM,
    prompts: Sequence[Sequence[int]] | torch.Tensor,
    max_new_tokens: int,
    *,
    stop_id: int | None = None,
    use_cache: bool = True,
    batch_size: int = 1024,
) -> list[list[int]]:
    """Batched greedy decoding: the generated ids of every prompt (without the prompt).

    Prompts run in batches of at most ``batch_size`` sequences (sorted by length; a batch
    mixes lengths, see the module docstring). A sequence stops after ``stop_id`` (kept in
    the output) or after ``max_new_tokens`` tokens, or when it reaches the model's
    ``max_len``.

    Args:
        model: a :class:`TinyLM`.
        prompts: token-id lists (any lengths), or an integer tensor (batch, t).
        max_new_tokens: most tokens generated per prompt (1 … :data:`MAX_NEW_TOKENS`).
        stop_id: the end-of-sequence id.
        use_cache: run each new token alone against the key/value cache (else recompute
            the whole sequence at every step; the same tokens).

    Defined in Chapter 10.
    """
    if not isinstance(model, TinyLM):
        raise TypeError(f"`model` must be a TinyLM, got {type(model).__name__}")
    if model.wte.weight.device.type == "meta":
        raise ValueError("`model` has weights on the meta device (no data); build or load it on 'cpu' or 'cuda'")
    cfg = model.config
    max_new_tokens = check_pos_int(max_new_tokens, "max_new_tokens", maximum=MAX_NEW_TOKENS)
    batch_size = check_pos_int(batch_size, "batch_size", maximum=1 << 16)
    bad_stop = isinstance(stop_id, bool) or not isinstance(stop_id, int) or not 0 <= stop_id < cfg.vocab_size
    if stop_id is not None and bad_stop:
        raise ValueError(f"`stop_id` must be a token id in [0, {cfg.vocab_size}) or None, got {stop_id!r}")
    if not isinstance(use_cache, bool):
        raise TypeError(f"`use_cache` must be True or False, got {use_cache!r}")
    ids = _check_prompts(prompts, cfg.vocab_size)
    too_long = [i for i, p in enumerate(ids) if len(p) >= cfg.max_len]
    if too_long:
        raise ValueError(
            f"`prompts[{too_long[0]}]` has {len(ids[too_long[0]])} tokens, the model's max_len is {cfg.max_len}"
        )
    out: list[list[int]] = [[] for _ in ids]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    with eval_mode(model):
        for s in range(0, len(order), batch_size):
            chunk = order[s : s + batch_size]
            new = _generate_batch(model, [ids[i] for i in chunk], max_new_tokens, stop_id, use_cache)
            for row, i in zip(new, chunk, strict=True):
                out[i] = row
    return out


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in evaluation mode inside the block; its training flag is restored after,
    even when the block raises (generation and Chapter 10's step scoring).

    Defined in Chapter 10.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _generate_batch(
    model: TinyLM, prompts: list[list[int]], max_new: int, stop_id: int | None, use_cache: bool
) -> list[list[int]]:
    """Greedy tokens of prompts of any lengths (each < max_len) in one batch; finished
    sequences leave the batch (whenever a quarter of it has finished)."""
    dev = model.wte.weight.device
    b, max_len = len(prompts), model.config.max_len
    lens = torch.tensor([len(p) for p in prompts], device=dev)
    t0 = int(lens.min())
    # each sequence's end: its prompt, then its new tokens, within max_len
    ends = torch.tensor([min(len(p) + max_new, max_len) for p in prompts], device=dev)
    total = int(ends.max())
    # the prompts, left-aligned; a prompt's columns are forced, the rest are greedy
    x = torch.zeros(b, total, dtype=torch.long, device=dev)
    for r, p in enumerate(prompts):
        x[r, : len(p)] = torch.tensor(p, dtype=torch.long)
    alive = torch.arange(b, device=dev)  # the rows still in the batch
    done = torch.zeros(b, dtype=torch.bool, device=dev)  # of the rows alive
    if use_cache:
        cache = model.new_cache(b, total).extend(t0)
        logits = model(x[:, :t0], cache, 0, last=1)[:, -1]
    else:
        logits = model(x[:, :t0], last=1)[:, -1]
    for pos in range(t0, total):
        in_prompt = pos < lens[alive]
        col = torch.where(in_prompt, x[alive, pos], logits.argmax(-1))
        x[alive, pos] = col
        if stop_id is not None:
            done |= ~in_prompt & (col == stop_id)
        done |= pos + 1 >= ends[alive]  # every row is done at the last column
        finished = int(done.sum())
        if finished == len(alive):
            break
        if 4 * finished >= len(alive):  # drop the finished rows
            keep = (~done).nonzero().squeeze(1)
            alive, done = alive[keep], done[keep]
            if use_cache:
                cache = cache.take(keep)
        if use_cache:
            cache = cache.extend(1)
            logits = model(x[alive, pos : pos + 1], cache, pos)[:, -1]
        else:
            logits = model(x[alive, : pos + 1], last=1)[:, -1]
    rows = []
    for r, p in enumerate(prompts):
        row = x[r, len(p) : int(ends[r])].tolist()
        if stop_id is not None and stop_id in row:
            row = row[: row.index(stop_id) + 1]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class LMTrainConfig:
    """Training of :class:`TinyLM` (AdamW, linear warm-up, cosine decay to ``final_lr_frac``).

    Defined in Chapter 10.
    """

    train_steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 50
    final_lr_frac: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        check_pos_int(self.train_steps, "train_steps", maximum=MAX_TRAIN_STEPS)
        check_pos_int(self.batch_size, "batch_size", maximum=1 << 16)
        check_pos_int(self.warmup, "warmup", minimum=0)
        check_real(self.lr, "lr", minimum=0.0, maximum=10.0, open_min=True)
        check_real(self.final_lr_frac, "final_lr_frac", minimum=0.0, maximum=1.0)
        check_real(self.weight_decay, "weight_decay", minimum=0.0, maximum=10.0)
        check_real(self.grad_clip, "grad_clip", minimum=0.0, open_min=True)


@dataclass
class LMTrainResult:
    """Per-step losses and timing of one :func:`train_lm` run.

    Defined in Chapter 10.
    """

    losses: list[float]
    wall_s: float
    seed: int
    device: str
    tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ms_per_step(self) -> float:
        return 1000.0 * self.wall_s / max(len(self.losses), 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lm_loss(model: TinyLM, idx: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of next-token prediction over the target positions
    ``loss_mask[:, 1:]`` marks; ``idx`` and ``loss_mask`` are (batch, t).

    Defined in Chapter 10.
    """
    if not isinstance(model, TinyLM):
        raise InputTypeError(f"`model` must be a TinyLM, got {type(model).__name__}")
    _check_ids(idx, "idx", model.config.vocab_size, model.wte.weight.device)
    if idx.shape[1] < 2:
        raise ValueError(f"`idx` must hold at least 2 tokens per row (inputs and next tokens), got {tuple(idx.shape)}")
    if not isinstance(loss_mask, torch.Tensor) or loss_mask.shape != idx.shape:
        got = tuple(loss_mask.shape) if isinstance(loss_mask, torch.Tensor) else type(loss_mask).__name__
        raise InputTypeError(f"`loss_mask` must be a tensor of the shape of `idx` {tuple(idx.shape)}, got {got}")
    if loss_mask.is_complex() or loss_mask.device != idx.device:
        raise ValueError(f"`loss_mask` must be a real (bool or 0/1) tensor on {idx.device}")
    if loss_mask.is_floating_point() and not bool(torch.isfinite(loss_mask).all()):
        raise ValueError("`loss_mask` contains NaN or inf; pass a bool or 0/1 mask")
    logits = model(idx[:, :-1])
    target = idx[:, 1:]
    mask = loss_mask[:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
    return (ce * mask.reshape(-1)).sum() / mask.sum().clamp_min(1)


def _optimizer_step(model: TinyLM, cfg: LMTrainConfig) -> OptimizerStep:
    """:func:`train_lm`'s optimiser: AdamW (β = 0.9, 0.99; weight decay on the matrices),
    linear warm-up, cosine decay to ``final_lr_frac``, gradient clipping."""
    return OptimizerStep(
        model.parameters(), lr=cfg.lr, train_steps=cfg.train_steps, optimizer="adamw",
        weight_decay=cfg.weight_decay, betas=(0.9, 0.99), lr_schedule="cosine",
        warmup=cfg.warmup, final_lr_frac=cfg.final_lr_frac, grad_clip=cfg.grad_clip,
        what="LM training", advice=f"lower `cfg.lr` (now {cfg.lr:g})",
    )


def train_lm(
    model: TinyLM,
    sampler: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]],
    cfg: LMTrainConfig,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str = "LM",
) -> LMTrainResult:
    """Train ``model`` in place on batches ``sampler(batch_size, generator)`` returns.

    Args:
        model: a :class:`TinyLM` (moved to ``device``).
        sampler: ``(batch, g) -> (idx, loss_mask)``, both (batch, t) (long, float/bool), drawn
            with the CPU generator ``g`` (seeded by ``seed``: the same data on every device).
        cfg: :class:`LMTrainConfig`.
        seed: the data seed.

    Returns:
        :class:`LMTrainResult` (per-step losses, wall time, target tokens seen).

    Raises:
        TrainingDivergedError: the loss became NaN/inf or blew up (lower ``cfg.lr``); the
            rule, the optimiser step and the schedule are :class:`~tts_lib.trainer.OptimizerStep`'s.

    Defined in Chapter 10.
    """
    from tqdm.auto import tqdm

    if not isinstance(model, TinyLM):
        raise TypeError(f"`model` must be a TinyLM, got {type(model).__name__}")
    if not isinstance(cfg, LMTrainConfig):
        raise TypeError(f"`cfg` must be an LMTrainConfig, got {type(cfg).__name__}")
    if not callable(sampler):
        raise TypeError(f"`sampler` must be callable (batch, generator) -> (idx, loss_mask), got {sampler!r}")
    if model.wte.weight.device.type == "meta":
        raise ValueError("`model` has weights on the meta device (no data); build it on 'cpu' or 'cuda'")
    if not isinstance(progress, bool):
        raise InputTypeError(f"`progress` must be True or False, got {progress!r}")
    if not isinstance(desc, str):
        raise InputTypeError(f"`desc` must be a str (the progress bar's label), got {type(desc).__name__}")
    seed = check_pos_int(seed, "seed", minimum=0)
    if device is not None:
        model.to(check_device(device))
    dev = model.wte.weight.device
    g = make_generator(seed)
    step_fn = _optimizer_step(model, cfg)
    model.train()
    losses: list[float] = []
    tokens = 0
    bar = tqdm(range(cfg.train_steps), desc=desc, disable=not progress, mininterval=1.0)
    t0 = time.perf_counter()
    for step in bar:
        idx, mask = sampler(cfg.batch_size, g)
        idx, mask = idx.to(dev), mask.to(device=dev, dtype=model.wte.weight.dtype)
        value = step_fn(step, lm_loss(model, idx, mask))
        losses.append(value)
        tokens += int(mask[:, 1:].sum())
        if progress and step % 50 == 0:
            bar.set_postfix(loss=f"{value:.3f}", refresh=False)
    wall = time.perf_counter() - t0
    bar.close()
    model.eval()
    return LMTrainResult(losses=losses, wall_s=wall, seed=seed, device=str(dev), tokens=tokens)
