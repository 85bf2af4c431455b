"""Task families: feature covariances, their skills and their hardness.

A *task* draws ``w ~ N(0, I_d)`` and features ``x ~ N(0, Λ)``. The eigenvectors of
``Λ`` are the task's *skills*, its eigenvalues their strength, and

    Hard(Λ) = tr(Λ) / λ_min(Λ)

measures how unevenly the skills are represented (``d`` for isotropic ``Λ``).

This module is the one home of the skill basis: :func:`skills`, :func:`to_skills`,
:func:`per_skill_error` and :func:`commuting_spectra` (the shared skills of Λ and Σ).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ._checks import (
    DEFAULT_DTYPE,
    as_tensor,
    check_cov,
    check_device,
    check_dtype,
    check_memory,
    check_pos_int,
    check_positive,
    check_real,
    check_same_device,
    check_sequence,
    make_generator,
)

#: largest feature dimension d (a (d, d) covariance is dense)
MAX_DIM = 8192
#: an eigenvalue at most this fraction of the spectrum's scale (its trace or its largest
#: eigenvalue) counts as a *missing* skill: one tolerance for every module of the library
MISSING_TOL = 1e-12


def _check_range(eigvals: torch.Tensor, name: str) -> None:
    """Eigenvalues must stay where products of four of them are representable (see check_cov)."""
    info = torch.finfo(eigvals.dtype)
    top = float(eigvals.max())
    if not top <= info.max**0.25:
        raise ValueError(
            f"`{name}` gives eigenvalues up to {top:.3g}, beyond {info.max**0.25:.1e} where {eigvals.dtype} "
            "products of covariances overflow; lower it (or pass `trace`)"
        )
    if 0 < top < info.tiny**0.25:
        raise ValueError(f"`{name}` gives eigenvalues of at most {top:.3g}, too small for {eigvals.dtype}; raise it")


def _finish(
    eigvals: torch.Tensor,
    trace: float | None,
    rotation: Any,
    name: str = "eigvals",
) -> torch.Tensor:
    if trace is not None:
        trace = check_real(trace, "trace", minimum=0.0, open_min=True)
        eigvals = eigvals * (trace / eigvals.sum())
        name = "trace"
    _check_range(eigvals, name)
    cov = torch.diag(eigvals)
    if rotation is not None:
        dim = eigvals.shape[0]
        q = as_tensor(rotation, "rotation", device=eigvals.device, dtype=eigvals.dtype)
        if q.shape != (dim, dim):
            raise ValueError(f"`rotation` must be a ({dim}, {dim}) matrix, got {tuple(q.shape)}")
        eye = torch.eye(dim, dtype=q.dtype, device=q.device)
        if (q.T @ q - eye).abs().max() > 1e-6:
            raise ValueError("`rotation` must be orthogonal (Q.T @ Q = I); see tasks.random_rotation")
        cov = q @ cov @ q.T
        cov = (cov + cov.T) / 2
    return cov


def power_law_cov(
    dim: int,
    alpha: float,
    num_skills: int | None = None,
    trace: float | None = None,
    rotation: Any = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = DEFAULT_DTYPE,
) -> torch.Tensor:
    """Covariance with eigenvalues ``i**(-alpha)`` for ``i <= num_skills`` and 0 beyond.

    Args:
        dim: feature dimension ``d``.
        alpha: spectral decay (0 gives an isotropic block).
        num_skills: how many skills are present (all ``dim`` when None).
        trace: rescale so that ``tr(cov) == trace`` (no rescaling when None).
        rotation: an orthogonal ``(dim, dim)`` matrix ``Q``; returns ``Q diag(λ) Qᵀ``.

    Returns:
        ``(dim, dim)`` tensor.

    Defined in Chapter 1.
    """
    dim = check_pos_int(dim, "dim", maximum=MAX_DIM)
    num_skills = dim if num_skills is None else check_pos_int(num_skills, "num_skills")
    if num_skills > dim:
        raise ValueError(f"`num_skills` must be <= dim={dim}, got {num_skills}")
    alpha = check_real(alpha, "alpha")
    dtype, device = check_dtype(dtype), check_device(device)
    idx = torch.arange(1, dim + 1, dtype=dtype, device=device)
    eigvals = idx ** (-alpha)
    eigvals[num_skills:] = 0.0
    if trace is not None and not bool(torch.isfinite(eigvals.sum()) and (eigvals[:num_skills] > 0).all()):
        logs = -alpha * torch.log(idx[:num_skills].double())  # rescaled in the log domain
        eigvals = torch.zeros(dim, dtype=dtype, device=device)
        eigvals[:num_skills] = torch.exp(logs - logs.max()).to(dtype)
    if not bool(torch.isfinite(eigvals).all() and (eigvals[:num_skills] > 0).all()):
        raise ValueError(
            f"`alpha`={alpha:g}: the eigenvalues i**(-alpha), i <= {num_skills}, over- or underflow {dtype}; "
            "use a smaller |alpha|"
        )
    return _finish(eigvals, trace, rotation, "alpha")


def power_law_spectra(dim: int, alphas: Any, trace: float | None = None) -> torch.Tensor:
    """Spectra ``λ_i ∝ i^(−α)``, ``i = 1..d``, one row per ``α``: shape ``(*alphas.shape, d)``.

    Same eigenvalues as :func:`power_law_cov`, vectorised over ``α``.
    ``trace`` rescales every row to that trace (no rescaling when None).

    Defined in Chapter 5.
    """
    dim = check_pos_int(dim, "dim")
    a = as_tensor(alphas, "alphas", dtype=torch.float64)
    check_memory(a.numel() * dim, "dim", what=f"{a.numel()} spectra of length {dim}")
    idx = torch.arange(1, dim + 1, dtype=a.dtype, device=a.device)
    ev = idx ** (-a[..., None])
    if trace is not None:
        trace = check_real(trace, "trace", minimum=0.0, open_min=True)
        if not bool(torch.isfinite(ev.sum(-1)).all() and (ev > 0).all()):
            logs = -a[..., None] * idx.log()
            ev = torch.exp(logs - logs.amax(-1, keepdim=True))  # rescaled in the log domain: no overflow
        ev = ev * (trace / ev.sum(-1, keepdim=True))
    if ev.numel() and (not bool(torch.isfinite(ev).all() and (ev > 0).all())
                       or float(ev.max()) > torch.finfo(ev.dtype).max ** 0.25):
        raise ValueError("`alphas` (or `trace`) give eigenvalues i**(-alpha) that over- or underflow float64; "
                         "use a smaller |alpha| (or a smaller trace)")
    return ev


def isotropic_cov(
    dim: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = DEFAULT_DTYPE,
) -> torch.Tensor:
    """The identity covariance ``I_d`` (every skill equally strong; hardness ``d``).

    Defined in Chapter 1.
    """
    dim = check_pos_int(dim, "dim", maximum=MAX_DIM)
    return torch.eye(dim, dtype=check_dtype(dtype), device=check_device(device))


def diag_cov(
    eigvals: Any,
    trace: float | None = None,
    rotation: Any = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = DEFAULT_DTYPE,
) -> torch.Tensor:
    """Covariance with the given (non-negative) eigenvalues, optionally rescaled and rotated.

    Defined in Chapter 2.
    """
    ev = as_tensor(eigvals, "eigvals", device=device, dtype=dtype)
    if ev.ndim != 1 or ev.numel() < 1:
        raise ValueError(f"`eigvals` must be a non-empty 1-D array, got shape {tuple(ev.shape)}")
    if ev.numel() > MAX_DIM:
        raise ValueError(f"`eigvals` must have at most {MAX_DIM} entries (tasks.MAX_DIM), got {ev.numel()}")
    if (ev < 0).any():
        raise ValueError("`eigvals` must be non-negative (a covariance is PSD)")
    if trace is not None and float(ev.sum()) <= 0:
        raise ValueError("`eigvals` are all zero: they cannot be rescaled to a `trace`")
    return _finish(ev.clone(), trace, rotation)


#: the named feature covariances of the book, ``name → (description, spectrum)``: one home
#: for a covariance family (the GPT-2 trainer's ``--train-cov`` reads its names from here).
#: A new family is one entry: a function ``dim → (dim, dim)`` covariance (float64).
NAMED_COVS: dict[str, tuple[str, Any]] = {
    "isotropic": ("Λ = I_d", lambda dim: isotropic_cov(dim)),
    "skewed": ("λ_i ∝ 1/i, tr Λ = d", lambda dim: power_law_cov(dim, 1.0, trace=float(dim))),
    "skewed2": ("λ_i ∝ 1/i², tr Λ = d (Garg et al.'s skewed setting)",
                lambda dim: power_law_cov(dim, 2.0, trace=float(dim))),
}


def named_cov(name: str, dim: int) -> torch.Tensor:
    """The named covariance of :data:`NAMED_COVS` in dimension ``dim``, (dim, dim) float64
    (e.g. ``named_cov("skewed2", 20)``). Defined in Chapter 7."""
    if not isinstance(name, str) or name not in NAMED_COVS:
        raise ValueError(f"`name` must be one of {tuple(NAMED_COVS)}, got {name!r}")
    dim = check_pos_int(dim, "dim", maximum=MAX_DIM)
    return NAMED_COVS[name][1](dim)


def random_rotation(
    dim: int,
    seed: int | torch.Generator | None = 0,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = DEFAULT_DTYPE,
) -> torch.Tensor:
    """A Haar-random orthogonal ``(dim, dim)`` matrix (QR of a Gaussian, sign-fixed).

    Defined in Chapter 2.
    """
    dim = check_pos_int(dim, "dim", maximum=MAX_DIM)
    dtype, device = check_dtype(dtype), check_device(device)
    g = make_generator(seed)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))
    return q.to(device=device, dtype=dtype)


def skills(cov: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Skills and their strengths: eigenvalues (descending, shape (d,)) and eigenvectors (columns).

    Defined in Chapter 1.
    """
    c = check_cov(cov, "cov")
    eigvals, eigvecs = torch.linalg.eigh(c)
    order = torch.argsort(eigvals, descending=True)
    return eigvals[order].clamp_min(0.0), eigvecs[:, order]


