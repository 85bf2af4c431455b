"""The few metrics every chapter uses, and one evaluation of any model on given prompts.

* :func:`cot_squared_errors` runs ``model.cot(prompts, num_steps)`` — the LSA's
  (:meth:`tts_lib.lsa.LinearSelfAttention.cot`) or the GPT-2's
  (:meth:`tts_lib.gpt2.GPT2Regressor.cot`) — and returns ``‖ŵ_i − w‖²`` per prompt;
* :func:`squared_errors` does the same for iterates already computed;
* :func:`mean_se` is the mean and its standard error (``ddof = 1`` everywhere in the book:
  over prompts, or over seeds for curves of several trained models);
* :func:`rel_frobenius` is ``‖A − B‖_F / ‖B‖_F``.

Defined in Chapter 7 (GPT-2 validation), where one interface evaluates both model families
on the same prompts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ._checks import MAX_STEPS, InputTypeError, as_tensor, check_pos_int, check_real
from .prompts import Prompts

__all__ = [
    "cot_squared_errors",
    "mean_se",
    "rel_frobenius",
    "rise_after_min",
    "squared_errors",
    "steps_to_reach",
    "z_score",
]


def squared_errors(iterates: Any, w: Any) -> torch.Tensor:
    """``‖ŵ − w‖²`` per prompt (and step): iterates (batch, k + 1, d) → (batch, k + 1), or
    one estimate per prompt (batch, d) → (batch,); ``w`` (batch, d). Float64 on the
    iterates' device.

    Defined in Chapter 1.
    """
    it = as_tensor(iterates, "iterates")
    target = as_tensor(w, "w", device=it.device)
    if it.ndim not in (2, 3):
        raise ValueError(f"`iterates` must have shape (batch, k + 1, d) or (batch, d), got {tuple(it.shape)}")
    if tuple(target.shape) != (it.shape[0], it.shape[-1]):
        raise ValueError(
            f"`w` must have shape (batch, d) = {(it.shape[0], it.shape[-1])} to match `iterates`, "
            f"got {tuple(target.shape)}"
        )
    t = target.detach().double()
    return ((it.detach().double() - (t[:, None, :] if it.ndim == 3 else t)) ** 2).sum(-1)


def cot_squared_errors(model: Any, prompts: Prompts, num_steps: int, **cot_kwargs: Any) -> torch.Tensor:
    """Squared errors ``‖ŵ_i − w‖²`` of ``model``'s CoT on the given ``prompts``, shape
    (batch, k + 1), float64, without gradients.

    Args:
        model: anything with ``cot(prompts, num_steps, **cot_kwargs)`` returning iterates
            (batch, k + 1, d): an LSA or a GPT-2 regressor.
        prompts: the test prompts (the same prompts for every model compared).
        num_steps: ``k``, CoT steps.
        cot_kwargs: passed on (``w0``, ``use_cache``; for the GPT-2 also ``keep_history``).

    Defined in Chapter 7.
    """
    if not callable(getattr(model, "cot", None)):
        raise InputTypeError(
            f"`model` must have a cot(prompts, num_steps) method (an LSA or a GPT2Regressor), "
            f"got {type(model).__name__}"
        )
    if not isinstance(prompts, Prompts):
        raise InputTypeError(f"`prompts` must be a Prompts (from sample_prompts), got {type(prompts).__name__}")
    k = check_pos_int(num_steps, "num_steps", minimum=0, maximum=MAX_STEPS)
    with torch.no_grad():
        iterates = model.cot(prompts, k, **cot_kwargs)
    return squared_errors(iterates, prompts.w.to(iterates.device))


def mean_se(values: Any, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean along ``axis`` and its standard error ``std(ddof=1) / √N`` (NumPy arrays).

    ``values`` is per prompt (batch, …) or per seed (seeds, …), at least 2 along ``axis``.

    Defined in Chapter 1.
    """
    a = _as_array(values, "values")
    if a.ndim == 0 or a.size == 0:
        raise ValueError(f"`values` must be a non-empty array, got shape {a.shape}")
    if isinstance(axis, bool) or not isinstance(axis, int) or not -a.ndim <= axis < a.ndim:
        raise ValueError(f"`axis`={axis!r} is not an axis of `values` ({a.ndim} dimension(s))")
    count = a.shape[axis]
    if count < 2:
        raise ValueError(f"`values` needs at least 2 samples along axis {axis} for a standard error, got {count}")
    return _mean_se(a, axis)


