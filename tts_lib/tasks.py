"""Task families: feature covariances, their skills and their hardness.

A *task* draws ``w ~ N(0, I_d)`` and features ``x ~ N(0, Λ)``. The eigenvectors of
``Λ`` are the task's *skills*, its eigenvalues their strength, and

    Hard(Λ) = tr(Λ) / λ_min(Λ)

measures how unevenly the skills are represented (``d`` for isotropic ``Λ``).
"""

from __future__ import annotations

from typing import Any

import torch

from ._checks import DEFAULT_DTYPE, as_tensor, check_cov, check_pos_int, make_generator


def _finish(
    eigvals: torch.Tensor,
    trace: float | None,
    rotation: Any,
) -> torch.Tensor:
    if trace is not None:
        if not float(trace) > 0:
            raise ValueError(f"`trace` must be positive, got {trace!r}")
        eigvals = eigvals * (float(trace) / eigvals.sum())
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
    """
    dim = check_pos_int(dim, "dim")
    num_skills = dim if num_skills is None else check_pos_int(num_skills, "num_skills")
    if num_skills > dim:
        raise ValueError(f"`num_skills` must be <= dim={dim}, got {num_skills}")
    alpha_t = as_tensor(alpha, "alpha")
    if alpha_t.ndim != 0:
        raise ValueError(f"`alpha` must be a number, got shape {tuple(alpha_t.shape)}")
    idx = torch.arange(1, dim + 1, dtype=dtype, device=device)
    eigvals = idx ** (-float(alpha_t))
    eigvals[num_skills:] = 0.0
    return _finish(eigvals, trace, rotation)


def isotropic_cov(
    dim: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = DEFAULT_DTYPE,
) -> torch.Tensor:
    """The identity covariance ``I_d`` (every skill equally strong; hardness ``d``)."""
    dim = check_pos_int(dim, "dim")
    return torch.eye(dim, dtype=dtype, device=device)


def diag_cov(
    eigvals: Any,
    trace: float | None = None,
    rotation: Any = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = DEFAULT_DTYPE,
) -> torch.Tensor:
    """Covariance with the given (non-negative) eigenvalues, optionally rescaled and rotated."""
    ev = as_tensor(eigvals, "eigvals", device=device, dtype=dtype)
    if ev.ndim != 1 or ev.numel() < 1:
        raise ValueError(f"`eigvals` must be a non-empty 1-D array, got shape {tuple(ev.shape)}")
    if (ev < 0).any():
        raise ValueError("`eigvals` must be non-negative (a covariance is PSD)")
    return _finish(ev.clone(), trace, rotation)


def random_rotation(
    dim: int,
    seed: int | torch.Generator | None = 0,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = DEFAULT_DTYPE,
) -> torch.Tensor:
    """A Haar-random orthogonal ``(dim, dim)`` matrix (QR of a Gaussian, sign-fixed)."""
    dim = check_pos_int(dim, "dim")
    g = make_generator(seed)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))
    return q.to(device=device, dtype=dtype)


def skills(cov: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Skills and their strengths: eigenvalues (descending, shape (d,)) and eigenvectors (columns)."""
    c = check_cov(cov, "cov")
    eigvals, eigvecs = torch.linalg.eigh(c)
    order = torch.argsort(eigvals, descending=True)
    return eigvals[order].clamp_min(0.0), eigvecs[:, order]


def hardness(cov: Any) -> float:
    """``Hard(Λ) = tr(Λ) / λ_min(Λ)``; ``inf`` when a skill is missing (singular ``Λ``)."""
    c = check_cov(cov, "cov").double()
    eigvals = torch.linalg.eigvalsh(c)
    tr = float(eigvals.sum())
    lam_min = float(eigvals.min())
    if lam_min <= 1e-12 * max(tr, 1e-300):
        return float("inf")
    return tr / lam_min
