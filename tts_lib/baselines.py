"""Classical estimators of ``w`` from one prompt, and their exact expected errors.

The trained one-step LSA computes ``ŵ1 = Γ⁻¹ Ŝ w`` (Theorem 3.1). To judge it we compare
with two classical estimators that see the same prompt ``(X, y)``:

* **least squares** — ``argmin_v ‖X v − y‖²/n + ridge·‖v‖²``. With ``ridge = 0`` it is the
  ordinary solution when ``n ≥ d`` and the *minimum-norm* solution when ``n < d``. In the
  noiseless setting the minimum-norm solution is the posterior mean ``E[w | X, y]`` (the
  Bayes-optimal estimator for ``w ~ N(0, I)``); with label noise ``σ`` the posterior mean
  is ridge with ``ridge = σ²/n``.
* **one preconditioned gradient step** from ``ŵ0`` on the least-squares loss
  ``½‖X v − y‖²/n``: ``ŵ = ŵ0 + G Xᵀ(y − X ŵ0)/n``. ``G = η·I`` is plain gradient descent
  with step ``η``; ``G = Γ⁻¹`` is the trained LSA.

Closed forms (``w ~ N(0, I)``, ``x ~ N(0, Σ)``, ``m`` examples, label noise ``σ``, ``ŵ0 = 0``):

* one step: ``E[(ŵ − w)(ŵ − w)ᵀ] = I − GΣ − ΣGᵀ + G (E[Ŝ²] + σ²Σ/m) Gᵀ`` with
  ``E[Ŝ²] = (1 + 1/m) Σ² + tr(Σ)/m · Σ``; its trace is the error, its diagonal in the
  skill basis the per-skill error. ``m → ∞`` leaves ``‖I − GΣ‖_F²``.
* best scalar step: ``η* = tr Σ / (tr E[Ŝ²] + σ² tr Σ / m)``.
* least squares (``ridge = 0``): noiseless ``d − min(m, rank Σ)``; with noise and
  ``m > d + 1`` (``Σ ≻ 0``): ``σ² tr(Σ⁻¹)/(m − d − 1)`` (mean of an inverse Wishart).
"""

from __future__ import annotations

from typing import Any

import torch

from ._checks import InputTypeError, as_tensor, check_cov, check_pos_int, check_precond, check_real
from .prompts import Prompts
from .theory import moment_sas

__all__ = [
    "best_step_size",
    "gd_step",
    "least_squares",
    "least_squares_error",
    "one_step_error",
    "one_step_error_matrix",
    "precond_step",
]


def _check_noise(noise_std: Any) -> float:
    return check_real(noise_std, "noise_std", minimum=0.0, maximum=1e100)


def _check_prompts(prompts: Any) -> Prompts:
    if not isinstance(prompts, Prompts):
        raise InputTypeError(f"`prompts` must be a tts_lib.prompts.Prompts, got {type(prompts).__name__}")
    if not (bool(torch.isfinite(prompts.X).all()) and bool(torch.isfinite(prompts.y).all())):
        raise ValueError("`prompts` contain NaN or inf features or labels; pass finite prompts")
    return prompts


def _check_w0(w0: torch.Tensor | None, prompts: Prompts) -> torch.Tensor:
    shape = (prompts.batch, prompts.dim)
    if w0 is None:
        return prompts.X.new_zeros(shape)
    w0 = as_tensor(w0, "w0", device=prompts.X.device, dtype=prompts.X.dtype)
    if w0.shape != shape:
        raise ValueError(f"`w0` must have shape {shape}, got {tuple(w0.shape)}")
    return w0


# --------------------------------------------------------------------------- estimators


