"""One-layer linear self-attention (LSA) for in-context weight prediction.

Embedding of a prompt with ``N`` examples (columns are tokens, ``D = 2d + 2`` rows)::

    Z0 = [[X,        0  ],   d rows  features
          [yᵀ,       0  ],   1 row   labels
          [0_{d×N},  ŵ0 ],   d rows  weight-estimate slot
          [0_{1×N},  1  ]]   1 row   constant

Layer: ``f(Z) = Z + (1/N) V Z (Zᵀ W Z)`` (no mask: every token is a key and a value;
``N`` counts only the examples). The prediction ``ŵ`` is the weight slot of the last
column of ``f(Z)``. Test-time chain of thought appends the token ``(0, 0, ŵ_i, 1)`` and
applies the same layer again.

Two parameterisations:

* :class:`StructuredLSA`: only ``V31`` (weight rows × feature columns), ``W13 = a·I`` and
  ``W24 = −c`` are non-zero. Then one step is ``ŵ ← ŵ + V31 Ŝ (a ŵ − c w)``, and with
  ``a = c`` and ``c·V31 = −Γ⁻¹`` it is the pseudo-Newton step of Proposition 3.2.
* :class:`FullLSA`: free ``V, W ∈ R^{D×D}``.

Both share :meth:`LinearSelfAttention.cot` (appends tokens and re-applies the layer)
and :meth:`LinearSelfAttention.cot_fast` (reuses the prompt's Gram matrix ``Σ_t z_t z_tᵀ``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._checks import (
    DEFAULT_DTYPE,
    MAX_STEPS,
    as_tensor,
    check_device,
    check_dtype,
    check_memory,
    check_pos_int,
    check_real,
    make_generator,
)
from .prompts import Prompts, token_slots
from .theory import lsa_precond


def embed(X: torch.Tensor, y: torch.Tensor, w0: torch.Tensor | None = None) -> torch.Tensor:
    """Embed prompts as ``Z0`` of shape (batch, 2d+2, N+1).

    Args:
        X: (batch, N, d) features; y: (batch, N) labels; w0: (batch, d) start estimate (0 if None).

    Defined in Chapter 1.
    """
    X = as_tensor(X, "X")
    y = as_tensor(y, "y", device=X.device, dtype=X.dtype)
    if X.ndim != 3 or y.shape != X.shape[:2]:
        raise ValueError(f"`X` must be (batch, N, d) and `y` (batch, N); got {tuple(X.shape)}, {tuple(y.shape)}")
    B, N, d = X.shape
    if N < 1 or d < 1:
        raise ValueError(f"`X` must hold at least one example of dimension >= 1, got shape {tuple(X.shape)}")
    return _embed(X, y, _check_w0(w0, X))


def _check_w0(w0: Any, X: torch.Tensor) -> torch.Tensor | None:
    if w0 is None:
        return None
    B, _, d = X.shape
    w0 = as_tensor(w0, "w0", device=X.device, dtype=X.dtype)
    if w0.shape != (B, d):
        raise ValueError(f"`w0` must have shape ({B}, {d}), got {tuple(w0.shape)}")
    return w0


def _embed(X: torch.Tensor, y: torch.Tensor, w0: torch.Tensor | None) -> torch.Tensor:
    """:func:`embed` for checked inputs."""
    B, N, d = X.shape
    Z = X.new_zeros(B, 2 * d + 2, N + 1)
    Z[:, :d, :N] = X.transpose(1, 2)
    Z[:, d, :N] = y
    if w0 is not None:
        Z[:, token_slots(d).w, N] = w0
    Z[:, 2 * d + 1, N] = 1.0
    return Z


def query_token(w_hat: torch.Tensor) -> torch.Tensor:
    """The CoT token ``(0_d, 0, ŵ, 1)`` for each prompt, shape (batch, 2d+2, 1).

    Defined in Chapter 4.
    """
    w_hat = as_tensor(w_hat, "w_hat")
    if w_hat.ndim != 2:
        raise ValueError(f"`w_hat` must have shape (batch, d), got {tuple(w_hat.shape)}")
    return _query_token(w_hat)


def _query_token(w_hat: torch.Tensor) -> torch.Tensor:
    B, d = w_hat.shape
    z = w_hat.new_zeros(B, 2 * d + 2, 1)
    z[:, token_slots(d).w, 0] = w_hat
    z[:, 2 * d + 1, 0] = 1.0
    return z


class LinearSelfAttention(nn.Module):
    """Base class: subclasses define the ``(D, D)`` matrices ``V`` and ``W``.

    Defined in Chapter 1.
    """

    dim: int

    @property
    def V(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def W(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def weight_slot(self, Z: torch.Tensor) -> torch.Tensor:
        """The ŵ rows of every column of ``Z``: (batch, d, T)."""
        d = self.dim
        if not isinstance(Z, torch.Tensor) or Z.ndim != 3 or Z.shape[1] != 2 * d + 2:
            shape = tuple(Z.shape) if isinstance(Z, torch.Tensor) else type(Z).__name__
            raise ValueError(f"`Z` must be a (batch, {2 * d + 2}, T) tensor, got {shape}")
        return Z[:, token_slots(d).w, :]

    def forward(self, Z: torch.Tensor, num_examples: int) -> torch.Tensor:
        """``f(Z) = Z + (1/N) V Z (Zᵀ W Z)``; ``Z``: (batch, 2d+2, T), ``N = num_examples``."""
        if not isinstance(Z, torch.Tensor):
            raise TypeError(f"`Z` must be a tensor (batch, {2 * self.dim + 2}, T), got {type(Z).__name__}")
        if Z.ndim != 3 or Z.shape[1] != 2 * self.dim + 2:
            raise ValueError(f"`Z` must be (batch, {2 * self.dim + 2}, T), got {tuple(Z.shape)}")
        num_examples = check_pos_int(num_examples, "num_examples")
        V = self.V
        if Z.device != V.device:
            raise ValueError(f"`Z` is on {Z.device} but the model is on {V.device}; move one with .to()")
        if Z.dtype != V.dtype:
            raise ValueError(f"`Z` has dtype {Z.dtype} but the model has {V.dtype}; convert one with .to()")
        if not bool(torch.isfinite(Z).all()):
            raise ValueError("`Z` contains NaN or inf; pass a finite embedding (see lsa.embed)")
        return self._layer(Z, num_examples)

    def _layer(self, Z: torch.Tensor, num_examples: int) -> torch.Tensor:
        V, W = self.V, self.W
        scores = Z.transpose(1, 2) @ (W @ Z)  # (batch, T, T)
        return Z + (V @ Z @ scores) / num_examples

    def _check_prompts(self, prompts: Prompts) -> None:
        if not isinstance(prompts, Prompts):
            raise TypeError(f"`prompts` must be a tts_lib.prompts.Prompts, got {type(prompts).__name__}")
        if prompts.dim != self.dim:
            raise ValueError(f"`prompts` have d={prompts.dim} but the model has dim={self.dim}")
        if prompts.context_len < 1:
            raise ValueError("`prompts` hold no examples (n = 0); sample at least one per prompt")
        if prompts.X.device != self.V.device:
            raise ValueError(
                f"`prompts` are on {prompts.X.device} but the model is on {self.V.device}; "
                "use prompts.to(device)"
            )
        if prompts.X.dtype != self.V.dtype:
            raise ValueError(
                f"`prompts` have dtype {prompts.X.dtype} but the model has {self.V.dtype}; "
                "use prompts.to(dtype=...)"
            )
        if not (bool(torch.isfinite(prompts.X).all()) and bool(torch.isfinite(prompts.y).all())):
            raise ValueError("`prompts` contain NaN or inf features or labels; pass finite prompts")

    def predict(self, prompts: Prompts, w0: torch.Tensor | None = None) -> torch.Tensor:
        """One forward pass from ``ŵ0`` (0 by default): ŵ1, shape (batch, d).

        Computes the last column of ``f(Z0)`` as ``q + (1/N) V (Z Zᵀ) W q`` (see
        :meth:`cot_fast`): the same numbers and gradients as :meth:`forward`, at
        ``O(N D²)`` instead of ``O(N² D)`` per prompt, so long contexts train cheaply.
        """
        return self.cot_fast(prompts, 1, w0)[:, 1]

    def cot(
        self, prompts: Prompts, num_steps: int, w0: torch.Tensor | None = None, *, use_cache: bool = False
    ) -> torch.Tensor:
        """Chain of thought by really appending tokens: iterates ŵ_0..ŵ_k, (batch, k+1, d).

        Step i applies the layer to ``[Z0, q_1, …, q_i]`` (prompt plus the tokens
        generated so far) and reads ŵ_{i+1} from the last column. ``use_cache=True`` runs
        :meth:`cot_fast` instead (the same iterates from the prompt's Gram matrix, as the
        GPT-2's ``use_cache`` reuses its key/value cache).
        """
        if not isinstance(use_cache, bool):
            raise TypeError(f"`use_cache` must be True or False, got {use_cache!r}")
        if use_cache:
            return self.cot_fast(prompts, num_steps, w0)
        self._check_prompts(prompts)
        k = check_pos_int(num_steps, "num_steps", minimum=0, maximum=MAX_STEPS)
        T = prompts.context_len + k + 1
        check_memory(prompts.batch * T * (T + 2 * self.dim + 2), "num_steps",
                     what=f"the attention scores of {T} tokens", itemsize=prompts.X.element_size())
        Z = _embed(prompts.X, prompts.y, _check_w0(w0, prompts.X))
        iterates = [self.weight_slot(Z)[:, :, -1]]
        for _ in range(k):
            w_next = self.weight_slot(self._layer(Z, prompts.context_len))[:, :, -1]
            iterates.append(w_next)
            Z = torch.cat([Z, _query_token(w_next)], dim=2)
        return torch.stack(iterates, dim=1)

    def cot_fast(self, prompts: Prompts, num_steps: int, w0: torch.Tensor | None = None) -> torch.Tensor:
        """Same iterates as :meth:`cot`, reusing the prompt statistics: (batch, k+1, d).

        The last column of ``f(Z)`` is ``q + (1/N) V (Σ_t z_t z_tᵀ) W q``; the Gram
        matrix ``Σ_t z_t z_tᵀ`` is computed once and updated by ``q qᵀ`` per new token.
        """
        self._check_prompts(prompts)
        k = check_pos_int(num_steps, "num_steps", minimum=0, maximum=MAX_STEPS)
        check_memory(prompts.batch * (k + 1) * self.dim, "num_steps", what=f"{k + 1} iterates")
        Z = _embed(prompts.X, prompts.y, _check_w0(w0, prompts.X))
        gram = Z @ Z.transpose(1, 2)  # (batch, D, D), includes the query column
        q = Z[:, :, -1:]
        VW = self.V, self.W
        d, N = self.dim, prompts.context_len
        est = token_slots(d).w
        iterates = [q[:, est, 0]]
        for _ in range(k):
            out = q + VW[0] @ (gram @ (VW[1] @ q)) / N
            w_next = out[:, est, 0]
            iterates.append(w_next)
            q = _query_token(w_next)
            gram = gram + q @ q.transpose(1, 2)
        return torch.stack(iterates, dim=1)


class StructuredLSA(LinearSelfAttention):
    """LSA with only ``V31`` (trainable), ``W13 = a·I`` and ``W24 = −c`` non-zero.

    Args:
        dim: feature dimension d.
        c: the label key-query scale (``W24 = −c``).
        a: the weight-slot key-query scale (``W13 = a·I``); tied to ``c`` when None.
        init_scale: ``V31`` starts at ``init_scale · G`` with G standard normal (0 = zeros).
        seed: seed of that initialisation.

    Defined in Chapter 1.
    """

    def __init__(
        self,
        dim: int,
        c: float = 1.0,
        a: float | None = None,
        init_scale: float = 0.0,
        seed: int = 0,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = DEFAULT_DTYPE,
    ) -> None:
        super().__init__()
        self.dim = check_pos_int(dim, "dim")
        check_memory((2 * dim + 2) ** 2, "dim", what="the (2d+2, 2d+2) matrices V and W")
        c = check_real(c, "c")
        if c == 0:
            raise ValueError("`c` must be non-zero: with W24 = 0 the layer ignores the labels")
        a = c if a is None else check_real(a, "a")
        init_scale = check_real(init_scale, "init_scale")
        dtype, device = check_dtype(dtype), check_device(device)
        g = make_generator(seed)
        v31 = init_scale * torch.randn(dim, dim, generator=g, dtype=torch.float64)
        self.v31 = nn.Parameter(v31.to(device=device, dtype=dtype))
        self.register_buffer("c", torch.tensor(float(c), device=device, dtype=dtype))
        self.register_buffer("a", torch.tensor(float(a), device=device, dtype=dtype))
        if not bool(torch.isfinite(self.v31).all()):
            raise ValueError(f"`init_scale`={init_scale:g} overflows {dtype}; use a smaller scale")

    @classmethod
    def from_theory(cls, train_cov: Any, context_len: int, c: float = 1.0) -> StructuredLSA:
        """The closed-form trained model of Theorem 3.1: ``V31 = −Γ⁻¹ / c``."""
        c = check_real(c, "c")
        if c == 0:
            raise ValueError("`c` must be non-zero: V31 = −Γ⁻¹ / c")
        G = lsa_precond(train_cov, context_len)
        model = cls(G.shape[0], c=c, device=G.device, dtype=G.dtype)
        with torch.no_grad():
            model.v31.copy_(-G / c)
        return model

    def predict(self, prompts: Prompts, w0: torch.Tensor | None = None) -> torch.Tensor:
        """One forward pass: ŵ1, shape (batch, d).

        From ``ŵ0 = 0`` (``w0=None``) this is the closed form ``ŵ1 = −(c/N) V31 Xᵀy``
        (the last column of ``f(Z0)``, without building the embedding or its Gram
        matrix); the same numbers and gradients as the generic path, which any other
        ``w0`` takes.
        """
        if w0 is not None:
            return super().predict(prompts, w0)
        self._check_prompts(prompts)
        xty = (prompts.X.transpose(1, 2) @ prompts.y.unsqueeze(-1)).squeeze(-1)  # (batch, d)
        return -(self.c / prompts.context_len) * (xty @ self.v31.T)

    @property
    def precond(self) -> torch.Tensor:
        """The learned preconditioner ``G = −c·V31`` (equals Γ⁻¹ at the optimum)."""
        return -self.c * self.v31

    @property
    def V(self) -> torch.Tensor:
        d = self.dim
        V = self.v31.new_zeros(2 * d + 2, 2 * d + 2)
        V[token_slots(d).w, :d] = self.v31
        return V

    @property
    def W(self) -> torch.Tensor:
        d = self.dim
        W = self.v31.new_zeros(2 * d + 2, 2 * d + 2)
        W[:d, token_slots(d).w] = self.a * torch.eye(d, dtype=W.dtype, device=W.device)
        W[d, 2 * d + 1] = -self.c
        return W


class FullLSA(LinearSelfAttention):
    """LSA with free ``V, W ∈ R^{(2d+2)×(2d+2)}``, initialised ``init_std · N(0, 1)``.

    Defined in Chapter 3.
    """

    def __init__(
        self,
        dim: int,
        init_std: float = 0.01,
        seed: int = 0,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = DEFAULT_DTYPE,
    ) -> None:
        super().__init__()
        self.dim = check_pos_int(dim, "dim")
        D = 2 * dim + 2
        check_memory(2 * D * D, "dim", what="the (2d+2, 2d+2) matrices V and W")
        init_std = check_real(init_std, "init_std", minimum=0.0)
        dtype, device = check_dtype(dtype), check_device(device)
        g = make_generator(seed)
        self.v = nn.Parameter((init_std * torch.randn(D, D, generator=g, dtype=torch.float64)).to(device, dtype))
        self.w = nn.Parameter((init_std * torch.randn(D, D, generator=g, dtype=torch.float64)).to(device, dtype))

    @property
    def V(self) -> torch.Tensor:
        return self.v

    @property
    def W(self) -> torch.Tensor:
        return self.w
