"""Matplotlib pictures that teach receptive fields: dilated sampling grids, RF growth, gridding, ASPP, ERFs.

Every function builds a ``matplotlib.figure.Figure`` directly (no pyplot, so nothing global to close),
returns it, and saves it when given ``path`` (PNG unless the suffix says otherwise; the animation saves
a GIF through ``matplotlib.animation.PillowWriter``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from atrous import receptive_field as rfm

__all__ = [
    "animate_dilated_conv",
    "load_sample_image",
    "plot_aspp_coverage",
    "plot_dilated_kernel",
    "plot_erf",
    "plot_gridding",
    "plot_measured_rf",
    "plot_rf_growth",
]

PathLike = str | os.PathLike | None

_INPUT = "#cfe2f3"  # conv_arithmetic's palette: blue input, darker taps, cyan output
_PAD = "#ffffff"
_TAP = "#1f5f99"
_OUTPUT = "#b6e3e9"
_CURRENT = "#138d90"


def _save(fig: Figure, path: PathLike, dpi: int = 100) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig


def _box_patch(box: tuple[int, int, int, int], **kw) -> Rectangle:
    """A rectangle around the pixels of an inclusive (top, left, bottom, right) box in imshow coordinates."""
    top, left, bottom, right = box
    return Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1, fill=False, **kw)


def load_sample_image(size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Matplotlib's ``grace_hopper.jpg`` as an ``(H, W, 3)`` uint8 array, resized to ``size`` if given."""
    from matplotlib import cbook
    from PIL import Image

    data = cbook.get_sample_data("grace_hopper.jpg")
    # Depending on the matplotlib version this is an open file or a path.
    if isinstance(data, (str, os.PathLike)):
        img = Image.open(data)
    else:
        with data:
            img = Image.open(data)
            img.load()
    img = img.convert("RGB")
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        img = img.resize((w, h), Image.BILINEAR)
    return np.asarray(img)


# ------------------------------------------------------------------------------------------------
# a. the dilated kernel's sampling grid
# ------------------------------------------------------------------------------------------------


def _tap_offsets(kernel_size: int, rate: int) -> list[int]:
    """Tap offsets from the window's centre pixel: (t - (k - 1) // 2) d for t = 0 .. k - 1."""
    return [(t - (kernel_size - 1) // 2) * rate for t in range(kernel_size)]


def _k_eff_text(k: int, d: int) -> str:
    return f"k_eff = {k} + ({k}-1)({d}-1) = {rfm.effective_kernel_size(k, d)}"


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
    spans = [rfm.effective_kernel_size(kernel_size, d) for d in rates]
    n = max(spans) + 2 if input_size is None else input_size
    if n < max(spans):
        raise ValueError(f"input_size={n} is smaller than the largest effective kernel {max(spans)}")
    fig = Figure(figsize=(3.2 * len(rates), 3.6), layout="constrained")
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
        ax.set_title(f"rate d = {d}")
        ax.set_xlabel(_k_eff_text(kernel_size, d))
        ax.set_xlim(0, n)
        ax.set_ylim(n, 0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"a {kernel_size}x{kernel_size} kernel sampling its input at rates {tuple(rates)}")
    return _save(fig, path)


def animate_dilated_conv(
    rate: int = 2,
    kernel_size: int = 3,
    input_size: int = 5,
    stride: int = 1,
    padding: int | None = None,
    path: PathLike = None,
    fps: int = 2,
) -> Figure:
    """conv_arithmetic-style animation: the dilated kernel slides over the (padded) input, one frame per
    output position. Returns the Figure (the ``FuncAnimation`` is kept as ``fig.animation``) and writes
    a GIF when ``path`` (ending in ``.gif``) is given. ``padding`` defaults to "same": ``d (k - 1) // 2``."""
    if path is not None and Path(path).suffix.lower() != ".gif":
        raise ValueError(f"path must end in .gif, got {path!r}")
    p = rate * (kernel_size - 1) // 2 if padding is None else padding
    if p < 0:
        raise ValueError(f"padding must be >= 0, got {p}")
    n_out = rfm.conv_output_size(input_size, kernel_size, stride, p, rate)
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
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
    labels = [ax_in.text(0, 0, str(i + 1), ha="center", va="center", color="white", fontsize=8,
                         fontweight="bold") for i in range(kernel_size * kernel_size)]
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
        fig.animation.save(str(path), writer=PillowWriter(fps=fps), dpi=60)
    return fig


# ------------------------------------------------------------------------------------------------
# b. RF growth with depth
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
# c. gridding
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
# d. ASPP coverage over a photo
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
# e. effective receptive fields
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


# ------------------------------------------------------------------------------------------------
# f. segmentation masks: palettes and overlays
# ------------------------------------------------------------------------------------------------


def get_palette(palette: str | np.ndarray | Sequence[Sequence[int]] | None, num_classes: int = 256) -> np.ndarray:
    """``(K, 3)`` uint8 colours: a name ("voc", "cityscapes", "shapes"), an array/list of RGB triples, or
    None for the VOC colour map with ``num_classes`` entries."""
    from atrous.data.palettes import palette_for

    if palette is None:
        return palette_for(num_classes)
    if isinstance(palette, str):
        from atrous.data.palettes import DATASET_INFO

        if palette not in DATASET_INFO:
            raise ValueError(f"palette: expected one of {sorted(DATASET_INFO)} or an (K, 3) array, got {palette!r}")
        return DATASET_INFO[palette][1]
    colours = np.asarray(palette)
    if colours.ndim != 2 or colours.shape[1] != 3 or colours.min() < 0 or colours.max() > 255:
        raise ValueError(f"palette: expected (K, 3) RGB values in 0..255, got shape {colours.shape}")
    return colours.astype(np.uint8)


def _as_hw3_uint8(image) -> np.ndarray:
    """PIL image, (H, W, 3) array or (3, H, W) tensor (uint8, or float in [0, 1]) -> (H, W, 3) uint8."""
    import torch

    if hasattr(image, "convert"):  # PIL
        return np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"overlay: expected a (3, H, W) image tensor, got shape {tuple(t.shape)}")
        t = t.expand(3, -1, -1) if t.shape[0] == 1 else t
        if t.is_floating_point():
            t = (t.clamp(0, 1) * 255).round()
        return t.to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, 3)
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"overlay: expected an (H, W, 3) image, got shape {array.shape}")
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8) if array.dtype.kind == "f" else \
            np.clip(array, 0, 255).astype(np.uint8)
    return array


