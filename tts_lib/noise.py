"""Label noise, ``y = <w, x> + ε`` with ``ε ~ N(0, σ²)``: bias, noise term and early stopping.

On a test prompt with labels ``y = Xw + ε`` the CoT iteration
``ŵ_{i+1} = ŵ_i − G (Ŝ ŵ_i − b)``, ``b = Xᵀy/m``, has the error (``M̂ = I − GŜ``)

    ŵ_k − w = −M̂^k w + A_k ξ,   A_k = Σ_{j<k} M̂^j G,   ξ = Xᵀε/m,

so, with ``w ~ N(0, I)`` and ``ξ | X ~ N(0, σ² Ŝ/m)`` independent of ``w``,

    Err(k) = E‖M̂^k‖_F²  (bias)  +  (σ²/m) E tr(A_k Ŝ A_kᵀ)  (noise).

When ``M̂^k → 0`` the noise term tends to ``(σ²/m) E tr Ŝ⁻¹ = σ² tr(Σ⁻¹)/(m − d − 1)``,
the variance of the test prompt's least-squares solution (inverse-Wishart mean): the
iteration converges to least squares and inherits its noise. The bias falls with k, the
noise term rises: overthinking caused by noise, even when ``Σ = Λ``.

Noise in the *training* labels shifts the trained parameter like a ridge:
``c·V31 = −(Γ + σ²/n · I)⁻¹`` (:func:`noisy_precond`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ._checks import (
    MAX_STEPS,
    as_tensor,
    check_cov,
    check_finite_curve,
    check_memory,
    check_pos_int,
    check_positive,
    check_precond,
    check_real,
    make_generator,
)
from .prompts import sample_prompts
from .tasks import MISSING_TOL
from .theory import error_curve, gamma

#: largest label-noise standard deviation accepted (σ² and its products stay finite in float64)
MAX_NOISE_STD = 1e100


def _sigma(noise_std: Any, name: str = "noise_std") -> float:
    """``noise_std`` as a float in ``[0, MAX_NOISE_STD]`` (bool, None, strings, NaN, inf refused)."""
    return check_real(noise_std, name, minimum=0.0, maximum=MAX_NOISE_STD)


def _steps(max_steps: Any, name: str = "max_steps") -> int:
    return check_pos_int(max_steps, name, minimum=0, maximum=MAX_STEPS)


def _eigvals(value: Any, name: str, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A 1-D spectrum with entries of size at most ``finfo.max**0.25`` (products stay finite)."""
    t = as_tensor(value, name, dtype=dtype)
    if t.ndim != 1 or t.shape[0] < 1:
        raise ValueError(f"`{name}` must be 1-D with at least one entry, got shape {tuple(t.shape)}")
    big = torch.finfo(t.dtype).max ** 0.25
    if float(t.abs().max()) > big:
        raise ValueError(f"`{name}` has entries up to {float(t.abs().max()):.3g}, beyond {big:.1e}; rescale them")
    return t


def noisy_precond(train_cov: Any, context_len: int, noise_std: float) -> torch.Tensor:
    """Trained preconditioner under noisy training labels: ``(Γ + σ²/n · I)⁻¹``, shape (d, d).

    With ``ŵ1 = G b``, ``b = Xᵀy/n``: ``E[w bᵀ] = Λ`` and ``E[b bᵀ] = ΛΓ + σ²Λ/n``, so the
    minimiser of ``½E‖Gb − w‖²`` is ``Λ(ΛΓ + σ²Λ/n)⁻¹ = (Γ + σ²/n I)⁻¹`` (``Λ ≻ 0``): the
    noise variance adds to ``tr Λ`` in the ridge term.

    Defined in Chapter 8.
    """
    s = _sigma(noise_std)
    g = gamma(train_cov, context_len)
    n = check_pos_int(context_len, "context_len")
    eye = torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
    ridge = g + s**2 / n * eye
    top = float(ridge.abs().max())
    if top == 0 or float(torch.linalg.eigvalsh(ridge.double()).min()) <= MISSING_TOL * top:
        raise ValueError("`train_cov` is zero and `noise_std` = 0: Γ + σ²/n·I is singular, so the trained "
                         "preconditioner (Γ + σ²/n·I)⁻¹ does not exist; pass a non-zero `train_cov` or `noise_std` > 0")
    return torch.linalg.inv(ridge)


