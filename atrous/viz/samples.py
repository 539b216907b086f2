"""Dataset sample grids: ContextShapes images with their classes, depth and size maps, each with a legend."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..data.palettes import CONTEXT_SHAPES_PALETTE, overlay
from ..data.synthetic import SIZE_NAMES
from .common import PathLike, _save
from .theme import HEAT_CMAP, OKABE_ITO, heat_colorbar

__all__ = ["plot_context_shapes"]

SIZE_COLOURS = (OKABE_ITO[6], OKABE_ITO[2], OKABE_ITO[3])  # small, medium, large: none is a class colour


def plot_context_shapes(dataset, count: int = 4, path: PathLike = None) -> Figure:
    """One row per sample: the image, its classes over it (the class palette, unlike any rim colour), the
    depth map (pixels from the object's edge, with a colourbar) and the size class as three discrete
    colours with a legend (a continuous colourbar would suggest sizes between the classes)."""
    count = min(count, len(dataset))
    if count < 1:
        raise ValueError("dataset: expected at least one sample, got none")
    fig = Figure(figsize=(10, 2.5 * count + 0.8), layout="constrained")
    axes = fig.subplots(count, 4, squeeze=False)
    size_cmap = ListedColormap(SIZE_COLOURS).with_extremes(bad="white")
    size_norm = BoundaryNorm([-0.5, 0.5, 1.5, 2.5], 3)
    depth_max = max(float(dataset[i]["depth"].max()) for i in range(count)) or 1.0
    for row, i in zip(axes, range(count)):
        sample = dataset[i]
        classes = overlay(sample["image"], sample["mask"], CONTEXT_SHAPES_PALETTE, 0.7, transparent=(0,))
        size = np.ma.masked_equal(sample["size"].numpy(), 255)
        row[0].imshow(sample["image"].permute(1, 2, 0).numpy())  # (H, W, 3)
        row[1].imshow(classes)
        depth = row[2].imshow(sample["depth"].numpy(), cmap=HEAT_CMAP, vmin=0, vmax=depth_max)
        row[3].imshow(size, cmap=size_cmap, norm=size_norm, interpolation="nearest", gid="size")
        for ax, title in zip(row, ("image", "classes", "depth (px from the edge)", "size class")):
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    heat_colorbar(fig, depth, list(axes[:, 2]), "depth (pixels)")
    classes = getattr(dataset, "classes", ("background", "1", "2", "3"))
    handles = [Patch(facecolor=np.asarray(c) / 255, edgecolor="#666666", label=f"class: {name}")
               for name, c in zip(classes[1:], CONTEXT_SHAPES_PALETTE[1:])]
    handles += [Patch(facecolor=c, edgecolor="#666666", label=f"size: {name}")
                for name, c in zip(SIZE_NAMES, SIZE_COLOURS)]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    fig.suptitle("ContextShapes: the class is the rim colour; depth and size maps come with each sample")
    return _save(fig, path)
