"""Closed forms for the trained LSA and its test-time chain of thought (CoT).

Notation (see the book's notation table): ``Λ`` training covariance, ``n`` training
context length, ``Σ`` test covariance, ``m`` test context length, ``k`` CoT steps.

* Trained parameter (Theorem 3.1): ``c·V31 = −Γ⁻¹`` with ``Γ = (1 + 1/n) Λ + tr(Λ)/n · I``.
* CoT is a pseudo-Newton iteration (Proposition 3.2): ``ŵ_{i+1} = ŵ_i − G Ŝ (ŵ_i − w)``
  with preconditioner ``G = Γ⁻¹``, so ``ŵ_k − w = −(I − G Ŝ)^k w`` and, for ``w ~ N(0, I)``,
  ``Err(k) = E ‖(I − G Ŝ)^k‖_F²``.

Most functions take the preconditioner route: :func:`error_curve` works for any ``G``
(one task, a task mixture, a model trained from zero on a singular ``Λ``), and the
named helpers (:func:`cot_error`, :func:`min_context_len`, ...) plug in ``G = Γ⁻¹``.
All computations are in float64 unless a dtype is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ._checks import (
    MAX_STEPS,
    as_tensor,
    check_context_lens,
    check_cov,
    check_covs,
    check_device,
    check_memory,
    check_pos_int,
    check_positive,
    check_precond,
    check_real,
    check_same_device,
    check_weights,
)
from .prompts import sample_prompts
from .tasks import hardness


def _n(context_len: Any, name: str = "context_len") -> int:
    return check_pos_int(context_len, name)


def _k(num_steps: Any, name: str = "num_steps") -> int:
    return check_pos_int(num_steps, name, minimum=0, maximum=MAX_STEPS)


def _covs(train_cov: Any, test_cov: Any) -> tuple[torch.Tensor, torch.Tensor]:
    lam = check_cov(train_cov, "train_cov")
    sig = check_cov(test_cov, "test_cov", dim=lam.shape[0], dtype=lam.dtype)
    check_same_device(train_cov=lam, test_cov=sig)
    return lam, sig


# --------------------------------------------------------------------------- trained parameter


def gamma(train_cov: Any, context_len: int) -> torch.Tensor:
    """``Γ = (1 + 1/n) Λ + tr(Λ)/n · I``, shape (d, d)."""
    lam = check_cov(train_cov, "train_cov")
    n = _n(context_len)
    eye = torch.eye(lam.shape[0], dtype=lam.dtype, device=lam.device)
    return (1 + 1 / n) * lam + torch.trace(lam) / n * eye


def lsa_precond(train_cov: Any, context_len: int) -> torch.Tensor:
    """The preconditioner ``Γ⁻¹`` of Theorem 3.1 (``c·V31 = −Γ⁻¹``), shape (d, d)."""
    g = gamma(train_cov, context_len)
    if torch.trace(g) <= 0:
        raise ValueError("`train_cov` is zero: no skill is trained, Γ is singular")
    return torch.linalg.inv(g)


def moment_sas(cov: Any, context_len: int, A: Any) -> torch.Tensor:
    """``E[S A S]`` for ``S = X Xᵀ/n``, ``x ~ N(0, Λ)``: ``ΛAΛ + (ΛAᵀΛ + tr(AΛ) Λ)/n``.

    For symmetric ``A`` this is ``(n+1)/n · ΛAΛ + tr(AΛ)/n · Λ``; ``A = I`` gives ``E[S²] = ΛΓ``.
    """
    lam = check_cov(cov, "cov")
    n = _n(context_len)
    a = as_tensor(A, "A", device=lam.device, dtype=lam.dtype)
    if a.shape != lam.shape:
        raise ValueError(f"`A` must have shape {tuple(lam.shape)}, got {tuple(a.shape)}")
    return lam @ a @ lam + (lam @ a.T @ lam + torch.trace(a @ lam) * lam) / n


def multitask_precond(
    train_covs: Sequence[Any],
    context_lens: Sequence[int],
    weights: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Preconditioner learned from a task mixture: ``G = P Q⁺`` (trained ``c·V31 = −G``).

    Task ``ℓ`` (covariance ``Λ_ℓ``, context length ``n_ℓ``) is drawn with probability
    ``π_ℓ``; ``P = Σ π_ℓ Λ_ℓ`` and ``Q = Σ π_ℓ Λ_ℓ Γ_ℓ``. ``Q⁺`` is the pseudo-inverse,
    which is the limit of gradient descent from zero: directions outside every
    ``Λ_ℓ``'s range get no gradient and stay at 0. ``weights`` may be batched,
    shape (..., L), giving ``G`` of shape (..., d, d).
    """
    lams = check_covs(train_covs, "train_covs")
    context_lens = check_context_lens(context_lens, len(lams))
    L = len(lams)
    if weights is None:
        pi = torch.full((L,), 1.0 / L, dtype=lams[0].dtype, device=lams[0].device)
    else:
        pi = check_weights(weights, L, lams[0])
    lam_stack = torch.stack(lams)  # (L, d, d)
    lg = torch.stack([lam @ gamma(lam, n) for lam, n in zip(lams, context_lens, strict=True)])
    P = torch.einsum("...l,lij->...ij", pi, lam_stack)
    Q = torch.einsum("...l,lij->...ij", pi, lg)
    Q = (Q + Q.transpose(-1, -2)) / 2
    return P @ torch.linalg.pinv(Q, hermitian=True, rtol=1e-10)