def ls_noise_limit(test_cov: Any, test_len: int, noise_std: float) -> float:
    """Large-k limit of the noise term: ``σ² tr(Σ⁻¹)/(m − d − 1)`` (needs ``m > d + 1``, ``Σ ≻ 0``).

    Defined in Chapter 8.
    """
    sig = check_cov(test_cov, "test_cov")
    d = sig.shape[0]
    m = check_pos_int(test_len, "test_len")
    s = _sigma(noise_std)
    if float(torch.linalg.eigvalsh(sig.double()).min()) <= MISSING_TOL * float(sig.abs().max()):
        raise ValueError("`test_cov` must be positive definite: tr(Σ⁻¹) is infinite for a singular Σ")
    if m <= d + 1:
        raise ValueError(f"`test_len` must exceed d + 1 = {d + 1} for a finite least-squares variance, got {m}")
    return s**2 * float(torch.trace(torch.linalg.inv(sig))) / (m - d - 1)


def _a_matrices(G: torch.Tensor, sig: torch.Tensor, K: int) -> list[torch.Tensor]:
    """``A_k = Σ_{j<k} M^j G`` for k = 0..K with ``M = I − GΣ`` (batched over leading dims)."""
    eye = torch.eye(sig.shape[-1], dtype=sig.dtype, device=sig.device)
    M = eye - G @ sig
    A, P, out = torch.zeros_like(M), eye.expand_as(M), []
    for _ in range(K + 1):
        out.append(A)
        A = A + P @ G
        P = P @ M
    return out


def noise_term_curve(
    precond: Any, test_cov: Any, max_steps: int, test_len: int, noise_std: float
) -> torch.Tensor:
    """Noise term to first order in ``1/m``: ``(σ²/m) tr(A_k Σ A_kᵀ)``, ``A_k = Σ_{j<k} (I − GΣ)^j G``.

    Exact for ``k <= 1``. For commuting ``G``, ``Σ`` it is ``(σ²/m) Σ_i (1 − ρ_i^k)²/σ_i``
    with ``ρ_i = 1 − g_i σ_i``; its large-k limit ``σ² tr Σ⁻¹/m`` misses the exact
    ``σ² tr Σ⁻¹/(m − d − 1)`` by the factor ``m/(m − d − 1)``. Shape (..., max_steps + 1).

    Defined in Chapter 8.
    """
    G, sig = check_precond(precond, test_cov)
    K = _steps(max_steps)
    m = check_pos_int(test_len, "test_len")
    s = _sigma(noise_std)
    d = sig.shape[0]
    check_memory(3 * G[..., 0, 0].numel() * (K + 1) * d * d, "max_steps", what=f"{K + 1} matrices A_k")
    eye = torch.eye(d, dtype=sig.dtype, device=sig.device)
    rho = float(torch.linalg.eigvals((eye - G @ sig).double()).abs().max()) if G.numel() else 0.0
    if rho > 1 and K > 0 and K * math.log(rho) > 0.9 * math.log(torch.finfo(sig.dtype).max) / 2:
        raise ValueError(f"`max_steps`={K} overflows: the spectral radius of I − GΣ is {rho:.3g} > 1, so the "
                         f"noise term grows like ρ^(2k) beyond {sig.dtype}; lower `max_steps`, or scale `precond` "
                         "or `test_cov` down")
    A = torch.stack(_a_matrices(G, sig, K), dim=-3)  # (..., K+1, d, d)
    out = s**2 / m * torch.einsum("...ij,jl,...il->...", A, sig, A)
    return check_finite_curve(out, "max_steps", what="the noise term",
                              fix=f"scale `precond` down (spectral radius of I − GΣ {rho:.3g})")


def noisy_error_curve(
    precond: Any, test_cov: Any, max_steps: int, test_len: int, noise_std: float
) -> torch.Tensor:
    """Bias (first order in 1/m, :func:`theory.error_curve`) plus :func:`noise_term_curve`.

    Exact for ``k <= 1``; trust it only where Monte Carlo (:func:`conditional_error_curves`)
    says so (small k, m much larger than d). Shape (..., max_steps + 1).

    Defined in Chapter 8.
    """
    _sigma(noise_std)
    bias = error_curve(precond, test_cov, max_steps, test_len)
    return bias + noise_term_curve(precond, test_cov, max_steps, test_len, noise_std)


