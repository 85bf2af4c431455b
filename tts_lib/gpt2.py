"""A GPT-2 regressor for in-context weight prediction, nanoGPT style: one model, one forward path.

The model is written out here (no ``transformers`` at run time): a linear read-in of
tokens, learned position embeddings, ``layers`` pre-norm GPT-2 blocks (causal
self-attention through :func:`torch.nn.functional.scaled_dot_product_attention`, a
4×-wide MLP, layer norms), a final layer norm and a linear read-out of the last hidden
state to ``ŵ ∈ R^d``. The same block forward serves training, full recomputation and
the cached chain of thought: with a :class:`KVCache` the attention writes the new
tokens' keys/values into the cache and attends over everything in it.
``tests/test_gpt2_hf.py`` copies the weights into Hugging Face's ``GPT2Model`` (the
independent reference, test-only) and matches hidden states and CoT iterates.

Tokens
------
Every token is a vector of ``2d + 2`` numbers with the same four blocks as the LSA
embedding ``Z0`` of the course: ``(x ∈ R^d, y ∈ R, ŵ ∈ R^d, flag ∈ R)``. A
:class:`TokenLayout` says how a prompt becomes tokens and position ids:

* ``"compact"`` (default, about 2× cheaper): one token per example ``(x_i, y_i, 0, 0)``;
  every data token gets position 0 (the examples are exchangeable), every query token
  position 1. Test prompts of any length ``m`` are accepted.
* ``"interleaved"`` (Garg et al. form): ``x_i`` and ``y_i`` get a token each,
  ``(x_i, 0, 0, 0)`` and ``(0, y_i, 0, 0)``, at positions ``0 … 2m-1``; every query
  token gets position ``2m``. Needs ``m <= max_context``.

The query token is ``(0, 0, ŵ, 1)``. Every query token, the first one and all CoT ones,
gets the single query position, so a CoT step never meets an untrained position.

Test-time chain of thought
--------------------------
A CoT step feeds the current estimate back as a query token and reads out ``ŵ_{i+1}``.
:func:`cot_rollout` runs it by full recomputation (``use_cache=False``) or with the
key/value cache (``use_cache=True``: :meth:`GPT2Regressor.encode_prompt` once, then
:meth:`GPT2Regressor.step` per CoT step on the new token only).

Earlier query tokens (``keep_history``): by default (``False``) each step's sequence is
*prompt + the newest query token only*; this is the structure of the theory (in the LSA
the appended columns have zero ``x``/``y`` blocks and are invisible to later steps, so
``ŵ_{i+1} = F(prompt, ŵ_i)`` is one fixed map iterated) and exactly the input the
training protocol (:mod:`tts_lib.gpt2_trainer`) shows the model. With ``keep_history=True``
every query token stays in the sequence and later steps attend to earlier estimates.

Training configurations and presets live in :mod:`tts_lib.gpt2_config`, the training loop in
:mod:`tts_lib.gpt2_trainer`, checkpoints in :mod:`tts_lib.gpt2_checkpoint`, the command line in
:mod:`tts_lib.gpt2_train`; this module imports none of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import (
    InputTypeError,
    as_tensor,
    check_cov,
    check_device,
    check_dtype,
    check_memory,
    check_pos_int,
)
from .metrics import cot_squared_errors
from .prompts import Prompts, PromptSampler

ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu")
#: most CoT steps one call runs (bounded work: linear in k, and each step is a few Python-level
#: forward calls, about a millisecond per layer on a laptop CPU: 10,000 steps take seconds to minutes)
MAX_COT_STEPS = 10_000
#: most multiply-adds one :func:`cot_rollout` may ask for (about minutes on a laptop CPU)
MAX_ROLLOUT_MACS = 10**12
#: with ``keep_history=True`` the sequence grows by one token per step (work O(k²)): fewer steps
MAX_COT_STEPS_HISTORY = 2_000
#: most test prompts one :func:`cot_errors` call draws, and per forward pass (``chunk``)
MAX_TEST_PROMPTS = 10_000_000
MAX_CHUNK = 65_536

# --------------------------------------------------------------------------- token layouts


class TokenLayout:
    """How a prompt becomes tokens and position ids (one small class per layout). The four
    blocks of a token are :func:`tts_lib.prompts.token_slots`'s (``tests/test_gpt2.py``
    checks it); the layout classes are the one place that arranges GPT-2 tokens.

    Defined in Chapter 7.
    """

    name: str = ""

    def data_tokens(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Raw data tokens (batch, L, 2d+2) of a prompt X (batch, m, d), y (batch, m)."""
        raise NotImplementedError

    def num_data_tokens(self, m: int) -> int:
        """L, the number of data tokens of a prompt with m examples."""
        raise NotImplementedError

    def data_positions(self, m: int, device: torch.device) -> torch.Tensor:
        """Position ids (L,) of the data tokens."""
        raise NotImplementedError

    def query_position(self, m: int) -> int:
        """The position id every query token gets."""
        raise NotImplementedError

    def num_positions(self, max_context: int) -> int:
        """Size of the learned position table."""
        raise NotImplementedError

    def max_examples(self, max_context: int) -> int | None:
        """Largest m the layout accepts (None: any)."""
        return None

    def positions(self, m: int, num_queries: int, device: torch.device) -> torch.Tensor:
        """Position ids (L + num_queries,) of a prompt followed by query tokens."""
        query = torch.full((num_queries,), self.query_position(m), dtype=torch.long, device=device)
        return torch.cat([self.data_positions(m, device), query])


