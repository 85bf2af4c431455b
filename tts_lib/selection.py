"""Choosing training tasks: mixture weights on the probability simplex.

A training mixture draws task ``ℓ`` (covariance ``Λ_ℓ``, context length ``n_ℓ``) with
probability ``π_ℓ``; the trained LSA's preconditioner is ``G(π) = P Q⁺`` with
``P = Σ π_ℓ Λ_ℓ`` and ``Q = Σ π_ℓ Λ_ℓ Γ_ℓ`` (:func:`tts_lib.theory.multitask_precond`).
This module picks ``π`` for a target covariance ``Σ``:

* :func:`qp_objective` / :func:`qp_matrices` — the convex surrogate
  ``‖I − Σ⁻¹ Σ_ℓ π_ℓ Λ_ℓ‖_F²`` (one formulation of the paper's QP; needs ``Σ ≻ 0``).
* :func:`mixture_error` — the exact population k-step CoT error ``‖(I − G(π) Σ)^k‖_F²``
  of the model trained on the mixture, batched over candidate mixtures.
* :func:`minimize_on_simplex` — accelerated projected gradient with the exact Euclidean
  projection :func:`project_simplex` (sort-based) and a backtracking line search;
  :func:`kkt_residual` certifies the answer; :func:`grid_search` evaluates a whole
  simplex grid (:func:`simplex_grid`) in one batched call.
* :class:`TaskType` / :func:`task_type_covs` — candidate task types by spectral decay (defined in
  :mod:`tts_lib.tasks`, the home of task families; re-exported here)
  ``α`` and number of skills ``B`` (``λ_i ∝ i^(−α)`` on the first ``B`` skills).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._checks import (
    DEFAULT_DTYPE,
    MAX_STEPS,
    InputTypeError,
    as_tensor,
    check_context_lens,
    check_cov,
    check_covs,
    check_dtype,
    check_memory,
    check_pos_int,
    check_positive,
    check_sequence,
    check_weights,
)
from .tasks import MISSING_TOL
from .tasks import TaskType as TaskType  # task families live in tasks; chapter 6 calls them from here
from .tasks import task_type_covs as task_type_covs
from .theory import multitask_precond

# --------------------------------------------------------------------------- the simplex


def project_simplex(v: Any) -> torch.Tensor:
    """Euclidean projection onto the probability simplex ``{π ≥ 0, Σ π = 1}`` (sort-based).

    For each row ``v`` (shape (..., L)) returns ``argmin_π ‖π − v‖`` over the simplex:
    ``π = max(v − τ, 0)`` with the threshold ``τ`` found by sorting (Held, Wolfe and
    Crowder 1974; Duchi et al. 2008), exact up to rounding, ``O(L log L)`` per row.

    Defined in Chapter 6.
    """
    v = as_tensor(v, "v")
    if v.ndim < 1 or v.shape[-1] < 1:
        raise ValueError(f"`v` must have shape (..., L) with L >= 1, got {tuple(v.shape)}")
    L = v.shape[-1]
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = torch.cumsum(u, dim=-1) - 1.0
    j = torch.arange(1, L + 1, dtype=v.dtype, device=v.device)
    cond = u - css / j > 0  # true for j = 1..ρ (a prefix)
    rho = cond.sum(-1, keepdim=True).clamp_min(1)  # ρ >= 1 always holds mathematically
    tau = torch.gather(css, -1, rho - 1) / rho.to(v.dtype)
    return (v - tau).clamp_min(0.0)


def simplex_grid(num_tasks: int, resolution: int, *, dtype: torch.dtype = DEFAULT_DTYPE) -> torch.Tensor:
    """All mixtures whose weights are multiples of ``1/resolution``: shape (N, num_tasks).

    ``N = C(resolution + num_tasks − 1, num_tasks − 1)`` (e.g. 1771 for 4 tasks at 1/20).
    Rows are in decreasing lexicographic order of the integer counts (the first row is the
    vertex ``e_1``); all vertices are included.

    Defined in Chapter 6.
    """
    L = check_pos_int(num_tasks, "num_tasks", maximum=10_000)
    r = check_pos_int(resolution, "resolution", maximum=1_000_000)
    dtype = check_dtype(dtype)
    n_points = math.comb(r + L - 1, L - 1)
    if n_points > 5_000_000:
        raise ValueError(f"the grid would have {n_points} points; lower `resolution` or `num_tasks`")
    check_memory(n_points * L, "num_tasks", what=f"the ({n_points}, {L}) grid")
    # stars and bars: choose L-1 bar positions among r + L - 1 slots
    rows = []
    for bars in itertools.combinations(range(r + L - 1), L - 1):
        edges = (-1, *bars, r + L - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(L)])
    grid = torch.tensor(rows, dtype=dtype)
    grid = grid.flip(0) if L > 1 else grid
    return grid / r


def kkt_residual(weights: Any, grad: Any) -> float:
    """How far ``π`` is from a KKT point of ``min f`` over the simplex, given ``∇f(π)``.

    Returns ``‖π − Π(π − ∇f(π))‖_∞`` (the projected-gradient mapping), which is 0 exactly
    when the KKT conditions hold: for some ``μ``, ``∂_ℓ f = μ`` where ``π_ℓ > 0`` and
    ``∂_ℓ f ≥ μ`` where ``π_ℓ = 0``. It is scale-dependent: compare with ``‖∇f‖``.

    Defined in Chapter 6.
    """
    pi = as_tensor(weights, "weights")
    g = as_tensor(grad, "grad", dtype=pi.dtype)
    if pi.ndim != 1 or g.shape != pi.shape:
        raise ValueError(
            f"`weights` and `grad` must be 1-D of the same length, got {tuple(pi.shape)}, {tuple(g.shape)}"
        )
    if (pi < -1e-9).any() or abs(float(pi.sum()) - 1) > 1e-6:
        raise ValueError("`weights` must lie on the probability simplex (non-negative, summing to 1)")
    return float((pi - project_simplex(pi - g)).abs().max())


@dataclass
class SimplexResult:
    """Result of :func:`minimize_on_simplex` (or :func:`grid_search`).

    Defined in Chapter 6.
    """

    weights: torch.Tensor  #: (L,) the minimiser found
    value: float  #: the objective there
    num_iters: int  #: iterations used (grid points evaluated for a grid search)
    converged: bool  #: whether the stopping tolerance was met
    kkt: float  #: :func:`kkt_residual` at the answer (nan for a grid search without gradient)


def _value_and_grad(
    fun: Callable[[torch.Tensor], torch.Tensor],
    grad: Callable[[torch.Tensor], torch.Tensor] | None,
    x: torch.Tensor,
) -> tuple[float, torch.Tensor]:
    if grad is not None:
        with torch.no_grad():
            val = fun(x)
            if not isinstance(val, (torch.Tensor, float, int)) or isinstance(val, bool):
                raise InputTypeError(f"`fun` must return a scalar tensor, got {type(val).__name__}")
            g = as_tensor(grad(x), "grad(x)", dtype=x.dtype).detach()
            if g.shape != x.shape:
                raise ValueError(f"`grad` must return shape {tuple(x.shape)}, got {tuple(g.shape)}")
            return float(val), g
    xr = x.detach().clone().requires_grad_(True)
    val = fun(xr)
    if not isinstance(val, torch.Tensor):
        raise InputTypeError(f"`fun` must return a scalar tensor (differentiable in π), got {type(val).__name__}")
    if val.ndim != 0:
        raise ValueError("`fun` must return a scalar tensor for a single mixture of shape (L,)")
    (g,) = torch.autograd.grad(val, xr)
    return float(val.detach()), g.detach()


def _start_point(x0: Any, num_tasks: Any) -> torch.Tensor:
    """:func:`minimize_on_simplex`'s checked start: ``x0`` projected onto the simplex, or uniform."""
    if x0 is None:
        L = check_pos_int(num_tasks, "num_tasks", maximum=10**6)
        return torch.full((L,), 1.0 / L, dtype=DEFAULT_DTYPE)
    x = as_tensor(x0, "x0", dtype=DEFAULT_DTYPE)
    if x.ndim != 1:
        raise ValueError(f"`x0` must be 1-D (one weight per task), got shape {tuple(x.shape)}")
    return project_simplex(x.detach())