def conditional_error_curves(
    precond: Any,
    test_cov: Any,
    test_len: int,
    max_steps: int,
    noise_std: float,
    num_prompts: int,
    *,
    seed: int = 0,
    chunk: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo over test features only: bias and noise term *given* ``X``, exact in ``w``, ``ε``.

    For each of ``num_prompts`` draws of ``X`` (``m = test_len`` rows from ``N(0, Σ)``)
    returns ``‖M̂^k‖_F²`` and ``(σ²/m) tr(A_k Ŝ A_kᵀ)`` for k = 0..max_steps: the
    conditional expectations over ``w ~ N(0, I)`` and the label noise (a Rao–Blackwellised
    estimator, lower variance than simulating labels). Returns two tensors of shape
    (num_prompts, max_steps + 1); their column means estimate the two terms of Err(k).

    Defined in Chapter 8.
    """
    G, sig = check_precond(precond, test_cov)
    if G.ndim != 2:
        raise ValueError("`precond` must be a single (d, d) matrix for Monte Carlo")
    m = check_pos_int(test_len, "test_len")
    K = _steps(max_steps)
    num_prompts = check_pos_int(num_prompts, "num_prompts")
    chunk = check_pos_int(chunk, "chunk")
    s = _sigma(noise_std)
    gen = make_generator(check_pos_int(seed, "seed", minimum=0))
    d = sig.shape[0]
    check_memory(2 * num_prompts * (K + 1), "num_prompts", what=f"two ({num_prompts}, {K + 1}) results")
    check_memory(min(chunk, num_prompts) * (m + 1) * d, "test_len", what="one chunk of test prompts")
    check_memory(4 * min(chunk, num_prompts) * (K + 1) * 2, "max_steps", what="one chunk of curves")
    eye = torch.eye(d, dtype=sig.dtype, device=sig.device)
    bias_out, noise_out = [], []
    for start in range(0, num_prompts, chunk):
        b = min(chunk, num_prompts - start)
        S = sample_prompts(sig, m, b, seed=gen, dtype=sig.dtype).emp_cov()
        M = eye - G @ S
        P, A = eye.expand_as(M), torch.zeros_like(M)
        bias, noise = [], []
        for _ in range(K + 1):
            bias.append((P * P).sum((-1, -2)))
            noise.append(s**2 / m * torch.einsum("bij,bjl,bil->b", A, S, A))
            A = A + P @ G
            P = P @ M
        bias_out.append(torch.stack(bias, -1))
        noise_out.append(torch.stack(noise, -1))
    return torch.cat(bias_out), torch.cat(noise_out)


# --------------------------------------------------------------------------- commuting closed forms


def skill_noise_curves(
    precond_eigvals: Any, test_eigvals: Any, max_steps: int, test_len: int, noise_std: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-skill bias ``ρ_i^{2k}`` and first-order noise ``(σ²/m)(1 − ρ_i^k)²/σ_i``, ``ρ_i = 1 − g_i σ_i``.

    For commuting ``G`` and ``Σ`` with eigenvalues ``g_i``, ``σ_i`` in a shared basis
    (bias in the population limit ``m → ∞``). Returns two tensors of shape
    (max_steps + 1, d); sum over the last axis for the error curve.

    Defined in Chapter 8.
    """
    g = _eigvals(precond_eigvals, "precond_eigvals")
    sv = _eigvals(test_eigvals, "test_eigvals", dtype=g.dtype)
    if sv.shape != g.shape:
        raise ValueError("`precond_eigvals` and `test_eigvals` must be 1-D of the same length")
    if (sv <= 0).any():
        raise ValueError("`test_eigvals` must be > 0 (the noise term divides by σ_i)")
    K = _steps(max_steps)
    m = check_pos_int(test_len, "test_len")
    s = _sigma(noise_std)
    check_memory(4 * (K + 1) * g.shape[0], "max_steps", what=f"({K + 1}, {g.shape[0]}) curves")
    if float((1 - g * sv).abs().max()) > 1 and K > 0:
        rho_max = float((1 - g * sv).abs().max())
        if K * math.log(rho_max) > 0.9 * math.log(torch.finfo(g.dtype).max) / 2:
            raise ValueError(f"`max_steps`={K} overflows: |ρ_i| reaches {rho_max:.3g} > 1 and ρ^(2k) exceeds "
                             f"{g.dtype}; lower `max_steps`, `precond_eigvals` or `test_eigvals`")
    rho = 1 - g * sv
    k = torch.arange(K + 1, dtype=g.dtype)[:, None]
    pk = rho[None, :] ** k
    fix = "lower `precond_eigvals` (|1 − g_i σ_i| > 1 diverges)"
    bias = check_finite_curve(pk**2, "max_steps", what="the per-skill bias", fix=fix, step_axis=0)
    noise = check_finite_curve(s**2 / m * (1 - pk) ** 2 / sv[None, :], "max_steps", what="the per-skill noise term",
                               fix=fix + " or raise `test_eigvals` above tiny values", step_axis=0)
    return bias, noise


def best_steps_one_skill(rho: float, tau: float) -> tuple[float, int]:
    """Minimiser of ``ρ^{2k} + τ (1 − ρ^k)²`` over k >= 0 for ``0 < ρ < 1``, ``τ > 0``.

    With ``u = ρ^k`` the error is ``u² + τ(1 − u)²``, smallest at ``u = τ/(1 + τ)``, so the
    continuous optimum is ``k° = ln(1 + 1/τ) / ln(1/ρ)``; the integer ``k*`` is ``⌊k°⌋`` or
    ``⌈k°⌉``, whichever is lower. Here ``τ = σ²/(m σ_i)``: noise-to-signal per example.
    Returns ``(k°, k*)``.

    Defined in Chapter 8.
    """
    rho, tau = check_real(rho, "rho"), check_positive(tau, "tau")
    if not 0 < rho < 1:
        raise ValueError(f"`rho` must be in (0, 1) (a contracting skill), got {rho!r}")
    k_cont = (math.log1p(tau) - math.log(tau)) / -math.log(rho)  # ln(1 + 1/τ), no overflow for tiny τ

    def err(k: int) -> float:
        u = rho**k
        return u * u + tau * (1 - u) ** 2

    lo = math.floor(k_cont)
    return k_cont, lo if err(lo) <= err(lo + 1) else lo + 1


# --------------------------------------------------------------------------- isotropic, finite m


def marchenko_pastur_nodes(ratio: float, num_nodes: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Quadrature nodes and weights for the Marchenko–Pastur law of ratio ``q = d/m < 1``.

    The law of an eigenvalue of ``Ŝ = XᵀX/m`` (``x ~ N(0, I_d)``) as ``d, m → ∞`` with
    ``d/m → q``: density ``√((s₊ − s)(s − s₋)) / (2π q s)`` on ``[(1 − √q)², (1 + √q)²]``.
    With ``s = 1 + q + 2√q cos θ`` the integrand is smooth in θ and the midpoint rule on
    ``θ ∈ (0, π)`` converges fast. Returns ``(s, weights)``, each of shape (num_nodes,).

    Defined in Chapter 8.
    """
    q = check_real(ratio, "ratio")
    if not 0 < q < 1:
        raise ValueError(f"`ratio` = d/m must be in (0, 1) (more test examples than dimensions), got {q!r}")
    num_nodes = check_pos_int(num_nodes, "num_nodes", minimum=16)
    check_memory(4 * num_nodes, "num_nodes", what=f"{num_nodes} quadrature nodes")
    theta = (torch.arange(num_nodes, dtype=torch.float64) + 0.5) * math.pi / num_nodes
    r = 2 * math.sqrt(q)
    s = 1 + q + r * torch.cos(theta)
    wts = r**2 * torch.sin(theta) ** 2 / (2 * math.pi * q * s) * (math.pi / num_nodes)
    return s, wts


def isotropic_error_curves(
    step: float, dim: int, test_len: int, max_steps: int, noise_std: float, num_nodes: int = 2048
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bias and noise term for ``G = g·I``, ``Σ = I`` at finite m, from the Marchenko–Pastur law.

    With ``G = gI`` everything diagonalises in the eigenbasis of ``Ŝ``; given its
    eigenvalues ``s_j`` the error is exactly
    ``Σ_j (1 − g s_j)^{2k} + (σ²/(m s_j)) (1 − (1 − g s_j)^k)²``. Averaging ``s_j`` over the
    Marchenko–Pastur law of ``q = d/m`` is the proportional limit (d, m → ∞ together);
    at k → ∞ the noise term tends to ``σ² d/(m − d)`` against the exact finite-d
    ``σ² d/(m − d − 1)``. Returns two tensors of shape (max_steps + 1,).

    Defined in Chapter 8.
    """
    d = check_pos_int(dim, "dim")
    m = check_pos_int(test_len, "test_len")
    K = _steps(max_steps)
    sd = _sigma(noise_std)
    g = check_positive(step, "step")
    if d >= m:
        raise ValueError(f"`dim` must be below `test_len` (the Marchenko–Pastur ratio d/m < 1), got d={d}, m={m}")
    nodes = check_pos_int(num_nodes, "num_nodes", minimum=16)
    check_memory(3 * (K + 1) * nodes, "num_nodes" if nodes > K + 1 else "max_steps", what=f"({K + 1}, {nodes}) powers")
    if abs(1 - g * (1 + math.sqrt(d / m)) ** 2) > 1 and K > 0:
        rho_max = max(abs(1 - g * (1 + math.sqrt(d / m)) ** 2), abs(1 - g * (1 - math.sqrt(d / m)) ** 2))
        if K * math.log(rho_max) > 300:
            raise ValueError(f"`step`={g:g} diverges (|1 − g s| up to {rho_max:.3g}) and overflows float64 "
                             f"within `max_steps`={K}; lower `step` or `max_steps`")
    s, wts = marchenko_pastur_nodes(d / m, num_nodes)
    k = torch.arange(K + 1, dtype=torch.float64)[:, None]
    pk = (1 - g * s)[None, :] ** k
    fix = "lower `step` (|1 − g s| > 1 diverges)"
    bias = check_finite_curve(d * (pk**2 * wts).sum(-1), "max_steps", what="the bias", fix=fix)
    noise = check_finite_curve(d * sd**2 / m * ((1 - pk) ** 2 / s * wts).sum(-1), "max_steps",
                               what="the noise term", fix=fix)
    return bias, noise
