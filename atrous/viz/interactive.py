"""Interactive pictures: ipywidgets sliders over the dilated grid, the gridding stack and ASPP coverage.

Each function returns an ipywidgets widget (sliders above the picture, redrawn on every change) when
widgets can be shown, and otherwise the static picture for its default arguments, a ``Figure`` that
Jupyter displays as PNG (:mod:`atrous.viz.display`). The rule, :func:`widgets_available`: sliders
when ipywidgets imports, an IPython kernel is running (a frontend may be attached) and the
environment variable ``ATROUS_STATIC_FIGURES`` is not ``1``. A kernel cannot tell whether anyone is
looking, so headless runs (the test suite, ``nbclient``, ``jupyter nbconvert --execute``) set
``ATROUS_STATIC_FIGURES=1`` and the cell draws the static picture, which they can keep.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..receptive_field.arithmetic import conv_output_size, effective_kernel_size, reachable_offsets
from .common import _INPUT, _PAD, _TAP
from .rf_plots import plot_aspp_coverage, plot_gridding

__all__ = [
    "dilated_grid_figure",
    "gridding_figure",
    "interactive_aspp_coverage",
    "interactive_dilated_grid",
    "interactive_gridding",
    "widgets_available",
]


def _ipywidgets():
    """The ipywidgets module, or None when it is not installed."""
    try:
        return importlib.import_module("ipywidgets")
    except ImportError:
        return None


def widgets_available() -> bool:
    """Sliders can be shown: ipywidgets imports, an IPython kernel runs, ATROUS_STATIC_FIGURES is not 1."""
    if os.environ.get("ATROUS_STATIC_FIGURES") == "1" or _ipywidgets() is None:
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def dilated_grid_figure(kernel_size: int = 3, rate: int = 2, stride: int = 1, input_size: int = 9,
                        output: int = 0) -> Figure:
    """The taps of output ``(output, output)`` of a ``k x k`` conv at ``rate`` and ``stride`` with 'same'
    padding ``d (k - 1) // 2`` over an ``input_size`` grid: taps inside the image in blue, taps in the
    padding in grey; the title gives ``k_eff`` and the output size."""
    padding = rate * (kernel_size - 1) // 2
    n_out = conv_output_size(input_size, kernel_size, stride, padding, rate)
    if not 0 <= output < n_out:
        raise ValueError(f"output must be in 0..{n_out - 1} for an output of {n_out}x{n_out}, got {output}")
    fig = Figure(figsize=(4.4, 4.6), layout="constrained")
    ax = fig.subplots()
    lo, hi = -padding, input_size + padding
    for r in range(lo, hi):
        for c in range(lo, hi):
            inside = 0 <= r < input_size and 0 <= c < input_size
            ax.add_patch(_square(r, c, _INPUT if inside else _PAD))
    for i in range(kernel_size):
        for j in range(kernel_size):
            r, c = output * stride - padding + i * rate, output * stride - padding + j * rate
            inside = 0 <= r < input_size and 0 <= c < input_size
            ax.add_patch(_square(r, c, _TAP if inside else "#9e9e9e"))
    ax.add_patch(_square(0, 0, "none", size=input_size, edgecolor="black", lw=1.5))
    ax.set_xlim(lo, hi)
    ax.set_ylim(hi, lo)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    k_eff = effective_kernel_size(kernel_size, rate)
    ax.set_title(f"k={kernel_size}, d={rate}, s={stride}, p={padding}: k_eff={k_eff}\n"
                 f"input {input_size}x{input_size} -> output {n_out}x{n_out}; "
                 f"taps of output ({output}, {output})",
                 fontsize=9)
    return fig


def _square(r: int, c: int, color: str, size: int = 1, edgecolor: str = "white", **kw) -> Rectangle:
    return Rectangle((c, r), size, size, facecolor=color, edgecolor=edgecolor, **kw)


def gridding_figure(rates: Sequence[int] = (2, 2, 2), kernel_size: int = 3) -> Figure:
    """``plot_gridding`` for one rate schedule, titled with the 1-D offsets it misses (the holes)."""
    rates = tuple(int(r) for r in rates)
    fig = plot_gridding({f"rates {rates}": rates}, kernel_size=kernel_size)
    offsets = reachable_offsets(rates, kernel_size)
    holes = sorted(set(range(min(offsets), max(offsets) + 1)) - offsets)
    shown = ", ".join(str(h) for h in holes if h > 0)
    fig.suptitle(f"holes at offsets {shown}" if holes else "no holes", fontsize=9)
    return fig


def _interactive(draw: Callable[..., Figure], static: Callable[[], Figure], **sliders):
    """A widget of ``sliders`` that redraws ``draw(**values)`` below them; ``static()`` without widgets."""
    if not widgets_available():
        return static()
    widgets = _ipywidgets()
    display = importlib.import_module("IPython.display").display  # IPython runs: widgets_available said so

    def show(**values):
        fig = draw(**values)
        display(fig)
        return fig

    return widgets.interactive(show, **{name: widgets.IntSlider(**kw) for name, kw in sliders.items()})


def interactive_dilated_grid(kernel_size: int = 3, rate: int = 2, stride: int = 1, input_size: int = 9):
    """Sliders for kernel size, rate, stride and input size over :func:`dilated_grid_figure` (output 0)."""
    return _interactive(
        dilated_grid_figure, lambda: dilated_grid_figure(kernel_size, rate, stride, input_size),
        kernel_size=dict(value=kernel_size, min=1, max=7, step=2, description="kernel k"),
        rate=dict(value=rate, min=1, max=6, description="rate d"),
        stride=dict(value=stride, min=1, max=3, description="stride s"),
        input_size=dict(value=input_size, min=3, max=21, description="input size"),
    )


def interactive_gridding(rates: Sequence[int] = (2, 2, 2), kernel_size: int = 3):
    """Three rate sliders over :func:`gridding_figure`: the pixels a stack of three dilated convs reaches."""
    r1, r2, r3 = (tuple(rates) + (1, 1, 1))[:3]
    return _interactive(
        lambda r1, r2, r3: gridding_figure((r1, r2, r3), kernel_size),
        lambda: gridding_figure(rates, kernel_size),
        r1=dict(value=r1, min=1, max=9, description="rate 1"),
        r2=dict(value=r2, min=1, max=9, description="rate 2"),
        r3=dict(value=r3, min=1, max=9, description="rate 3"),
    )


def interactive_aspp_coverage(rates: Sequence[int] = (6, 12, 18), output_stride: int = 16,
                              image_size: int = 513):
    """Sliders for the three ASPP rates (at output stride 16) and the output stride over
    ``plot_aspp_coverage``: where the branches of the central output sample the image."""
    r1, r2, r3 = rates

    def draw(r1, r2, r3, output_stride):
        return plot_aspp_coverage(rates=(r1, r2, r3), output_strides=(output_stride,), image_size=image_size)

    return _interactive(
        draw, lambda: draw(r1, r2, r3, output_stride),
        r1=dict(value=r1, min=1, max=36, description="rate 1"),
        r2=dict(value=r2, min=1, max=36, description="rate 2"),
        r3=dict(value=r3, min=1, max=36, description="rate 3"),
        output_stride=dict(value=output_stride, min=8, max=16, step=8, description="output stride"),
    )