def trained_precond(train_cov: Any, context_len: int) -> torch.Tensor:
    """What gradient descent from zero learns on one task: ``Λ (ΛΓ)⁺``.

    Equals ``Γ⁻¹`` when ``Λ ≻ 0``; on a singular ``Λ`` it is 0 on the missing skills
    (no gradient reaches them), whereas ``Γ⁻¹`` puts the ridge value ``n/tr(Λ)`` there.
    """
    lam = check_cov(train_cov, "train_cov")
    return multitask_precond([lam], [_n(context_len)])


# --------------------------------------------------------------------------- error of CoT


def _fro2(a: torch.Tensor) -> torch.Tensor:
    return (a * a).sum((-1, -2))


def error_curve(
    precond: Any,
    test_cov: Any,
    max_steps: int,
    test_len: int | None = None,
) -> torch.Tensor:
    """Expected error ``E‖ŵ_k − w‖²`` for ``k = 0 … max_steps`` of ``ŵ_{i+1} = ŵ_i − G Ŝ (ŵ_i − w)``.

    ``w ~ N(0, I)``, ``ŵ_0 = 0``, ``Ŝ`` the empirical covariance of a test prompt of
    ``test_len`` examples from ``N(0, Σ)``.

    * ``test_len=None``: the population limit ``‖(I − GΣ)^k‖_F²`` (exact).
    * finite ``test_len = m``: exact for ``k <= 1``; for ``k >= 2`` the expansion to first
      order in ``1/m`` (write ``Ŝ = Σ + E`` and use ``E[E A E] = (ΣAᵀΣ + tr(AΣ)Σ)/m``).
      The neglected terms are ``O(k⁴/m²)``-type: trust it while the correction is small
      compared with the population term; otherwise use :func:`mc_error_curve`.

    Args:
        precond: ``G``, shape (..., d, d) (leading dims are batched).
        test_cov: ``Σ``, shape (d, d).
        max_steps: largest ``k``.
        test_len: ``m`` or None.

    Returns:
        Tensor of shape (..., max_steps + 1).
    """
    G, sig = check_precond(precond, test_cov)
    K = _k(max_steps, "max_steps")
    d = sig.shape[0]
    if test_len is not None:  # the O(1/m) term keeps (..., K, K, d, d) stacks
        check_memory(4 * G[..., 0, 0].numel() * K * K * d * d, "max_steps",
                     what=f"the finite-test_len expansion at max_steps={K}, d={d}")
    eye = torch.eye(d, dtype=sig.dtype, device=sig.device)
    M = eye - G @ sig
    if test_len is None or K == 0:
        return per_direction_error(G, sig, K).sum(-1)
    m = _n(test_len, "test_len")
    powers = [eye.expand_as(M)]
    for _ in range(K):
        powers.append(powers[-1] @ M)
    P = torch.stack(powers, dim=-3)  # (..., K+1, d, d): P[p] = M^p
    return _fro2(P) + _first_order_correction(G, sig, P, K) / m


