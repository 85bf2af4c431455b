"""Overthinking: when more test-time chain of thought (CoT) hurts.

With the trained LSA, ``k`` CoT steps give the population error (test prompts with
``m → ∞``) ``Err(k) = ‖(I − GΣ)^k‖_F²``. When the training covariance ``Λ`` and the
test covariance ``Σ`` commute (share their skills), the ``i``-th skill contracts by the
factor ``1 − r_i`` per step, with the *skill ratio*

    r_i = σ_i / γ_i,   γ_i = (1 + 1/n) λ_i + tr(Λ)/n,

so ``Err(k) = Σ_i a_i^k`` with ``a_i = (1 − r_i)²``. A skill *overthinks* when
``a_i > 1``, i.e. ``σ_i > 2γ_i``; the curve ``k ↦ Err(k)`` is a sum of exponentials,
hence convex, so it has one minimum ``k*`` and rises for ever after it.

Everything here is vectorised over batches of spectra and context lengths (use
broadcasting: spectra of shape ``(A, 1, d)`` with ``n`` of shape ``(N,)`` give an
``(A, N)`` grid), computes in float64, and works on eigenvalues only, which is exact for commuting ``Λ``, ``Σ``
(use :func:`tts_lib.tasks.commuting_spectra` to get them from matrices).

Two preconditioners are distinguished (``precond=``):

* ``"formula"``: ``G = Γ⁻¹`` of Theorem 3.1 (which assumes ``Λ ≻ 0``); on a missing
  skill (``λ_i = 0``) it puts the ridge value ``n / tr(Λ)``.
* ``"trained"``: ``G = Λ(ΛΓ)⁺``, what gradient descent from zero learns; 0 on a missing
  skill, so CoT makes no progress there (``r_i = 0``, ``a_i = 1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ._checks import (
    MAX_STEPS,
    check_context_len_grid,
    check_finite_curve,
    check_memory,
    check_pos_int,
    check_same_device,
    check_spectrum,
)
from .tasks import MISSING_TOL  # eigenvalues <= MISSING_TOL · tr count as missing (λ_i = 0)
from .theory import skill_gammas

_PRECONDS = ("formula", "trained")


# --------------------------------------------------------------------------- inputs


def _inputs(
    train_eigvals: Any, context_lens: Any, test_eigvals: Any, precond: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if precond not in _PRECONDS:
        raise ValueError(f"`precond` must be one of {_PRECONDS}, got {precond!r}")
    lam = check_spectrum(train_eigvals, "train_eigvals")
    sig = check_spectrum(test_eigvals, "test_eigvals").to(device=lam.device, dtype=lam.dtype)
    check_same_device(train_eigvals=lam, test_eigvals=sig)
    if sig.shape[-1] != lam.shape[-1]:
        raise ValueError(
            f"`test_eigvals` has d={sig.shape[-1]} but `train_eigvals` has d={lam.shape[-1]}; they must match"
        )
    if (lam.sum(-1) <= 0).any():
        raise ValueError("`train_eigvals` has a zero spectrum: no skill is trained")
    n = check_context_len_grid(context_lens, lam)
    try:
        torch.broadcast_shapes(lam.shape[:-1], n.shape, sig.shape[:-1])
    except RuntimeError as err:
        raise ValueError(
            f"`context_lens` {tuple(n.shape)} must broadcast against the batch shape of the spectra "
            f"{tuple(lam.shape[:-1])}; for a grid pass spectra[:, None, :] and context_lens[None, :]"
        ) from err
    return lam, n, sig


# --------------------------------------------------------------------------- per-skill quantities


def skill_ratios(train_eigvals: Any, context_lens: Any, test_eigvals: Any, precond: str = "formula") -> torch.Tensor:
    """Per-skill step ratios ``r_i = g_i σ_i`` (``g_i`` the preconditioner's eigenvalue).

    ``"formula"``: ``g_i = 1/γ_i``; ``"trained"``: ``g_i = 1/γ_i`` if ``λ_i > 0`` else 0.
    A CoT step multiplies the error along skill ``i`` by ``1 − r_i``.

    Args:
        train_eigvals: ``λ``, shape (..., d).
        context_lens: ``n``, broadcastable against ``train_eigvals.shape[:-1]``.
        test_eigvals: ``σ``, shape (..., d), the same skills as ``λ``.

    Returns:
        Tensor of shape ``broadcast(...) + (d,)``.

    Defined in Chapter 5.
    """
    lam, n, sig = _inputs(train_eigvals, context_lens, test_eigvals, precond)
    g = 1 / skill_gammas(lam, n)
    if precond == "trained":
        missing = lam <= MISSING_TOL * lam.sum(-1, keepdim=True)
        g = torch.where(missing, torch.zeros_like(g), g)
    return g * sig


def overthinking_skills(
    train_eigvals: Any, context_lens: Any, test_eigvals: Any, precond: str = "formula"
) -> torch.Tensor:
    """Boolean mask of the skills that overthink, ``σ_i > 2γ_i`` (``r_i > 2``), shape ``(..., d)``.

    Defined in Chapter 5.
    """
    return skill_ratios(train_eigvals, context_lens, test_eigvals, precond) > 2


def critical_context_len(train_eigvals: Any, test_eigvals: Any, precond: str = "formula") -> torch.Tensor:
    """The training context length beyond which CoT overthinks: overthinking ⇔ ``n > n_c``.

    Skill ``i`` overthinks iff ``n (σ_i − 2λ_i) > 2 (λ_i + tr Λ)``, so
    ``n_c = min_i 2(λ_i + tr Λ)/(σ_i − 2λ_i)`` over the skills with ``σ_i > 2λ_i``
    (``inf`` when there is none: then no ``n`` overthinks, e.g. ``Σ = Λ``). With
    ``precond="trained"`` missing skills (``λ_i = 0``) never overthink and are skipped.

    Returns:
        Float tensor of shape ``train_eigvals.shape[:-1]`` (broadcast with ``test_eigvals``).

    Defined in Chapter 5.
    """
    lam, _, sig = _inputs(train_eigvals, 1, test_eigvals, precond)
    tr = lam.sum(-1, keepdim=True)
    gap = sig - 2 * lam
    crit = torch.where(gap > 0, 2 * (lam + tr) / gap.clamp_min(1e-300), torch.full_like(gap, float("inf")))
    if precond == "trained":
        crit = torch.where(lam <= MISSING_TOL * tr, torch.full_like(crit, float("inf")), crit)
    return crit.min(-1).values


# --------------------------------------------------------------------------- error curves and k*


def diag_error_curves(
    train_eigvals: Any, context_lens: Any, test_eigvals: Any, max_steps: int, precond: str = "formula"
) -> torch.Tensor:
    """Population CoT error ``Err(k) = Σ_i (1 − r_i)^{2k}`` for ``k = 0..max_steps``.

    Equals :func:`tts_lib.theory.error_curve` for commuting ``Λ``, ``Σ``.
    Returns shape ``broadcast(...) + (max_steps + 1,)``. A curve that overflows float64
    (an overthinking skill, ``(1 − r_i)^{2k}`` beyond 1e308) is refused with the step where
    it overflowed; :func:`phase_diagram` gives ``k*`` for any ``k`` without overflow.

    Defined in Chapter 5.
    """
    K = check_pos_int(max_steps, "max_steps", minimum=0, maximum=MAX_STEPS)
    a = (1 - skill_ratios(train_eigvals, context_lens, test_eigvals, precond)) ** 2  # (..., d)
    check_memory(a.numel() * (K + 1), "max_steps", what=f"the ({K + 1}, d) powers per spectrum")
    k = torch.arange(K + 1, dtype=a.dtype, device=a.device)
    curve = (a[..., None, :] ** k[:, None]).sum(-1)

    def fix() -> str:
        return (f"lower `test_eigvals` against `train_eigvals` (the largest per-step factor (1 − r_i)² is "
                f"{float(a.max()):.3g} > 1, so the error grows like it to the power k)")

    return check_finite_curve(curve, "max_steps", what="the CoT error curve", fix=fix)


def _sign_of_increment(log_a: torch.Tensor, a: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Sign of ``Err(k+1) − Err(k) = Σ_i a_i^k (a_i − 1)``, computed without overflow."""
    s = k[..., None] * log_a  # (..., d), -inf where a_i = 0 (k > 0)
    s = torch.where(torch.isnan(s), torch.zeros_like(s), s)  # 0 * -inf at k = 0: a^0 = 1
    top = s.max(-1, keepdim=True).values
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return ((s - top).exp() * (a - 1)).sum(-1)


@dataclass
class PhaseDiagram:
    """Result of :func:`phase_diagram`; every field has the broadcast batch shape.

    Attributes:
        overthinks: bool, some skill has ``r_i > 2`` (the error eventually rises).
        best_steps: float, the smallest minimiser ``k*`` of ``Err(k)`` over all integers
            ``k >= 0``; ``inf`` where the error never rises (no overthinking).
        best_error: ``Err(k*)`` (the infimum where ``k* = inf``: the number of skills
            with ``a_i = 1``, i.e. skills on which CoT makes no progress).
        radius: ``max_i |1 − r_i|``, the spectral radius of ``I − GΣ``.

    Defined in Chapter 5.
    """

    overthinks: torch.Tensor
    best_steps: torch.Tensor
    best_error: torch.Tensor
    radius: torch.Tensor


def phase_diagram(
    train_eigvals: Any,
    context_lens: Any,
    test_eigvals: Any,
    precond: str = "formula",
    max_search: int = 2**40,
) -> PhaseDiagram:
    """Where CoT overthinks and the best number of steps ``k*``, exactly and vectorised.

    ``Err(k) = Σ_i a_i^k`` is convex in ``k``, so ``k*`` is the first ``k`` with
    ``Err(k+1) >= Err(k)``; it is found by bisection on the sign of the increment
    (about 40 vectorised passes), with no cap on ``k`` below ``max_search``.

    Args:
        train_eigvals: ``λ``, shape (..., d).
        context_lens: ``n``, broadcastable against ``train_eigvals.shape[:-1]``.
        test_eigvals: ``σ``, shape (..., d), the same skills (commuting ``Λ``, ``Σ``).
        precond: ``"formula"`` (``Γ⁻¹``) or ``"trained"`` (``Λ(ΛΓ)⁺``).
        max_search: upper end of the bisection.

    Returns:
        :class:`PhaseDiagram` with fields of shape ``broadcast(...)``.

    Defined in Chapter 5.
    """
    r = skill_ratios(train_eigvals, context_lens, test_eigvals, precond)
    a = (1 - r) ** 2
    radius = (1 - r).abs().max(-1).values
    over = (a > 1).any(-1)
    log_a = a.log()
    max_search = check_pos_int(max_search, "max_search", maximum=2**52)  # k stays exact in float64
    lo = torch.zeros(a.shape[:-1], dtype=a.dtype, device=a.device)  # Err(lo+1) < Err(lo) or lo = 0
    hi = torch.full_like(lo, float(max_search))
    rises_at_0 = _sign_of_increment(log_a, a, lo) >= 0
    # invariant (over & ~rises_at_0): increment(lo) < 0 <= increment(hi)
    while bool(((hi - lo) > 1).any()):
        mid = torch.floor((lo + hi) / 2)
        up = _sign_of_increment(log_a, a, mid) >= 0
        hi = torch.where(up, mid, hi)
        lo = torch.where(up, lo, mid)
    k_star = torch.where(rises_at_0, torch.zeros_like(hi), hi)
    k_star = torch.where(over, k_star, torch.full_like(k_star, float("inf")))
    k_fin = torch.where(torch.isfinite(k_star), k_star, torch.zeros_like(k_star))
    best = torch.where(
        over,
        (a ** k_fin[..., None]).sum(-1),
        (a == 1).sum(-1).to(a.dtype),
    )
    return PhaseDiagram(overthinks=over, best_steps=k_star, best_error=best, radius=radius)
