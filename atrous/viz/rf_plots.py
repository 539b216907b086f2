"""Receptive-field pictures: gridding (which pixels reach an output) and ASPP coverage on a photo."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .. import receptive_field as rfm
from .common import PathLike, _box_patch, _save, load_sample_image
from .erf_plots import dim_grey
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
    (black dots) is twice as dense. Taps that fall outside the feature map read zero padding (hollow):
    the largest rate degenerates towards a 1x1 conv, which is why ASPP adds image pooling (the whole
    image, dotted). The photo is dimmed to grey so every mark stays visible."""
    if image is None:
        image = load_sample_image(image_size)
    H, W = image.shape[:2]
    fig = Figure(figsize=(5.2 * len(output_strides), 6.6), layout="constrained")
    axes = fig.subplots(1, len(output_strides), squeeze=False)[0]
    colours, markers = [OKABE_ITO[0], OKABE_ITO[1], OKABE_ITO[5], OKABE_ITO[2]], ["o", "s", "D", "^"]
    grey = dim_grey(image)  # the photo dimmed, so the marks stand out
    for ax, os_ in zip(axes, output_strides):
        if 16 % os_ and os_ % 16:
            raise ValueError(f"output_strides must be powers of two, got {os_}")
        scaled = tuple(int(r * 16 // os_) for r in rates)
        model = rfm.aspp_stack(os_, scaled, channels=1)
        report = rfm.receptive_field(model, (H, W))
        cat = next(r for r in reversed(report.layers) if r.op == "cat")
        stem = report.branches(cat)[0].rf  # the 1x1 branch keeps the stem's geometry: jump = os
        fh, fw = cat.size
        cy, cx = (fh - 1) // 2, (fw - 1) // 2
        ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
        gy, gx = np.mgrid[:fh, :fw]
        ax.scatter(stem[1].centre(gx.ravel()), stem[0].centre(gy.ravel()), s=3, c="black", linewidths=0,
                   gid="features", label=f"feature-map position (every {os_} px)")
        ax.scatter([stem[1].centre(cx)], [stem[0].centre(cy)], s=110, c="white", edgecolors="black",
                   linewidths=1.5, zorder=5, gid="centre", label=f"central output ({cy}, {cx})")
        for n, rate in enumerate(scaled):
            colour, marker = colours[n % len(colours)], markers[n % len(markers)]
            offs = [(ty * rate, tx * rate) for ty in (-1, 0, 1) for tx in (-1, 0, 1)]
            inside = [(cy + oy, cx + ox) for oy, ox in offs if 0 <= cy + oy < fh and 0 <= cx + ox < fw]
            outside = [(cy + oy, cx + ox) for oy, ox in offs if (cy + oy, cx + ox) not in inside]
            ax.scatter([stem[1].centre(x) for _, x in inside], [stem[0].centre(y) for y, _ in inside], s=70,
                       c=colour, marker=marker, edgecolors="black", linewidths=1.0, zorder=4,
                       gid=f"taps-in-{rate}", label=f"rate {rate}: taps {rate * os_} px apart")
            if outside:
                ax.scatter([stem[1].centre(x) for _, x in outside], [stem[0].centre(y) for y, _ in outside],
                           s=70, c="white", marker=marker, edgecolors=colour, linewidths=2.0, zorder=4,
                           gid=f"taps-out-{rate}", label=f"rate {rate}: tap in the zero padding (hollow)")
        ax.add_patch(_box_patch((0, 0, H - 1, W - 1), edgecolor="black", linewidth=2, linestyle=":",
                                gid="image-pooling"))
        ax.set_xlim(-0.5 - 0.35 * W, W - 0.5 + 0.35 * W)  # room for taps in the padding
        ax.set_ylim(H - 0.5 + 0.35 * H, -0.5 - 0.35 * H)
        ax.set_title(f"output stride {os_}: {fh}x{fw} features (one every {os_} px),\nrates {scaled}")
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], color="black", ls=":", lw=2))
        labels.append("image pooling: the whole image")
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.01), fontsize=8, ncols=2,
                  frameon=False)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("where the ASPP branches of the central output read the image (taps of each 3x3 branch)")
    return _save(fig, path)