def per_direction_error(precond: Any, test_cov: Any, max_steps: int) -> torch.Tensor:
    """Population error along each coordinate axis: ``E (ŵ_k − w)_i² = (M^k M^kᵀ)_ii``, ``M = I − GΣ``.

    Works for any (non-commuting, singular) ``G``; summed over the last axis it is the
    population :func:`error_curve`. Keeps one matrix power at a time (memory O(batch · d²)).

    Args:
        precond: ``G``, shape (..., d, d).
        test_cov: ``Σ``, shape (d, d).
        max_steps: largest ``k``.

    Returns:
        Tensor of shape (..., max_steps + 1, d).
    """
    G, sig = check_precond(precond, test_cov)
    K = _k(max_steps, "max_steps")
    eye = torch.eye(sig.shape[0], dtype=sig.dtype, device=sig.device)
    M = eye - G @ sig
    power, out = eye.expand_as(M), []
    for _ in range(K + 1):
        out.append((power * power).sum(-1))
        power = power @ M
    return torch.stack(out, dim=-2)


def _phi(A: torch.Tensor, sig: torch.Tensor) -> torch.Tensor:
    """``m · E[E A E] = Σ Aᵀ Σ + tr(A Σ) Σ`` for a stack of matrices ``A``."""
    tr = torch.einsum("...ij,ji->...", A, sig)
    return sig @ A.transpose(-1, -2) @ sig + tr[..., None, None] * sig


def _first_order_correction(G: torch.Tensor, sig: torch.Tensor, P: torch.Tensor, K: int) -> torch.Tensor:
    """``m`` times the O(1/m) term of ``E‖(M − G E)^k‖_F²`` for k = 0..K, shape (..., K+1)."""
    Gt = G.unsqueeze(-3)  # (..., 1, d, d)
    MG = P[..., :K, :, :] @ Gt  # M^j G, j < K
    # term 1: E‖Σ_j M^j G E M^{k-1-j}‖² = Σ_{j,j'} tr(Φ(B_{jj'}) C_{a'a}),
    #   B_{jj'} = (M^j G)ᵀ M^{j'} G, C_{a'a} = M^{a'} (M^a)ᵀ, a = k-1-j, a' = k-1-j'.
    B = MG.transpose(-1, -2).unsqueeze(-3) @ MG.unsqueeze(-4)  # (..., K, K, d, d) [j, j']
    PhiB = _phi(B, sig)
    Pk = P[..., :K, :, :]
    C = Pk.unsqueeze(-3) @ Pk.transpose(-1, -2).unsqueeze(-4)  # (..., K, K, d, d) [a', a]
    # <Φ(B)ᵀ, C> = tr(Φ(B) C); precompute all pairs once: T[j, j', a', a]
    PhiB_t = PhiB.transpose(-1, -2).flatten(-2)  # (..., K, K, d²)
    C_f = C.flatten(-2)
    # term 2: 2 E tr((M^k)ᵀ Σ_{i+j+l=k-2} M^i G E M^j G E M^l)
    #   = 2 Σ_{i} tr(Ū_{k-2-i} (M^k)ᵀ M^i G),  Ū_s = Σ_{j+l=s} Φ(M^j G) M^l.
    PhiMG = _phi(MG, sig)  # (..., K, d, d)
    U = PhiMG.unsqueeze(-3) @ Pk.unsqueeze(-4)  # (..., K, K, d, d) [j, l]
    # Ū_s = Σ_{j+l=s} U[j, l] for s = 0..K-2 (anti-diagonal sums; independent of k)
    Ubar = torch.stack(
        [sum(U[..., j, s - j, :, :] for j in range(s + 1)) for s in range(max(K - 1, 1))], dim=-3
    )
    out = torch.zeros(P.shape[:-3] + (K + 1,), dtype=P.dtype, device=P.device)
    idx = torch.arange(K, device=P.device)
    for k in range(1, K + 1):
        a = k - 1 - idx[:k]  # a for j = 0..k-1
        rhs = C_f[..., a.unsqueeze(0), a.unsqueeze(1), :]  # [j, j'] -> C[a', a]
        t1 = (PhiB_t[..., :k, :k, :] * rhs).sum((-1, -2, -3))
        if k >= 2:
            i = torch.arange(k - 1, device=P.device)  # i = 0..k-2, s = k-2-i
            V = P[..., k, :, :].transpose(-1, -2).unsqueeze(-3) @ MG[..., i, :, :]  # (M^k)ᵀ M^i G
            t1 = t1 + 2 * torch.einsum("...sij,...sji->...", Ubar[..., (k - 2 - i), :, :], V)
        out[..., k] = t1
    return out