def _backtrack(
    fun: Callable[[torch.Tensor], torch.Tensor], grad: Any, y: torch.Tensor, f_y: float, g_y: torch.Tensor, s: float
) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor, float]:
    """One projected step from ``y`` with step ``s`` halved until the model's decrease holds:
    ``(π⁺, π⁺ − y, f(π⁺), ∇f(π⁺), s)``; ``s < 1e-30`` when no step is accepted."""
    while True:  # backtracking: the projected step decreases the model for small s
        x_new = project_simplex(y - s * g_y)
        dx = x_new - y
        f_new, g_new = _value_and_grad(fun, grad, x_new)
        if math.isfinite(f_new):
            bound = float(dx @ dx) / (2 * s)
            if abs(f_new - f_y) > 1e-9 * abs(f_y):  # function values resolve the test
                ok = f_new <= f_y + float(g_y @ dx) + bound
            else:  # near the optimum: the gradient test is immune to rounding in f (as in TFOCS)
                ok = float((g_new - g_y) @ dx) <= bound
            if ok:
                return x_new, dx, f_new, g_new, s
        s /= 2.0
        if s < 1e-30:
            return x_new, dx, f_new, g_new, s


def minimize_on_simplex(
    fun: Callable[[torch.Tensor], torch.Tensor],
    x0: Any = None,
    *,
    num_tasks: int | None = None,
    grad: Callable[[torch.Tensor], torch.Tensor] | None = None,
    max_iter: int = 5000,
    tol: float = 1e-9,
    step: float = 1.0,
) -> SimplexResult:
    """Minimise ``fun(π)`` over the probability simplex by accelerated projected gradient.

    Each iteration takes ``π⁺ = Π(y − s ∇f(y))`` (:func:`project_simplex`) from the
    extrapolated point ``y`` (Nesterov/FISTA momentum, dropped whenever it points uphill:
    the gradient restart of O'Donoghue and Candès), with a backtracking step: ``s`` is
    halved until ``f(π⁺) <= f(y) + ∇f(y)·(π⁺ − y) + ‖π⁺ − y‖²/(2s)`` and doubled again at
    the next iteration. Near the optimum, where rounding hides changes in ``f``, the test
    switches to gradients, ``(∇f(π⁺) − ∇f(y))·(π⁺ − y) <= ‖π⁺ − y‖²/(2s)`` (as TFOCS does),
    so the weights converge to full precision, not only the value. For convex smooth ``f``
    this converges to the minimiser; otherwise to a KKT point (a local minimum in practice),
    so start it from the best point of a :func:`grid_search` for a non-convex objective.
    The iterates never leave the simplex.

    Args:
        fun: maps a mixture ``π`` (tensor (L,), float64) to a scalar tensor.
        x0: starting mixture (projected onto the simplex); uniform when None.
        num_tasks: ``L``, needed only when ``x0`` is None.
        grad: ``π -> ∇f(π)`` (L,); by default autograd through ``fun``.
        max_iter: iteration budget.
        tol: stop when the gradient mapping ``‖π⁺ − y‖_∞ / s <= tol · max(1, ‖∇f(y)‖_∞)``.
        step: initial step ``s``.

    Returns:
        :class:`SimplexResult`; its ``kkt`` is :func:`kkt_residual` at the answer.

    Defined in Chapter 6.
    """
    if not callable(fun):
        raise InputTypeError(f"`fun` must be a function of the mixture π, got {type(fun).__name__}")
    if grad is not None and not callable(grad):
        raise InputTypeError(f"`grad` must be a function π -> ∇f(π) or None, got {type(grad).__name__}")
    x = _start_point(x0, num_tasks)
    max_iter = check_pos_int(max_iter, "max_iter", maximum=10 * MAX_STEPS)
    tol = check_positive(tol, "tol")
    s = check_positive(step, "step")
    f_x, g_x = _value_and_grad(fun, grad, x)
    if not math.isfinite(f_x):
        raise ValueError("`fun` is not finite at the starting point; start from another mixture")
    y, f_y, g_y, t = x, f_x, g_x, 1.0
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - `it` is reported
        x_new, dx, f_new, g_new, s = _backtrack(fun, grad, y, f_y, g_y, min(2.0 * s, 1e12))
        if s < 1e-30:  # no acceptable step along the projected path: stop where we are
            break
        done = float(dx.abs().max()) / s <= tol * max(1.0, float(g_y.abs().max()))
        restart = float((y - x_new) @ (x_new - x)) > 0  # momentum points uphill: drop it
        x_prev, x, f_x, g_x = x, x_new, f_new, g_new
        if done:
            converged = True
            break
        if restart:
            t, y, f_y, g_y = 1.0, x, f_x, g_x
            continue
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y = project_simplex(x + (t - 1) / t_new * (x - x_prev))  # y stays feasible
        t = t_new
        f_y, g_y = _value_and_grad(fun, grad, y)
        if not math.isfinite(f_y):
            t, y, f_y, g_y = 1.0, x, f_x, g_x
    return SimplexResult(x.detach(), f_x, it, converged, kkt_residual(x, g_x))


