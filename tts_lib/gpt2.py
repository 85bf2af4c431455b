"""A GPT-2 regressor for in-context weight prediction, trained to refine its own estimate.

One readable module, nanoGPT style: a :class:`transformers.GPT2Model` backbone
(``vocab_size=1``, no dropout) with a linear read-in of tokens and a linear read-out of
the last hidden state to ``ŵ ∈ R^d``.

Tokens
------
Every token is a vector of ``2d + 2`` numbers with the same four blocks as the LSA
embedding ``Z0`` of the course: ``(x ∈ R^d, y ∈ R, ŵ ∈ R^d, flag ∈ R)``.

* ``layout="compact"`` (default, about 2× cheaper): one token per example
  ``(x_i, y_i, 0, 0)``, then the query token ``(0, 0, ŵ, 1)``.
* ``layout="interleaved"`` (Garg et al. form): ``x_i`` and ``y_i`` get a token each,
  zero-padded to the common width (``(x_i, 0, 0, 0)`` and ``(0, y_i, 0, 0)``), then the
  query token ``(0, 0, ŵ, 1)``.

Position ids (our choice, stated here once): in the compact layout the examples are
exchangeable, so every data token gets position 0; in the interleaved layout the data
tokens get positions ``0 … 2m-1`` (the position pairs ``x_i`` with ``y_i``). Every query
token, the first one and all CoT ones, gets the single *query position* (1, resp.
``2m``). Hence a CoT step never meets an untrained position, and the compact layout
accepts test prompts of any length ``m``; the interleaved one needs ``m <= max_context``.

Test-time chain of thought
--------------------------
A CoT step feeds the current estimate back as a query token ``(0, 0, ŵ_i, 1)`` and reads
out ``ŵ_{i+1}``. :func:`cot_rollout` implements it twice: by full recomputation
(``use_cache=False``: the whole sequence through ``GPT2Model.forward`` at every step)
and with a key/value cache (``use_cache=True``: the prompt is encoded once by
:meth:`GPT2Regressor.encode_prompt`, each step runs only the new query token through
:meth:`GPT2Regressor.step`, a hand-written block loop on the same weights).

Earlier query tokens (``keep_history``): by default (``False``) each step's sequence is
*prompt + the newest query token only*; the earlier query tokens are dropped (with the
cache: the new token's keys/values are not kept). This is the structure of the
theory: in the LSA the appended columns have zero ``x``/``y`` blocks and are invisible
to later steps, so ``ŵ_{i+1} = F(prompt, ŵ_i)`` is one fixed map iterated; it is also
exactly the input the training protocol below shows the model. With
``keep_history=True`` every query token stays in the sequence (the literal "append the
token and run again"); later steps then attend to the earlier estimates too, which a
model trained with a single query token never saw. Both paths implement both options
identically (see ``tests/test_gpt2.py``).

Training protocol (why CoT helps here)
--------------------------------------
A model trained only from ``ŵ0 = 0`` sees its own estimates as out-of-distribution
input and gets *worse* under CoT, an artefact unrelated to the paper's overthinking.
:func:`train_gpt2` therefore makes refining an estimate part of the task: each training
prompt gets one query token whose starting estimate is ``ŵ0 = 0`` with probability
``start_zero_prob`` and otherwise ``ŵ0 = w + σ ε`` with ``ε ~ N(0, I_d)`` and ``σ``
drawn log-uniformly in ``[start_noise_min, start_noise_max]`` per prompt; the target is
always ``w`` and the loss is the mean squared error per coordinate
``‖ŵ1 − w‖² / d``. Training is single-step (no unrolling), as in the paper's LSA.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import as_tensor, check_cov, check_pos_int, check_positive, make_generator
from .prompts import sample_prompts
from .train import TrainingDivergedError  # one error class for every trainer of the library

LAYOUTS = ("compact", "interleaved")
ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu")


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class GPT2RegressorConfig:
    """Architecture of :class:`GPT2Regressor` (everything a checkpoint must agree on).

    Attributes:
        dim: feature dimension ``d``.
        width: hidden size (``n_embd``).
        layers: transformer blocks.
        heads: attention heads (must divide ``width``).
        layout: ``"compact"`` or ``"interleaved"`` (see module docstring).
        activation: MLP activation, ``"gelu"`` (exact, fastest on CPU) or ``"gelu_new"``
            (GPT-2's tanh approximation), ``"relu"``, ``"silu"``.
        max_context: largest number of examples ``m`` a prompt may have in the
            interleaved layout (sizes the position table; ignored by the compact layout).
    """

    dim: int = 5
    width: int = 64
    layers: int = 3
    heads: int = 2
    layout: str = "compact"
    activation: str = "gelu"
    max_context: int = 64

    def __post_init__(self) -> None:
        for name in ("dim", "width", "layers", "heads", "max_context"):
            check_pos_int(getattr(self, name), name)
        if self.width % self.heads:
            raise ValueError(f"`heads` must divide `width`; got width={self.width}, heads={self.heads}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"`layout` must be one of {LAYOUTS}, got {self.layout!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {ACTIVATIONS}, got {self.activation!r}")

    @property
    def token_dim(self) -> int:
        """Width of a raw token, ``2d + 2``."""
        return 2 * self.dim + 2

    @property
    def n_positions(self) -> int:
        """Size of the learned position table."""
        return 2 if self.layout == "compact" else 2 * self.max_context + 1


@dataclass(frozen=True)
class Curriculum:
    """Garg et al.'s curriculum: active dimension and context length grow every ``every`` steps.

    At step ``t`` the prompts use ``min(dim, dim_start + (t // every) * dim_step)`` active
    coordinates (the others of ``x`` and ``w`` are zero; the covariance is the leading block)
    and ``min(context_len, n_start + (t // every) * n_step)`` examples.
    """

    dim_start: int = 5
    dim_step: int = 1
    n_start: int = 11
    n_step: int = 2
    every: int = 2000

    def __post_init__(self) -> None:
        for name in ("dim_start", "n_start", "every"):
            check_pos_int(getattr(self, name), name)
        for name in ("dim_step", "n_step"):
            check_pos_int(getattr(self, name), name, minimum=0)

    def at(self, step: int, dim: int, context_len: int) -> tuple[int, int]:
        """Active ``(dim, context_len)`` at ``step``."""
        stage = step // self.every
        return (
            min(dim, self.dim_start + stage * self.dim_step),
            min(context_len, self.n_start + stage * self.n_step),
        )


@dataclass(frozen=True)
class GPT2TrainConfig:
    """Training protocol of :func:`train_gpt2`.

    Attributes:
        context_len: examples per training prompt ``n`` (final value under a curriculum).
        steps: optimiser steps (fixed; no early stopping).
        batch: prompts per step.
        lr: Adam learning rate (peak value when a schedule is used).
        schedule: ``"constant"`` or ``"cosine"`` (decay to 10 % of ``lr``), both after
            ``warmup`` linear warm-up steps.
        warmup: warm-up steps.
        grad_clip: clip the gradient norm to this value (None: no clipping).
        start_zero_prob: probability that a prompt starts from ``ŵ0 = 0``.
        start_noise_min, start_noise_max: range of the log-uniform noise level ``σ`` of
            the other starts ``ŵ0 = w + σ ε``.
        curriculum: optional :class:`Curriculum` on ``d`` and ``n``.
        label_noise: standard deviation of Gaussian label noise in the training prompts,
            ``y_i = <w, x_i> + label_noise · ξ_i`` (0: noiseless, as in the paper).
    """

    context_len: int = 20
    steps: int = 6000
    batch: int = 64
    lr: float = 1e-3
    schedule: str = "cosine"
    warmup: int = 200
    grad_clip: float | None = 1.0
    start_zero_prob: float = 0.25
    start_noise_min: float = 0.01
    start_noise_max: float = 1.5
    curriculum: Curriculum | None = None
    label_noise: float = 0.0

    def __post_init__(self) -> None:
        check_pos_int(self.context_len, "context_len")
        check_pos_int(self.steps, "steps")
        check_pos_int(self.batch, "batch")
        check_pos_int(self.warmup, "warmup", minimum=0)
        check_positive(self.lr, "lr")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"`schedule` must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.grad_clip is not None:
            check_positive(self.grad_clip, "grad_clip")
        if not 0.0 <= float(self.start_zero_prob) <= 1.0:
            raise ValueError(f"`start_zero_prob` must be in [0, 1], got {self.start_zero_prob!r}")
        lo = check_positive(self.start_noise_min, "start_noise_min")
        hi = check_positive(self.start_noise_max, "start_noise_max")
        if lo > hi:
            raise ValueError(f"`start_noise_min` ({lo}) must be <= `start_noise_max` ({hi})")
        if not float(self.label_noise) >= 0.0:
            raise ValueError(f"`label_noise` must be >= 0, got {self.label_noise!r}")


def config_to_dict(model_cfg: GPT2RegressorConfig, train_cfg: GPT2TrainConfig | None = None) -> dict[str, Any]:
    """Plain-JSON view of the configs (for manifests)."""
    out: dict[str, Any] = {"model": asdict(model_cfg)}
    if train_cfg is not None:
        out["train"] = asdict(train_cfg)
    return out


def config_from_dict(data: dict[str, Any]) -> tuple[GPT2RegressorConfig, GPT2TrainConfig | None]:
    """Inverse of :func:`config_to_dict`."""
    model_cfg = GPT2RegressorConfig(**data["model"])
    train_cfg = None
    if data.get("train") is not None:
        t = dict(data["train"])
        if t.get("curriculum") is not None:
            t["curriculum"] = Curriculum(**t["curriculum"])
        train_cfg = GPT2TrainConfig(**t)
    return model_cfg, train_cfg


PRESETS: dict[str, tuple[GPT2RegressorConfig, GPT2TrainConfig]] = {
    # for tests: trains in a few seconds
    "tiny": (
        GPT2RegressorConfig(dim=3, width=32, layers=2, heads=2, max_context=16),
        GPT2TrainConfig(context_len=8, steps=150, batch=32, lr=3e-3, warmup=10),
    ),
    # for the chapter on a CPU: about two minutes
    "cpu": (
        GPT2RegressorConfig(dim=5, width=64, layers=3, heads=2, max_context=64),
        GPT2TrainConfig(context_len=20, steps=5000, batch=64, lr=1e-3, warmup=200),
    ),
    # the paper's model (Garg et al. scale, ~9.5M parameters), Adam 1e-4, batch 64, Garg's
    # curriculum on d and n: GPU only. The step count (Garg's 500k) and the refinement starts
    # (the defaults above) are our choices; the paper does not state them.
    "paper": (
        GPT2RegressorConfig(dim=20, width=256, layers=12, heads=8, layout="interleaved", max_context=64),
        GPT2TrainConfig(
            context_len=40,
            steps=500_000,
            batch=64,
            lr=1e-4,
            schedule="constant",
            warmup=0,
            curriculum=Curriculum(dim_start=5, dim_step=1, n_start=11, n_step=2, every=2000),
        ),
    ),
}


def preset(name: str, **overrides: Any) -> tuple[GPT2RegressorConfig, GPT2TrainConfig]:
    """The ``(model, train)`` configs of a preset (``tiny``, ``cpu``, ``paper``).

    Keyword overrides go to whichever config has the field, e.g.
    ``preset("cpu", layout="interleaved", context_len=30, steps=100)``.
    """
    if name not in PRESETS:
        raise ValueError(f"`name` must be one of {sorted(PRESETS)}, got {name!r}")
    model_cfg, train_cfg = PRESETS[name]
    model_fields = set(GPT2RegressorConfig.__dataclass_fields__)
    train_fields = set(GPT2TrainConfig.__dataclass_fields__)
    unknown = set(overrides) - model_fields - train_fields
    if unknown:
        raise ValueError(f"unknown override(s) {sorted(unknown)}; valid: {sorted(model_fields | train_fields)}")
    model_cfg = replace(model_cfg, **{k: v for k, v in overrides.items() if k in model_fields})
    train_cfg = replace(train_cfg, **{k: v for k, v in overrides.items() if k in train_fields})
    return model_cfg, train_cfg


# --------------------------------------------------------------------------- model


@dataclass
class KVCache:
    """Keys and values of every layer, kept apart for the prompt and for the query tokens.

    ``prompt_keys[l]``, ``prompt_values[l]``: (batch, heads, P, head_dim) for the ``P``
    prompt tokens; ``query_keys[l]``, ``query_values[l]``: (batch, heads, Q, head_dim) for
    the ``Q`` query tokens kept so far (Q = 0 right after :meth:`GPT2Regressor.encode_prompt`).
    Keeping them apart means a step never copies the prompt's keys/values.
    ``query_pos`` is the position id every query token gets.
    """

    prompt_keys: list[torch.Tensor]
    prompt_values: list[torch.Tensor]
    query_keys: list[torch.Tensor]
    query_values: list[torch.Tensor]
    query_pos: int

    @property
    def prompt_len(self) -> int:
        return self.prompt_keys[0].shape[2]

    @property
    def num_queries(self) -> int:
        return self.query_keys[0].shape[2]


def _attend_cached(
    q: torch.Tensor, cache: KVCache, layer: int, k_new: torch.Tensor, v_new: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax attention of ``t`` new query tokens (q: batch, heads, t, hd) over the cached
    prompt, the cached query tokens and (causally) the new tokens themselves.

    Returns the attention output (batch, heads, t, hd) and the query keys/values including
    the new tokens.
    """
    kq = torch.cat([cache.query_keys[layer], k_new], dim=2)
    vq = torch.cat([cache.query_values[layer], v_new], dim=2)
    kp, vp = cache.prompt_keys[layer], cache.prompt_values[layer]
    scale = q.shape[-1] ** -0.5
    scores = torch.cat([q @ kp.transpose(-1, -2), q @ kq.transpose(-1, -2)], dim=-1) * scale
    t, num_p = q.shape[2], kp.shape[2]
    if t > 1:  # new token j must not see new tokens after it
        total = scores.shape[-1]
        allowed = torch.ones(t, total, dtype=torch.bool, device=q.device).tril(diagonal=total - t)
        scores = scores.masked_fill(~allowed, float("-inf"))
    attn = scores.softmax(dim=-1)
    return attn[..., :num_p] @ vp + attn[..., num_p:] @ vq, kq, vq


class GPT2Regressor(nn.Module):
    """GPT-2 backbone with a linear read-in of ``(2d+2)``-tokens and a read-out to ``ŵ``."""

    def __init__(self, config: GPT2RegressorConfig) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2Model  # ~2 s import, only when a model is built

        if not isinstance(config, GPT2RegressorConfig):
            raise ValueError(f"`config` must be a GPT2RegressorConfig, got {type(config).__name__}")
        self.config = config
        hf_cfg = GPT2Config(
            vocab_size=1,
            n_positions=config.n_positions,
            n_embd=config.width,
            n_layer=config.layers,
            n_head=config.heads,
            activation_function=config.activation,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            scale_attn_weights=True,
            scale_attn_by_inverse_layer_idx=False,
            reorder_and_upcast_attn=False,
            use_cache=False,
            bos_token_id=0,
            eos_token_id=0,
        )
        self.read_in = nn.Linear(config.token_dim, config.width)
        self.backbone = GPT2Model(hf_cfg)
        self.read_out = nn.Linear(config.width, config.dim)

    # -- tokens ---------------------------------------------------------------------

    def _check_prompt(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.config.dim
        ref = self.read_in.weight
        X = as_tensor(X, "X", device=ref.device, dtype=ref.dtype)
        y = as_tensor(y, "y", device=ref.device, dtype=ref.dtype)
        if X.ndim != 3 or X.shape[2] != d:
            raise ValueError(f"`X` must have shape (batch, m, {d}) for this model, got {tuple(X.shape)}")
        if y.shape != X.shape[:2]:
            raise ValueError(f"`y` must have shape {tuple(X.shape[:2])} to match `X`, got {tuple(y.shape)}")
        if self.config.layout == "interleaved" and X.shape[1] > self.config.max_context:
            raise ValueError(
                f"`X` has m={X.shape[1]} examples but this interleaved model takes at most "
                f"max_context={self.config.max_context}; use a shorter prompt or a larger max_context"
            )
        return X, y

    def _check_estimate(self, w_hat: torch.Tensor, batch: int, name: str = "w_hat") -> torch.Tensor:
        ref = self.read_in.weight
        w_hat = as_tensor(w_hat, name, device=ref.device, dtype=ref.dtype)
        d = self.config.dim
        if w_hat.ndim not in (2, 3) or w_hat.shape[0] != batch or w_hat.shape[-1] != d:
            raise ValueError(f"`{name}` must have shape ({batch}, {d}) or ({batch}, q, {d}), got {tuple(w_hat.shape)}")
        return w_hat

    def prompt_tokens(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Raw data tokens (batch, L, 2d+2) and the query position id (L = m or 2m)."""
        b, m, d = X.shape
        if self.config.layout == "compact":
            tok = X.new_zeros(b, m, 2 * d + 2)
            tok[..., :d] = X
            tok[..., d] = y
            return tok, 1
        tok = X.new_zeros(b, m, 2, 2 * d + 2)
        tok[:, :, 0, :d] = X
        tok[:, :, 1, d] = y
        return tok.reshape(b, 2 * m, 2 * d + 2), 2 * m

    def query_tokens(self, w_hat: torch.Tensor) -> torch.Tensor:
        """Query tokens ``(0, 0, ŵ, 1)``: (batch, d) → (batch, 1, 2d+2); (batch, q, d) → (batch, q, 2d+2)."""
        if w_hat.ndim == 2:
            w_hat = w_hat.unsqueeze(1)
        d = self.config.dim
        tok = w_hat.new_zeros(*w_hat.shape[:2], 2 * d + 2)
        tok[..., d + 1 : 2 * d + 1] = w_hat
        tok[..., -1] = 1.0
        return tok

    def _position_ids(self, prompt_len: int, n_query: int, query_pos: int, device: torch.device) -> torch.Tensor:
        if self.config.layout == "compact":
            data = torch.zeros(prompt_len, dtype=torch.long, device=device)
        else:
            data = torch.arange(prompt_len, dtype=torch.long, device=device)
        query = torch.full((n_query,), query_pos, dtype=torch.long, device=device)
        return torch.cat([data, query])

    # -- full recomputation (transformers' GPT2Model.forward) -----------------------

    def _forward_tokens(self, data_tok: torch.Tensor, query_pos: int, w_hat: torch.Tensor) -> torch.Tensor:
        q_tok = self.query_tokens(w_hat)
        tokens = torch.cat([data_tok, q_tok], dim=1)
        pos = self._position_ids(data_tok.shape[1], q_tok.shape[1], query_pos, tokens.device)
        pos = pos.unsqueeze(0).expand(tokens.shape[0], -1)
        # An explicit all-ones mask: without it transformers reads non-consecutive position
        # ids as packed sequences and would block attention between them.
        mask = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)
        h = self.backbone(inputs_embeds=self.read_in(tokens), position_ids=pos, attention_mask=mask)
        out = self.read_out(h.last_hidden_state[:, -q_tok.shape[1] :])
        return out if w_hat.ndim == 3 else out[:, 0]

    def forward(self, X: torch.Tensor, y: torch.Tensor, w_hat: torch.Tensor) -> torch.Tensor:
        """Estimate after one pass over ``prompt + query token(s)``.

        Args:
            X: (batch, m, d) features; y: (batch, m) labels.
            w_hat: (batch, d) current estimate, or (batch, q, d) for ``q`` query tokens in
                sequence (query ``j`` attends to the prompt and to queries ``< j``).

        Returns:
            (batch, d) next estimate, or (batch, q, d): the read-out at every query token.
        """
        X, y = self._check_prompt(X, y)
        w_hat = self._check_estimate(w_hat, X.shape[0])
        data_tok, query_pos = self.prompt_tokens(X, y)
        return self._forward_tokens(data_tok, query_pos, w_hat)

    # -- key/value cache (hand-written block loop on the same weights) --------------

    def _run_blocks(
        self, tokens: torch.Tensor, pos: torch.Tensor, cache: KVCache | None
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Hand-written GPT-2 block loop on the backbone's weights.

        Without ``cache``: causal self-attention over ``tokens`` (batch, T, 2d+2), i.e. the
        prompt. With ``cache``: ``tokens`` are new query tokens that attend to everything in
        the cache and causally to each other. Returns the final hidden states (batch, T,
        width) and every layer's keys and values of the new tokens (plus, with a cache, the
        cached query tokens before them).
        """
        bb = self.backbone
        nh = self.config.heads
        hd = self.config.width // nh
        h = self.read_in(tokens) + bb.wpe(pos)
        b, t, _ = h.shape
        keys, values = [], []
        for i, block in enumerate(bb.h):
            q, k, v = block.attn.c_attn(block.ln_1(h)).split(self.config.width, dim=2)
            q, k, v = (z.view(b, t, nh, hd).transpose(1, 2) for z in (q, k, v))
            if cache is None:
                att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                att, k, v = _attend_cached(q, cache, i, k, v)
            keys.append(k)
            values.append(v)
            h = h + block.attn.c_proj(att.transpose(1, 2).reshape(b, t, self.config.width))
            h = h + block.mlp(block.ln_2(h))
        return bb.ln_f(h), keys, values

    def encode_prompt(self, X: torch.Tensor, y: torch.Tensor) -> KVCache:
        """Run the prompt once and keep every layer's keys/values (for :meth:`step`)."""
        X, y = self._check_prompt(X, y)
        data_tok, query_pos = self.prompt_tokens(X, y)
        pos = self._position_ids(data_tok.shape[1], 0, query_pos, data_tok.device)
        _, keys, values = self._run_blocks(data_tok, pos, None)
        # contiguous copies once, so that no step has to copy them again
        keys = [k.contiguous() for k in keys]
        values = [v.contiguous() for v in values]
        empty = [k[:, :, :0] for k in keys]
        return KVCache(keys, values, empty, list(empty), query_pos=query_pos)

    def step(self, cache: KVCache, w_hat: torch.Tensor) -> tuple[torch.Tensor, KVCache]:
        """One CoT step on the cache: run the query token (0, 0, ŵ, 1) only.

        Args:
            cache: from :meth:`encode_prompt` (optionally extended by earlier steps).
            w_hat: (batch, d) current estimate.

        Returns:
            The next estimate (batch, d) and the cache extended by this query token (the
            input ``cache`` is not modified; drop the new one to keep history out).
        """
        want = (cache.prompt_keys[0].shape[0], self.config.dim)
        if tuple(w_hat.shape) != want:
            raise ValueError(f"`w_hat` must have shape {want}, got {tuple(w_hat.shape)}")
        q_tok = self.query_tokens(w_hat)
        pos = torch.full((1,), cache.query_pos, dtype=torch.long, device=q_tok.device)
        h, keys, values = self._run_blocks(q_tok, pos, cache)
        extended = KVCache(cache.prompt_keys, cache.prompt_values, keys, values, cache.query_pos)
        return self.read_out(h[:, -1]), extended


def build_model(
    config: GPT2RegressorConfig,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> GPT2Regressor:
    """A freshly initialised model; the initialisation happens on the CPU with ``seed``, so the
    same seed gives the same weights on every device."""
    seed = check_pos_int(seed, "seed", minimum=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2Regressor(config)
    return model.to(device=device, dtype=dtype)


def num_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- CoT


@torch.no_grad()
def cot_rollout(
    model: GPT2Regressor,
    X: torch.Tensor,
    y: torch.Tensor,
    k: int,
    *,
    w0: torch.Tensor | None = None,
    use_cache: bool = True,
    keep_history: bool = False,
) -> torch.Tensor:
    """Test-time CoT: ``ŵ_{i+1}`` = read-out after appending the query token ``(0, 0, ŵ_i, 1)``.

    Args:
        model: a :class:`GPT2Regressor` (put in eval mode by the caller if it matters; it
            has no dropout).
        X: (batch, m, d) features; y: (batch, m) labels.
        k: number of CoT steps (``k >= 0``); ``ŵ_1`` is the plain one-pass prediction.
        w0: (batch, d) starting estimate (zeros by default, as in the paper).
        use_cache: encode the prompt once and run only the new token per step (else
            recompute the whole sequence at every step).
        keep_history: keep earlier query tokens in the sequence (see module docstring).
            A model trained by :func:`train_gpt2` (one query token per prompt) has never
            seen earlier query tokens; with ``keep_history=True`` its error grows with k
            (cpu preset, m = 20: 0.018 at k = 1, 0.56 at k = 20), an artefact of the
            protocol, not overthinking. Keep the default for such models.

    Returns:
        (batch, k + 1, d): ``ŵ_0, ŵ_1, …, ŵ_k``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"`k` must be an integer >= 0 (number of CoT steps), got {k!r}")
    if not isinstance(model, GPT2Regressor):
        raise ValueError(f"`model` must be a GPT2Regressor, got {type(model).__name__}")
    X, y = model._check_prompt(X, y)
    if w0 is None:
        w0 = X.new_zeros(X.shape[0], model.config.dim)
    w0 = model._check_estimate(w0, X.shape[0], "w0")
    if w0.ndim != 2:
        raise ValueError(f"`w0` must have shape (batch, d), got {tuple(w0.shape)}")
    iterates = [w0]
    if use_cache:
        cache = model.encode_prompt(X, y)
        for _ in range(k):
            w_next, extended = model.step(cache, iterates[-1])
            if keep_history:
                cache = extended
            iterates.append(w_next)
    else:
        data_tok, query_pos = model.prompt_tokens(X, y)
        for i in range(k):
            if keep_history:
                w_next = model._forward_tokens(data_tok, query_pos, torch.stack(iterates[: i + 1], 1))[:, -1]
            else:
                w_next = model._forward_tokens(data_tok, query_pos, iterates[-1])
            iterates.append(w_next)
    return torch.stack(iterates, dim=1)


@torch.no_grad()
def cot_errors(
    model: GPT2Regressor,
    cov: Any,
    context_len: int,
    k: int,
    *,
    batch: int = 1000,
    seed: int | torch.Generator = 0,
    device: torch.device | str | None = None,
    chunk: int = 500,
    noise_std: float = 0.0,
    **rollout_kwargs: Any,
) -> torch.Tensor:
    """Squared errors ``‖ŵ_i − w‖²`` on fresh test prompts, shape (batch, k + 1), float64.

    Args:
        model: trained :class:`GPT2Regressor`.
        cov: (d, d) test covariance Σ.
        context_len: test context length ``m``.
        k: CoT steps.
        batch: number of test prompts; ``chunk``: prompts per forward pass.
        seed: prompt seed (prompts are drawn on the CPU, so identical on every device).
        device: where to run (default: the model's device).
        noise_std: label noise of the test prompts (``y = <w, x> + noise_std · ξ``).
        rollout_kwargs: passed to :func:`cot_rollout` (``use_cache``, ``keep_history``, ``w0``).
    """
    ref = model.read_in.weight
    device = ref.device if device is None else torch.device(device)
    cov_t = check_cov(cov, "cov", dim=model.config.dim)
    batch = check_pos_int(batch, "batch")
    chunk = check_pos_int(chunk, "chunk")
    g = make_generator(seed)
    out = []
    for start in range(0, batch, chunk):
        b = min(chunk, batch - start)
        pr = sample_prompts(cov_t.to("cpu", torch.float64), context_len, b, generator=g, noise_std=noise_std)
        pr = pr.to(device=device, dtype=ref.dtype)
        it = cot_rollout(model, pr.X, pr.y, k, **rollout_kwargs)
        out.append(((it.double() - pr.w.double().unsqueeze(1)) ** 2).sum(-1).cpu())
    return torch.cat(out)


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """Output of :func:`train_gpt2`: per-step losses (‖ŵ1 − w‖²/d averaged over the batch)."""

    losses: list[float]
    steps: int
    wall_s: float
    seed: int
    device: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ms_per_step(self) -> float:
        return 1000.0 * self.wall_s / max(self.steps, 1)

    def final_loss(self, last: int = 100) -> float:
        """Mean loss over the last ``last`` steps."""
        tail = self.losses[-last:]
        return float(sum(tail) / len(tail))


def sample_starts(
    w: torch.Tensor,
    cfg: GPT2TrainConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Training starting estimates for targets ``w`` (batch, d), drawn on the CPU.

    ``ŵ0 = 0`` with probability ``cfg.start_zero_prob``, else ``w + σ ε`` with ``ε ~ N(0, I)``
    and ``log σ`` uniform on ``[log start_noise_min, log start_noise_max]`` (one σ per prompt).
    """
    b, d = w.shape
    w_cpu = w.detach().to("cpu", torch.float64)
    lo, hi = math.log(cfg.start_noise_min), math.log(cfg.start_noise_max)
    sigma = torch.exp(lo + (hi - lo) * torch.rand(b, 1, generator=generator, dtype=torch.float64))
    noisy = w_cpu + sigma * torch.randn(b, d, generator=generator, dtype=torch.float64)
    zero = torch.rand(b, 1, generator=generator, dtype=torch.float64) < cfg.start_zero_prob
    return torch.where(zero, torch.zeros_like(noisy), noisy).to(device=w.device, dtype=w.dtype)


def _lr_factor(step: int, cfg: GPT2TrainConfig) -> float:
    if cfg.warmup and step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return 1.0
    progress = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def train_gpt2(
    model: GPT2Regressor,
    cov: Any,
    cfg: GPT2TrainConfig,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str = "GPT-2",
) -> TrainResult:
    """Train ``model`` in place with Adam on fresh prompts (see the module docstring).

    Args:
        model: a :class:`GPT2Regressor` (moved to ``device``).
        cov: (d, d) training covariance Λ (e.g. ``isotropic_cov(d)`` or
            ``power_law_cov(d, 1.0, trace=d)``); under a curriculum the leading block is used.
        cfg: :class:`GPT2TrainConfig` (steps, batch, lr, start distribution, curriculum).
        seed: seeds the prompt and start generator (a CPU generator: same data on every device).
        device: where to train (default: the model's device).
        progress: show a tqdm progress bar.

    Returns:
        :class:`TrainResult` with the loss history.

    Raises:
        TrainingDivergedError: if the loss becomes NaN or inf (lower ``lr``).
    """
    from tqdm.auto import tqdm

    if not isinstance(model, GPT2Regressor):
        raise ValueError(f"`model` must be a GPT2Regressor, got {type(model).__name__}")
    if not isinstance(cfg, GPT2TrainConfig):
        raise ValueError(f"`cfg` must be a GPT2TrainConfig, got {type(cfg).__name__}")
    seed = check_pos_int(seed, "seed", minimum=0)
    d = model.config.dim
    cov_t = check_cov(cov, "cov", dim=d).detach().to("cpu", torch.float64)
    if model.config.layout == "interleaved" and cfg.context_len > model.config.max_context:
        raise ValueError(f"`context_len`={cfg.context_len} exceeds the model's max_context={model.config.max_context}")
    if device is not None:
        model.to(device)
    ref = model.read_in.weight
    dev, dtype = ref.device, ref.dtype
    g = make_generator(seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    losses: list[float] = []
    bar = tqdm(range(cfg.steps), desc=desc, disable=not progress, mininterval=1.0)
    t0 = time.perf_counter()
    for step in bar:
        d_act, n_act = cfg.curriculum.at(step, d, cfg.context_len) if cfg.curriculum else (d, cfg.context_len)
        pr = sample_prompts(cov_t[:d_act, :d_act], n_act, cfg.batch, generator=g, noise_std=cfg.label_noise)
        X, w = pr.X, pr.w
        if d_act < d:
            X = F.pad(X, (0, d - d_act))
            w = F.pad(w, (0, d - d_act))
        w0 = sample_starts(w, cfg, g)
        X, y, w, w0 = (t.to(device=dev, dtype=dtype) for t in (X, pr.y, w, w0))
        for group in opt.param_groups:
            group["lr"] = cfg.lr * _lr_factor(step, cfg)
        data_tok, query_pos = model.prompt_tokens(X, y)
        pred = model._forward_tokens(data_tok, query_pos, w0)
        loss = F.mse_loss(pred, w)
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"training loss became {value} at step {step} (lr={cfg.lr:g}); lower `lr`, keep "
                f"`grad_clip` on, or check the model's weights for NaN"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(value)
        if progress and step % 50 == 0:
            bar.set_postfix(loss=f"{value:.4f}", d=d_act, n=n_act, refresh=False)
    wall = time.perf_counter() - t0
    bar.close()
    model.eval()
    return TrainResult(losses=losses, steps=cfg.steps, wall_s=wall, seed=seed, device=str(dev))
