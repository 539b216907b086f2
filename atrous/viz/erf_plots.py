"""Gradient pictures: effective receptive fields beside their input images, and the measured RF support."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib as mpl
import numpy as np
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from .. import receptive_field as rfm
from .common import PathLike, _box_patch, _save
from .theme import HEAT_CMAP, OKABE_ITO, heat_colorbar

__all__ = ["dim_grey", "montage", "plot_erf", "plot_measured_rf"]

THEORY = {"edgecolor": OKABE_ITO[1], "linewidth": 2.0, "linestyle": "-"}
CLIPPED = {"edgecolor": OKABE_ITO[0], "linewidth": 2.0, "linestyle": "--"}
MASS = {"edgecolor": "white", "linewidth": 1.8, "linestyle": ":"}


def dim_grey(image: np.ndarray, strength: float = 0.55) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 image as a dimmed grey ``(H, W)`` float in [0, 1] (drawn with ``vmin=0,
    vmax=1``): it shows what the heat is averaged over without competing with the heat's colours."""
    grey = np.asarray(image, np.float64)[..., :3].mean(-1) / 255.0
    return 0.5 + strength * (grey - 0.5) * 0.8  # (H, W): contrast reduced around mid-grey


def montage(images: np.ndarray, columns: int = 4, gap: int = 2) -> np.ndarray:
    """``(N, H, W)`` images tiled row by row into one ``(rows H + gaps, columns W + gaps)`` picture
    (white gaps), so several inputs can be shown in one panel."""
    images = np.asarray(images)
    n, h, w = images.shape[:3]
    columns = min(columns, n)
    rows = -(-n // columns)
    out = np.ones((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap), images.dtype)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = img
    return out


def _box_legend(fig, with_theory: bool, with_clipped: bool, mass: float) -> None:
    handles = []
    if with_theory:
        handles.append(Line2D([], [], color=THEORY["edgecolor"], lw=2, ls="-", label="theoretical RF"))
    if with_clipped:
        handles.append(Line2D([], [], color=CLIPPED["edgecolor"], lw=2, ls="--",
                              label="RF clipped to the image"))
    handles.append(Line2D([], [], color="black", lw=1.8, ls=":",
                          label=f"square with {mass:.0%} of |gradient|"))
    fig.legend(handles=handles, loc="outside lower center", fontsize=9, ncols=len(handles), frameon=False)


def plot_erf(
    erfs: rfm.EffectiveRF | Mapping[str, rfm.EffectiveRF],
    image: np.ndarray | None = None,
    mass: float = 0.95,
    path: PathLike = None,
) -> Figure:
    """ERF heat maps with the theoretical RF box (solid), the clipped box (dashed) and the centred square
    holding ``mass`` of the gradient (dotted), all maps on one colour scale with one colourbar.

    ``image`` (``(H, W, 3)``, or ``(N, H, W, 3)`` for the images the map is averaged over) is drawn in
    its own panel, dimmed and grey, never under the heat (which it would drown)."""
    if isinstance(erfs, rfm.EffectiveRF):
        erfs = {"": erfs}
    extra = int(image is not None)
    fig = Figure(figsize=(4.2 * (len(erfs) + extra) + 1.4, 6.2), layout="constrained")
    axes = fig.subplots(1, len(erfs) + extra, squeeze=False)[0]
    if image is not None:
        images = np.asarray(image)
        images = images[None] if images.ndim == 3 else images
        ax = axes[0]
        picture = montage(np.stack([dim_grey(im) for im in images]), columns=min(4, len(images)))
        ax.imshow(picture, cmap="gray", vmin=0, vmax=1, gid="input")
        ax.set_title("input" if len(images) == 1 else f"the {len(images)} inputs averaged over")
        ax.set_xticks([])
        ax.set_yticks([])
    top = max(float(e.heatmap.max()) for e in erfs.values())
    top = top if top > 0 else 1.0
    norm = PowerNorm(0.5, vmin=0, vmax=1)
    mappable = None
    for ax, (name, erf) in zip(axes[extra:], erfs.items()):
        mappable = ax.imshow(erf.heatmap / top, cmap=HEAT_CMAP, norm=norm, interpolation="nearest",
                             gid="heat")
        H, W = erf.heatmap.shape
        lines = [name] if name else []
        boxes = [(0, 0, H - 1, W - 1)]
        if erf.theoretical_box is not None:
            top_, left, bottom, right = erf.theoretical_box
            ax.add_patch(_box_patch(erf.theoretical_box, gid="theoretical", **THEORY))
            lines.append(f"theoretical RF {bottom - top_ + 1}x{right - left + 1}")
            boxes.append(erf.theoretical_box)
        elif erf.clipped_box is not None:
            top_, left, bottom, right = erf.clipped_box
            lines.append(f"clipped RF {bottom - top_ + 1}x{right - left + 1} (no theory: resampled)")
        if erf.clipped_box is not None and erf.clipped_box != erf.theoretical_box:
            ax.add_patch(_box_patch(erf.clipped_box, gid="clipped", **CLIPPED))
        side = erf.side_for_mass(mass)
        cy, cx = erf.centre
        half = (side - 1) / 2
        ax.add_patch(Rectangle((cx - half - 0.5, cy - half - 0.5), side, side, fill=False, gid="mass",
                               **MASS))
        lines.append(f"{mass:.0%} of |gradient| within {side}x{side}")
        ax.set_title("\n".join(lines))
        # a margin around the image so a box lying on its frame stays visible; grey outside the image
        t = min(b[0] for b in boxes) - 2
        lft = min(b[1] for b in boxes) - 2
        b_ = max(b[2] for b in boxes) + 2
        r = max(b[3] for b in boxes) + 2
        ax.set_xlim(lft - 0.5, r + 0.5)
        ax.set_ylim(b_ + 0.5, t - 0.5)
        ax.set_facecolor("#bdbdbd")
        ax.set_xlabel("input x (pixels)")
        ax.set_ylabel("input y (pixels)")
    _box_legend(fig, any(e.theoretical_box is not None for e in erfs.values()),
                any(e.clipped_box not in (None, e.theoretical_box) for e in erfs.values()), mass)
    heat_colorbar(fig, mappable, list(axes[extra:]),
                  "|gradient| share\n(1 = largest pixel of all panels; square-root scale)")
    samples = {e.samples for e in erfs.values()}
    n = samples.pop() if len(samples) == 1 else 0
    mean = "" if not n else ", one input" if n == 1 else f", mean over {n} inputs"
    fig.suptitle(f"effective receptive field (Luo et al., 2016){mean}:\n"
                 "where the gradient of the central output lands")
    return _save(fig, path)


def plot_measured_rf(
    measured: rfm.MeasuredRF,
    rf_info: rfm.ReceptiveFieldReport | rfm.LayerRF | None = None,
    path: PathLike = None,
) -> Figure:
    """The gradient-measured support of one output, with the analytic boxes: clipped (dashed) and, when
    the layer has a theory, unclipped (solid). Light grey: image pixels with no influence; hatched: the
    zero padding outside the image, where the theoretical box may reach."""
    fig = Figure(figsize=(6.5, 6.2), layout="constrained")
    ax = fig.subplots()
    g = np.ma.masked_equal(measured.gradient, 0)
    cmap = mpl.colormaps[HEAT_CMAP].with_extremes(bad="#e0e0e0")
    H, W = measured.input_size
    # the padding: a hatched background behind the image
    ax.add_patch(Rectangle((-1e4, -1e4), 2e4, 2e4, facecolor="white", edgecolor="#9e9e9e", hatch="//",
                           linewidth=0, zorder=-2, gid="padding"))
    shown = ax.imshow(g / g.max() if g.count() else g, cmap=cmap, vmin=0, vmax=1, interpolation="nearest",
                      zorder=0)
    ax.add_patch(_box_patch((0, 0, H - 1, W - 1), edgecolor="black", linewidth=1, gid="image-frame"))
    title = [f"output {measured.position}: measured RF {measured.size[0]}x{measured.size[1]}"]
    handles = [Patch(facecolor="#e0e0e0", edgecolor="#9e9e9e", label="image pixel with no influence"),
               Patch(facecolor="white", edgecolor="#9e9e9e", hatch="//",
                     label="zero padding (outside the image)")]
    ax.set_xlim(-1.5, W + 0.5)
    ax.set_ylim(H + 0.5, -1.5)
    if rf_info is not None:
        row = rf_info.output if isinstance(rf_info, rfm.ReceptiveFieldReport) else rf_info
        clipped = row.box_clipped(*measured.position)
        if clipped is not None:
            ax.add_patch(_box_patch(clipped, gid="clipped", **CLIPPED))
            handles.append(Line2D([], [], color=CLIPPED["edgecolor"], lw=2, ls="--",
                                  label="analytic RF clipped to the image"))
        agree = "agrees" if clipped == measured.box else "DISAGREES"
        title.append(f"analytic clipped box {agree}")
        if row.rf is not None:
            box = row.box(*measured.position)
            ax.add_patch(_box_patch(box, gid="theoretical", **THEORY))
            handles.append(Line2D([], [], color=THEORY["edgecolor"], lw=2, ls="-",
                                  label="theoretical RF (unbounded image)"))
            top, left, bottom, right = box  # show the part of the theory that lies in the padding
            ax.set_xlim(min(left, 0) - 1.5, max(right, W - 1) + 1.5)
            ax.set_ylim(max(bottom, H - 1) + 1.5, min(top, 0) - 1.5)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=9, frameon=False)
    ax.set_xlabel("input x (pixels)")
    ax.set_ylabel("input y (pixels)")
    ax.set_title("\n".join(title))
    heat_colorbar(fig, shown, ax, "|gradient| (1 = the largest)")
    return _save(fig, path)
