"""Jupyter display of the figures ``viz`` builds without pyplot: PNG for a Figure, HTML/JS for an animation.

IPython shows an object as a picture only when a formatter for its type is registered. pyplot's
inline backend registers one for ``Figure`` when it starts, but ``viz`` builds its figures directly
(no pyplot, nothing global to close), so a notebook that never draws with pyplot would print
``<Figure size ... with N Axes>`` instead of the picture. :func:`enable_figure_display` registers the
formatters itself; ``atrous.viz`` calls it on import. Outside IPython it does nothing (it never
imports IPython: it looks for a running shell in ``sys.modules``).
"""

from __future__ import annotations

import io
import sys

import matplotlib
from matplotlib.figure import Figure

__all__ = ["enable_figure_display", "figure_html", "figure_png"]


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes, cropped as the inline backend crops (``bbox_inches="tight"``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", facecolor="white")
    return buffer.getvalue()


def figure_html(fig: Figure) -> str | None:
    """The figure's animation (``fig.animation``, as ``viz.animate_dilated_conv`` keeps it) as an HTML/JS
    player with embedded frames; ``None`` for a still figure, so IPython falls back to the PNG."""
    animation = getattr(fig, "animation", None)
    if animation is None:
        return None
    with matplotlib.rc_context({"savefig.dpi": 60}):  # every frame is an embedded PNG: keep them small
        return animation.to_jshtml()


def _shell():
    """The running IPython shell, or None (plain Python, or IPython imported but no shell running)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    shell = ipython.get_ipython()
    return shell if hasattr(shell, "display_formatter") else None


def _register(formatters) -> None:
    png = formatters["image/png"]
    if Figure not in png.type_printers:
        png.for_type(Figure, figure_png)
    formatters["text/html"].for_type(Figure, figure_html)


def enable_figure_display(shell=None) -> bool:
    """Register PNG (every Figure) and HTML (a Figure with an animation) display in the running IPython
    shell; returns whether a shell was found. An existing PNG printer for Figure (pyplot's inline backend
    registers one) is kept: it draws the same picture. When pyplot's inline backend starts it removes
    every printer for Figure, so the registration is renewed before each cell runs."""
    shell = shell if shell is not None else _shell()
    if shell is None:
        return False
    formatters = shell.display_formatter.formatters
    _register(formatters)
    events = getattr(shell, "events", None)
    if events is not None and not getattr(shell, "_atrous_figure_display", False):
        events.register("pre_run_cell", lambda *_: _register(formatters))
        shell._atrous_figure_display = True  # once per shell, however often viz is imported
    return True