def least_squares(prompts: Prompts, ridge: float = 0.0) -> torch.Tensor:
    """Least-squares estimate of ``w`` per prompt, shape (batch, d).

    Solves ``min_v ‖X v − y‖²/n + ridge·‖v‖²``. ``ridge = 0`` gives the ordinary solution
    for ``n ≥ d`` (full-rank ``X``) and the minimum-norm solution ``X⁺ y`` otherwise;
    ``ridge > 0`` gives ``(Ŝ + ridge·I)⁻¹ Xᵀy/n``.

    Args:
        prompts: :class:`~tts_lib.prompts.Prompts` with ``X`` (batch, n, d), ``y`` (batch, n).
        ridge: penalty on the ``Ŝ`` scale (``≥ 0``); the Bayes posterior mean under label
            noise ``σ`` is ``ridge = σ²/n``.

    Defined in Chapter 1.
    """
    pr = _check_prompts(prompts)
    r = check_real(ridge, "ridge", minimum=0.0)
    if r == 0:
        return (torch.linalg.pinv(pr.X) @ pr.y.unsqueeze(-1)).squeeze(-1)
    eye = torch.eye(pr.dim, dtype=pr.X.dtype, device=pr.X.device)
    return torch.linalg.solve(pr.emp_cov() + r * eye, pr.emp_corr())


def precond_step(prompts: Prompts, precond: Any, w0: torch.Tensor | None = None) -> torch.Tensor:
    """One preconditioned gradient step ``ŵ = ŵ0 + G Xᵀ(y − X ŵ0)/n`` per prompt, (batch, d).

    ``G = Γ⁻¹`` (``theory.lsa_precond``) reproduces the trained LSA's forward pass.

    Args:
        prompts: the prompts (``X`` (batch, n, d), ``y`` (batch, n)).
        precond: ``G``, shape (d, d).
        w0: start estimates (batch, d); zeros when None.

    Defined in Chapter 1.
    """
    pr = _check_prompts(prompts)
    G = as_tensor(precond, "precond", device=pr.X.device, dtype=pr.X.dtype)
    if G.shape != (pr.dim, pr.dim):
        raise ValueError(f"`precond` must have shape ({pr.dim}, {pr.dim}), got {tuple(G.shape)}")
    w0 = _check_w0(w0, pr)
    resid = pr.y - (pr.X @ w0.unsqueeze(-1)).squeeze(-1)  # (batch, n)
    grad = (pr.X.transpose(1, 2) @ resid.unsqueeze(-1)).squeeze(-1) / pr.context_len  # Xᵀr/n
    return w0 + grad @ G.T


def gd_step(prompts: Prompts, step_size: float, w0: torch.Tensor | None = None) -> torch.Tensor:
    """One plain gradient step ``ŵ = ŵ0 + η Xᵀ(y − X ŵ0)/n`` per prompt, shape (batch, d).

    Defined in Chapter 1.
    """
    pr = _check_prompts(prompts)
    eta = as_tensor(step_size, "step_size", dtype=pr.X.dtype)
    if eta.ndim != 0:
        raise ValueError(f"`step_size` must be a number, got shape {tuple(eta.shape)}")
    eye = torch.eye(pr.dim, dtype=pr.X.dtype, device=pr.X.device)
    return precond_step(pr, float(eta) * eye, w0)


# --------------------------------------------------------------------------- closed forms


def one_step_error_matrix(
    precond: Any,
    cov: Any,
    test_len: int | None,
    noise_std: float = 0.0,
) -> torch.Tensor:
    """``E[(ŵ − w)(ŵ − w)ᵀ]`` for one step ``ŵ = G Xᵀy/m`` from 0, shape (..., d, d). Exact.

    ``w ~ N(0, I)``, ``x ~ N(0, Σ)``, ``y = Xw + σ ε``. Equals
    ``I − GΣ − ΣGᵀ + G (E[Ŝ²] + σ²Σ/m) Gᵀ`` with ``E[Ŝ²] = (1 + 1/m)Σ² + tr(Σ)/m · Σ``;
    ``test_len=None`` is the limit ``m → ∞``: ``(I − GΣ)(I − GΣ)ᵀ``.

    Args:
        precond: ``G``, shape (..., d, d) (leading dims batched).
        cov: test covariance ``Σ``, shape (d, d).
        test_len: test context length ``m`` or None.
        noise_std: label noise ``σ``.

    Defined in Chapter 1.
    """
    G, sig = check_precond(precond, cov, "cov")
    s = _check_noise(noise_std)
    eye = torch.eye(sig.shape[0], dtype=sig.dtype, device=sig.device)
    Gt = G.transpose(-1, -2)
    if test_len is None:
        M = eye - G @ sig
        return M @ M.transpose(-1, -2)
    m = check_pos_int(test_len, "test_len")
    second = moment_sas(sig, m, eye) + s**2 / m * sig  # E[b bᵀ] for b = Xᵀy/m, averaged over w
    return eye - G @ sig - sig @ Gt + G @ second @ Gt