class CompactLayout(TokenLayout):
    """One token ``(x_i, y_i, 0, 0)`` per example, all at position 0; queries at position 1.

    Defined in Chapter 7.
    """

    name = "compact"

    def data_tokens(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, m, d = X.shape
        return torch.cat([X, y.unsqueeze(-1), X.new_zeros(b, m, d + 1)], dim=-1)

    def num_data_tokens(self, m: int) -> int:
        return m

    def data_positions(self, m: int, device: torch.device) -> torch.Tensor:
        return torch.zeros(m, dtype=torch.long, device=device)

    def query_position(self, m: int) -> int:
        return 1

    def num_positions(self, max_context: int) -> int:
        return 2


class InterleavedLayout(TokenLayout):
    """Tokens ``(x_i, 0, 0, 0)``, ``(0, y_i, 0, 0)`` at positions ``2i, 2i+1``; queries at ``2m``.

    Defined in Chapter 7.
    """

    name = "interleaved"

    def data_tokens(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, m, d = X.shape
        tok = X.new_zeros(b, m, 2, 2 * d + 2)
        tok[:, :, 0, :d] = X
        tok[:, :, 1, d] = y
        return tok.reshape(b, 2 * m, 2 * d + 2)

    def num_data_tokens(self, m: int) -> int:
        return 2 * m

    def data_positions(self, m: int, device: torch.device) -> torch.Tensor:
        return torch.arange(2 * m, dtype=torch.long, device=device)

    def query_position(self, m: int) -> int:
        return 2 * m

    def num_positions(self, max_context: int) -> int:
        return 2 * max_context + 1

    def max_examples(self, max_context: int) -> int | None:
        return max_context


TOKEN_LAYOUTS: dict[str, TokenLayout] = {cls.name: cls() for cls in (CompactLayout, InterleavedLayout)}
LAYOUTS = tuple(TOKEN_LAYOUTS)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class GPT2RegressorConfig:
    """Architecture of :class:`GPT2Regressor` (everything a checkpoint must agree on).

    Attributes:
        dim: feature dimension ``d``.
        width: hidden size.
        layers: transformer blocks.
        heads: attention heads (must divide ``width``).
        layout: a key of :data:`TOKEN_LAYOUTS` (``"compact"`` or ``"interleaved"``).
        activation: MLP activation, ``"gelu"`` (exact, fastest on CPU), ``"gelu_new"``
            (GPT-2's tanh approximation), ``"relu"`` or ``"silu"``.
        max_context: largest number of examples ``m`` a prompt may have in the
            interleaved layout (sizes the position table; ignored by the compact layout).

    Defined in Chapter 7.
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
        limits = {"dim": 4096, "width": 65536, "layers": 1024, "heads": 4096, "max_context": 1_000_000}
        for name, most in limits.items():
            if getattr(self, name) > most:
                raise ValueError(f"`{name}` must be <= {most} (bounded model size), got {getattr(self, name)}")
        if self.width % self.heads:
            raise ValueError(f"`heads` must divide `width`; got width={self.width}, heads={self.heads}")
        if not isinstance(self.layout, str) or self.layout not in TOKEN_LAYOUTS:
            raise ValueError(f"`layout` must be one of {LAYOUTS}, got {self.layout!r}")
        if not isinstance(self.activation, str) or self.activation not in ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {ACTIVATIONS}, got {self.activation!r}")
        # bounded memory before any allocation: the weights in float64 (Adam keeps two more copies)
        w = self.width
        params = self.layers * (12 * w * w + 13 * w) + (self.n_positions + self.token_dim + self.dim + 3) * w
        check_memory(params, "width" if w * w >= self.layers else "layers",
                     what=f"a model of about {params:,} parameters (width {w}, {self.layers} layers)")

    @property
    def token_dim(self) -> int:
        """Width of a raw token, ``2d + 2``."""
        return 2 * self.dim + 2

    @property
    def token_layout(self) -> TokenLayout:
        return TOKEN_LAYOUTS[self.layout]

    @property
    def n_positions(self) -> int:
        """Size of the learned position table."""
        return self.token_layout.num_positions(self.max_context)


# --------------------------------------------------------------------------- key/value cache


class KVCache:
    """Every layer's keys and values, (batch, heads, capacity, head_dim) buffers, of which the
    first ``length`` token slots are this cache's sequence (the prompt's ``prompt_len``
    tokens first, then kept query tokens).

    :meth:`GPT2Regressor.step` returns a *new* cache object one token longer; the input
    cache keeps its meaning. Extensions share the buffers: extending the same cache twice
    reuses its next slot, and the older extension then refuses to be used (a clear error,
    never a silent mix).

    Defined in Chapter 7.
    """

    def __init__(
        self,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        length: int,
        prompt_len: int,
        query_pos: int,
        writes: list[int],
    ) -> None:
        self.keys, self.values = keys, values
        self.length, self.prompt_len, self.query_pos = length, prompt_len, query_pos
        self._writes = writes  # shared with every cache on the same buffers
        self._stamp = tuple(writes[:length])

    @classmethod
    def empty(cls, batch: int, config: GPT2RegressorConfig, capacity: int, query_pos: int, like: torch.Tensor):
        hd = config.width // config.heads
        shape = (batch, config.heads, capacity, hd)
        keys = [like.new_zeros(shape) for _ in range(config.layers)]
        values = [like.new_zeros(shape) for _ in range(config.layers)]
        return cls(keys, values, 0, 0, query_pos, [0] * capacity)

    @property
    def batch(self) -> int:
        return self.keys[0].shape[0]

    @property
    def num_queries(self) -> int:
        """Query tokens kept after the prompt."""
        return self.length - self.prompt_len

    def _check_valid(self) -> None:
        if tuple(self._writes[: self.length]) != self._stamp:
            raise ValueError(
                "this KVCache was overwritten by a later step from the same parent cache; keep "
                "only the newest extension (or encode the prompt again)"
            )

    def extend(self, t: int) -> KVCache:
        """A cache ``t`` tokens longer whose last ``t`` slots the next layer writes fill."""
        self._check_valid()
        need = self.length + t
        keys, values, writes = self.keys, self.values, self._writes
        if need > keys[0].shape[2]:  # grow (copies the valid part once; the parent keeps its buffers)
            cap = max(need, 2 * keys[0].shape[2])
            grown = []
            for buf in (keys, values):
                new = []
                for z in buf:
                    g = z.new_zeros(*z.shape[:2], cap, z.shape[3])
                    g[:, :, : self.length] = z[:, :, : self.length]
                    new.append(g)
                grown.append(new)
            keys, values = grown
            writes = list(writes[: self.length]) + [0] * (cap - self.length)
        for j in range(self.length, need):
            writes[j] += 1
        return KVCache(keys, values, need, self.prompt_len, self.query_pos, writes)

    def take(self, rows: torch.Tensor) -> KVCache:
        """A cache of the batch rows ``rows`` (indices) only: copies, this cache keeps its
        meaning (generation drops the sequences that have finished)."""
        self._check_valid()
        keys = [z[rows] for z in self.keys]
        values = [z[rows] for z in self.values]
        return KVCache(keys, values, self.length, self.prompt_len, self.query_pos, list(self._writes))

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new tokens' keys/values (batch, heads, t, hd) into the last ``t`` slots;
        return views of all ``length`` keys and values."""
        t = k.shape[2]
        self.keys[layer][:, :, self.length - t : self.length] = k
        self.values[layer][:, :, self.length - t : self.length] = v
        return self.keys[layer][:, :, : self.length], self.values[layer][:, :, : self.length]


# --------------------------------------------------------------------------- model


def _activation(name: str) -> nn.Module:
    return {
        "gelu": nn.GELU(),
        "gelu_new": nn.GELU(approximate="tanh"),
        "relu": nn.ReLU(),
        "silu": nn.SiLU(),
    }[name]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention (GPT-2: fused q/k/v projection, output projection).

    Defined in Chapter 7.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, last: int | None = None
    ) -> torch.Tensor:
        """x (batch, t, width) → (batch, t', width). Without ``cache``: causal over ``x``. With
        ``cache`` (already extended by t): the t new tokens attend to the cached tokens and
        causally to each other. ``last``: compute the output of the last ``last`` tokens only
        (t' = last; the keys and values of all t tokens are still computed and cached)."""
        b, t, c = x.shape
        tq = t if last is None else last
        if tq == t:
            q, k, v = self.c_attn(x).split(c, dim=2)
        else:  # queries of the last tokens only: a third of the projection saved on the rest
            weight, bias = self.c_attn.weight, self.c_attn.bias
            k, v = F.linear(x, weight[c:], bias[c:]).split(c, dim=2)
            q = F.linear(x[:, t - tq :], weight[:c], bias[:c])
        hd = c // self.heads
        q = q.view(b, tq, self.heads, hd).transpose(1, 2)
        k, v = (z.view(b, t, self.heads, hd).transpose(1, 2) for z in (k, v))
        if cache is not None:
            k, v = cache.store(layer, k, v)
        if tq == 0:
            return x.new_zeros(b, 0, c)
        total = k.shape[2]
        if cache is None and tq == t:
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif tq == 1:  # one new token (a cached CoT step) sees every key: no mask
            # the explicit softmax(q kᵀ/√hd) v: on one CPU thread a cached step is about a
            # fifth faster than with SDPA's kernel (python -m tts_lib.bench --only
            # gpt2_hf_cache, A/B); the same values (tests/test_gpt2_hf.py)
            att = torch.softmax((q @ k.transpose(-1, -2)) * hd**-0.5, dim=-1) @ v
        else:
            mask = None
            if tq > 1:  # new token j sees the earlier tokens and itself
                mask = torch.ones(tq, total, dtype=torch.bool, device=x.device).tril(diagonal=total - tq)
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.c_proj(att.transpose(1, 2).reshape(b, tq, c))


