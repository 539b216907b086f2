"""The figures a DeepLab lecture needs: rates over a real patch, the 1-D RF tower, the atrous separable
conv, OS 32/16/8 side by side, boundaries with and without the decoder, gridding in actual outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from torch import nn

from ..receptive_field.arithmetic import effective_kernel_size
from .common import PathLike, _save, load_sample_image
from .theme import HEAT_CMAP, OKABE_ITO, heat_colorbar

__all__ = [
    "DEFAULT_TOWERS",
    "plot_decoder_boundaries",
    "plot_gridding_outputs",
    "plot_output_strides",
    "plot_rates_on_photo",
    "plot_rf_tower",
    "plot_separable_conv",
    "tower_reach",
]


def plot_rates_on_photo(rates: Sequence[int] = (1, 2, 4), patch: int = 33, kernel_size: int = 3,
                        centre: tuple[int, int] = (100, 250), path: PathLike = None) -> Figure:
    """The same ``patch x patch`` crop of the sample photo (Grace Hopper's cap badge) with the taps of a
    ``k x k`` kernel at each rate: the same nine weights read pixels ``d`` apart, so the span
    ``k_eff = k + (k-1)(d-1)`` grows while the cost stays nine multiplications."""
    img = load_sample_image()
    cy, cx = centre
    half = patch // 2
    crop = img[cy - half:cy + half + 1, cx - half:cx + half + 1]  # (patch, patch, 3)
    fig = Figure(figsize=(3.6 * len(rates), 4.2), layout="constrained")
    axes = fig.subplots(1, len(rates), squeeze=False)[0]
    c = half
    for ax, d in zip(axes, rates):
        ax.imshow(crop, interpolation="nearest")
        offs = [(t - (kernel_size - 1) // 2) * d for t in range(kernel_size)]
        ys, xs = zip(*[(c + oy, c + ox) for oy in offs for ox in offs])
        ax.scatter(xs, ys, s=70, c=OKABE_ITO[0], edgecolors="black", linewidths=1.2, zorder=3, gid="taps")
        k_eff = effective_kernel_size(kernel_size, d)
        ax.add_patch(Rectangle((c + offs[0] - 0.5, c + offs[0] - 0.5), k_eff, k_eff, fill=False,
                               edgecolor=OKABE_ITO[1], linewidth=2, linestyle="--", gid="span"))
        ax.set_title(f"rate $d = {d}$: span $k_{{\\mathrm{{eff}}}} = {k_eff}$ px, {kernel_size ** 2} taps")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(handles=[Line2D([], [], marker="o", ls="none", color=OKABE_ITO[0], mec="black", label="tap"),
                        Line2D([], [], color=OKABE_ITO[1], ls="--", lw=2, label="span it covers")],
               loc="outside lower center", ncols=2, frameon=False)
    fig.suptitle(f"one {kernel_size}x{kernel_size} kernel at rates {tuple(rates)} on the same "
                 f"{patch}x{patch}-pixel patch")
    return _save(fig, path)


# ---- the 1-D receptive-field tower (Distill style) -------------------------------------------------

DEFAULT_TOWERS: dict[str, list[tuple[int, int, int]]] = {  # (kernel, stride, dilation) per layer
    "plain": [(3, 1, 1)] * 3,
    "strided": [(3, 2, 1), (3, 1, 1), (3, 1, 1)],
    "atrous (1, 2, 4)": [(3, 1, 1), (3, 1, 2), (3, 1, 4)],
    "equal rates (2, 2, 2)": [(3, 1, 2)] * 3,
}


def tower_reach(layers: Sequence[tuple[int, int, int]]) -> list[dict[int, int]]:
    """Positions reached at every level, walking from one output (level ``len(layers)``) down to the input
    (level 0): ``reach[l][p]`` is the number of paths from the output to position ``p`` of level ``l``
    (positions relative to the output's centre, in that level's own grid)."""
    reach = [dict() for _ in range(len(layers) + 1)]
    reach[-1] = {0: 1}
    for level in range(len(layers), 0, -1):
        k, s, d = layers[level - 1]
        for p, n in reach[level].items():
            for t in range(k):
                q = p * s + (t - (k - 1) // 2) * d
                reach[level - 1][q] = reach[level - 1].get(q, 0) + n
    return reach


def plot_rf_tower(towers: Mapping[str, Sequence[tuple[int, int, int]]] | None = None,
                  path: PathLike = None) -> Figure:
    """For each stack (``(kernel, stride, dilation)`` per layer), the positions of every level that reach
    one output, joined by the connections that carry it (Distill, "Computing receptive fields", 2019).
    Equal rates leave holes at the input (gridding); 1, 2, 4 fill the same span without holes."""
    towers = DEFAULT_TOWERS if towers is None else towers
    fig = Figure(figsize=(4.0 * len(towers), 4.2), layout="constrained")
    axes = fig.subplots(1, len(towers), squeeze=False)[0]
    for ax, (name, layers) in zip(axes, towers.items()):
        reach = tower_reach(layers)
        # input-pixel coordinate of position p at level l: p times the product of the strides below
        jumps = [int(np.prod([s for _, s, _ in layers[:level]])) for level in range(len(layers) + 1)]
        span = max(abs(p) * jumps[0] for p in reach[0]) + 1
        for level in range(len(layers) + 1):
            xs = np.arange(-span, span + 1, jumps[level])
            ax.scatter(xs, [level] * len(xs), s=30, facecolors="white", edgecolors="#bdbdbd", zorder=1)
            hit = [p * jumps[level] for p in reach[level]]
            ax.scatter(hit, [level] * len(hit), s=55, c=OKABE_ITO[3] if level else OKABE_ITO[0], zorder=3,
                       gid=f"reached-{level}")
        for level in range(len(layers), 0, -1):
            k, s, d = layers[level - 1]
            for p in reach[level]:
                for t in range(k):
                    q = p * s + (t - (k - 1) // 2) * d
                    ax.plot([p * jumps[level], q * jumps[level - 1]], [level, level - 1], color="#777777",
                            lw=0.8, zorder=2)
        holes = (max(reach[0]) - min(reach[0]) + 1) - len(reach[0])
        size = (max(reach[0]) - min(reach[0])) * jumps[0] + 1
        ax.set_title(f"{name}\nRF {size} px" + (f", {holes} holes" if holes else ", no holes"))
        ax.set_yticks(range(len(layers) + 1), ["input"] + [f"layer {i}" for i in range(1, len(layers) + 1)])
        ax.set_xlabel("input position (pixels from the centre)")
        ax.set_xlim(-span - 1, span + 1)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    fig.legend(handles=[Line2D([], [], marker="o", ls="none", color=OKABE_ITO[3],
                               label="reaches the output"),
                        Line2D([], [], marker="o", ls="none", color=OKABE_ITO[0],
                               label="input pixel in the RF"),
                        Line2D([], [], marker="o", ls="none", mfc="white", mec="#bdbdbd",
                               label="does not reach it")],
               loc="outside lower center", ncols=3, frameon=False)
    fig.suptitle("1-D receptive field of one output, layer by layer (3-tap kernels)")
    return _save(fig, path)


# ---- the atrous depthwise-separable convolution ---------------------------------------------------

def plot_separable_conv(rate: int = 2, channels: int = 3, out_channels: int = 2, size: int = 24,
                        seed: int = 0, path: PathLike = None) -> Figure:
    """Atrous depthwise-separable convolution on real tensors: each input channel convolved with its own
    3x3 kernel at ``rate`` (depthwise: no mixing), then a 1x1 conv mixing the channels (pointwise).
    The figure's ``fig.check`` holds the largest difference from one ``F.conv2d`` chain (zero up to
    rounding)."""
    gen = torch.Generator().manual_seed(seed)
    img = load_sample_image(size)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1).float()[:channels] / 255  # (C, H, W)
    dw = torch.randn(channels, 1, 3, 3, generator=gen)
    pw = torch.randn(out_channels, channels, 1, 1, generator=gen)
    mid = F.conv2d(x[None], dw, padding=rate, dilation=rate, groups=channels)[0]  # (C, H, W)
    out = F.conv2d(mid[None], pw)[0]  # (out_channels, H, W)
    fig = Figure(figsize=(10, 2.3 * max(channels, out_channels) + 0.8), layout="constrained")
    rows = max(channels, out_channels)
    axes = fig.subplots(rows, 3, squeeze=False)
    titles = ("input", f"depthwise 3x3, rate {rate}\n(one kernel per channel)",
              "pointwise 1x1\n(mixes all channels)")
    for col, (maps, title) in enumerate(zip((x, mid, out), titles)):
        for row in range(rows):
            ax = axes[row, col]
            if row < len(maps):
                m = maps[row].numpy()
                lim = float(np.abs(m).max()) or 1.0
                shown = ax.imshow(m, cmap="gray" if col == 0 else "PuOr", vmin=-lim if col else 0, vmax=lim)
                ax.set_title(f"{title}\nchannel {row}" if row == 0 else f"channel {row}", fontsize=9)
                if col:
                    heat_colorbar(fig, shown, ax, "value")
            else:
                ax.axis("off")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"atrous separable conv: {channels} x 9 depthwise weights + {out_channels} x {channels} "
                 f"pointwise = {9 * channels + out_channels * channels} weights "
                 f"(a dense 3x3 conv: {9 * channels * out_channels})")
    ref = F.conv2d(F.conv2d(x[None], dw, padding=rate, dilation=rate, groups=channels), pw)[0]
    fig.check = float((ref - out).abs().max())
    return _save(fig, path)


# ---- features and predictions at output strides 32, 16, 8 --------------------------------------------

def _prepare(image: np.ndarray | None, size: int) -> tuple[torch.Tensor, np.ndarray]:
    if image is None:
        image = load_sample_image(size)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255
    mean = torch.tensor((0.485, 0.456, 0.406))[:, None, None]
    std = torch.tensor((0.229, 0.224, 0.225))[:, None, None]
    return ((x - mean) / std)[None], image  # (1, 3, H, W)


def plot_output_strides(models: Mapping[str, nn.Module], image: np.ndarray | None = None, size: int = 129,
                        path: PathLike = None) -> Figure:
    """For each model (e.g. one per output stride 32, 16, 8): the backbone's last feature map (mean
    |activation|, drawn at its own resolution: the grid the ASPP sees) and the prediction (argmax), side
    by side. ``fig.feature_sizes`` records each feature map's size."""
    x, image = _prepare(image, size)
    fig = Figure(figsize=(3.2 * (len(models) + 1), 6.6), layout="constrained")
    axes = fig.subplots(2, len(models) + 1, squeeze=False)
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("input")
    axes[1, 0].axis("off")
    sizes = {}
    for col, (name, model) in enumerate(models.items(), start=1):
        was = model.training
        model.eval()
        with torch.no_grad():
            feats = model.backbone(x)["out"]  # (1, C, h, w)
            pred = model(x)
        model.train(was)
        pred = pred["out"] if isinstance(pred, dict) else pred
        fmap = feats[0].abs().mean(0).numpy()
        sizes[name] = fmap.shape
        shown = axes[0, col].imshow(fmap / (fmap.max() or 1), cmap=HEAT_CMAP, vmin=0, vmax=1,
                                    interpolation="nearest")
        axes[0, col].set_title(f"{name}: features {fmap.shape[0]}x{fmap.shape[1]}")
        axes[1, col].imshow(pred[0].argmax(0).numpy(), cmap="cividis", interpolation="nearest")
        axes[1, col].set_title(f"{name}: prediction (class ids)")
        for ax in axes[:, col]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_xticks([])
    axes[0, 0].set_yticks([])
    heat_colorbar(fig, shown, list(axes[0, 1:]), "mean |activation| (1 = the map's largest)")
    fig.suptitle("the same image at different output strides: the feature grid the ASPP sees, and the result")
    fig.feature_sizes = sizes
    return _save(fig, path)