def to_skills(vectors: Any, cov: Any) -> torch.Tensor:
    """Coordinates of vectors (..., d) in the skill basis of ``cov`` (eigenvectors, strongest first).

    Defined in Chapter 1.
    """
    _, U = skills(cov)
    v = as_tensor(vectors, "vectors", device=U.device, dtype=U.dtype)
    if v.shape[-1] != U.shape[0]:
        raise ValueError(f"`vectors` must have last dimension {U.shape[0]}, got {tuple(v.shape)}")
    return v @ U


def per_skill_error(error_matrix: Any, cov: Any) -> torch.Tensor:
    """Per-skill error ``u_iᵀ M u_i`` of an error matrix ``M`` (..., d, d), skills of ``cov`` strongest first.

    Sums to ``tr M`` (the total error); with :func:`one_step_error_matrix` it gives the
    expected squared error of ``ŵ − w`` along each skill.

    Defined in Chapter 1.
    """
    _, U = skills(cov)
    M = as_tensor(error_matrix, "error_matrix", device=U.device, dtype=U.dtype)
    if M.ndim < 2 or M.shape[-2:] != U.shape:
        raise ValueError(f"`error_matrix` must have shape (..., {U.shape[0]}, {U.shape[0]}), got {tuple(M.shape)}")
    return torch.diagonal(U.T @ M @ U, dim1=-2, dim2=-1)