def one_step_error(
    precond: Any,
    cov: Any,
    test_len: int | None,
    noise_std: float = 0.0,
) -> torch.Tensor | float:
    """Expected error ``E‖ŵ − w‖²`` of one step ``ŵ = G Xᵀy/m`` from 0 (trace of
    :func:`one_step_error_matrix`). A float for a single ``G``, a tensor (...) for a batch.

    Defined in Chapter 1.
    """
    err = torch.diagonal(one_step_error_matrix(precond, cov, test_len, noise_std), dim1=-2, dim2=-1).sum(-1)
    return float(err) if err.ndim == 0 else err


def best_step_size(cov: Any, test_len: int | None, noise_std: float = 0.0) -> float:
    """The step ``η*`` minimising the expected error of one plain gradient step from 0.

    ``η* = tr Σ / (tr E[Ŝ²] + σ² tr Σ / m)`` (``m = test_len``; None means ``m → ∞``,
    ``η* = tr Σ / tr Σ²``). The error is a quadratic in ``η``:
    ``d − 2η tr Σ + η² (tr E[Ŝ²] + σ² tr Σ / m)``.

    Defined in Chapter 1.
    """
    sig = check_cov(cov, "cov")
    s = _check_noise(noise_std)
    eye = torch.eye(sig.shape[0], dtype=sig.dtype, device=sig.device)
    tr = float(torch.trace(sig))
    if tr <= 0:
        raise ValueError("`cov` is zero: no step size helps")
    if test_len is None:
        return tr / float(torch.trace(sig @ sig))
    m = check_pos_int(test_len, "test_len")
    return tr / (float(torch.trace(moment_sas(sig, m, eye))) + s**2 * tr / m)


def least_squares_error(cov: Any, test_len: int, noise_std: float = 0.0) -> float:
    """Expected error ``E‖ŵ − w‖²`` of minimum-norm least squares (``ridge = 0``). Exact.

    * noiseless: ``d − min(m, rank Σ)`` (the projection of ``w`` on the span of the
      examples is recovered exactly, the rest is missed); this is the Bayes risk, so no
      estimator does better on average.
    * label noise ``σ > 0``, ``Σ ≻ 0``: ``σ² tr(Σ⁻¹)/(m − d − 1)`` for ``m > d + 1``, and
      ``inf`` for ``m ∈ {d, d + 1}`` (the inverse Wishart has no mean there). For
      ``m < d`` there is no closed form for general ``Σ``: raises ``ValueError`` (use
      Monte Carlo with :func:`least_squares`).

    Defined in Chapter 1.
    """
    sig = check_cov(cov, "cov").double()
    m = check_pos_int(test_len, "test_len")
    s = _check_noise(noise_std)
    ev = torch.linalg.eigvalsh(sig)
    d = ev.numel()
    rank = int((ev > 1e-12 * ev.abs().max().clamp_min(1e-300)).sum())
    if s == 0:
        return float(d - min(m, rank))
    if rank < d:
        raise ValueError("`cov` is singular: with label noise the closed form needs Σ ≻ 0; use Monte Carlo")
    if m < d:
        raise ValueError(
            f"`test_len`={m} < d={d} with label noise has no closed form for general Σ; "
            "use Monte Carlo with least_squares"
        )
    if m <= d + 1:
        return float("inf")
    return s**2 * float((1 / ev).sum()) / (m - d - 1)

