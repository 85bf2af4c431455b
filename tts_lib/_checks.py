"""Argument checks shared by the whole library.

Every public function validates its input early and raises ``ValueError`` with a
message that names the argument and says how to fix it (scikit-learn style); inputs of
the wrong type (None, strings, complex, bool) raise :class:`InputTypeError`, which is
both a ``TypeError`` and a ``ValueError``. The checks run in this order, so each error
names its cause: type, device (a ``meta`` tensor has no data to check), dtype (float32
or float64), shape, NaN/inf, range. Work is bounded before it starts: loops over steps
by :data:`MAX_STEPS`, allocations by :data:`MAX_BYTES` (estimated, then refused with the
argument to lower); a curve over CoT steps that overflows is refused by
:func:`check_finite_curve` (the step where it overflowed, the argument to lower).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

DEFAULT_DTYPE = torch.float64


class InputTypeError(TypeError, ValueError):
    """An argument of the wrong type (None, a string, complex, ...).

    A ``TypeError`` that is also a ``ValueError``, so ``except ValueError`` keeps
    catching every bad-argument error of the library (as numpy's ``AxisError`` does).
    """


#: dtypes the library computes in (torch's linear algebra has no float16/bfloat16 kernels)
FLOAT_DTYPES = (torch.float32, torch.float64)
#: device types the library computes on (``meta`` tensors hold no data)
DEVICE_TYPES = ("cpu", "cuda", "mps")
#: largest tensor a public function allocates, in bytes; bigger requests are refused up front
MAX_BYTES = 2 * 2**30
#: most steps of a Python loop over CoT steps, iterations or repeats
MAX_STEPS = 100_000
#: largest integer argument (torch computes counts in int64)
MAX_INT = 2**62


def check_dtype(dtype: Any, name: str = "dtype") -> torch.dtype:
    """Return ``dtype`` after checking it is ``torch.float32`` or ``torch.float64``."""
    if not isinstance(dtype, torch.dtype):
        raise InputTypeError(f"`{name}` must be a torch.dtype (torch.float32 or torch.float64), got {dtype!r}")
    if dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"`{name}` must be torch.float32 or torch.float64, got {dtype} "
            "(integer, complex and half-precision dtypes are not supported)"
        )
    return dtype


def check_device(device: Any, name: str = "device") -> torch.device | None:
    """Parse ``device`` (None, a string or a ``torch.device``); check it exists and can compute."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"`{name}` must be a device such as 'cpu' or 'cuda', got {device!r}") from err
    if dev.type not in DEVICE_TYPES:
        raise ValueError(f"`{name}` must be a cpu or cuda device, got {dev}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"`{name}`={device!r} but no CUDA device is available; use 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"`{name}`={device!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"`{name}`={device!r} but no MPS device is available; use 'cpu'")
    return dev


def check_memory(numel: int, name: str, *, what: str = "the result", itemsize: int = 8) -> None:
    """Refuse, before allocating, a tensor of ``numel`` elements beyond :data:`MAX_BYTES`."""
    need = int(numel) * itemsize
    if need > MAX_BYTES:
        raise ValueError(
            f"`{name}` is too large: {what} would need about {need / 2**30:.3g} GiB "
            f"(limit {MAX_BYTES / 2**30:g} GiB, tts_lib._checks.MAX_BYTES); lower `{name}`"
        )


def check_finite_curve(
    curve: torch.Tensor, name: str, *, what: str, fix: str | Callable[[], str], step_axis: int = -1
) -> torch.Tensor:
    """Return ``curve`` (values for ``k = 0 … K`` along ``step_axis``) if it is finite.

    Otherwise raise ``ValueError`` naming the first step ``k`` at which it overflowed, the
    argument ``name`` that set ``K`` (lower it below that ``k``) and ``fix`` (the other way
    out, e.g. a convergent preconditioner; a callable is only called on failure). One rule
    for every error curve of the library: a divergent iteration is refused, never returned
    as inf or NaN.
    """
    finite = torch.isfinite(curve)
    if bool(finite.all()):
        return curve
    steps = curve.shape[step_axis]
    bad = (~finite).movedim(step_axis, 0).reshape(steps, -1).any(-1)
    k = int(bad.nonzero()[0])
    advice = f"lower `{name}` to at most {k - 1}" if k >= 1 else f"check `{name}`"
    fix = fix() if callable(fix) else fix
    raise ValueError(
        f"{what} overflows {curve.dtype} at step k = {k} (`{name}`={steps - 1}); {advice}, or {fix}"
    )


def as_tensor(
    value: Any,
    name: str,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Convert ``value`` (array-like or tensor) to a real float32/float64 tensor; reject NaN/inf.

    Raises ``TypeError`` for None, strings, complex or non-numeric input and ``ValueError``
    for a meta (or other unusable) device, half precision, NaN or inf.
    """
    if dtype is not None:
        dtype = check_dtype(dtype)
    if isinstance(value, torch.Tensor):
        t = value
        if t.device.type not in DEVICE_TYPES:
            raise ValueError(f"`{name}` is on the {t.device} device, which holds no data; pass a cpu or cuda tensor")
        if t.is_complex():
            raise InputTypeError(f"`{name}` is complex ({t.dtype}); pass real values")
        if dtype is None:
            if t.dtype in (torch.float16, torch.bfloat16):
                raise ValueError(f"`{name}` has dtype {t.dtype}; use float32 or float64 (e.g. `{name}.double()`)")
            dtype = t.dtype if t.is_floating_point() else DEFAULT_DTYPE
    else:
        if value is None or isinstance(value, (str, bytes, bool)):
            raise InputTypeError(f"`{name}` must be a numeric array or tensor, got {type(value).__name__}")
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as err:
            raise InputTypeError(f"`{name}` must be a numeric array, got {type(value).__name__}") from err
        if arr.dtype.kind == "c":
            raise InputTypeError(f"`{name}` is complex; pass real values")
        if arr.dtype.kind not in "biuf":
            raise InputTypeError(f"`{name}` must be a numeric array, got {type(value).__name__} of {arr.dtype}")
        t = torch.as_tensor(arr.astype(np.float64))
        dtype = dtype or DEFAULT_DTYPE
    device = check_device(device) if device is not None else t.device
    t = t.to(device=device, dtype=dtype)
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
    info = torch.finfo(c.dtype)
    big, small = info.max**0.25, info.tiny**0.25  # products of four entries stay representable
    top = float(c.detach().abs().max())
    if top > big or 0 < top < small:
        raise ValueError(
            f"`{name}` has entries of size {top:.3g}, outside [{small:.1e}, {big:.1e}] where {c.dtype} "
            "products of covariances stay finite; rescale it (the error curves are scale-free in Λ)"
        )
    tol = 1e-6 if c.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-10
    if (c - c.T).abs().max() > tol * scale:
        raise ValueError(f"`{name}` must be symmetric; symmetrise it with (C + C.T) / 2")
    eig_min = torch.linalg.eigvalsh(c.double()).min()
    if eig_min < -1e-8 * scale.double():
        raise ValueError(
            f"`{name}` must be positive semi-definite, its smallest eigenvalue is {eig_min.item():.3g}"
        )
    return c


def check_path(value: Any, name: str) -> Path:
    """A file-system path given as a ``str`` or ``os.PathLike``: non-empty, no NUL byte."""
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)):
        raise InputTypeError(f"`{name}` must be a path (str or pathlib.Path), got {type(value).__name__}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip() or "\x00" in text or len(text) > 4096:
        raise ValueError(f"`{name}` must be a non-empty path without NUL bytes, at most 4096 characters, "
                         f"got {value!r:.100}")
    return Path(text)


def check_sequence(value: Any, name: str) -> list[Any]:
    """Return ``value`` (a list, tuple or tensor with a leading axis) as a list; reject anything else."""
    if isinstance(value, torch.Tensor):
        if value.ndim < 1:
            raise InputTypeError(f"`{name}` must be a sequence, got a 0-d tensor")
        return list(value)
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple, range)):
        if isinstance(value, np.ndarray) and value.ndim >= 1:
            return list(value)
        raise InputTypeError(f"`{name}` must be a list or tuple, got {type(value).__name__}")
    return list(value)


def check_covs(covs: Any, name: str = "train_covs") -> list[torch.Tensor]:
    """Check a non-empty list of covariances of one dimension, dtype and device; return them as tensors."""
    covs = check_sequence(covs, name)
    if len(covs) == 0:
        raise ValueError(f"`{name}` must contain at least one covariance")
    first = check_cov(covs[0], f"{name}[0]")
    out = [first]
    for i, c in enumerate(covs[1:], start=1):
        t = check_cov(c, f"{name}[{i}]", dim=first.shape[0], dtype=first.dtype)
        check_same_device(**{f"{name}[0]": first, f"{name}[{i}]": t})
        out.append(t)
    return out


def check_context_lens(context_lens: Any, num_tasks: int, name: str = "context_lens") -> list[int]:
    """One context length ``n >= 1`` per task: a list of ``num_tasks`` ints."""
    lens = check_sequence(context_lens, name)
    if len(lens) != num_tasks:
        raise ValueError(f"`{name}` must have {num_tasks} entries (one per task), got {len(lens)}")
    return [check_pos_int(n, f"{name}[{i}]") for i, n in enumerate(lens)]


def check_weights(weights: Any, num_tasks: int, like: torch.Tensor) -> torch.Tensor:
    """Mixture weights of shape (..., num_tasks), non-negative with a positive sum; returned normalised."""
    pi = as_tensor(weights, "weights", device=like.device, dtype=like.dtype)
    if pi.ndim < 1 or pi.shape[-1] != num_tasks:
        raise ValueError(f"`weights` must have shape (..., {num_tasks}) (one weight per task), got {tuple(pi.shape)}")
    if (pi < 0).any() or (pi.sum(-1) <= 0).any():
        raise ValueError("`weights` must be non-negative with a positive sum")
    pi = pi / pi.amax(-1, keepdim=True)  # no overflow in the sum for huge weights
    return pi / pi.sum(-1, keepdim=True)


def check_precond(precond: Any, cov: Any, cov_name: str = "test_cov") -> tuple[torch.Tensor, torch.Tensor]:
    """Check a (batched) preconditioner ``G`` (..., d, d) against a covariance (d, d); return both."""
    sig = check_cov(cov, cov_name)
    G = as_tensor(precond, "precond", dtype=sig.dtype)
    d = sig.shape[0]
    if G.ndim < 2 or G.shape[-2:] != (d, d):
        raise ValueError(f"`precond` must have shape (..., {d}, {d}) to match `{cov_name}`, got {tuple(G.shape)}")
    big = torch.finfo(G.dtype).max ** 0.25
    top = float(G.detach().abs().max()) if G.numel() else 0.0
    if top > big:
        raise ValueError(f"`precond` has entries up to {top:.3g}, beyond {big:.1e}; rescale it")
    check_same_device(**{"precond": G, cov_name: sig})
    return G, sig


def check_pos_int(value: Any, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` as an int after checking ``minimum <= value (<= maximum)``."""
    if isinstance(value, torch.Tensor) and value.ndim == 0 and not value.is_floating_point() \
            and not value.is_complex() and value.dtype != torch.bool:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value}")
    maximum = MAX_INT if maximum is None else maximum
    if value > maximum:
        raise ValueError(f"`{name}` must be <= {maximum} (a limit of tts_lib), got {value}")
    return int(value)


def check_real(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    open_min: bool = False,
) -> float:
    """Return ``value`` as a finite float in ``[minimum, maximum]`` (``(minimum, ...]`` if ``open_min``)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item() if value.device.type in DEVICE_TYPES else value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"`{name}` must be a real number, got {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}")
    if minimum is not None and (v < minimum or (open_min and v == minimum)):
        raise ValueError(f"`{name}` must be {'>' if open_min else '>='} {minimum:g}, got {value!r}")
    if maximum is not None and v > maximum:
        raise ValueError(f"`{name}` must be <= {maximum:g}, got {value!r}")
    return v


def check_positive(value: Any, name: str) -> float:
    """Return ``value`` as a float after checking it is finite and > 0."""
    return check_real(value, name, minimum=0.0, open_min=True)


def check_same_device(**tensors: torch.Tensor) -> None:
    """Raise if the given tensors live on different devices."""
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"`{k}` on {v}" for k, v in devices.items())
        raise ValueError(f"inputs are on different devices ({listing}); move them with .to(device)")


def make_generator(seed: int | torch.Generator | None, name: str = "seed") -> torch.Generator:
    """A CPU generator from a seed (or the generator itself). ``None`` draws a fresh seed."""
    if isinstance(seed, torch.Generator):
        if seed.device.type != "cpu":
            raise ValueError(f"`{name}` must be a CPU torch.Generator (sampling happens on the CPU), got {seed.device}")
        return seed
    g = torch.Generator(device="cpu")
    if seed is None:
        g.seed()
    else:
        g.manual_seed(check_pos_int(seed, name, minimum=0, maximum=2**63 - 1))
    return g


def check_spectrum(value: Any, name: str) -> torch.Tensor:
    """Eigenvalues of covariances, shape (..., d): float64, non-negative, not huge."""
    t = as_tensor(value, name, dtype=torch.float64)
    if t.ndim < 1 or t.shape[-1] < 1:
        raise ValueError(f"`{name}` must have shape (..., d) with d >= 1, got {tuple(t.shape)}")
    if (t < 0).any():
        raise ValueError(f"`{name}` must be non-negative (eigenvalues of a covariance)")
    big = torch.finfo(t.dtype).max ** 0.25
    if t.numel() and float(t.max()) > big:
        raise ValueError(f"`{name}` has eigenvalues up to {float(t.max()):.3g}, beyond {big:.1e}; rescale them")
    return t


def check_context_len_grid(context_lens: Any, like: torch.Tensor) -> torch.Tensor:
    """Context lengths as a tensor like ``like`` (any shape, for broadcasting): integers >= 1."""
    n = as_tensor(context_lens, "context_lens", device=like.device, dtype=like.dtype)
    if (n < 1).any() or (n != n.round()).any():
        raise ValueError("`context_lens` must be integers >= 1")
    return n
