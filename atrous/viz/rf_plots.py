"""Receptive-field pictures: gridding (which pixels reach an output) and ASPP coverage on a photo."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .. import receptive_field as rfm
from .common import PathLike, _box_patch, _save, load_sample_image
from .theme import HEAT_CMAP, OKABE_ITO, heat_colorbar

__all__ = [
    "DEFAULT_GRIDDING",
    "plot_aspp_coverage",
    "plot_gridding",
]


# ------------------------------------------------------------------------------------------------
# gridding
# ------------------------------------------------------------------------------------------------

DEFAULT_GRIDDING = {
    "equal rates (2, 2, 2)": (2, 2, 2),
    "hybrid (1, 2, 3)": (1, 2, 3),
    "multi-grid (1, 2, 4)": (1, 2, 4),
}


def plot_gridding(
    configs: Mapping[str, Sequence[int]] | None = None,
    kernel_size: int = 3,
    path: PathLike = None,
) -> Figure:
    """Which input pixels reach one output of a stack of dilated ``k x k`` convs, per rate schedule.

    Colour is the measured gradient (proportional to the number of paths, all weights being equal);
    white pixels inside the dashed RF box never reach the output: equal rates leave a grid of holes,
    hybrid (1, 2, 3) and multi-grid (1, 2, 4) rates fill the box."""
    configs = DEFAULT_GRIDDING if configs is None else configs
    fig = Figure(figsize=(3.4 * len(configs) + 1.2, 4.4), layout="constrained")
    axes = fig.subplots(1, len(configs), squeeze=False)[0]
    cmap = matplotlib.colormaps[HEAT_CMAP].with_extremes(bad="white")
    for ax, (name, rates) in zip(axes, configs.items()):
        layers = [(kernel_size, 1, r * (kernel_size - 1) // 2, r) for r in rates]
        model = rfm.conv_stack(layers, channels=1, in_channels=1, relu=False)
        r = rfm.compose(layers)[-1].size
        n = r + 4
        report = rfm.receptive_field(model, n)
        measured = rfm.measure_receptive_field(model, n)
        cy, cx = measured.position
        box = report.output.box(cy, cx)
        grad = np.ma.masked_equal(measured.gradient, 0)
        shown = ax.imshow(grad / grad.max(), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.add_patch(_box_patch(box, edgecolor=OKABE_ITO[1], linestyle="--", linewidth=2, gid="rf"))
        covered = int(measured.mask.sum())
        ax.set_title(f"{name}\nRF {r}x{r}, {covered}/{r * r} pixels\nreach the central output", fontsize=10)
        ax.set_xlim(box[1] - 1.5, box[3] + 1.5)
        ax.set_ylim(box[2] + 1.5, box[0] - 1.5)
        ax.set_xticks([])
        ax.set_yticks([])
    k = f"{kernel_size}x{kernel_size}"
    heat_colorbar(fig, shown, list(axes), "paths to the output (1 = the most; white: none)")
    axes[0].legend(handles=[Line2D([], [], color=OKABE_ITO[1], ls="--", lw=2, label="theoretical RF")],
                   loc="upper center", bbox_to_anchor=(0.5, -0.02), frameon=False, fontsize=9)
    fig.suptitle(f"gridding: input pixels reaching one output of stacked {k} dilated convs")
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------
# ASPP coverage over a photo
# ------------------------------------------------------------------------------------------------


def plot_aspp_coverage(
    image: np.ndarray | None = None,
    rates: Sequence[int] = (6, 12, 18),
    output_strides: Sequence[int] = (16, 8),
    image_size: int = 513,
    path: PathLike = None,
) -> Figure:
    """Where the ASPP branches of the central output sample the image, at each output stride.

    ``rates`` are the output-stride-16 rates; at output stride ``os`` they are scaled by ``16 / os``
    (DeepLabV3 doubles them at 8), so the taps land equally far apart in pixels while the feature grid
    (grey dots) is denser. Taps that fall outside the feature map read zero padding (crosses): at 16 the
    largest rate degenerates towards a 1x1 conv, which is why ASPP adds image pooling (whole image)."""
    if image is None:
        image = load_sample_image(image_size)
    H, W = image.shape[:2]
    fig = Figure(figsize=(5.5 * len(output_strides), 6), layout="constrained")
    axes = fig.subplots(1, len(output_strides), squeeze=False)[0]
    colours = ["#e4572e", "#29335c", "#f3a712", "#669bbc", "#a8c686", "#b5179e"]
    for ax, os_ in zip(axes, output_strides):
        if 16 % os_ and os_ % 16:
            raise ValueError(f"output_strides must be powers of two, got {os_}")
        scaled = tuple(int(r * 16 // os_) for r in rates)
        model = rfm.aspp_stack(os_, scaled, channels=1)
        report = rfm.receptive_field(model, (H, W))
        cat = next(r for r in reversed(report.layers) if r.op == "cat")
        branches = report.branches(cat)
        stem = branches[0].rf  # the 1x1 branch keeps the stem's geometry: jump = os
        fh, fw = cat.size
        cy, cx = (fh - 1) // 2, (fw - 1) // 2
        ax.imshow(image)
        gy, gx = np.mgrid[:fh, :fw]
        ax.scatter(stem[1].centre(gx.ravel()), stem[0].centre(gy.ravel()), s=2, c="#bdbdbd", alpha=0.6,
                   linewidths=0, gid="features")
        ax.scatter([stem[1].centre(cx)], [stem[0].centre(cy)], s=60, c="white", edgecolors="black",
                   zorder=5, gid="centre", label=f"central output ({cy}, {cx})")
        for n, (rate, row) in enumerate(zip(scaled, branches[1:-1])):
            colour = colours[n % len(colours)]
            offs = [(ty * rate, tx * rate) for ty in (-1, 0, 1) for tx in (-1, 0, 1)]
            inside = [(cy + oy, cx + ox) for oy, ox in offs if 0 <= cy + oy < fh and 0 <= cx + ox < fw]
            outside = [(cy + oy, cx + ox) for oy, ox in offs if (cy + oy, cx + ox) not in inside]
            ax.scatter([stem[1].centre(x) for _, x in inside], [stem[0].centre(y) for y, _ in inside], s=40,
                       c=colour, edgecolors="white", zorder=4, gid=f"taps-in-{rate}",
                       label=f"rate {rate}: taps {rate * os_} px apart")
            if outside:
                ax.scatter([stem[1].centre(x) for _, x in outside], [stem[0].centre(y) for y, _ in outside],
                           s=40, c=colour, marker="x", zorder=4, gid=f"taps-out-{rate}")
            box = row.box_clipped(cy, cx)
            if box is not None:
                ax.add_patch(_box_patch(box, edgecolor=colour, linewidth=1.5, gid=f"rf-{rate}"))
        ax.add_patch(_box_patch((0, 0, H - 1, W - 1), edgecolor="white", linewidth=3, linestyle=":",
                                gid="image-pooling", label="image pooling: whole image"))
        ax.set_xlim(-0.5 - 0.35 * W, W - 0.5 + 0.35 * W)  # room for taps in the padding
        ax.set_ylim(H - 0.5 + 0.35 * H, -0.5 - 0.35 * H)
        ax.set_title(f"output stride {os_}: {fh}x{fw} features, rates {scaled}")
        ax.legend(loc="lower center", fontsize=7, framealpha=0.9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("ASPP branches of the central output (x: tap in the zero padding)")
    return _save(fig, path)
