"""Receptive-field pictures: RF growth with depth, gridding, ASPP coverage on a photo, ERFs, measured RFs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from .. import receptive_field as rfm
from .common import PathLike, _box_patch, _save, load_sample_image

__all__ = [
    "DEFAULT_GRIDDING",
    "plot_aspp_coverage",
    "plot_erf",
    "plot_gridding",
    "plot_measured_rf",
    "plot_rf_growth",
]


# ------------------------------------------------------------------------------------------------
# RF growth with depth
# ------------------------------------------------------------------------------------------------


def _growth(report: rfm.ReceptiveFieldReport) -> tuple[list[int], list[float], list[str]]:
    """RF (horizontal axis) and jump along the output's ancestors, in execution order; rows without
    a theory use the central output's clipped RF and no jump."""
    rfs, jumps, names = [], [], []
    for row in report.ancestors():
        if row.rf is not None:
            rfs.append(row.rf[1].size)
            jumps.append(row.rf[1].jump)
        else:
            rfs.append(row.size_at(*row.centre_position)[1])
            jumps.append(math.nan)
        names.append(row.label)
    return rfs, jumps, names


def plot_rf_growth(
    stacks: Mapping[str, nn.Module | rfm.ReceptiveFieldReport] | None = None,
    input_size: int | tuple[int, int] = 129,
    path: PathLike = None,
) -> Figure:
    """RF size and jump (effective stride) against depth for several networks; by default the plain,
    strided and atrous teaching stacks: linear growth, fast growth at lost resolution, exponential
    growth at full resolution."""
    if stacks is None:
        stacks = {"plain": rfm.plain_stack(), "strided": rfm.strided_stack(), "atrous": rfm.atrous_stack()}
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_rf, ax_jump = fig.subplots(1, 2)
    for name, model in stacks.items():
        if isinstance(model, rfm.ReceptiveFieldReport):
            report = model
        else:
            report = rfm.receptive_field(model, input_size)
        if not report.supported:
            problems = "; ".join(report.problems)
            raise rfm.UnsupportedModelError(f"stacks[{name!r}] cannot be analysed: {problems}")
        rfs, jumps, _ = _growth(report)
        depth = list(range(len(rfs)))
        (line,) = ax_rf.plot(depth, rfs, marker="o", label=name)
        ax_rf.annotate(f"{rfs[-1]}", (depth[-1], rfs[-1]), textcoords="offset points", xytext=(4, 0),
                       color=line.get_color(), va="center")
        ax_jump.plot(depth, jumps, marker="o", label=name, color=line.get_color())
    ax_rf.set_xlabel("layer (execution order; 0 = input)")
    ax_rf.set_ylabel("receptive field (pixels)")
    ax_rf.set_title("r_l = r_{l-1} + (k_eff - 1) j_{l-1}")
    ax_jump.set_xlabel("layer (execution order; 0 = input)")
    ax_jump.set_ylabel("jump = output stride (pixels)")
    ax_jump.set_yscale("log", base=2)
    ax_jump.set_title("j_l = j_{l-1} s: resolution lost")
    for ax in (ax_rf, ax_jump):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("receptive field growth with depth")
    return _save(fig, path)


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
    fig = Figure(figsize=(3.6 * len(configs), 4), layout="constrained")
    axes = fig.subplots(1, len(configs), squeeze=False)[0]
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
        ax.imshow(grad / grad.max(), cmap="viridis", interpolation="nearest")
        ax.add_patch(_box_patch(box, edgecolor="#e4572e", linestyle="--", linewidth=1.5, gid="rf"))
        covered = int(measured.mask.sum())
        ax.set_title(f"{name}\nRF {r}x{r}, {covered}/{r * r} pixels\nreach the central output", fontsize=10)
        ax.set_xlim(box[1] - 1.5, box[3] + 1.5)
        ax.set_ylim(box[2] + 1.5, box[0] - 1.5)
        ax.set_xticks([])
        ax.set_yticks([])
    k = f"{kernel_size}x{kernel_size}"
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


# ------------------------------------------------------------------------------------------------
# effective receptive fields
# ------------------------------------------------------------------------------------------------