def grid_search(fun: Callable[[torch.Tensor], torch.Tensor], num_tasks: int, resolution: int) -> SimplexResult:
    """Evaluate ``fun`` on :func:`simplex_grid` in one batched call and return the best point.

    ``fun`` must accept a batch of mixtures (N, L) and return (N,) values (NaN/inf count as
    worst). ``kkt`` is NaN (no gradient is computed); refine with :func:`minimize_on_simplex`.

    Defined in Chapter 6.
    """
    if not callable(fun):
        raise InputTypeError(f"`fun` must be a function of a batch of mixtures (N, L), got {type(fun).__name__}")
    grid = simplex_grid(num_tasks, resolution)
    with torch.no_grad():
        out = fun(grid)
        try:
            vals = torch.as_tensor(out, dtype=grid.dtype)
        except (TypeError, ValueError, RuntimeError) as err:
            raise InputTypeError(f"`fun` must return a tensor of (N,) values, got {type(out).__name__}") from err
    if vals.shape != (grid.shape[0],):
        raise ValueError(f"`fun` must map (N, L) mixtures to (N,) values, got shape {tuple(vals.shape)}")
    vals = torch.where(torch.isfinite(vals), vals, torch.full_like(vals, math.inf))
    if not bool(torch.isfinite(vals).any()):
        raise ValueError("`fun` is NaN or inf at every grid point: nothing to minimise")
    i = int(torch.argmin(vals))
    return SimplexResult(grid[i], float(vals[i]), grid.shape[0], True, math.nan)


