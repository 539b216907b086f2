"""The one figure style of the package: colour-blind-safe colours, heat maps with colourbars, tight saving.

Categories use the Okabe-Ito palette (Okabe & Ito, 2008: distinguishable under the common colour-vision
deficiencies); heat uses ``magma``, a perceptually uniform map (equal steps look equal, dark = 0). Series
that may coincide get distinct markers *and* line styles, so a curve drawn under another stays visible.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "FONT_SIZE",
    "HEAT_CMAP",
    "LINESTYLES",
    "MARKERS",
    "OKABE_ITO",
    "WIDTH",
    "categorical",
    "heat_colorbar",
    "save",
    "series_style",
]

# Okabe-Ito, without its black (black is kept for text, reference lines and the 1x line).
OKABE_ITO: tuple[str, ...] = (
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#009E73",  # bluish green
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#F0E442",  # yellow (last: weak on white)
)
HEAT_CMAP = "magma"
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X")
LINESTYLES: tuple = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 2)), (0, (8, 2)))
WIDTH = 10.0  # inches: a Jupyter cell at 100 dpi, the width every figure is drawn for
FONT_SIZE = 10  # points, at WIDTH: readable when the notebook scales the figure to its column

PathLike = str | os.PathLike | None


def categorical(n: int) -> list[str]:
    """``n`` Okabe-Ito colours (repeating past seven; pair them with ``series_style`` markers)."""
    return [OKABE_ITO[i % len(OKABE_ITO)] for i in range(n)]


def series_style(i: int, n: int = 1) -> dict:
    """Colour, marker, line style and a marker size that shrinks with ``i`` for the ``i``-th of ``n``
    series: drawn in order, a later curve lying on an earlier one leaves the earlier marker's rim visible."""
    big = 9.0
    return {"color": OKABE_ITO[i % len(OKABE_ITO)], "marker": MARKERS[i % len(MARKERS)],
            "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "markersize": big - 5.0 * i / max(n - 1, 1) if n > 1 else 6.0,
            "markerfacecolor": "none" if i < n - 1 else OKABE_ITO[i % len(OKABE_ITO)],
            "markeredgewidth": 1.6}


def heat_colorbar(fig: Figure, mappable, ax: Axes | Sequence[Axes], label: str):
    """A colourbar beside ``ax`` whose label says what the values mean (e.g. "1 = the map's maximum")."""
    bar = fig.colorbar(mappable, ax=ax, shrink=0.85)
    bar.set_label(label)
    bar.ax.set_gid("colorbar")
    return bar


def save(fig: Figure, path: PathLike, dpi: int = 100) -> Figure:
    """Write ``fig`` to ``path`` (format from the suffix) with ``bbox_inches="tight"``, so no label is
    cut, creating the folder; returns the figure. Nothing is written when ``path`` is None."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with mpl.rc_context({"savefig.facecolor": "white"}):
            fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return fig