def _boundary(labels: np.ndarray) -> np.ndarray:
    edge = np.zeros(labels.shape, bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    return edge


def plot_decoder_boundaries(models: Mapping[str, nn.Module], image: np.ndarray,
                            truth: np.ndarray | None = None, path: PathLike = None) -> Figure:
    """Predicted class boundaries of each model (e.g. DeepLabV3 against DeepLabV3+) over the dimmed
    image, beside the true boundaries: the decoder's stride-4 features sharpen them. ``image`` is
    ``(H, W, 3)`` uint8; ``fig.boundary_pixels`` counts each model's boundary pixels."""
    x, image = _prepare(image, 0)
    grey = np.asarray(image, float).mean(-1) / 255 * 0.5 + 0.4  # (H, W), dimmed
    panels = dict(models)
    fig = Figure(figsize=(3.6 * (len(panels) + (truth is not None)), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels) + (truth is not None), squeeze=False)[0]
    counts = {}
    items = [(name, m) for name, m in panels.items()] + ([("truth", None)] if truth is not None else [])
    for ax, (name, model) in zip(axes, items):
        if model is None:
            labels = np.asarray(truth)
        else:
            was = model.training
            model.eval()
            with torch.no_grad():
                y = model(x)
            model.train(was)
            labels = (y["out"] if isinstance(y, dict) else y)[0].argmax(0).numpy()
        edge = _boundary(labels)
        counts[name] = int(edge.sum())
        rgb = np.repeat(grey[..., None], 3, axis=2)
        rgb[edge] = np.asarray((0, 114, 178)) / 255  # Okabe-Ito blue
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(f"{name}: boundaries")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(handles=[Line2D([], [], color=OKABE_ITO[3], lw=3, label="class boundary")],
               loc="outside lower center", frameon=False)
    fig.suptitle("class boundaries with and without the decoder")
    fig.boundary_pixels = counts
    return _save(fig, path)


def plot_gridding_outputs(rates: Mapping[str, Sequence[int]] | None = None, size: int = 31,
                          path: PathLike = None) -> Figure:
    """The actual output of stacked 3x3 dilated convs (all weights 1) for a single bright input pixel:
    with equal rates only every ``rate``-th output pixel responds, a checkerboard (Wang et al., 2018,
    Fig. 1); hybrid rates respond everywhere. ``fig.zero_share`` is the share of zero outputs inside
    each response's bounding box."""
    rates = {"equal rates (2, 2, 2)": (2, 2, 2), "hybrid (1, 2, 3)": (1, 2, 3)} if rates is None else rates
    x = torch.zeros(1, 1, size, size)
    x[0, 0, size // 2, size // 2] = 1.0
    fig = Figure(figsize=(4.0 * len(rates) + 1.2, 4.3), layout="constrained")
    axes = fig.subplots(1, len(rates), squeeze=False)[0]
    shares = {}
    shown = None
    for ax, (name, rs) in zip(axes, rates.items()):
        y = x
        w = torch.ones(1, 1, 3, 3)
        for r in rs:
            y = F.conv2d(y, w, padding=r, dilation=r)
        out = y[0, 0].numpy()
        ys, xs = np.nonzero(out)
        box = out[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        shares[name] = float((box == 0).mean())
        shown = ax.imshow(out / out.max(), cmap=HEAT_CMAP, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{name}\n{shares[name]:.0%} of the outputs in the box are 0")
        ax.set_xlabel("output x (pixels)")
        ax.set_ylabel("output y (pixels)")
    heat_colorbar(fig, shown, list(axes), "output (1 = the largest)")
    fig.suptitle("gridding in the output: the response of stacked dilated convs to one bright pixel")
    fig.zero_share = shares
    return _save(fig, path)
