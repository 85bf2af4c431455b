"""Shared figure style: colour-blind-safe palette (Okabe–Ito), labelled axes, light/dark safe.

Figures use a transparent-free white face so they stay readable in the site's dark mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

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


def band(ax: plt.Axes, x: Sequence[float], samples: np.ndarray, *, label: str, color: str | None = None,
         z: float = 1.96, marker: str | None = "o") -> None:
    """Plot the mean of ``samples`` (shape (num_samples, len(x))) with a ±z·SE band."""
    samples = np.asarray(samples, dtype=float)
    mean = samples.mean(0)
    se = samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
    line = ax.plot(x, mean, marker=marker, linestyle="none" if marker else "-", label=label, color=color)[0]
    ax.fill_between(x, np.maximum(mean - z * se, 1e-300), mean + z * se, color=line.get_color(), alpha=0.2)


def label(ax: plt.Axes, xlabel: str, ylabel: str, title: str | None = None) -> None:
    """Set axis labels (with units) and an optional title, and show the legend if any."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
