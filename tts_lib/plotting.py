"""Shared figure style: colour-blind-safe palette (Okabe–Ito), labelled axes, light/dark safe.

Figures use a transparent-free white face so they stay readable in the site's dark mode.
:func:`use_style` also makes a notebook kernel draw inline whatever ``MPLBACKEND`` says,
and :func:`explorer` builds the chapters' interactive explorers.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch

from ._checks import InputTypeError, check_pos_int, check_real

#: The smallest font size (points) of any text the course style draws: labels, ticks, legends.
READABLE_PT = 11

#: Okabe–Ito palette (colour-blind safe), without the yellow that vanishes on white.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]


def _ipython_kernel() -> Any | None:
    """The running IPython shell when inside a Jupyter kernel (has a kernel), else None."""
    try:
        from IPython import get_ipython
    except ImportError:  # IPython is optional for the library
        return None
    shell = get_ipython()
    return shell if shell is not None and getattr(shell, "kernel", None) is not None else None


def use_style(*, inline: bool = True) -> None:
    """Apply the course style to matplotlib (call once at the top of a notebook).

    Inside a Jupyter kernel (and with ``inline=True``) this also selects the inline
    backend, so ``plt.show()`` puts the figure into the notebook even when the
    environment exports ``MPLBACKEND=Agg`` (as CI does): with Agg the kernel would draw
    nothing and the built book would have no figures. Outside a kernel (scripts, tests)
    the backend is left alone.

    Defined in Chapter 1.
    """
    if not isinstance(inline, bool):
        raise TypeError(f"`inline` must be a bool, got {type(inline).__name__}")
    shell = _ipython_kernel() if inline else None
    if shell is not None and "inline" not in mpl.get_backend().lower():
        shell.run_line_magic("matplotlib", "inline")
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
            # Text a reader can read: the chapters' two-panel figures are about 12 in
            # wide and shown in a 784-pixel column (0.65 of their drawn size), where
            # 11 pt is about 10 px. Legends and ticks stay at the body size, never the
            # "small"/"x-small" that matplotlib allows; cells do not pass a smaller
            # fontsize (tests/test_plotting.py checks both).
            "axes.labelsize": READABLE_PT,
            "axes.titlesize": READABLE_PT + 1,
            "xtick.labelsize": READABLE_PT,
            "ytick.labelsize": READABLE_PT,
            "legend.fontsize": READABLE_PT,
            "legend.title_fontsize": READABLE_PT,
            "figure.titlesize": READABLE_PT + 1,
            "lines.linewidth": 2.0,
        }
    )


def setup_chapter(*, seed: int = 0, threads: int = 1, dtype: torch.dtype = torch.float64) -> None:
    """The one set-up every chapter runs first: the course figure style (:func:`use_style`),
    ``threads`` torch threads (1: the chapters' tensors are small, and one thread is fastest
    and fair on shared machines), the global seed (every sampler also takes its own), and
    the default dtype for tensors a chapter makes itself: float64, the library's own
    (``tts_lib._checks.DEFAULT_DTYPE``), so that ad-hoc tensors and library results mix
    without casts. Models that train in float32 (the GPT-2) say so explicitly.

    Defined in Chapter 1.
    """
    seed = check_pos_int(seed, "seed", minimum=0)
    threads = check_pos_int(threads, "threads", maximum=4096)
    if dtype not in (torch.float32, torch.float64):
        raise InputTypeError(f"`dtype` must be torch.float32 or torch.float64, got {dtype!r}")
    use_style()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    torch.set_default_dtype(dtype)


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
    """Plot the mean of ``samples`` (shape (num_samples, len(x))) with a ±z·SE band.

    Defined in Chapter 1.
    """
    _check_ax(ax)
    x, samples = _as_array(x, "x"), _as_array(samples, "samples")  # NaN/inf allowed: gaps in the plot
    if samples.ndim != 2 or samples.shape[1] != len(x) or samples.shape[0] < 2:
        raise ValueError(f"`samples` must have shape (num_samples >= 2, len(x)={len(x)}), got {samples.shape}")
    z = check_real(z, "z", minimum=0.0)
    # NaN stays NaN (gaps), so not metrics.mean_se, which refuses non-finite values
    mean, se = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
    line = ax.plot(x, mean, marker=marker, linestyle="none" if marker else "-", label=label, color=color)[0]
    ax.fill_between(x, np.maximum(mean - z * se, 1e-300), mean + z * se, color=line.get_color(), alpha=0.2)


def label(ax: plt.Axes, xlabel: str, ylabel: str, title: str | None = None) -> None:
    """Set axis labels (with units) and an optional title, and show the legend if any;
    a log axis gets tick labels that do not overlap (major ticks only, see below).

    Defined in Chapter 1.
    """
    _check_ax(ax)
    for name, text in (("xlabel", xlabel), ("ylabel", ylabel), ("title", title)):
        if not (isinstance(text, str) or (name == "title" and text is None)):
            raise InputTypeError(f"`{name}` must be a string, got {type(text).__name__}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            _tidy_log_axis(axis)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


def _plain(value: float, _pos: int | None = None) -> str:
    return f"{value:g}"


def _tidy_log_axis(axis: mpl.axis.Axis) -> None:
    """Tick labels on a log axis that never overlap: no labelled minor ticks.

    On a log axis spanning about a decade or less matplotlib labels the minor ticks
    (2×10⁻¹, 3×10⁻¹, …, 9×10⁻¹) and they run into each other. Here only major ticks
    carry labels: at powers of ten when the axis spans more than ``1.5`` decades, else
    at 1, 2 and 5 times them, written plainly (0.2, 0.5, 1, 2). :func:`label` applies it
    to every log axis it labels (after the data are drawn: the span decides).
    """
    lo, hi = sorted(abs(v) for v in axis.get_view_interval())
    decades = np.log10(hi / lo) if lo > 0 and np.isfinite(hi / lo) else np.inf
    if decades < 1.5:
        axis.set_major_locator(mpl.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(mpl.ticker.FuncFormatter(_plain))
    axis.set_minor_formatter(mpl.ticker.NullFormatter())


def figure_png(fig: mpl.figure.Figure, *, dpi: int | None = None) -> bytes:
    """The figure as PNG bytes (rendered with Agg, whatever the backend), then closed.

    Defined in Chapter 1.
    """
    if not isinstance(fig, mpl.figure.Figure):
        raise TypeError(f"`fig` must be a matplotlib Figure, got {type(fig).__name__}; "
                        "the draw function of an explorer must return its figure")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or mpl.rcParams["figure.dpi"], bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


class Explorer:
    """Controls above a figure that they redraw; see :func:`explorer`.

    Defined in Chapter 1.
    """

    def __init__(self, draw: Callable[..., mpl.figure.Figure], controls: dict[str, Any]) -> None:
        import ipywidgets as widgets

        if not callable(draw):
            raise TypeError("`draw` must be a callable returning a matplotlib Figure")
        if not controls:
            raise ValueError("`controls`: an explorer needs at least one, e.g. n=widgets.IntSlider(...)")
        for name, w in controls.items():
            if not isinstance(w, widgets.ValueWidget):
                raise TypeError(f"`{name}` must be an ipywidgets value widget (a control), "
                                f"got {type(w).__name__}")
        self.draw, self.controls = draw, controls
        self.box = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
        self._handle: Any = None

    def render(self) -> Any:
        """The figure for the controls' current values, as an ``IPython.display.Image``."""
        from IPython.display import Image

        fig = self.draw(**{k: w.value for k, w in self.controls.items()})
        return Image(data=figure_png(fig), format="png")

    def _update(self, _change: Any) -> None:
        self._handle.update(self.render())

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)
        first = self._handle is None
        self._handle = display(self.render(), display_id=True)
        if first:
            for w in self.controls.values():
                w.observe(self._update, names="value")


def explorer(draw: Callable[..., mpl.figure.Figure], **controls: Any) -> Explorer:
    """Controls (ipywidgets, one per keyword of ``draw``) above ``draw``'s figure.

    ``display(explorer(draw, n=widgets.IntSlider(...)))`` shows the controls and, as an
    ordinary image output of the cell, the figure ``draw(**values)`` returns for their
    initial values: a static page shows it, and it counts as a figure. Moving a control
    redraws it in place through the output's display id (``update_display_data``).

    Why not ``ipywidgets.interactive``: it draws inside an ``Output`` widget, and
    nbclient, mimicking a front end, answers every output captured there with a
    ``comm_msg`` that it sends on the kernel's shell socket while it is itself waiting
    on that socket for the cell's execute reply. When the reply arrives around that send,
    the wake-up of the waiting poll is lost (ZeroMQ's edge-triggered descriptor) and
    nbclient sits idle until its per-cell timeout, then finds the reply and goes on
    (jupyter/nbclient#312). Here nothing is captured by an ``Output`` widget, so the
    client never writes to the kernel while a cell runs.

    Defined in Chapter 1.
    """
    return Explorer(draw, controls)