def cot_error_curve(
    train_cov: Any,
    context_len: int,
    test_cov: Any,
    max_steps: int,
    test_len: int | None = None,
) -> torch.Tensor:
    """:func:`error_curve` of the trained LSA (``G = Γ⁻¹``) for k = 0..max_steps, shape (max_steps+1,)."""
    lam, sig = _covs(train_cov, test_cov)
    return error_curve(lsa_precond(lam, context_len), sig, max_steps, test_len)


def cot_error(
    train_cov: Any,
    context_len: int,
    test_cov: Any,
    num_steps: int,
    test_len: int | None = None,
) -> float:
    """``E‖ŵ_k − w‖²`` of the trained LSA after ``k = num_steps`` CoT steps (``w ~ N(0, I)``).

    Exact for ``test_len=None`` (population test covariance, any k) and for ``k <= 1`` at
    any finite ``test_len``; first order in ``1/test_len`` for ``k >= 2`` at finite
    ``test_len`` (see :func:`error_curve`; :func:`mc_error_curve` gives Monte Carlo).
    """
    k = _k(num_steps)
    return float(cot_error_curve(train_cov, context_len, test_cov, k, test_len)[k])


def mc_error_curve(
    precond: Any,
    test_cov: Any,
    test_len: int,
    max_steps: int,
    num_prompts: int,
    *,
    seed: int = 0,
    chunk: int = 4096,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Monte Carlo: squared errors ``‖ŵ_k − w‖²`` of the pseudo-Newton iteration per prompt.

    Draws ``num_prompts`` test prompts (``w ~ N(0, I)``, ``m = test_len`` examples from
    ``N(0, Σ)``) with the given seed, runs ``ŵ_{i+1} = ŵ_i − G Ŝ (ŵ_i − w)`` from
    ``ŵ_0 = 0``, vectorised over prompts. Returns shape (num_prompts, max_steps + 1):
    take ``.mean(0)`` for the expected error, ``.median(0)`` for a typical prompt.
    """
    G, sig = check_precond(precond, test_cov)
    if G.ndim != 2:
        raise ValueError("`precond` must be a single (d, d) matrix for Monte Carlo")
    m = _n(test_len, "test_len")
    K = _k(max_steps, "max_steps")
    num_prompts = check_pos_int(num_prompts, "num_prompts")
    chunk = check_pos_int(chunk, "chunk")
    check_memory(num_prompts * (K + 1), "num_prompts", what=f"the ({num_prompts}, {K + 1}) result")
    check_memory(min(chunk, num_prompts) * m * sig.shape[0], "test_len", what="one chunk of test prompts")
    device = check_device(device) or sig.device
    G = G.to(device)
    gen = torch.Generator().manual_seed(check_pos_int(seed, "seed", minimum=0))
    out = []
    for start in range(0, num_prompts, chunk):
        b = min(chunk, num_prompts - start)
        pr = sample_prompts(sig, m, b, generator=gen, device=device, dtype=sig.dtype)
        S = pr.emp_cov()
        gb = G @ pr.emp_corr().unsqueeze(-1)  # G Ŝ w (= G Xᵀy/m)
        GS = G @ S
        w_hat = torch.zeros_like(gb)
        errs = [(pr.w**2).sum(-1)]
        for _ in range(K):
            w_hat = w_hat - GS @ w_hat + gb
            errs.append(((w_hat.squeeze(-1) - pr.w) ** 2).sum(-1))
        out.append(torch.stack(errs, dim=-1))
    return torch.cat(out).cpu()


# --------------------------------------------------------------------------- scaling and overthinking


def spectral_radius(precond: Any, test_cov: Any) -> float:
    """Spectral radius of ``I − G Σ`` (the CoT contraction factor per step)."""
    G, sig = check_precond(precond, test_cov)
    eye = torch.eye(sig.shape[0], dtype=sig.dtype, device=sig.device)
    return float(torch.linalg.eigvals(eye - G @ sig).abs().max())


def overthinks(train_cov: Any, context_len: int, test_cov: Any) -> bool:
    """True iff the population CoT error eventually grows with k.

    That is the spectral radius of ``I − Γ⁻¹Σ`` above 1; for commuting ``Γ``, ``Σ`` it
    means some skill has ``σ_i > 2γ_i``. Never true when ``Σ = Λ``.
    """
    lam, sig = _covs(train_cov, test_cov)
    return spectral_radius(lsa_precond(lam, context_len), sig) > 1 + 1e-12


def best_num_steps(
    train_cov: Any,
    context_len: int,
    test_cov: Any,
    max_steps: int = 200,
    test_len: int | None = None,
) -> int:
    """The number of CoT steps ``k* <= max_steps`` with the smallest expected error."""
    curve = cot_error_curve(train_cov, context_len, test_cov, max_steps, test_len)
    return int(torch.argmin(curve))


def min_context_len(train_cov: Any, num_steps: int, eps: float, max_context_len: int = 10**9) -> int:
    """Smallest integer ``n`` with ``cot_error(train_cov, n, train_cov, num_steps) <= eps``.

    With ``Σ = Λ`` the error is ``Σ_i ((λ_i + tr Λ)/((n+1)λ_i + tr Λ))^{2k}``, decreasing
    in ``n``; raises ``ValueError`` when ``eps`` cannot be reached (``k = 0``, or ``eps``
    below the number of missing skills).
    """
    lam = check_cov(train_cov, "train_cov").double()
    k = _k(num_steps)
    eps = check_positive(eps, "eps")
    max_context_len = check_pos_int(max_context_len, "max_context_len")
    ev = torch.linalg.eigvalsh(lam).clamp_min(0.0)
    tr = ev.sum()

    def err(n: int) -> float:
        return float((((ev + tr) / ((n + 1) * ev + tr)) ** (2 * k)).sum())

    floor = float((ev <= 1e-12 * tr).sum()) if k > 0 else float(ev.numel())
    if eps < floor or err(max_context_len) > eps:
        raise ValueError(
            f"`eps`={eps:g} is unreachable with num_steps={k} and n <= max_context_len={max_context_len}: "
            f"the error never falls below {max(floor, err(max_context_len)):.4g}; increase eps or num_steps"
        )
    hi = 1
    while err(hi) > eps:
        hi *= 2
    lo = hi // 2 + 1 if hi > 1 else 1
    while lo < hi:  # smallest n in [lo, hi] with err(n) <= eps
        mid = (lo + hi) // 2
        if err(mid) <= eps:
            hi = mid
        else:
            lo = mid + 1
    return hi


# --------------------------------------------------------------------------- the paper's bounds


def no_cot_bound(train_cov: Any, context_len: int, test_len: int) -> float:
    """Theorem 3.3 (``Σ = Λ``): ``E‖ŵ − w‖² <= (d/n²)(1 + Hard)² + (d/m)(1 + Hard)``."""
    lam = check_cov(train_cov, "train_cov")
    n, m = _n(context_len), _n(test_len, "test_len")
    h, d = hardness(lam), lam.shape[0]
    return d / n**2 * (1 + h) ** 2 + d / m * (1 + h)


def scaling_bound(train_cov: Any, context_len: int, num_steps: int) -> float:
    """Corollary 3.5 (``m → ∞``, ``Σ = Λ``): ``Err(k) <= d (1 + n/(1 + Hard))^(−2k)``."""
    lam = check_cov(train_cov, "train_cov")
    n, k = _n(context_len), _k(num_steps)
    h, d = hardness(lam), lam.shape[0]
    return d * (1 + n / (1 + h)) ** (-2 * k)


def sufficient_context_len(train_cov: Any, num_steps: int, eps: float) -> float:
    """Training context that makes :func:`scaling_bound` equal ``eps``: ``(1+Hard)((d/ε)^{1/(2k)} − 1)``."""
    lam = check_cov(train_cov, "train_cov")
    k = check_pos_int(num_steps, "num_steps")
    eps = check_positive(eps, "eps")
    h, d = hardness(lam), lam.shape[0]
    return max(0.0, (1 + h) * (math.pow(d / eps, 1 / (2 * k)) - 1))


def max_stable_lr(train_cov: Any, context_len: int, c: float = 1.0) -> float:
    """Largest stable gradient-descent step on ``V31``: ``2 / (c² λ_max(ΛΓ))``.

    The population loss ``½ E‖ŵ1 − w‖² = ½ ‖I + c V31 S‖²`` averaged over prompts is a
    convex quadratic with Hessian ``V ↦ c² V ΛΓ``; GD converges iff ``lr < 2/(c² λ_max)``.
    """
    lam = check_cov(train_cov, "train_cov")
    c = check_positive(abs(check_real(c, "c")), "c")
    if float(lam.abs().max()) == 0:
        raise ValueError("`train_cov` is zero: every learning rate is stable, there is nothing to learn")
    lg = lam @ gamma(lam, context_len)
    return 2.0 / (c**2 * float(torch.linalg.eigvalsh((lg + lg.T) / 2).max()))