# --------------------------------------------------------------------------- objectives


def _check_target(target_cov: Any, dim: int, dtype: torch.dtype) -> torch.Tensor:
    return check_cov(target_cov, "target_cov", dim=dim, dtype=dtype)


def qp_matrices(train_covs: Sequence[Any], target_cov: Any) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``H``, ``b``, ``c`` with ``‖I − Σ⁻¹ Σ_ℓ π_ℓ Λ_ℓ‖_F² = πᵀHπ − 2bᵀπ + c``.

    ``H_{ℓm} = tr(Λ_ℓ Σ⁻² Λ_m)`` (a Gram matrix, so PSD: the problem is a convex QP),
    ``b_ℓ = tr(Σ⁻¹ Λ_ℓ)``, ``c = d``. Shapes (L, L), (L,), float. Needs ``Σ ≻ 0``.

    Defined in Chapter 6.
    """
    lams = check_covs(train_covs)
    sig = _check_target(target_cov, lams[0].shape[0], lams[0].dtype)
    ev = torch.linalg.eigvalsh(sig)
    if ev.min() <= MISSING_TOL * ev.max().clamp_min(1e-300):
        raise ValueError("`target_cov` must be positive definite: the QP uses Σ⁻¹ (add the missing skills)")
    A = torch.stack([torch.linalg.solve(sig, lam) for lam in lams])  # Σ⁻¹ Λ_ℓ
    H = torch.einsum("lij,mij->lm", A, A)
    H = (H + H.T) / 2
    b = torch.einsum("lii->l", A)
    return H, b, float(sig.shape[0])


def qp_objective(weights: Any, train_covs: Sequence[Any], target_cov: Any) -> torch.Tensor:
    """``‖I − Σ⁻¹ Σ_ℓ π_ℓ Λ_ℓ‖_F²`` for mixtures of shape (..., L) (normalised to sum 1); returns (...).

    Defined in Chapter 6.
    """
    lams = check_covs(train_covs)
    pi = check_weights(weights, len(lams), lams[0])
    H, b, c = qp_matrices(lams, target_cov)
    return torch.einsum("...l,lm,...m->...", pi, H, pi) - 2 * pi @ b + c


def qp_weights(train_covs: Sequence[Any], target_cov: Any, **kwargs: Any) -> SimplexResult:
    """Solve ``min_π ‖I − Σ⁻¹ Σ_ℓ π_ℓ Λ_ℓ‖_F²`` over the simplex (convex QP) by :func:`minimize_on_simplex`.

    Builds ``H, b`` once (:func:`qp_matrices`) and uses the exact gradient ``2(Hπ − b)``;
    ``kwargs`` go to :func:`minimize_on_simplex` (e.g. ``tol``, ``x0``).

    Defined in Chapter 6.
    """
    H, b, c = qp_matrices(train_covs, target_cov)
    if float(H.abs().max()) == 0:
        raise ValueError("`train_covs` are all zero: every mixture gives the same objective")
    kwargs.setdefault("num_tasks", H.shape[0])
    kwargs.setdefault("step", 1.0 / float(2 * torch.linalg.eigvalsh(H).max()))
    return minimize_on_simplex(lambda p: p @ H @ p - 2 * p @ b + c, grad=lambda p: 2 * (H @ p - b), **kwargs)


def mixture_error(
    weights: Any,
    train_covs: Sequence[Any],
    context_lens: Sequence[int],
    target_cov: Any,
    num_steps: int | Sequence[int],
    *,
    chunk: int = 256,
) -> torch.Tensor:
    """Exact population k-step CoT error of the LSA trained on the mixture ``π``.

    ``Err_k(π) = ‖(I − G(π) Σ)^k‖_F²`` with ``G(π) = P Q⁺`` from
    :func:`tts_lib.theory.multitask_precond` (``w ~ N(0, I)``, test context ``m → ∞``);
    the same numbers as ``theory.error_curve(G, Σ, k)[..., k]``, computed by repeated
    squaring so that a whole simplex grid fits in memory (``chunk`` mixtures at a time).
    Differentiable in ``weights`` (autograd).

    Args:
        weights: mixtures, shape (..., L) (each normalised to sum 1).
        train_covs: ``L`` covariances ``Λ_ℓ`` (d, d).
        context_lens: ``L`` training context lengths ``n_ℓ``.
        target_cov: ``Σ`` (d, d).
        num_steps: ``k`` (int) or an increasing sequence of them.

    Returns:
        Shape (...) for an int ``num_steps``, (..., len(num_steps)) for a sequence.

    Defined in Chapter 6.
    """
    lams = check_covs(train_covs)
    sig = _check_target(target_cov, lams[0].shape[0], lams[0].dtype)
    context_lens = check_context_lens(context_lens, len(lams))
    pi = check_weights(weights, len(lams), lams[0])
    ks, single = _check_num_steps(num_steps)
    chunk = check_pos_int(chunk, "chunk")
    flat = pi.reshape(-1, len(lams))
    eye = torch.eye(sig.shape[0], dtype=sig.dtype, device=sig.device)
    outs = []
    for start in range(0, flat.shape[0], chunk):
        G = multitask_precond(lams, list(context_lens), flat[start : start + chunk])
        outs.append(_power_norms(eye - G @ sig, ks))
    out = torch.cat(outs).reshape(*pi.shape[:-1], len(ks))
    return out[..., 0] if single else out


def _check_num_steps(num_steps: Any) -> tuple[list[int], bool]:
    """``num_steps`` as an increasing list of ``k`` and whether it was a single int."""
    single = isinstance(num_steps, (int, np.integer)) or (isinstance(num_steps, torch.Tensor) and num_steps.ndim == 0)
    if single:
        ks = [check_pos_int(num_steps, "num_steps", minimum=0, maximum=2**62)]
    else:
        if not isinstance(num_steps, (list, tuple, range, torch.Tensor, np.ndarray)):
            raise InputTypeError(f"`num_steps` must be an int or a sequence of ints, got {num_steps!r}")
        steps = check_sequence(num_steps, "num_steps")
        ks = [check_pos_int(k, f"num_steps[{i}]", minimum=0, maximum=2**62) for i, k in enumerate(steps)]
    if not ks or any(b <= a for a, b in zip(ks, ks[1:], strict=False)):
        raise ValueError(f"`num_steps` must be an int or a non-empty increasing sequence, got {num_steps!r}")
    return ks, single


def _power_norms(M: torch.Tensor, ks: list[int]) -> torch.Tensor:
    """``‖M^k‖_F²`` for each ``k`` of the increasing ``ks`` by repeated squaring: M (..., d, d)
    → (..., len(ks)); ``M^k`` is the product of the squares ``M^(2^j)`` of the bits of ``k``."""
    squares = [M]  # squares[j] = M^(2^j)
    while 2 ** len(squares) <= ks[-1]:
        squares.append(squares[-1] @ squares[-1])
    errs = []
    for k in ks:
        power = None
        for j, sq in enumerate(squares):
            if (k >> j) & 1:
                power = sq if power is None else power @ sq
        if power is None:  # k = 0
            power = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device).expand_as(M)
        errs.append((power * power).sum((-1, -2)))
    return torch.stack(errs, dim=-1)

