"""The dilated kernel's sampling grid and the conv_arithmetic-style animation of a dilated convolution."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from ..receptive_field.arithmetic import conv_output_size, effective_kernel_size
from .common import _CURRENT, _INPUT, _OUTPUT, _PAD, _TAP, PathLike, _save

__all__ = ["animate_dilated_conv", "plot_dilated_kernel"]


def _tap_offsets(kernel_size: int, rate: int) -> list[int]:
    """Tap offsets from the window's centre pixel: (t - (k - 1) // 2) d for t = 0 .. k - 1."""
    return [(t - (kernel_size - 1) // 2) * rate for t in range(kernel_size)]


def _k_eff_text(k: int, d: int) -> str:
    return rf"$k_{{\mathrm{{eff}}}} = {k} + ({k}-1)({d}-1) = {effective_kernel_size(k, d)}$"


def _grid(
    ax: Axes, rows: int, cols: int, colour: str, origin=(0, 0), gid: str = "cell", pad: int = 0
) -> dict:
    """Unit cells at (row, col) for rows/cols in [-pad, n + pad); padding cells are white and dashed."""
    cells = {}
    for r in range(-pad, rows + pad):
        for c in range(-pad, cols + pad):
            is_pad = not (0 <= r < rows and 0 <= c < cols)
            rect = Rectangle((origin[1] + c, origin[0] + r), 1, 1, facecolor=_PAD if is_pad else colour,
                             edgecolor="#9e9e9e", linewidth=0.8, linestyle="--" if is_pad else "-",
                             gid="pad" if is_pad else gid)
            ax.add_patch(rect)
            cells[r, c] = rect
    return cells


def plot_dilated_kernel(
    rates: Sequence[int] = (1, 2, 3),
    kernel_size: int = 3,
    input_size: int | None = None,
    path: PathLike = None,
) -> Figure:
    """One panel per rate: the ``k x k`` taps of a dilated kernel over an input grid, numbered row by
    row, with the span ``k_eff = k + (k - 1)(d - 1)`` outlined and annotated."""
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    if not rates or any(d < 1 for d in rates):
        raise ValueError(f"rates must be a non-empty list of ints >= 1, got {rates!r}")
    spans = [effective_kernel_size(kernel_size, d) for d in rates]
    n = max(spans) + 2 if input_size is None else input_size
    if n < max(spans):
        raise ValueError(f"input_size={n} is smaller than the largest effective kernel {max(spans)}")
    fig = Figure(figsize=(3.4 * len(rates), 4.0), layout="constrained")
    axes = fig.subplots(1, len(rates), squeeze=False)[0]
    c = (n - 1) // 2
    for ax, d, k_eff in zip(axes, rates, spans):
        cells = _grid(ax, n, n, _INPUT)
        offsets = _tap_offsets(kernel_size, d)
        number = 1
        for oy in offsets:
            for ox in offsets:
                cell = cells[c + oy, c + ox]
                cell.set_facecolor(_TAP)
                cell.set_gid("tap")
                ax.text(c + ox + 0.5, c + oy + 0.5, str(number), ha="center", va="center", color="white",
                        fontsize=9, fontweight="bold")
                number += 1
        lo = c + offsets[0]
        ax.add_patch(Rectangle((lo, lo), k_eff, k_eff, fill=False, edgecolor="#e4572e", linewidth=2,
                               linestyle="--", gid="span"))
        ax.set_title(f"rate $d = {d}$")
        ax.set_xlabel(_k_eff_text(kernel_size, d))
        ax.set_xlim(0, n)
        ax.set_ylim(n, 0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"a {kernel_size}x{kernel_size} kernel sampling its input at rates {tuple(rates)} "
                 "(dashed: the span it covers)")
    return _save(fig, path)


def animate_dilated_conv(
    rate: int = 2,
    kernel_size: int = 3,
    input_size: int = 5,
    stride: int = 1,
    padding: int | None = None,
    path: PathLike = None,
    fps: int = 2,
    dpi: int = 100,
) -> Figure:
    """conv_arithmetic-style animation: the dilated kernel slides over the (padded) input, one frame per
    output position. Returns the Figure (the ``FuncAnimation`` is kept as ``fig.animation``; in Jupyter
    ``HTML(fig.animation.to_jshtml())`` plays it) and writes a GIF at ``dpi`` (at least 100) when ``path``
    (ending in ``.gif``) is given. ``padding`` defaults to "same", ``d (k - 1) // 2`` (the output keeps
    the input's size); ``padding=0`` shows the unpadded version, whose output shrinks by ``k_eff - 1``."""
    if dpi < 100:
        raise ValueError(f"dpi must be >= 100 (readable), got {dpi}")
    if path is not None and Path(path).suffix.lower() != ".gif":
        raise ValueError(f"path must end in .gif, got {path!r}")
    p = rate * (kernel_size - 1) // 2 if padding is None else padding
    if p < 0:
        raise ValueError(f"padding must be >= 0, got {p}")
    n_out = conv_output_size(input_size, kernel_size, stride, p, rate)
    fig = Figure(figsize=(10, 5.6), layout="constrained")
    ax_in, ax_out = fig.subplots(1, 2, width_ratios=[input_size + 2 * p, max(n_out, 3)])
    cells = _grid(ax_in, input_size, input_size, _INPUT, pad=p)
    out_cells = _grid(ax_out, n_out, n_out, _OUTPUT, gid="output")
    for ax, lo, hi in ((ax_in, -p, input_size + p), (ax_out, 0, n_out)):
        ax.set_xlim(lo, hi)
        ax.set_ylim(hi, lo)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    ax_in.set_title(f"input {input_size}x{input_size}, padding {p}")
    ax_out.set_title(f"output {n_out}x{n_out}")
    fig.suptitle(f"k={kernel_size}, d={rate}, s={stride}, p={p}: {_k_eff_text(kernel_size, rate)}")
    labels = [ax_in.text(0, 0, str(i + 1), ha="center", va="center", color="white", fontsize=12,
                         fontweight="bold") for i in range(kernel_size * kernel_size)]
    ax_in.legend(handles=[Patch(facecolor=_INPUT, edgecolor="#9e9e9e", label="input"),
                          Patch(facecolor=_PAD, edgecolor="#9e9e9e", linestyle="--", label="zero padding"),
                          Patch(facecolor=_TAP, label="tap on the input"),
                          Patch(facecolor="#9e9e9e", label="tap on padding (reads 0)")],
                 loc="upper center", bbox_to_anchor=(0.5, -0.01), ncols=2, fontsize=10, frameon=False)
    ax_out.legend(handles=[Patch(facecolor=_CURRENT, label="output being computed")], loc="upper center",
                  bbox_to_anchor=(0.5, -0.01), fontsize=10, frameon=False)
    frames = [(y, x) for y in range(n_out) for x in range(n_out)]

    def draw(frame: int):
        y, x = frames[frame]
        for (r, c), cell in cells.items():
            inside = 0 <= r < input_size and 0 <= c < input_size
            cell.set_facecolor(_INPUT if inside else _PAD)
        for cell in out_cells.values():
            cell.set_facecolor(_OUTPUT)
        out_cells[y, x].set_facecolor(_CURRENT)
        taps = [(y * stride - p + ty * rate, x * stride - p + tx * rate)
                for ty in range(kernel_size) for tx in range(kernel_size)]
        for label, (r, c) in zip(labels, taps):
            inside = 0 <= r < input_size and 0 <= c < input_size
            cells[r, c].set_facecolor(_TAP if inside else "#9e9e9e")  # grey: the tap reads padding
            label.set_position((c + 0.5, r + 0.5))
        return [*cells.values(), *out_cells.values(), *labels]

    draw(0)
    fig.animation = FuncAnimation(fig, draw, frames=len(frames), interval=1000 // max(fps, 1), blit=False)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.animation.save(str(path), writer=PillowWriter(fps=fps), dpi=dpi)
    return fig

