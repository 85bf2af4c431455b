"""In-context weight prediction prompts.

A prompt holds ``n`` examples ``x_i ~ N(0, Λ)`` with labels ``y_i = <w, x_i> (+ noise)``
for one task vector ``w ~ N(0, I_d)``; the model must output ``w`` itself.
Sampling always happens on the CPU in float64 with a CPU generator and the result is
then moved, so the same seed gives the same prompts on the CPU and on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ._checks import (
    as_tensor,
    check_cov,
    check_device,
    check_dtype,
    check_memory,
    check_pos_int,
    check_real,
    make_generator,
)


@dataclass(frozen=True)
class TokenSlots:
    """Where the four blocks of a ``2d + 2``-row token live (Chapter 1's embedding, shared by
    the LSA and the GPT-2): ``x`` (rows ``0..d−1``), the label ``y`` (row ``d``), the estimate
    ``w`` (rows ``d+1..2d``) and the query ``flag`` (row ``2d+1``). The GPT-2's token layouts
    (:class:`tts_lib.gpt2.TokenLayout`) arrange tokens with these blocks.

    Defined in Chapter 1.
    """

    x: slice
    y: int
    w: slice
    flag: int
    size: int


def token_slots(dim: int) -> TokenSlots:
    """The :class:`TokenSlots` of dimension ``d`` (e.g. ``Z[:, token_slots(d).w]`` is the
    estimate block of every token). Defined in Chapter 1."""
    d = check_pos_int(dim, "dim")
    return TokenSlots(x=slice(0, d), y=d, w=slice(d + 1, 2 * d + 1), flag=2 * d + 1, size=2 * d + 2)


@dataclass
class Prompts:
    """A batch of prompts. ``X``: (batch, n, d), ``y``: (batch, n), ``w``: (batch, d).

    Defined in Chapter 1.
    """

    X: torch.Tensor
    y: torch.Tensor
    w: torch.Tensor

    @property
    def batch(self) -> int:
        return self.X.shape[0]

    @property
    def context_len(self) -> int:
        return self.X.shape[1]

    @property
    def dim(self) -> int:
        return self.X.shape[2]

    def emp_cov(self) -> torch.Tensor:
        """Empirical covariance ``Ŝ = Xᵀ X / n`` of each prompt, shape (batch, d, d)."""
        return self.X.transpose(1, 2) @ self.X / self.context_len

    def emp_corr(self) -> torch.Tensor:
        """Feature-label moment ``b = Xᵀ y / n`` (equals ``Ŝ w`` without noise), shape (batch, d)."""
        return (self.X.transpose(1, 2) @ self.y.unsqueeze(-1)).squeeze(-1) / self.context_len

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Prompts:
        """A copy on another device and/or dtype."""
        device = check_device(device)
        dtype = None if dtype is None else check_dtype(dtype)
        return Prompts(*(t.to(device=device, dtype=dtype) for t in (self.X, self.y, self.w)))


def cov_sqrt(cov: torch.Tensor) -> torch.Tensor:
    """Symmetric PSD square root (works for singular covariances).

    Defined in Chapter 1.
    """
    return _cov_sqrt(check_cov(cov, "cov"))


def _cov_sqrt(cov: torch.Tensor) -> torch.Tensor:
    eigvals, eigvecs = torch.linalg.eigh(cov)
    return (eigvecs * eigvals.clamp_min(0.0).sqrt()) @ eigvecs.T


def sample_prompts(
    cov: Any,
    context_len: int,
    batch: int,
    *,
    seed: int | torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    noise_std: float = 0.0,
    w: torch.Tensor | None = None,
) -> Prompts:
    """Draw ``batch`` prompts of ``context_len`` examples with feature covariance ``cov``.

    Args:
        cov: (d, d) feature covariance Λ (symmetric PSD).
        context_len: examples per prompt, ``n >= 1``.
        batch: number of prompts.
        seed: an int seed, or a CPU ``torch.Generator`` to continue its stream (fresh
            randomness when None).
        device, dtype: where the result goes (default: ``cov``'s device, float64 if
            ``cov`` is not a floating tensor).
        noise_std: label noise standard deviation.
        w: optional (batch, d) task vectors to use instead of drawing ``w ~ N(0, I)``.

    Returns:
        :class:`Prompts` with ``X`` (batch, n, d), ``y`` (batch, n), ``w`` (batch, d).

    Defined in Chapter 1.
    """
    cov_t = check_cov(cov, "cov")
    context_len = check_pos_int(context_len, "context_len")
    batch = check_pos_int(batch, "batch")
    noise_std = check_real(noise_std, "noise_std", minimum=0.0, maximum=1e100)
    device = cov_t.device if device is None else check_device(device)
    dtype = cov_t.dtype if dtype is None else check_dtype(dtype)
    dim = cov_t.shape[0]
    check_memory(batch * context_len * dim, "batch" if batch >= context_len else "context_len",
                 what=f"X of shape ({batch}, {context_len}, {dim})")
    g = make_generator(seed, "seed")
    w_cpu = None
    if w is not None:
        w_cpu = as_tensor(w, "w", device="cpu", dtype=torch.float64).detach()
        if w_cpu.shape != (batch, dim):
            raise ValueError(f"`w` must have shape ({batch}, {dim}), got {tuple(w_cpu.shape)}")
    root = _cov_sqrt(cov_t.detach().to("cpu", torch.float64))
    return _draw_prompts(root, context_len, batch, g, device, dtype, noise_std, w_cpu)


class PromptSampler:
    """Draws batches of prompts of one covariance, step after step, from one CPU generator.

    The covariance is checked and its square root taken once, at construction (per leading
    block under a curriculum: ``draw(..., dim=d')`` uses ``Λ[:d', :d']``); each
    :meth:`draw` then costs only the random draws. Samplers of a task mixture share one
    stream by passing the same generator as ``seed``. ``PromptSampler(cov, seed=s).draw(n, b)``
    equals ``sample_prompts(cov, n, b, seed=s)``.

    Args:
        cov: (d, d) feature covariance Λ (symmetric PSD).
        seed: an int seed, or a CPU ``torch.Generator`` to continue (fresh when None).
        device, dtype: where the prompts go (default: ``cov``'s device and dtype).

    Defined in Chapter 3.
    """

    def __init__(
        self,
        cov: Any,
        *,
        seed: int | torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        cov_t = check_cov(cov, "cov")
        self.device = cov_t.device if device is None else check_device(device)
        self.dtype = cov_t.dtype if dtype is None else check_dtype(dtype)
        self.generator = make_generator(seed, "seed")
        self.cov = cov_t.detach().to("cpu", torch.float64)
        self.dim = self.cov.shape[0]
        self._roots: dict[int, torch.Tensor] = {}

    def root(self, dim: int | None = None) -> torch.Tensor:
        """The CPU float64 square root of the leading (dim, dim) block of Λ (computed once)."""
        d = self.dim if dim is None else check_pos_int(dim, "dim", maximum=self.dim)
        if d not in self._roots:
            self._roots[d] = _cov_sqrt(self.cov[:d, :d])
        return self._roots[d]

    def draw(self, context_len: int, batch: int, *, noise_std: float = 0.0, dim: int | None = None) -> Prompts:
        """The next ``batch`` prompts of ``context_len`` examples (label noise ``noise_std``),
        in the leading ``dim`` coordinates (all when None): :class:`Prompts` (batch, n, dim)."""
        context_len = check_pos_int(context_len, "context_len")
        batch = check_pos_int(batch, "batch")
        noise_std = check_real(noise_std, "noise_std", minimum=0.0, maximum=1e100)
        root = self.root(dim)
        check_memory(batch * context_len * root.shape[0], "batch" if batch >= context_len else "context_len",
                     what=f"X of shape ({batch}, {context_len}, {root.shape[0]})")
        return _draw_prompts(root, context_len, batch, self.generator, self.device, self.dtype, noise_std)


def _draw_prompts(
    root: torch.Tensor,
    context_len: int,
    batch: int,
    g: torch.Generator,
    device: torch.device | None,
    dtype: torch.dtype,
    noise_std: float = 0.0,
    w_cpu: torch.Tensor | None = None,
) -> Prompts:
    """The unchecked kernel of :func:`sample_prompts` and :meth:`PromptSampler.draw`:
    ``root`` is the CPU float64 square root of Λ (``_cov_sqrt``)."""
    dim = root.shape[0]
    if w_cpu is None:
        w_cpu = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    X = torch.randn(batch, context_len, dim, generator=g, dtype=torch.float64) @ root
    y = (X @ w_cpu.unsqueeze(-1)).squeeze(-1)
    if noise_std > 0:
        y = y + noise_std * torch.randn(batch, context_len, generator=g, dtype=torch.float64)
    return Prompts(X, y, w_cpu).to(device=device, dtype=dtype)