def _as_mask(mask) -> np.ndarray:
    import torch

    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype.kind not in "iu":
        raise ValueError(f"overlay: expected an (H, W) integer mask of class ids, got {mask.dtype} {mask.shape}")
    return mask


def colorize(mask, palette=None, ignore_index: int = 255, ignore_colour: Sequence[int] = (255, 255, 255)) -> np.ndarray:
    """Class ids ``(H, W)`` -> colours ``(H, W, 3)`` uint8; ``ignore_index`` pixels get ``ignore_colour``."""
    mask = _as_mask(mask)
    valid = mask != ignore_index
    colours = get_palette(palette, int(mask[valid].max()) + 1 if valid.any() else 1)
    if valid.any() and mask[valid].max() >= len(colours):
        raise ValueError(f"colorize: the mask has class {int(mask[valid].max())}, the palette {len(colours)} colours")
    out = np.empty((*mask.shape, 3), np.uint8)
    out[valid] = colours[mask[valid]]
    out[~valid] = ignore_colour
    return out


def overlay(image, mask, palette=None, alpha: float = 0.5, *, ignore_index: int = 255,
            transparent: Sequence[int] = (), path: PathLike = None) -> np.ndarray:
    """The image with each pixel's class colour blended in: ``(1 - alpha) image + alpha colour``.

    ``image``: PIL image, ``(H, W, 3)`` array or ``(3, H, W)`` tensor (uint8 or float in [0, 1]);
    ``mask``: ``(H, W)`` class ids of the same size; ``palette``: a name ("voc", "cityscapes",
    "shapes"), ``(K, 3)`` colours, or None (VOC colour map). Pixels of ``ignore_index`` and of the
    classes in ``transparent`` (e.g. ``(0,)`` to leave the background as it is) are not tinted.
    Returns ``(H, W, 3)`` uint8 and writes it as a PNG when ``path`` is given.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"overlay: expected 0 <= alpha <= 1, got {alpha}")
    rgb = _as_hw3_uint8(image)
    mask = _as_mask(mask)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"overlay: expected a mask of the image's size {rgb.shape[:2]}, got {mask.shape}")
    colours = colorize(mask, palette, ignore_index).astype(np.float32)
    tint = (mask != ignore_index) & ~np.isin(mask, list(transparent))
    out = rgb.astype(np.float32)
    out[tint] = (1 - alpha) * out[tint] + alpha * colours[tint]
    out = np.clip(out.round(), 0, 255).astype(np.uint8)
    if path is not None:
        from PIL import Image

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(out).save(path)
    return out


__all__ += ["colorize", "get_palette", "overlay"]
