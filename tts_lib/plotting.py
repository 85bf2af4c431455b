"""Shared figure style: colour-blind-safe palette (Okabe–Ito), labelled axes, light/dark safe.

Figures use a transparent-free white face so they stay readable in the site's dark mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from ._checks import InputTypeError, check_real

#: Okabe–Ito palette (colour-blind safe), without the yellow that vanishes on white.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]


def use_style() -> None:
    """Apply the course style to matplotlib (call once at the top of a notebook)."""
    mpl.rcParams.update(
        {
            "axes.prop_cycle": mpl.cycler(color=PALETTE),
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "figure.facecolor": "white",
            "axes.facecolor": "white",
            "savefig.facecolor": "white",
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
            "font.size": 11,
            "lines.linewidth": 2.0,
        }
    )


def _as_array(value: object, name: str) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise InputTypeError(f"`{name}` must be a numeric array, got {type(value).__name__}") from err
    if value is None or arr.ndim == 0 and name == "samples":
        raise InputTypeError(f"`{name}` must be a numeric array, got {type(value).__name__}")
    return arr


def _check_ax(ax: object) -> None:
    if not isinstance(ax, mpl.axes.Axes):
        raise InputTypeError(f"`ax` must be a matplotlib Axes (e.g. from plt.subplots()), got {type(ax).__name__}")


def band(ax: plt.Axes, x: Sequence[float], samples: np.ndarray, *, label: str, color: str | None = None,
         z: float = 1.96, marker: str | None = "o") -> None:
    """Plot the mean of ``samples`` (shape (num_samples, len(x))) with a ±z·SE band."""
    _check_ax(ax)
    x, samples = _as_array(x, "x"), _as_array(samples, "samples")  # NaN/inf allowed: gaps in the plot
    if samples.ndim != 2 or samples.shape[1] != len(x) or samples.shape[0] < 2:
        raise ValueError(f"`samples` must have shape (num_samples >= 2, len(x)={len(x)}), got {samples.shape}")
    z = check_real(z, "z", minimum=0.0)
    mean = samples.mean(0)
    se = samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
    line = ax.plot(x, mean, marker=marker, linestyle="none" if marker else "-", label=label, color=color)[0]
    ax.fill_between(x, np.maximum(mean - z * se, 1e-300), mean + z * se, color=line.get_color(), alpha=0.2)


def label(ax: plt.Axes, xlabel: str, ylabel: str, title: str | None = None) -> None:
    """Set axis labels (with units) and an optional title, and show the legend if any."""
    _check_ax(ax)
    for name, text in (("xlabel", xlabel), ("ylabel", ylabel), ("title", title)):
        if not (isinstance(text, str) or (name == "title" and text is None)):
            raise InputTypeError(f"`{name}` must be a string, got {type(text).__name__}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
