"""Argument checks shared by the whole library.

Every public function validates its input early and raises ``ValueError`` with a
message that names the argument and says how to fix it (scikit-learn style).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

DEFAULT_DTYPE = torch.float64


def as_tensor(
    value: Any,
    name: str,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Convert ``value`` (array-like or tensor) to a floating tensor; reject NaN/inf."""
    if isinstance(value, torch.Tensor):
        t = value
        if dtype is None:
            dtype = t.dtype if t.is_floating_point() else DEFAULT_DTYPE
    else:
        try:
            t = torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise ValueError(f"`{name}` must be a numeric array, got {type(value).__name__}") from err
        dtype = dtype or DEFAULT_DTYPE
    t = t.to(device=device if device is not None else t.device, dtype=dtype)
    if not torch.isfinite(t).all():
        raise ValueError(f"`{name}` contains NaN or inf; pass finite values")
    return t


def check_cov(
    cov: Any,
    name: str = "cov",
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    dim: int | None = None,
) -> torch.Tensor:
    """Return ``cov`` as a tensor after checking it is a finite, square, symmetric PSD matrix."""
    c = as_tensor(cov, name, device=device, dtype=dtype)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"`{name}` must be a square (d, d) matrix, got shape {tuple(c.shape)}")
    if c.shape[0] < 1:
        raise ValueError(f"`{name}` must have at least one row")
    if dim is not None and c.shape[0] != dim:
        raise ValueError(f"`{name}` must be ({dim}, {dim}) to match the other inputs, got {tuple(c.shape)}")
    scale = c.abs().max().clamp_min(1e-300)
    tol = 1e-6 if c.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-10
    if (c - c.T).abs().max() > tol * scale:
        raise ValueError(f"`{name}` must be symmetric; symmetrise it with (C + C.T) / 2")
    eig_min = torch.linalg.eigvalsh(c.double()).min()
    if eig_min < -1e-8 * scale.double():
        raise ValueError(
            f"`{name}` must be positive semi-definite, its smallest eigenvalue is {eig_min.item():.3g}"
        )
    return c


def check_covs(covs: Any, name: str = "train_covs") -> list[torch.Tensor]:
    """Check a non-empty list of covariances of one dimension, dtype and device; return them as tensors."""
    if len(covs) == 0:
        raise ValueError(f"`{name}` must contain at least one covariance")
    first = check_cov(covs[0], f"{name}[0]")
    out = [first]
    for i, c in enumerate(list(covs)[1:], start=1):
        t = check_cov(c, f"{name}[{i}]", dim=first.shape[0], dtype=first.dtype)
        check_same_device(**{f"{name}[0]": first, f"{name}[{i}]": t})
        out.append(t)
    return out


def check_weights(weights: Any, num_tasks: int, like: torch.Tensor) -> torch.Tensor:
    """Mixture weights of shape (..., num_tasks), non-negative with a positive sum; returned normalised."""
    pi = as_tensor(weights, "weights", device=like.device, dtype=like.dtype)
    if pi.ndim < 1 or pi.shape[-1] != num_tasks:
        raise ValueError(f"`weights` must have shape (..., {num_tasks}) (one weight per task), got {tuple(pi.shape)}")
    if (pi < 0).any() or (pi.sum(-1) <= 0).any():
        raise ValueError("`weights` must be non-negative with a positive sum")
    return pi / pi.sum(-1, keepdim=True)


def check_precond(precond: Any, cov: Any, cov_name: str = "test_cov") -> tuple[torch.Tensor, torch.Tensor]:
    """Check a (batched) preconditioner ``G`` (..., d, d) against a covariance (d, d); return both."""
    sig = check_cov(cov, cov_name)
    G = as_tensor(precond, "precond", dtype=sig.dtype)
    d = sig.shape[0]
    if G.ndim < 2 or G.shape[-2:] != (d, d):
        raise ValueError(f"`precond` must have shape (..., {d}, {d}) to match `{cov_name}`, got {tuple(G.shape)}")
    check_same_device(**{"precond": G, cov_name: sig})
    return G, sig


def check_pos_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int after checking ``value >= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value}")
    return int(value)


def check_positive(value: Any, name: str) -> float:
    """Return ``value`` as a float after checking it is finite and > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`{name}` must be a positive number, got {value!r}") from err
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"`{name}` must be a positive finite number, got {value!r}")
    return v


def check_same_device(**tensors: torch.Tensor) -> None:
    """Raise if the given tensors live on different devices."""
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"`{k}` on {v}" for k, v in devices.items())
        raise ValueError(f"inputs are on different devices ({listing}); move them with .to(device)")


def make_generator(seed: int | torch.Generator | None) -> torch.Generator:
    """A CPU generator from a seed (or the generator itself). ``None`` draws a fresh seed."""
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator(device="cpu")
    if seed is None:
        g.seed()
    else:
        g.manual_seed(check_pos_int(seed, "seed", minimum=0))
    return g
