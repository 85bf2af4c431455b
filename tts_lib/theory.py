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
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ._checks import (
    MAX_STEPS,
    InputTypeError,
    as_tensor,
    check_context_len_grid,
    check_context_lens,
    check_cov,
    check_covs,
    check_device,
    check_finite_curve,
    check_memory,
    check_pos_int,
    check_positive,
    check_precond,
    check_real,
    check_same_device,
    check_spectrum,
    check_weights,
)
from .prompts import Prompts, sample_prompts
from .tasks import MISSING_TOL, hardness


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
    """``Γ = (1 + 1/n) Λ + tr(Λ)/n · I``, shape (d, d).

    Defined in Chapter 1.
    """
    return _gamma(check_cov(train_cov, "train_cov"), _n(context_len))


def skill_gammas(train_eigvals: Any, context_lens: Any) -> torch.Tensor:
    """The eigenvalues of Γ, skill by skill: ``γ_i = (1 + 1/n) λ_i + tr(Λ)/n``.

    :func:`gamma` in the skill basis, vectorised: ``train_eigvals`` (..., d),
    ``context_lens`` broadcastable against ``train_eigvals.shape[:-1]``; returns
    ``broadcast(...) + (d,)`` in float64.

    Defined in Chapter 5.
    """
    lam = check_spectrum(train_eigvals, "train_eigvals")
    n = check_context_len_grid(context_lens, lam)[..., None]
    return (1 + 1 / n) * lam + lam.sum(-1, keepdim=True) / n


def _gamma(lam: torch.Tensor, n: int) -> torch.Tensor:
    """Unchecked :func:`gamma` (``lam`` validated, ``n`` a positive int)."""
    eye = torch.eye(lam.shape[0], dtype=lam.dtype, device=lam.device)
    return (1 + 1 / n) * lam + torch.trace(lam) / n * eye


def lsa_precond(train_cov: Any, context_len: int) -> torch.Tensor:
    """The preconditioner ``Γ⁻¹`` of Theorem 3.1 (``c·V31 = −Γ⁻¹``), shape (d, d).

    Defined in Chapter 1.
    """
    return _lsa_precond(check_cov(train_cov, "train_cov"), _n(context_len))


def _lsa_precond(lam: torch.Tensor, n: int) -> torch.Tensor:
    """Unchecked :func:`lsa_precond`."""
    g = _gamma(lam, n)
    if torch.trace(g) <= 0:
        raise ValueError("`train_cov` is zero: no skill is trained, Γ is singular")
    return torch.linalg.inv(g)


def moment_sas(cov: Any, context_len: int, A: Any) -> torch.Tensor:
    """``E[S A S]`` for ``S = X Xᵀ/n``, ``x ~ N(0, Λ)``: ``ΛAΛ + (ΛAᵀΛ + tr(AΛ) Λ)/n``.

    For symmetric ``A`` this is ``(n+1)/n · ΛAΛ + tr(AΛ)/n · Λ``; ``A = I`` gives ``E[S²] = ΛΓ``.

    Defined in Chapter 3.
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

    Defined in Chapter 6.
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

    Defined in Chapter 3.
    """
    lam = check_cov(train_cov, "train_cov")
    return multitask_precond([lam], [_n(context_len)])