def _as_array(values: Any, name: str) -> np.ndarray:
    """``values`` (tensor, array or nested lists; finite) as a float64 NumPy array."""
    if isinstance(values, np.ndarray):
        values = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
    return as_tensor(values, name, dtype=torch.float64).detach().cpu().numpy()


def _mean_se(a: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unchecked :func:`mean_se`."""
    return a.mean(axis), a.std(axis, ddof=1) / np.sqrt(a.shape[axis])


def steps_to_reach(curves: Any, eps: float, *, never: float = math.inf) -> np.ndarray:
    """The first CoT step ``k`` with ``curves[..., k] <= eps`` (along the last axis), and
    ``never`` where no step reaches it: shape ``curves.shape[:-1]`` (a NumPy float array,
    or a NumPy scalar for one curve).

    Defined in Chapter 4.
    """
    a = _as_array(curves, "curves")
    if a.ndim == 0 or a.shape[-1] == 0:
        raise ValueError(f"`curves` must have shape (..., k + 1) with k >= 0, got {a.shape}")
    eps = check_real(eps, "eps")
    if not (isinstance(never, float) and never == math.inf):
        never = check_real(never, "never")  # inf (the default) or a finite sentinel
    reached = a <= eps
    return np.where(reached.any(-1), reached.argmax(-1), never).astype(np.float64)[()]


def z_score(samples: Any, expected: float) -> float:
    """``(mean − expected) / SE`` of Monte Carlo ``samples`` (1-D, at least 2; SE as
    :func:`mean_se`): how many standard errors a closed form is from the simulation.

    Defined in Chapter 1.
    """
    a = _as_array(samples, "samples")
    if a.ndim != 1 or a.shape[0] < 2:
        raise ValueError(f"`samples` must be one-dimensional with at least 2 entries, got shape {a.shape}")
    mean, se = _mean_se(a)
    expected = check_real(expected, "expected")
    return float((mean - expected) / se) if se > 0 else (0.0 if mean == expected else math.inf)


def rise_after_min(errors: Any, k_to: int) -> tuple[int, float, float]:
    """Overthinking, measured on per-prompt error curves ``errors`` (prompts, K + 1):
    ``k*`` = the argmin of the mean curve over ``k >= 1``, and the paired rise
    ``err(k_to) − err(k*)`` (mean over the same prompts, and its standard error).

    Defined in Chapter 7.
    """
    e = _as_array(errors, "errors")
    if e.ndim != 2 or e.shape[0] < 2 or e.shape[1] < 2:
        raise ValueError(f"`errors` must have shape (prompts >= 2, K + 1 >= 2), got {e.shape}")
    k_to = check_pos_int(k_to, "k_to", maximum=e.shape[1] - 1)
    k_min = 1 + int(e.mean(0)[1:].argmin())
    rise, rise_se = _mean_se(e[:, k_to] - e[:, k_min])
    return k_min, float(rise), float(rise_se)


def rel_frobenius(a: Any, b: Any) -> float:
    """Relative Frobenius distance ``‖a − b‖_F / ‖b‖_F`` (``b`` the reference, non-zero).

    Defined in Chapter 3.
    """
    ta = as_tensor(a, "a")
    tb = as_tensor(b, "b", device=ta.device)
    if ta.shape != tb.shape:
        raise ValueError(f"`a` and `b` must have the same shape, got {tuple(ta.shape)} and {tuple(tb.shape)}")
    ref = _frobenius(tb.double())
    if ref == 0.0:
        raise ValueError("`b` is zero: the relative distance is undefined (pass the non-zero reference as b)")
    return _frobenius(ta.double() - tb.double()) / ref


def _frobenius(x: torch.Tensor) -> float:
    """‖x‖_F without overflow for entries near the float range (scaled by max |x|)."""
    scale = float(x.abs().max()) if x.numel() else 0.0
    return 0.0 if scale == 0.0 else scale * float(torch.linalg.norm(x / scale))