def plot_erf(
    erfs: rfm.EffectiveRF | Mapping[str, rfm.EffectiveRF],
    image: np.ndarray | None = None,
    mass: float = 0.95,
    path: PathLike = None,
) -> Figure:
    """ERF heatmaps (optionally over ``image``) with the theoretical RF box (solid), the clipped box
    (dashed) and the centred square holding ``mass`` of the gradient (dotted)."""
    if isinstance(erfs, rfm.EffectiveRF):
        erfs = {"": erfs}
    fig = Figure(figsize=(4.5 * len(erfs), 4.8), layout="constrained")
    axes = fig.subplots(1, len(erfs), squeeze=False)[0]
    for ax, (name, erf) in zip(axes, erfs.items()):
        heat = erf.heatmap / erf.heatmap.max() if erf.heatmap.max() > 0 else erf.heatmap
        if image is not None:
            # the heat's own strength sets its opacity, so the photo shows where the gradient is weak
            rgba = matplotlib.colormaps["inferno"](heat)
            rgba[..., 3] = 0.9 * np.sqrt(np.clip(heat, 0, 1))
            ax.imshow(image)
            ax.imshow(rgba)
        else:
            ax.imshow(heat, cmap="inferno")
        H, W = heat.shape
        lines = [name] if name else []
        if erf.theoretical_box is not None:
            top, left, bottom, right = erf.theoretical_box
            ax.add_patch(_box_patch(erf.theoretical_box, edgecolor="#2ec4b6", linewidth=2, gid="theoretical"))
            lines.append(f"theoretical RF {bottom - top + 1}x{right - left + 1}")
        elif erf.clipped_box is not None:
            top, left, bottom, right = erf.clipped_box
            lines.append(f"clipped RF {bottom - top + 1}x{right - left + 1} (no theory: resampled)")
        if erf.clipped_box is not None and erf.clipped_box != erf.theoretical_box:
            ax.add_patch(_box_patch(erf.clipped_box, edgecolor="#2ec4b6", linewidth=1.5, linestyle="--",
                                    gid="clipped"))
        side = erf.side_for_mass(mass)
        cy, cx = erf.centre
        half = (side - 1) / 2
        ax.add_patch(Rectangle((cx - half - 0.5, cy - half - 0.5), side, side, fill=False, edgecolor="white",
                               linestyle=":", linewidth=2, gid="mass"))
        lines.append(f"{mass:.0%} of |gradient| within {side}x{side}")
        ax.set_title("\n".join(lines))
        ax.set_xlim(-0.5, W - 0.5)
        ax.set_ylim(H - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("effective receptive field (Luo et al., 2016)")
    return _save(fig, path)


def plot_measured_rf(
    measured: rfm.MeasuredRF,
    rf_info: rfm.ReceptiveFieldReport | rfm.LayerRF | None = None,
    path: PathLike = None,
) -> Figure:
    """The gradient-measured support of one output (white = no influence), with the analytic boxes:
    clipped (dashed) and, when the layer has a theory, unclipped (solid)."""
    fig = Figure(figsize=(5, 5.2), layout="constrained")
    ax = fig.subplots()
    g = np.ma.masked_equal(measured.gradient, 0)
    ax.imshow(g / g.max() if g.count() else g, cmap="viridis", interpolation="nearest")
    title = [f"output {measured.position}: measured RF {measured.size[0]}x{measured.size[1]}"]
    if rf_info is not None:
        row = rf_info.output if isinstance(rf_info, rfm.ReceptiveFieldReport) else rf_info
        clipped = row.box_clipped(*measured.position)
        if clipped is not None:
            ax.add_patch(_box_patch(clipped, edgecolor="#e4572e", linestyle="--", linewidth=1.5,
                                    gid="clipped"))
        agree = "agrees" if clipped == measured.box else "DISAGREES"
        title.append(f"analytic clipped box {agree}")
        if row.rf is not None:
            box = row.box(*measured.position)
            ax.add_patch(_box_patch(box, edgecolor="#e4572e", linewidth=2, gid="theoretical"))
            H, W = measured.input_size
            top, left, bottom, right = box  # show the part of the theory that lies in the padding
            ax.set_xlim(min(left, 0) - 1.5, max(right, W - 1) + 1.5)
            ax.set_ylim(max(bottom, H - 1) + 1.5, min(top, 0) - 1.5)
    ax.set_title("\n".join(title))
    return _save(fig, path)