# --------------------------------------------------------------------------- error of CoT


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
      The neglected terms do not shrink like a fixed power of ``k/m``: they grow like
      inverse powers of the per-step contraction, so the expansion is only returned
      inside the validity region of :func:`first_order_valid_steps` (checked against
      Monte Carlo in ``tests/test_finite_m.py``). Outside it a ``ValueError`` says so;
      use :func:`mc_error_curve` or :func:`mc_test_error` (Monte Carlo) there.

    A divergent ``G`` (spectral radius of ``I − GΣ`` above 1) over enough steps overflows the
    float range: that is refused with a ``ValueError`` naming the step where it overflowed
    (:func:`tts_lib._checks.check_finite_curve`), never returned as inf.

    Args:
        precond: ``G``, shape (..., d, d) (leading dims are batched).
        test_cov: ``Σ``, shape (d, d).
        max_steps: largest ``k``.
        test_len: ``m`` or None.

    Returns:
        Tensor of shape (..., max_steps + 1).

    Defined in Chapter 3.
    """
    G, sig = check_precond(precond, test_cov)
    return _error_curve(G, sig, _k(max_steps, "max_steps"), test_len)


_SCALE_DOWN = "scale `precond` or `test_cov` down"


def _divergence(G: torch.Tensor, sig: torch.Tensor, source: str) -> Callable[[], str]:
    """The fix of an overflowing error curve: ``source`` makes ``I − GΣ`` expand (radius > 1)."""

    def fix() -> str:
        eye = torch.eye(sig.shape[-1], dtype=torch.float64, device=sig.device)
        M = eye - G.double() @ sig.double()  # (..., d, d): the largest radius of the batch
        rho = float(torch.linalg.eigvals(M).abs().max()) if M.numel() else 0.0
        wider = "; float64 reaches further than float32" if sig.dtype == torch.float32 else ""
        return (f"{source} (the spectral radius of I − GΣ is {rho:.3g} > 1, so the error grows like "
                f"ρ^(2k) and diverges){wider}")

    return fix


def _error_curve(
    G: torch.Tensor, sig: torch.Tensor, K: int, test_len: int | None,
    source: str = _SCALE_DOWN,
) -> torch.Tensor:
    """:func:`error_curve` on validated ``G`` and ``Σ`` (``test_len`` still checked here).

    An overflowing curve is refused (:func:`tts_lib._checks.check_finite_curve`); ``source``
    says what to change besides ``max_steps``.
    """
    d = sig.shape[0]
    if test_len is not None:  # the O(1/m) term keeps (..., K, d, d) stacks and K x K Grams
        check_memory(4 * G[..., 0, 0].numel() * K * (d * d + K), "max_steps",
                     what=f"the finite-test_len expansion at max_steps={K}, d={d}")
    m = None if test_len is None else _n(test_len, "test_len")
    pop = check_finite_curve(_per_direction_error(G, sig, K).sum(-1), "max_steps", what="the CoT error curve",
                             fix=_divergence(G, sig, source))
    if m is None or K == 0:
        return pop
    corr = check_finite_curve(_first_order_correction(G, sig, K) / m, "max_steps",
                              what="the finite-test_len correction", fix=_divergence(G, sig, source))
    if K >= 2:
        k_ok = int(_trusted_steps(pop, corr).min())
        if k_ok < K:
            raise ValueError(
                f"the first-order finite-m expansion is not trusted beyond k = {k_ok} at "
                f"test_len={m} for this preconditioner (max_steps={K}): its neglected terms "
                "grow like inverse powers of the per-step contraction, and a Monte Carlo "
                "check puts it more than 5% off there (see first_order_valid_steps); use "
                "theory.mc_error_curve or theory.mc_test_error (Monte Carlo), or "
                f"max_steps <= {k_ok}"
            )
    return pop + corr


#: Validity rule of the first-order expansion, fitted on a Monte Carlo grid (see
#: ``scripts/fit_finite_m_region.py``; checked by ``tests/test_finite_m.py``): with
#: ``r_k = |correction_k / m| / population_k``, step ``k`` is trusted iff ``r_j <= 1.2``
#: at ``j = 2`` and ``r_j <= 2/j`` for every ``3 <= j <= k``.
FIRST_ORDER_TOL_K2 = 1.2
FIRST_ORDER_TOL_SCALE = 2.0


def _trusted_steps(pop: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
    """Largest trusted ``k`` per batch element from the population term and the ``1/m`` term."""
    K = pop.shape[-1] - 1
    ks = torch.arange(K + 1, device=pop.device)
    tol = torch.where(ks == 2, FIRST_ORDER_TOL_K2, FIRST_ORDER_TOL_SCALE / ks.clamp_min(1))
    ratio = corr.abs() / pop
    ok = (ks <= 1) | (ratio <= tol)  # NaN (0/0) counts as not ok
    # first k that fails (K + 1 if none) minus one
    fail = torch.where(~ok, ks, torch.full_like(ks, K + 1))
    return fail.min(-1).values - 1


def first_order_valid_steps(precond: Any, test_cov: Any, test_len: int, max_steps: int = 200) -> torch.Tensor:
    """Largest ``k <= max_steps`` at which :func:`error_curve`'s finite-m expansion is trusted.

    The rule (fitted against Monte Carlo on the grid d = 10, Σ = Λ isotropic or
    ``λ_i ∝ 1/i``, n ∈ {10, 20, 50, 100}, m ∈ {50, 200, 1000}, k ≤ 20, where every admitted
    value is within 5% of Monte Carlo): with ``r_k`` the first-order correction divided by
    the population error, ``k`` is trusted iff ``r_2 <= 1.2`` and ``r_j <= 2/j`` for all
    ``3 <= j <= k``. Steps ``k <= 1`` are exact and always trusted. The rule is conservative
    on that grid and an extrapolation elsewhere: check other settings with
    :func:`mc_test_error`.

    Returns:
        Long tensor of shape ``precond.shape[:-2]`` (a 0-d tensor for one ``G``).

    Defined in Chapter 4.
    """
    G, sig = check_precond(precond, test_cov)
    K = _k(max_steps, "max_steps")
    m = _n(test_len, "test_len")
    pop = per_direction_error(G, sig, K).sum(-1)
    return _trusted_steps(pop, _first_order_correction(G, sig, K) / m)


def _first_order_curve(G: torch.Tensor, sig: torch.Tensor, K: int, m: int) -> torch.Tensor:
    """The expansion itself, no validity check: population term plus ``1/m`` correction."""
    return per_direction_error(G, sig, K).sum(-1) + _first_order_correction(G, sig, K) / m


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

    Defined in Chapter 5.
    """
    G, sig = check_precond(precond, test_cov)
    return check_finite_curve(_per_direction_error(G, sig, _k(max_steps, "max_steps")), "max_steps",
                              what="the per-direction error", fix=_divergence(G, sig, _SCALE_DOWN),
                              step_axis=-2)