def commuting_spectra(train_cov: Any, test_cov: Any, atol: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues of ``Λ`` and ``Σ`` in a shared eigenbasis (their common skills), shape (d,) each.

    Raises ``ValueError`` when ``Λ`` and ``Σ`` do not commute (then the skills are not
    shared and the per-skill formulas of this module do not apply; use
    :func:`tts_lib.theory.error_curve` instead). Order: by decreasing ``λ_i``.

    Defined in Chapter 5.
    """
    lam = check_cov(train_cov, "train_cov")
    sig = check_cov(test_cov, "test_cov", dim=lam.shape[0], dtype=lam.dtype)
    check_same_device(train_cov=lam, test_cov=sig)
    atol = check_real(atol, "atol", minimum=0.0)
    scale = float(lam.abs().max() * sig.abs().max()) or 1.0
    if float((lam @ sig - sig @ lam).abs().max()) > atol * scale:
        raise ValueError("`train_cov` and `test_cov` do not commute: their skills are not shared")
    # a generic combination of the two separates their joint eigenspaces
    lam_scale = max(float(lam.abs().max()), 1e-300)
    sig_scale = max(float(sig.abs().max()), 1e-300)
    _, q = torch.linalg.eigh(lam / lam_scale + 0.7390851332151607 * sig / sig_scale)
    lam_d = q.T @ lam @ q
    sig_d = q.T @ sig @ q
    off = max(float((lam_d - torch.diag(torch.diagonal(lam_d))).abs().max()),
              float((sig_d - torch.diag(torch.diagonal(sig_d))).abs().max()))
    if off > 1e-6 * max(float(lam.abs().max()), float(sig.abs().max())):  # pragma: no cover - degenerate
        raise ValueError("could not diagonalise `train_cov` and `test_cov` together")
    lv, sv = torch.diagonal(lam_d).clamp_min(0.0), torch.diagonal(sig_d).clamp_min(0.0)
    order = torch.argsort(lv, descending=True, stable=True)
    return lv[order], sv[order]


def hardness(cov: Any) -> float:
    """``Hard(Λ) = tr(Λ) / λ_min(Λ)``; ``inf`` when a skill is missing (singular ``Λ``).

    Defined in Chapter 1.
    """
    c = check_cov(cov, "cov").double()
    eigvals = torch.linalg.eigvalsh(c)
    tr = float(eigvals.sum())
    lam_min = float(eigvals.min())
    if lam_min <= MISSING_TOL * max(tr, 1e-300):
        return float("inf")
    return tr / lam_min


# --------------------------------------------------------------------------- task types (chapter 6)


@dataclass(frozen=True)
class TaskType:
    """A candidate training task: eigenvalues ``λ_i ∝ i^(−alpha)`` on ``num_skills`` skills.

    Defined in Chapter 6.
    """

    name: str
    alpha: float
    num_skills: int
    context_len: int


def task_type_covs(
    types: Sequence[TaskType],
    dim: int,
    trace: float | None = None,
    rotation: Any = None,
) -> list[torch.Tensor]:
    """Covariances (d, d) of the task types (:func:`power_law_cov`), each with the given trace.

    Defined in Chapter 6.
    """
    types = check_sequence(types, "types")
    if len(types) == 0:
        raise ValueError("`types` must contain at least one TaskType")
    for i, t in enumerate(types):
        if not isinstance(t, TaskType):
            raise ValueError(f"`types[{i}]` must be a TaskType(name, alpha, num_skills, context_len)")
        check_pos_int(t.context_len, f"types[{i}].context_len")
    if trace is not None:
        check_positive(trace, "trace")
    dim = check_pos_int(dim, "dim")
    covs = []
    for i, t in enumerate(types):
        try:
            covs.append(power_law_cov(dim, t.alpha, t.num_skills, trace=trace, rotation=rotation))
        except ValueError as err:
            if "`trace`" in str(err) or "`rotation`" in str(err):
                raise
            raise type(err)(f"`types[{i}]` ({t.name!r}): {err}") from err
    return covs