class MLP(nn.Module):
    """The block's MLP: width → 4·width (activation) → width.

    Defined in Chapter 7.
    """

    def __init__(self, width: int, activation: str) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.act = _activation(activation)
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class Block(nn.Module):
    """Pre-norm GPT-2 block: ``h + attn(ln_1 h)``, then ``h + mlp(ln_2 h)``.

    Defined in Chapter 7.
    """

    def __init__(self, config: GPT2RegressorConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width, eps=1e-5)
        self.attn = CausalSelfAttention(config.width, config.heads)
        self.ln_2 = nn.LayerNorm(config.width, eps=1e-5)
        self.mlp = MLP(config.width, config.activation)

    def forward(
        self, h: torch.Tensor, cache: KVCache | None = None, layer: int = 0, last: int | None = None
    ) -> torch.Tensor:
        """h (batch, t, width) → (batch, t, width), or the last ``last`` tokens only."""
        a = self.attn(self.ln_1(h), cache, layer, last)
        if last is not None:
            h = h[:, h.shape[1] - last :]
        h = h + a
        return h + self.mlp(self.ln_2(h))


class GPT2Regressor(nn.Module):
    """GPT-2 with a linear read-in of ``(2d+2)``-tokens and a read-out to ``ŵ`` (see module doc).

    Defined in Chapter 7.
    """

    def __init__(self, config: GPT2RegressorConfig) -> None:
        super().__init__()
        if not isinstance(config, GPT2RegressorConfig):
            raise InputTypeError(f"`config` must be a GPT2RegressorConfig, got {type(config).__name__}")
        self.config = config
        self.layout = config.token_layout
        self.read_in = nn.Linear(config.token_dim, config.width)
        self.wpe = nn.Embedding(config.n_positions, config.width)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(config.width, eps=1e-5)
        self.read_out = nn.Linear(config.width, config.dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """GPT-2's initialisation: N(0, 0.02) weights and position table, the residual
        projections (``attn.c_proj``, ``mlp.c_proj``) N(0, 0.02/sqrt(2·layers)), zero biases,
        unit layer norms; read-in/read-out keep torch's default ``nn.Linear`` initialisation.
        The draws come from torch's global generator in module order."""
        std = 0.02
        resid = std / math.sqrt(2 * self.config.layers)
        self.read_in.reset_parameters()
        nn.init.normal_(self.wpe.weight, 0.0, std)
        for block in self.blocks:
            for lin, sd in (
                (block.attn.c_attn, std),
                (block.attn.c_proj, resid),
                (block.mlp.c_fc, std),
                (block.mlp.c_proj, resid),
            ):
                nn.init.normal_(lin.weight, 0.0, sd)
                nn.init.zeros_(lin.bias)
            block.ln_1.reset_parameters()
            block.ln_2.reset_parameters()
        self.ln_f.reset_parameters()
        self.read_out.reset_parameters()

    # -- input checks -------------------------------------------------------------

    @property
    def _ref(self) -> torch.Tensor:
        return self.read_in.weight

    def _check_prompt(self, X: Any, y: Any, where: str = "") -> tuple[torch.Tensor, torch.Tensor]:
        """``X``, ``y`` checked for this model (``where="prompts."`` names them ``prompts.X``, …)."""
        d, ref = self.config.dim, self._ref
        try:
            return self._check_prompt_tensors(_as_model_tensor(X, "X", ref), _as_model_tensor(y, "y", ref), d)
        except ValueError as err:
            if not where:
                raise
            raise type(err)(str(err).replace("`X`", f"`{where}X`").replace("`y`", f"`{where}y`")) from err

    def _check_prompt_tensors(self, X: torch.Tensor, y: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
        if X.ndim != 3 or X.shape[2] != d:
            raise ValueError(f"`X` must have shape (batch, m, {d}) for this model, got {tuple(X.shape)}")
        if X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(f"`X` must hold at least one prompt with at least one example, got {tuple(X.shape)}")
        if y.shape != X.shape[:2]:
            raise ValueError(f"`y` must have shape {tuple(X.shape[:2])} to match `X`, got {tuple(y.shape)}")
        most = self.layout.max_examples(self.config.max_context)
        if most is not None and X.shape[1] > most:
            raise ValueError(
                f"`X` has m={X.shape[1]} examples but this {self.config.layout} model takes at most "
                f"max_context={self.config.max_context}; use a shorter prompt or a larger max_context"
            )
        return X, y

    def _check_estimate(self, w_hat: Any, batch: int, name: str = "w_hat") -> torch.Tensor:
        w_hat = _as_model_tensor(w_hat, name, self._ref)
        d = self.config.dim
        if w_hat.ndim not in (2, 3) or w_hat.shape[0] != batch or w_hat.shape[-1] != d or w_hat.shape[1] < 1:
            raise ValueError(f"`{name}` must have shape ({batch}, {d}) or ({batch}, q, {d}), got {tuple(w_hat.shape)}")
        return w_hat

    # -- tokens ---------------------------------------------------------------------

    def prompt_tokens(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Raw data tokens (batch, L, 2d+2) and the query position id."""
        return self.layout.data_tokens(X, y), self.layout.query_position(X.shape[1])

    def query_tokens(self, w_hat: torch.Tensor) -> torch.Tensor:
        """Query tokens ``(0, 0, ŵ, 1)``: (batch, d) → (batch, 1, 2d+2); (batch, q, d) → (batch, q, 2d+2)."""
        if w_hat.ndim == 2:
            w_hat = w_hat.unsqueeze(1)
        zeros = w_hat.new_zeros(*w_hat.shape[:2], self.config.dim + 1)
        return torch.cat([zeros, w_hat, torch.ones_like(zeros[..., :1])], dim=-1)

    # -- the one forward path ---------------------------------------------------------

    def hidden_states(
        self, tokens: torch.Tensor, pos: torch.Tensor, cache: KVCache | None = None, last: int | None = None
    ) -> torch.Tensor:
        """Final hidden states (batch, t, width) of raw ``tokens`` (batch, t, 2d+2) at position
        ids ``pos`` (t,). With ``cache`` (extended by t with :meth:`KVCache.extend`) the new
        tokens attend to the cached ones and their keys/values are stored in it. ``last``:
        return the states of the last ``last`` tokens only (batch, last, width); the final
        block then skips the work no later token needs (its queries, attention output and
        MLP on the other tokens), the same numbers up to float round-off."""
        h = self.read_in(tokens) + self.wpe(pos)
        final = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            h = block(h, cache, i, last if i == final else None)
        return self.ln_f(h)

    def _predict(self, X: torch.Tensor, y: torch.Tensor, w_hat: torch.Tensor) -> torch.Tensor:
        """Unchecked :meth:`forward` (the training loop's call)."""
        q_tok = self.query_tokens(w_hat)
        tokens = torch.cat([self.layout.data_tokens(X, y), q_tok], dim=1)
        pos = self.layout.positions(X.shape[1], q_tok.shape[1], tokens.device)
        out = self.read_out(self.hidden_states(tokens, pos, last=q_tok.shape[1]))
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
        return self._predict(X, y, w_hat)

    # -- key/value cache ----------------------------------------------------------------

    def encode_prompt(self, X: torch.Tensor, y: torch.Tensor, *, extra: int = 8) -> KVCache:
        """Run the prompt once and keep every layer's keys/values (room for ``extra`` query
        tokens before the buffers grow)."""
        X, y = self._check_prompt(X, y)
        extra = check_pos_int(extra, "extra", minimum=0, maximum=MAX_COT_STEPS)
        data_tok, query_pos = self.prompt_tokens(X, y)
        L = data_tok.shape[1]
        cache = KVCache.empty(X.shape[0], self.config, L + max(extra, 1), query_pos, data_tok).extend(L)
        # keys/values only: no prompt token's final state is ever read
        self.hidden_states(data_tok, self.layout.data_positions(X.shape[1], data_tok.device), cache, last=0)
        cache.prompt_len = L
        return cache

    def step(self, cache: KVCache, w_hat: torch.Tensor) -> tuple[torch.Tensor, KVCache]:
        """One CoT step on the cache: run the query token (0, 0, ŵ, 1) only.

        Args:
            cache: from :meth:`encode_prompt` (optionally extended by earlier steps).
            w_hat: (batch, d) current estimate.

        Returns:
            The next estimate (batch, d) and the cache extended by this query token (drop
            it to keep history out).
        """
        if not isinstance(cache, KVCache):
            raise InputTypeError(f"`cache` must be a KVCache from encode_prompt, got {type(cache).__name__}")
        want = (cache.batch, self.config.dim)
        w_hat = _as_model_tensor(w_hat, "w_hat", self._ref)
        if tuple(w_hat.shape) != want:
            raise ValueError(f"`w_hat` must have shape {want}, got {tuple(w_hat.shape)}")
        return self._step(cache, w_hat)

    def cot(
        self,
        prompts: Prompts,
        num_steps: int,
        *,
        w0: torch.Tensor | None = None,
        use_cache: bool = True,
        keep_history: bool = False,
    ) -> torch.Tensor:
        """Test-time CoT on ``prompts`` (the LSA's interface, ``model.cot(prompts, num_steps)``):
        iterates ``ŵ_0 … ŵ_k`` for ``k = num_steps``, (batch, k + 1, d), in the model's dtype
        and device (the prompts are moved there first); see :func:`cot_rollout` for the
        options."""
        if not isinstance(prompts, Prompts):
            raise InputTypeError(f"`prompts` must be a Prompts (from sample_prompts), got {type(prompts).__name__}")
        X, y = self._check_prompt(prompts.X, prompts.y, where="prompts.")
        return cot_rollout(self, X, y, num_steps, w0=w0, use_cache=use_cache, keep_history=keep_history)

    def _step(self, cache: KVCache, w_hat: torch.Tensor) -> tuple[torch.Tensor, KVCache]:
        q_tok = self.query_tokens(w_hat)
        pos = torch.full((1,), cache.query_pos, dtype=torch.long, device=q_tok.device)
        extended = cache.extend(1)
        h = self.hidden_states(q_tok, pos, extended)
        return self.read_out(h[:, -1]), extended


def _as_model_tensor(value: Any, name: str, ref: torch.Tensor) -> torch.Tensor:
    """``value`` as a finite tensor on the model's device and dtype (``_checks.as_tensor``)."""
    return as_tensor(value, name, device=ref.device, dtype=ref.dtype)


def build_model(
    config: GPT2RegressorConfig,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> GPT2Regressor:
    """A freshly initialised model; the initialisation happens on the CPU with ``seed``, so the
    same seed gives the same weights on every device.

    Defined in Chapter 7.
    """
    if not isinstance(config, GPT2RegressorConfig):
        raise InputTypeError(f"`config` must be a GPT2RegressorConfig, got {type(config).__name__}")
    seed = check_pos_int(seed, "seed", minimum=0)
    dtype = check_dtype(dtype)
    device = check_device(device)
    with torch.random.fork_rng(devices=[]):
        model = GPT2Regressor(config)
        torch.manual_seed(seed)
        model.reset_parameters()  # every weight redrawn after seeding: it depends on seed alone
    return model.to(device=device, dtype=dtype)


def num_parameters(model: nn.Module) -> int:
    """Number of trainable parameters.

    Defined in Chapter 7.
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- CoT


def _check_steps(k: Any) -> int:
    return check_pos_int(k, "num_steps", minimum=0, maximum=MAX_COT_STEPS)


def _check_rollout_work(model: GPT2Regressor, batch: int, m: int, k: int, use_cache: bool, history: bool) -> None:
    """Refuse a rollout whose multiply-adds exceed :data:`MAX_ROLLOUT_MACS`, before it starts."""
    cfg = model.config
    L = model.layout.num_data_tokens(m)
    per_token = cfg.layers * (12 * cfg.width**2)  # the blocks' matrix products
    ctx = L + (k if history else 1)  # the longest sequence a step attends over
    new_tokens = 1 if use_cache else ctx  # tokens run per step
    macs = batch * (L * per_token + k * new_tokens * (per_token + 2 * cfg.layers * ctx * cfg.width))
    if macs > MAX_ROLLOUT_MACS:
        raise ValueError(
            f"`num_steps`={k} on {batch} prompts of m={m} would take about {macs:.2g} multiply-adds "
            f"(limit {MAX_ROLLOUT_MACS:.0e}, tts_lib.gpt2.MAX_ROLLOUT_MACS: minutes or more); lower `num_steps` "
            "or the batch, or use use_cache=True"
        )


def _check_rollout(
    model: Any, X: Any, y: Any, num_steps: Any, w0: Any, use_cache: Any, keep_history: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """:func:`cot_rollout`'s checks, before any work: the prompt ``X``, ``y``, the start ``w0``
    (zeros when None) and ``k``."""
    k = _check_steps(num_steps)
    if not isinstance(model, GPT2Regressor):
        raise InputTypeError(f"`model` must be a GPT2Regressor, got {type(model).__name__}")
    for name, flag in (("use_cache", use_cache), ("keep_history", keep_history)):
        if not isinstance(flag, bool):
            raise InputTypeError(f"`{name}` must be True or False, got {flag!r}")
    if keep_history and k > MAX_COT_STEPS_HISTORY:
        raise ValueError(
            f"`num_steps` must be <= {MAX_COT_STEPS_HISTORY} with keep_history=True (work O(k²)), got {k}"
        )
    X, y = model._check_prompt(X, y)
    _check_rollout_work(model, X.shape[0], X.shape[1], k, use_cache, keep_history)
    if w0 is None:
        w0 = X.new_zeros(X.shape[0], model.config.dim)
    w0 = model._check_estimate(w0, X.shape[0], "w0")
    if w0.ndim != 2:
        raise ValueError(f"`w0` must have shape (batch, d), got {tuple(w0.shape)}")
    return X, y, w0, k


@torch.no_grad()
def cot_rollout(
    model: GPT2Regressor,
    X: torch.Tensor,
    y: torch.Tensor,
    num_steps: int,
    *,
    w0: torch.Tensor | None = None,
    use_cache: bool = True,
    keep_history: bool = False,
) -> torch.Tensor:
    """Test-time CoT: ``ŵ_{i+1}`` = read-out after appending the query token ``(0, 0, ŵ_i, 1)``.

    Args:
        model: a :class:`GPT2Regressor`.
        X: (batch, m, d) features (m >= 1); y: (batch, m) labels.
        num_steps: ``k``, the number of CoT steps (``0 <= k <= MAX_COT_STEPS``); ``ŵ_1`` is the one-pass prediction.
        w0: (batch, d) starting estimate (zeros by default, as in the paper).
        use_cache: encode the prompt once and run only the new token per step (else
            recompute the whole sequence at every step).
        keep_history: keep earlier query tokens in the sequence (see module docstring).
            A model trained by :func:`~tts_lib.gpt2_trainer.train_gpt2` (one query token per
            prompt) has never seen earlier query tokens; with ``keep_history=True`` its error
            grows with k, an artefact of the protocol, not overthinking.

    Returns:
        (batch, k + 1, d): ``ŵ_0, ŵ_1, …, ŵ_k``.

    Defined in Chapter 7.
    """
    X, y, w0, k = _check_rollout(model, X, y, num_steps, w0, use_cache, keep_history)
    iterates = [w0]
    if use_cache:
        cache = model.encode_prompt(X, y, extra=min(k, 64) if keep_history else 1)  # grows by doubling
        for _ in range(k):
            w_next, extended = model._step(cache, iterates[-1])
            if keep_history:
                cache = extended
            iterates.append(w_next)
    else:
        for i in range(k):
            if keep_history:
                w_next = model._predict(X, y, torch.stack(iterates[: i + 1], 1))[:, -1]
            else:
                w_next = model._predict(X, y, iterates[-1])
            iterates.append(w_next)
    return torch.stack(iterates, dim=1)


@torch.no_grad()
def cot_errors(
    model: GPT2Regressor,
    cov: Any,
    test_len: int,
    num_steps: int,
    *,
    num_prompts: int = 1000,
    seed: int | torch.Generator = 0,
    device: torch.device | str | None = None,
    chunk: int = 500,
    noise_std: float = 0.0,
    **rollout_kwargs: Any,
) -> torch.Tensor:
    """Squared errors ``‖ŵ_i − w‖²`` on fresh test prompts, shape (num_prompts, k + 1), float64:
    prompts from a :class:`~tts_lib.prompts.PromptSampler` (in chunks), errors from
    :func:`tts_lib.metrics.cot_squared_errors` (the library's one evaluation door), so
    ``cot_errors(model, cov, m, k, num_prompts=P, seed=s)`` equals
    ``metrics.cot_squared_errors(model, sample_prompts(cov, m, P, seed=s), k)`` for ``P <= chunk``.

    Args:
        model: trained :class:`GPT2Regressor`.
        cov: (d, d) test covariance Σ.
        test_len: test context length ``m``.
        num_steps: ``k``, CoT steps.
        num_prompts: number of test prompts (at most ``MAX_TEST_PROMPTS``); ``chunk``: prompts
            per forward pass.
        seed: prompt seed (prompts are drawn on the CPU, so identical on every device).
        device: where to run (default: the model's device).
        noise_std: label noise of the test prompts (``y = <w, x> + noise_std · ξ``).
        rollout_kwargs: passed to :func:`cot_rollout` (``use_cache``, ``keep_history``, ``w0``).

    Defined in Chapter 7.
    """
    if not isinstance(model, GPT2Regressor):
        raise InputTypeError(f"`model` must be a GPT2Regressor, got {type(model).__name__}")
    k = _check_steps(num_steps)
    ref = model.read_in.weight
    device = ref.device if device is None else check_device(device)
    test_len = check_pos_int(test_len, "test_len")
    num_prompts = check_pos_int(num_prompts, "num_prompts", maximum=MAX_TEST_PROMPTS)
    chunk = check_pos_int(chunk, "chunk", maximum=MAX_CHUNK)
    check_memory(min(chunk, num_prompts) * test_len * model.config.dim, "test_len",
                 what=f"{min(chunk, num_prompts)} test prompts of {test_len} examples")
    _check_rollout_work(model, num_prompts, test_len, k, rollout_kwargs.get("use_cache", True) is not False,
                        rollout_kwargs.get("keep_history", False) is True)
    sampler = PromptSampler(check_cov(cov, "cov", dim=model.config.dim), seed=seed, device=device,
                            dtype=ref.dtype)
    out = []
    for start in range(0, num_prompts, chunk):
        pr = sampler.draw(test_len, min(chunk, num_prompts - start), noise_std=noise_std)
        out.append(cot_squared_errors(model, pr, k, **rollout_kwargs).cpu())
    return torch.cat(out)