def _per_direction_error(G: torch.Tensor, sig: torch.Tensor, K: int) -> torch.Tensor:
    """Unchecked :func:`per_direction_error` (inputs validated by the caller)."""
    eye = torch.eye(sig.shape[0], dtype=sig.dtype, device=sig.device)
    M = eye - G @ sig
    power, out = eye.expand_as(M), []
    for _ in range(K + 1):
        out.append((power * power).sum(-1))
        power = power @ M
    return torch.stack(out, dim=-2)


def _gram(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``⟨A_p, B_q⟩_F`` for stacks (..., P, d, d) and (..., Q, d, d): shape (..., P, Q)."""
    return A.flatten(-2) @ B.flatten(-2).transpose(-1, -2)


def first_order_correction(precond: Any, test_cov: Any, max_steps: int) -> torch.Tensor:
    """``m`` times the O(1/m) term of the finite-m CoT error, for k = 0..K: shape (..., K + 1).

    The expansion itself, with no validity check (:func:`error_curve` returns it only inside
    the region of :func:`first_order_valid_steps`); ``tts_lib.bench`` times it.

    Defined in Chapter 4.
    """
    G, sig = check_precond(precond, test_cov)
    K = _k(max_steps, "max_steps")
    d = sig.shape[0]
    check_memory(4 * G[..., 0, 0].numel() * K * (d * d + K), "max_steps",
                 what=f"the finite-test_len expansion at max_steps={K}, d={d}")
    return check_finite_curve(_first_order_correction(G, sig, K), "max_steps", what="the first-order correction",
                              fix=_divergence(G, sig, _SCALE_DOWN))


def _first_order_correction(G: torch.Tensor, sig: torch.Tensor, K: int) -> torch.Tensor:
    """``m`` times the O(1/m) term of ``E‖(M − G E)^k‖_F²`` for k = 0..K, shape (..., K+1).

    Uses ``GΣ = I − M``: with ``D_p = M^p − M^{p+1} = M^p G Σ`` every term is an inner
    product of O(K) d×d matrices (powers ``M^p``, ``Σ M^p``, ``M^p Z`` with
    ``Z = GΣGᵀ``, and two running sums), so the cost is O(K d³ + K² d² + K³) time and
    O(K d²) memory (``E[E A E] = (ΣAᵀΣ + tr(AΣ)Σ)/m``, ``E = Ŝ − Σ``):

    * ``E‖Σ_j M^j G E M^{k−1−j}‖² · m = Σ_{|δ|<k} (k − |δ|) ⟨D_{k−1+δ}, D_{k−1−δ}⟩
      + Σ_{j,j'<k} ⟨M^j, M^{j'} Z⟩ ⟨M^{k−1−j}, Σ M^{k−1−j'}⟩``;
    * ``2 E⟨M^k, Σ_{i+j+l=k−2} M^i G E M^j G E M^l⟩ · m = 2⟨M^k, W_{k−2}⟩
      + 2 Σ_j tr(D_j) (k − 1 − j) ⟨D_{k−2−j}, M^k⟩`` with
      ``W_s = Σ_{i+j+l=s} M^i Z (M^j)ᵀ Σ M^l`` (``W_s = W_{s−1} M + Y_s Σ``,
      ``Y_r = M Y_{r−1} + Z (M^r)ᵀ``).
    """
    d = sig.shape[-1]
    eye = torch.eye(d, dtype=sig.dtype, device=sig.device)
    M = eye - G @ sig
    batch = M.shape[:-2]
    out = torch.zeros(batch + (K + 1,), dtype=sig.dtype, device=sig.device)
    if K == 0:
        return out
    powers = [eye.expand_as(M)]
    for _ in range(2 * K - 1):
        powers.append(powers[-1] @ M)
    P = torch.stack(powers, dim=-3)  # (..., 2K, d, d): M^0 .. M^{2K-1}
    # ⟨M^p, M^q⟩ is only needed for p + q <= 2K: rows p <= K, the rest by symmetry
    top = _gram(P[..., : K + 1, :, :], P)  # (..., K+1, 2K)
    g = torch.zeros(batch + (2 * K, 2 * K), dtype=sig.dtype, device=sig.device)
    g[..., : K + 1, :] = top
    g[..., K + 1 :, : K + 1] = top[..., :, K + 1 :].transpose(-1, -2)
    # ⟨D_p, D_q⟩ and ⟨D_p, M^q⟩ from the Gram of the powers
    gd = g[..., :-1, :-1] - g[..., 1:, :-1] - g[..., :-1, 1:] + g[..., 1:, 1:]  # p, q < 2K-1
    gdm = g[..., :-1, :] - g[..., 1:, :]  # (..., 2K-1, 2K): ⟨D_p, M^q⟩
    Pk = P[..., :K, :, :]  # M^0 .. M^{K-1}
    Z = G @ sig @ G.transpose(-1, -2)
    T = _gram(Pk, Pk @ Z.unsqueeze(-3))  # T[j, j'] = ⟨M^j, M^{j'} Z⟩
    R = _gram(Pk, sig @ Pk)  # R[a, a'] = ⟨M^a, Σ M^{a'}⟩
    trD = gdm[..., :K, 0]  # ⟨D_j, I⟩ = tr D_j
    # running sums Y_r, W_s and ⟨M^k, W_{k-2}⟩
    Y = Z.clone()
    W = Y @ sig
    tw = torch.zeros(batch + (K + 1,), dtype=sig.dtype, device=sig.device)
    for s in range(K - 1):  # W = W_s here
        tw[..., s + 2] = (P[..., s + 2, :, :] * W).sum((-1, -2))
        Y = M @ Y + Z @ P[..., s + 1, :, :].transpose(-1, -2)
        W = W @ M + Y @ sig
    for k in range(1, K + 1):
        delta = torch.arange(-(k - 1), k, device=sig.device)
        t_a = ((k - delta.abs()).to(sig.dtype) * gd[..., k - 1 + delta, k - 1 - delta]).sum(-1)
        flip = R[..., :k, :k].flip(-1, -2)  # flip[j, j'] = R[k-1-j, k-1-j']
        t_b = (T[..., :k, :k] * flip).sum((-1, -2))
        val = t_a + t_b
        if k >= 2:
            j = torch.arange(k - 1, device=sig.device)
            t_c = (trD[..., : k - 1] * (k - 1 - j).to(sig.dtype) * gdm[..., k - 2 - j, k]).sum(-1)
            val = val + 2 * (tw[..., k] + t_c)
        out[..., k] = val
    return out


def cot_error_curve(
    train_cov: Any,
    context_len: int,
    test_cov: Any,
    max_steps: int,
    test_len: int | None = None,
) -> torch.Tensor:
    """:func:`error_curve` of the trained LSA (``G = Γ⁻¹``) for k = 0..max_steps, shape (max_steps+1,).

    Defined in Chapter 4.
    """
    lam, sig = _covs(train_cov, test_cov)  # validated once; the kernels below trust them
    return _error_curve(_lsa_precond(lam, _n(context_len)), sig, _k(max_steps, "max_steps"), test_len,
                        source="use a `test_cov` closer to `train_cov` or a smaller `context_len`")


def cot_error(
    train_cov: Any,
    context_len: int,
    test_cov: Any,
    num_steps: int,
    test_len: int | None = None,
) -> float:
    """``E‖ŵ_k − w‖²`` of the trained LSA after ``k = num_steps`` CoT steps (``w ~ N(0, I)``).

    Exact for ``test_len=None`` (population test covariance, any k) and for ``k <= 1`` at
    any finite ``test_len``; for ``k >= 2`` at finite ``test_len`` the first-order
    expansion of :func:`error_curve`, only inside its validity region
    (:func:`first_order_valid_steps`; ``ValueError`` outside it — use
    :func:`mc_error_curve` or :func:`mc_test_error` there).

    Defined in Chapter 1.
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
    prompts: Prompts | None = None,
) -> torch.Tensor:
    """Monte Carlo: squared errors ``‖ŵ_k − w‖²`` of the pseudo-Newton iteration per prompt.

    Draws ``num_prompts`` test prompts (``w ~ N(0, I)``, ``m = test_len`` examples from
    ``N(0, Σ)``) with the given seed, runs ``ŵ_{i+1} = ŵ_i − G Ŝ (ŵ_i − w)`` from
    ``ŵ_0 = 0``, vectorised over prompts. Returns shape (num_prompts, max_steps + 1):
    take ``.mean(0)`` for the expected error, ``.median(0)`` for a typical prompt.

    ``prompts``: run on these given test prompts instead of drawing them (to compare with
    another model on the same prompts); ``test_len`` and ``num_prompts`` must then be theirs
    and ``seed`` is not used.

    Defined in Chapter 3.
    """
    G, sig = check_precond(precond, test_cov)
    if G.ndim != 2:
        raise ValueError("`precond` must be a single (d, d) matrix for Monte Carlo")
    m = _n(test_len, "test_len")
    K = _k(max_steps, "max_steps")
    num_prompts = check_pos_int(num_prompts, "num_prompts")
    chunk = check_pos_int(chunk, "chunk")
    if prompts is not None:
        if not isinstance(prompts, Prompts):
            kind = type(prompts).__name__
            raise InputTypeError(f"`prompts` must be a Prompts (from sample_prompts) or None, got {kind}")
        if (prompts.context_len, prompts.batch, prompts.dim) != (m, num_prompts, sig.shape[0]):
            raise ValueError(
                f"`prompts` hold {prompts.batch} prompts of {prompts.context_len} examples in d = {prompts.dim}; "
                f"pass test_len={prompts.context_len}, num_prompts={prompts.batch} (and a {prompts.dim}-d test_cov)"
            )
        if not bool(torch.isfinite(prompts.X).all() and torch.isfinite(prompts.w).all()):
            raise ValueError("`prompts` contain NaN or inf")
    check_memory(num_prompts * (K + 1), "num_prompts", what=f"the ({num_prompts}, {K + 1}) result")
    check_memory(min(chunk, num_prompts) * m * sig.shape[0], "test_len", what="one chunk of test prompts")
    device = check_device(device) or sig.device
    G = G.to(device)
    gen = torch.Generator().manual_seed(check_pos_int(seed, "seed", minimum=0))
    out = []
    for start in range(0, num_prompts, chunk):
        b = min(chunk, num_prompts - start)
        if prompts is None:
            pr = sample_prompts(sig, m, b, seed=gen, device=device, dtype=sig.dtype)
        else:
            pr = Prompts(*(t[start : start + b] for t in (prompts.X, prompts.y, prompts.w))).to(device, sig.dtype)
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


def mc_test_error(
    precond: Any,
    test_cov: Any,
    test_len: int,
    max_steps: int,
    num_prompts: int,
    *,
    seed: int = 0,
    chunk: int = 20_000,
) -> torch.Tensor:
    """Monte Carlo over test prompts of ``‖(I − G Ŝ)^k‖_F²`` (``w ~ N(0, I)`` averaged exactly).

    ``Ŝ = L W Lᵀ / m`` with ``L Lᵀ = Σ`` and ``W ~ Wishart(m, I_d)`` drawn by Bartlett's
    decomposition (cost independent of ``m``; plain Gaussian sums when ``m < d``), from a
    NumPy generator with the given seed. Its mean over prompts is the same expected error
    as :func:`mc_error_curve`'s, with less variance (no ``w`` noise).

    Args:
        precond: ``G``, shape (d, d). test_cov: ``Σ``, shape (d, d).
        test_len: ``m``. max_steps: largest ``k``. num_prompts: number of ``Ŝ`` drawn.

    Returns:
        Tensor of shape (num_prompts, max_steps + 1) on the CPU, dtype of ``Σ``.

    Defined in Chapter 4.
    """
    G, sig = check_precond(precond, test_cov)
    if G.ndim != 2:
        raise ValueError("`precond` must be a single (d, d) matrix for Monte Carlo")
    m = _n(test_len, "test_len")
    K = _k(max_steps, "max_steps")
    num_prompts = check_pos_int(num_prompts, "num_prompts")
    chunk = check_pos_int(chunk, "chunk")
    check_memory(num_prompts * (K + 1), "num_prompts", what=f"the ({num_prompts}, {K + 1}) result")
    check_memory(min(chunk, num_prompts) * sig.shape[0] * max(sig.shape[0], min(m, sig.shape[0])) * 4, "chunk",
                 what="one chunk of Wishart draws")
    rng = np.random.default_rng(check_pos_int(seed, "seed", minimum=0))
    d = sig.shape[0]
    G64, sig64 = G.detach().cpu().double(), sig.detach().cpu().double()
    evals, evecs = torch.linalg.eigh(sig64)
    L = evecs * evals.clamp_min(0.0).sqrt()  # L Lᵀ = Σ
    eye = torch.eye(d, dtype=torch.float64)
    rows, cols = np.tril_indices(d, -1)
    out = []
    for start in range(0, num_prompts, chunk):
        b = min(chunk, num_prompts - start)
        if m >= d:
            A = np.zeros((b, d, d))
            A[:, np.arange(d), np.arange(d)] = np.sqrt(rng.chisquare(m - np.arange(d), size=(b, d)))
            A[:, rows, cols] = rng.standard_normal((b, rows.size))
        else:
            A = rng.standard_normal((b, d, m))
        LA = L @ torch.from_numpy(A)
        S = LA @ LA.transpose(-1, -2) / m
        step = eye - G64 @ S
        power, vals = eye.expand_as(step), []
        for _ in range(K + 1):
            vals.append((power * power).sum((-1, -2)))
            power = power @ step
        out.append(torch.stack(vals, dim=-1))
    return torch.cat(out).to(sig.dtype)


# --------------------------------------------------------------------------- scaling and overthinking


def spectral_radius(precond: Any, test_cov: Any) -> float:
    """Spectral radius of ``I − G Σ`` (the CoT contraction factor per step).

    Defined in Chapter 2.
    """
    G, sig = check_precond(precond, test_cov)
    eye = torch.eye(sig.shape[0], dtype=sig.dtype, device=sig.device)
    return float(torch.linalg.eigvals(eye - G @ sig).abs().max())


def overthinks(train_cov: Any, context_len: int, test_cov: Any) -> bool:
    """True iff the population CoT error eventually grows with k.

    That is the spectral radius of ``I − Γ⁻¹Σ`` above 1; for commuting ``Γ``, ``Σ`` it
    means some skill has ``σ_i > 2γ_i``. Never true when ``Σ = Λ``.

    Defined in Chapter 5.
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
    """The number of CoT steps ``k* <= max_steps`` with the smallest expected error.

    With a finite ``test_len`` this needs the whole curve inside the first-order validity
    region (see :func:`error_curve`); otherwise use Monte Carlo (:func:`mc_test_error`).

    Defined in Chapter 5.
    """
    curve = cot_error_curve(train_cov, context_len, test_cov, max_steps, test_len)
    return int(torch.argmin(curve))


def min_context_len(train_cov: Any, num_steps: int, eps: float, max_context_len: int = 10**9) -> int:
    """Smallest integer ``n`` with ``cot_error(train_cov, n, train_cov, num_steps) <= eps``.

    With ``Σ = Λ`` the error is ``Σ_i ((λ_i + tr Λ)/((n+1)λ_i + tr Λ))^{2k}``, decreasing
    in ``n``; raises ``ValueError`` when ``eps`` cannot be reached (``k = 0``, or ``eps``
    below the number of missing skills).

    Defined in Chapter 1.
    """
    lam = check_cov(train_cov, "train_cov").double()
    k = _k(num_steps)
    eps = check_positive(eps, "eps")
    max_context_len = check_pos_int(max_context_len, "max_context_len")
    ev = torch.linalg.eigvalsh(lam).clamp_min(0.0)
    tr = ev.sum()

    def err(n: int) -> float:
        return float((((ev + tr) / ((n + 1) * ev + tr)) ** (2 * k)).sum())

    floor = float((ev <= MISSING_TOL * tr).sum()) if k > 0 else float(ev.numel())
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
    """Theorem 3.3 (``Σ = Λ``): ``E‖ŵ − w‖² <= (d/n²)(1 + Hard)² + (d/m)(1 + Hard)``.

    Defined in Chapter 1.
    """
    lam = check_cov(train_cov, "train_cov")
    n, m = _n(context_len), _n(test_len, "test_len")
    h, d = hardness(lam), lam.shape[0]
    return d / n**2 * (1 + h) ** 2 + d / m * (1 + h)


def scaling_bound(train_cov: Any, context_len: int, num_steps: int) -> float:
    """Corollary 3.5 (``m → ∞``, ``Σ = Λ``): ``Err(k) <= d (1 + n/(1 + Hard))^(−2k)``.

    Defined in Chapter 4.
    """
    lam = check_cov(train_cov, "train_cov")
    n, k = _n(context_len), _k(num_steps)
    h, d = hardness(lam), lam.shape[0]
    return d * (1 + n / (1 + h)) ** (-2 * k)


def sufficient_context_len(train_cov: Any, num_steps: int, eps: float) -> float:
    """Training context that makes :func:`scaling_bound` equal ``eps``: ``(1+Hard)((d/ε)^{1/(2k)} − 1)``.

    Defined in Chapter 4.
    """
    lam = check_cov(train_cov, "train_cov")
    k = check_pos_int(num_steps, "num_steps")
    eps = check_positive(eps, "eps")
    h, d = hardness(lam), lam.shape[0]
    # (d/ε)^(1/2k) − 1 in the log domain: finite for every positive float ε (d/ε alone overflows below 1e-308)
    return max(0.0, (1 + h) * math.expm1((math.log(d) - math.log(eps)) / (2 * k)))


def max_stable_lr(train_cov: Any, context_len: int, c: float = 1.0) -> float:
    """Largest stable full-batch gradient-descent step on ``V31``: ``2 / (c² λ_max(ΛΓ))``.

    The population loss ``½ E‖ŵ1 − w‖² = ½ ‖I + c V31 S‖²`` averaged over prompts is a
    convex quadratic with Hessian ``V ↦ c² V ΛΓ``; GD converges iff ``lr < 2/(c² λ_max)``.
    This does not bound SGD at small batches: see :func:`max_stable_lr_sgd`.

    Defined in Chapter 3.
    """
    lam = check_cov(train_cov, "train_cov")
    c = check_positive(abs(check_real(c, "c")), "c")
    if float(lam.abs().max()) == 0:
        raise ValueError("`train_cov` is zero: every learning rate is stable, there is nothing to learn")
    lg = lam @ gamma(lam, context_len)
    top = float(torch.linalg.eigvalsh((lg + lg.T) / 2).max())
    try:
        curvature = c**2 * top
    except OverflowError:  # c² beyond float64
        curvature = math.inf
    if not 0 < curvature < math.inf or not math.isfinite(2.0 / curvature):
        raise ValueError(f"`c`={c:g} gives a curvature c²·λ_max of {curvature:.3g}, whose stable step 2/(c²λ) "
                         "is not a finite float; use c of order 1 (the LSA's scale)")
    return 2.0 / curvature


#: |c| accepted by :func:`max_stable_lr_sgd` (c⁴ and c⁴·λ⁴ stay finite and non-zero in float64)
C_RANGE = (1e-60, 1e60)


def max_stable_lr_sgd(
    train_cov: Any,
    context_len: int,
    batch_size: int,
    c: float = 1.0,
    *,
    num_samples: int = 20_000,
    seed: int = 0,
) -> float:
    """Largest step at which minibatch SGD on ``V31`` stays stable in mean square (batch ``B``).

    :func:`max_stable_lr` is the full-batch limit; small batches diverge below it. With
    ``φ = c S w`` (``S`` a training prompt's empirical covariance), SGD moves each row
    ``δ`` of ``V31 − V31*`` by ``δ ← δ (I − η Ĥ_B)`` plus zero-mean noise, ``Ĥ_B`` the
    mean of ``φφᵀ`` over the batch. Its second moment ``C = E δᵀδ`` evolves by the linear map

        ``C ↦ C − η(HC + CH) + η² [(1 − 1/B) HCH + (1/B) E(φφᵀ C φφᵀ)]``,  ``H = c² ΛΓ``,

    with ``E(φφᵀ C φφᵀ) = c⁴ E_S[2 S²CS² + tr(CS²) S²]`` (Gaussian ``w``). The limit is the
    largest ``η`` with spectral radius below 1 (bisection). ``E_S`` of the eighth moments
    of ``x`` is estimated by Monte Carlo over ``num_samples`` prompts (fixed ``seed``;
    about 1% accurate at the default). Tends to :func:`max_stable_lr` as ``B → ∞``.
    Cost O(num_samples · d⁴) time, O(d⁴) memory: meant for d up to about 30.

    Defined in Chapter 3.
    """
    lam = check_cov(train_cov, "train_cov").double()
    n = _n(context_len)
    B = check_pos_int(batch_size, "batch_size")
    c = abs(check_real(c, "c"))
    if not C_RANGE[0] <= c <= C_RANGE[1]:
        raise ValueError(f"`c`={c:g} must be within [{C_RANGE[0]:g}, {C_RANGE[1]:g}] in absolute value, where c⁴ "
                         "times the prompts' fourth moments stays a finite, non-zero float64; use c of order 1 "
                         "(the LSA's scale)")
    N = check_pos_int(num_samples, "num_samples", maximum=2000 * MAX_STEPS)  # at most MAX_STEPS chunks
    check_memory(min(2000, N) * n * lam.shape[0], "context_len", what="one chunk of 2000 training prompts")
    check_memory(lam.shape[0] ** 4 * 4, "train_cov", what="the (d², d²) moment matrices")
    gen = torch.Generator().manual_seed(check_pos_int(seed, "seed", minimum=0))
    d = lam.shape[0]
    evals, evecs = torch.linalg.eigh(lam.cpu())
    root = evecs * evals.clamp_min(0.0).sqrt()
    H = c**2 * (lam.cpu() @ gamma(lam.cpu(), n))
    H = (H + H.T) / 2
    eye = torch.eye(d, dtype=torch.float64)
    F = torch.zeros(d * d, d * d, dtype=torch.float64)
    for start in range(0, N, 2000):
        b = min(2000, N - start)
        X = torch.randn(b, n, d, generator=gen, dtype=torch.float64) @ root.T
        S = X.transpose(1, 2) @ X / n
        Q = S @ S
        q = Q.flatten(-2)
        F += 2 * torch.einsum("bij,bkl->ikjl", Q, Q).reshape(d * d, d * d) + q.T @ q
    F *= c**4 / N
    A = torch.kron(H, eye) + torch.kron(eye, H)
    Bm = (1 - 1 / B) * torch.kron(H, H) + F / B

    def stable(eta: float) -> bool:
        L = torch.eye(d * d, dtype=torch.float64) - eta * A + eta**2 * Bm
        ev = torch.linalg.eigvalsh((L + L.T) / 2)
        return bool(ev.abs().max() < 1)

    hi = 2.0 / float(torch.linalg.eigvalsh(H).max())  # the full-batch limit bounds it
    lo = 0.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if stable(mid) else (lo, mid)
    return lo
