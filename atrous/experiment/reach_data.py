"""ReachShapes: objects whose class is on a 2-pixel rim only, so a pixel at depth d needs an RF reaching d px.

Every object (disc or square) is filled with the same stripes as every other object of its image; its
class (1 red, 2 green, 3 blue) is the colour of the rim along its boundary. A pixel at depth ``d``
(distance to the boundary) can tell its class only if its receptive field reaches ``d`` pixels
(``(RF - 1) / 2 >= d``, as the rim's nearest pixel lies ``d`` away). Radii run from 4 to 20 pixels
in 64-pixel images, so depths run up to 20: about twice the reach of the undilated network of
:mod:`atrous.experiment.reach` (9 px). Unlike the ContextShapes of :mod:`atrous.data.synthetic`, no
image-level statistic helps: the network of the experiment has no global path.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["RADIUS_RANGES", "RIM", "SIZE_NAMES", "ReachShapes", "render_reach"]

RIM = 2  # rim width in pixels
RIM_COLOURS = np.array([(230, 30, 30), (30, 200, 30), (40, 40, 230)], np.float64)  # classes 1, 2, 3
SIZE_NAMES = ("small", "medium", "large")
RADIUS_RANGES = ((4.0, 8.0), (8.0, 13.0), (13.0, 20.5))  # per size class, [lo, hi) pixels
NO_OBJECT = 255


def render_reach(rng: np.random.Generator, size: int = 64, max_objects: int = 4) -> dict[str, np.ndarray]:
    """One sample: ``image`` (3, S, S) float32 in [0, 1], ``mask`` (S, S) int64 (0 background),
    ``depth`` (S, S) float32 (distance to the boundary inside objects, 0 outside) and ``size`` (S, S)
    int64 (size class, 255 on the background)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    # Background: two random colours mixed by a smooth field; objects: stripes shared by the image.
    coarse = rng.random((5, 5))
    t = np.linspace(0, 4, size)
    i0 = np.minimum(t.astype(int), 3)
    f = t - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]  # (S, 5)
    field = rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]  # (S, S)
    bg_a, bg_b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    image = bg_a + (bg_b - bg_a) * field[..., None]  # (S, S, 3)
    period, theta, phase = rng.uniform(3.5, 6.0), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * (xs * np.cos(theta) + ys * np.sin(theta)) / period + phase)
    fg_a = rng.uniform(0, 255, 3)
    fg_b = np.clip(fg_a + rng.choice([-1, 1], 3) * rng.uniform(90, 160, 3), 0, 255)
    stripes = fg_a + (fg_b - fg_a) * (0.5 + 0.5 * wave)[..., None]  # (S, S, 3)

    mask = np.zeros((size, size), np.int64)
    depth = np.zeros((size, size), np.float32)
    size_map = np.full((size, size), NO_OBJECT, np.int64)
    placed: list[tuple[float, float, float]] = []
    classes = sorted((int(rng.integers(0, 3)) for _ in range(int(rng.integers(1, max_objects + 1)))),
                     reverse=True)  # largest first: hardest to place
    for size_class in classes:
        lo, hi = RADIUS_RANGES[size_class]
        r = rng.uniform(lo, hi)
        for _ in range(30):
            cy, cx = rng.uniform(r + 1, size - 1 - r, 2)
            if all(np.hypot(cy - py, cx - px) > r + pr + 3 for py, px, pr in placed):
                break
        else:
            continue
        placed.append((cy, cx, r))
        if rng.random() < 0.5:  # disc
            d = r - np.hypot(ys - cy, xs - cx)
        else:  # axis-aligned square of the disc's area
            half = r * np.sqrt(np.pi) / 2
            d = np.minimum(half - np.abs(ys - cy), half - np.abs(xs - cx))
        inside = d > 0
        label = int(rng.integers(1, 4))
        image[inside] = stripes[inside]
        image[inside & (d <= RIM)] = RIM_COLOURS[label - 1]
        mask[inside], depth[inside], size_map[inside] = label, d[inside], size_class
    image = np.clip(image, 0, 255).transpose(2, 0, 1) / 255.0  # (3, S, S)
    return {"image": image.astype(np.float32), "mask": mask, "depth": depth, "size": size_map}


class ReachShapes:
    """``length`` samples of :func:`render_reach` stacked into tensors (``images`` (N, 3, S, S), ``masks``,
    ``depths``, ``sizes`` (N, S, S)), drawn from ``seed``; small enough to keep in memory."""

    num_classes = 4

    def __init__(self, length: int, image_size: int = 64, seed: int = 0) -> None:
        if length < 1 or image_size < 48:
            raise ValueError(f"ReachShapes: expected length >= 1 and image_size >= 48, "
                             f"got {length}, {image_size}")
        rng = np.random.default_rng(seed)
        samples = [render_reach(rng, image_size) for _ in range(length)]
        self.images = torch.from_numpy(np.stack([s["image"] for s in samples]))  # (N, 3, S, S)
        self.masks = torch.from_numpy(np.stack([s["mask"] for s in samples]))  # (N, S, S)
        self.depths = torch.from_numpy(np.stack([s["depth"] for s in samples]))  # (N, S, S)
        self.sizes = torch.from_numpy(np.stack([s["size"] for s in samples]))  # (N, S, S)

    def __len__(self) -> int:
        return len(self.images)
