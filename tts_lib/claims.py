"""The book's claim checks, one line each.

Every claim a chapter makes has a check cell: it fails if the claim breaks and otherwise
prints one line, ``✓ <the claim>``, that the reader sees under the collapsed code.
:func:`check` and :func:`check_close` write that pattern once, so that a check reads as the
claim itself::

    check(err_k.argmin() == 3, "the error is smallest at k = 3", k_best=int(err_k.argmin()))
    check_close(model_G, theory_G, "training reaches −Γ⁻¹", rtol=1e-3)

Defined in Chapter 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["ClaimError", "check", "check_close"]


class ClaimError(AssertionError):
    """A claim of the book that the numbers just computed do not support."""


def _fmt(value: Any) -> str:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _suffix(values: dict[str, Any]) -> str:
    return " (" + ", ".join(f"{k} = {_fmt(v)}" for k, v in values.items()) + ")" if values else ""


def _truth(ok: Any) -> bool:
    if isinstance(ok, torch.Tensor | np.ndarray):
        if (ok.numel() if isinstance(ok, torch.Tensor) else ok.size) == 0:
            raise ValueError("check: ok is an empty array; pass one boolean (e.g. use .all())")
        return bool(ok.all())
    if isinstance(ok, bool | np.bool_):
        return bool(ok)
    raise TypeError(
        f"check: ok must be a boolean or a boolean array, got {type(ok).__name__}; "
        "compare first (e.g. error < 0.1)"
    )


def check(ok: Any, claim: str, **shown: Any) -> None:
    """Print ``✓ claim`` if ``ok`` holds, else raise :class:`ClaimError` naming the claim.

    Args:
        ok: a boolean, or a boolean tensor/array (every entry must hold).
        claim: the claim in words, as the text states it.
        **shown: numbers printed with the claim (and in the error), e.g. ``z=1.3``.

    Defined in Chapter 1.
    """
    if not isinstance(claim, str) or not claim.strip():
        raise ValueError("check: claim must be a non-empty string saying what is checked")
    if not _truth(ok):
        raise ClaimError(f"claim does not hold: {claim}{_suffix(shown)}")
    print(f"✓ {claim}{_suffix(shown)}")


def check_close(
    actual: Any, expected: Any, claim: str, *, rtol: float = 1e-7, atol: float = 0.0,
    **shown: Any,
) -> None:
    """:func:`check` that ``actual`` equals ``expected`` within ``atol + rtol·|expected|``
    (element-wise; tensors, arrays or numbers of the same shape), showing the largest gap.

    Defined in Chapter 1.
    """
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(tol, int | float) and np.isfinite(tol) and tol >= 0):
            raise ValueError(f"check_close: {name} must be a finite number >= 0, got {tol!r}")
    a = np.asarray(actual.detach().cpu() if isinstance(actual, torch.Tensor) else actual,
                   dtype=float)
    e = np.asarray(expected.detach().cpu() if isinstance(expected, torch.Tensor) else expected,
                   dtype=float)
    if a.shape != e.shape:
        raise ValueError(
            f"check_close: actual has shape {a.shape} and expected {e.shape}; "
            "compare arrays of one shape"
        )
    gap = np.abs(a - e)
    ok = bool(np.all(np.isfinite(a)) and np.all(gap <= atol + rtol * np.abs(e)))
    rel = float(np.max(gap / np.maximum(np.abs(e), np.finfo(float).tiny))) if a.size else 0.0
    check(ok, claim, **shown, max_rel_gap=rel)
