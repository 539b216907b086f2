"""ContextShapes: a generated segmentation dataset in which a pixel's class can only be read from context.

Every image holds up to five squares, circles and equilateral triangles at random positions, rotations
and sizes. An object's size is its radius ``r``: the radius of the disc of the same area, from 4% to
25% of the image side. All objects of one image are filled with the *same* texture: oriented stripes
whose colours, period, angle and phase are drawn per image and continue across the whole image, so
the stripes say nothing about which object they belong to. The background is a different texture
(smooth colour blotches), so "object or background" is a local question, answered by a few pixels.
Which object class a pixel belongs to is not. Two cues decide it (``cue``):

* ``"rim"`` (default): the class is the colour of a 2-pixel rim along the object's boundary: red,
  green or blue (classes 1, 2, 3), whatever the shape. The evidence sits on the boundary only.
* ``"shape"``: no rim; the class is the shape (1 square, 2 circle, 3 triangle).

**The receptive field a pixel needs.** Let ``d`` be a pixel's distance to the boundary of its object
(the ``"depth"`` map). Its stripes look the same in every object, so its receptive field (RF) must reach
the boundary: an RF of at least ``2 d + 1`` pixels (centred on the pixel). With ``cue="rim"`` that is
also enough, as the nearest rim pixel tells the class. At the centre of an object ``d`` is its inradius:
``r`` for a circle, ``0.89 r`` for a square, ``0.78 r`` for a triangle, so the largest objects
(``r = 0.25 S`` on an ``S x S`` image) need an RF of ``0.5 S + 1`` pixels, 65 pixels at ``S = 128``.
Small objects (``r < 0.08 S``: under 10 pixels at 128) are within reach of a few strided layers; large
ones (``r >= 0.15 S``: 19 pixels and more) need the wide RF that atrous convolution gives without
losing resolution. With ``cue="shape"`` reaching the boundary is necessary but not enough: one straight
edge is common to squares and triangles, so the RF must see a corner or enough of the outline, up
to the whole object (``2 R + 1``, ``R`` the circumradius: 1.25 r for a square, 1.56 r for a
triangle). That version is much harder to learn: the small DeepLabV3+ stays near chance on the shape
classes after 3,000 steps on a CPU, which is why the demo uses the rim.

Every sample carries per-pixel ``"size"`` (0 small, 1 medium, 2 large, 255 background) and ``"depth"``
maps, so accuracy can be measured by object size and by distance to the boundary.

Generation is deterministic: sample ``i`` of a dataset with seed ``s`` depends only on ``(s, i)`` and
the arguments, never on the order of access, the worker or the process. Samples are generated on
demand (about 3 ms each at 128x128) and, with ``cache=True`` (default), kept in memory (uint8 images,
about 110 KB per 128x128 sample with its label maps).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["CONTEXT_SHAPES_CLASSES", "CUES", "RIM_COLOURS", "SIZE_NAMES", "SIZE_RANGES", "ContextShapes",
           "render_shapes"]

CUES = ("rim", "shape")
CONTEXT_SHAPES_CLASSES = {"rim": ("background", "red", "green", "blue"),
                          "shape": ("background", "square", "circle", "triangle")}
RIM_COLOURS = ((230, 30, 30), (30, 200, 30), (40, 40, 230))  # classes 1, 2, 3
RIM_WIDTH = 2.0  # pixels
SIZE_NAMES = ("small", "medium", "large")
# Object radius (of the disc of equal area) as a fraction of the image side, per size class: [lo, hi).
SIZE_RANGES = ((0.04, 0.08), (0.08, 0.15), (0.15, 0.25))
NO_OBJECT = 255  # "size" value of background pixels
SQUARE, CIRCLE, TRIANGLE = 1, 2, 3
# Circumradius / equal-area radius of each shape: sqrt(pi / area of the unit-circumradius shape).
_CIRCUMRADIUS = {SQUARE: math.sqrt(math.pi / 2), CIRCLE: 1.0,
                 TRIANGLE: math.sqrt(math.pi / (3 * math.sqrt(3) / 4))}


def _polygon_depth(ys: np.ndarray, xs: np.ndarray, cy: float, cx: float, R: float, n: int,
                   angle: float) -> np.ndarray:
    """Signed distance to the boundary of a regular n-gon (circumradius R), positive inside.

    The polygon is convex, so inside it the distance to the boundary is the smallest distance to
    its edge lines: ``apothem - projection of (p - c) on each edge's normal``.
    """
    apothem = R * math.cos(math.pi / n)
    depth = np.full(ys.shape, np.inf)
    for k in range(n):
        theta = angle + (2 * k + 1) * math.pi / n  # direction of edge k's outward normal
        proj = (xs - cx) * math.cos(theta) + (ys - cy) * math.sin(theta)
        depth = np.minimum(depth, apothem - proj)
    return depth


def _blotches(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random field in [0, 1]: 6x6 random values upsampled bilinearly to ``size x size``."""
    coarse = rng.random((6, 6))
    grid = np.linspace(0, 5, size)
    i0 = np.minimum(np.floor(grid).astype(int), 4)
    t = grid - i0
    rows = coarse[i0] * (1 - t)[:, None] + coarse[i0 + 1] * t[:, None]  # (size, 6)
    return rows[:, i0] * (1 - t)[None, :] + rows[:, i0 + 1] * t[None, :]  # (size, size)


def render_shapes(rng: np.random.Generator, size: int, *, cue: str = "rim", max_objects: int = 5,
                  sizes: tuple[int, ...] = (0, 1, 2)) -> dict[str, np.ndarray]:
    """One sample as numpy arrays: ``image`` (H, W, 3) uint8, ``mask`` and ``size`` (H, W) uint8,
    ``depth`` (H, W) float16. ``sizes`` lists the size classes objects are drawn from (:data:`SIZE_NAMES`)."""
    if cue not in CUES:
        raise ValueError(f"render_shapes: expected cue in {CUES}, got {cue!r}")
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)

    bg_a, bg_b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    image = bg_a + (bg_b - bg_a) * _blotches(rng, size)[..., None]  # (H, W, 3)

    # Object texture, shared by every object of the image: stripes of one period, angle and phase.
    period = rng.uniform(3.5, 6.0)
    theta = rng.uniform(0, math.pi)
    phase = rng.uniform(0, 2 * math.pi)
    wave = np.sin(2 * math.pi * (xs * math.cos(theta) + ys * math.sin(theta)) / period + phase)
    fg_a = rng.uniform(0, 255, 3)
    fg_b = np.clip(fg_a + rng.choice([-1, 1], 3) * rng.uniform(90, 160, 3), 0, 255)  # contrasting colours
    stripes = fg_a + (fg_b - fg_a) * (0.5 + 0.5 * wave)[..., None]  # (H, W, 3)

    mask = np.zeros((size, size), np.uint8)
    size_map = np.full((size, size), NO_OBJECT, np.uint8)
    depth = np.zeros((size, size), np.float32)
    placed: list[tuple[float, float, float]] = []
    count = int(rng.integers(1, max_objects + 1))
    # (size class, shape, rim label) per object
    objects = [(int(rng.choice(sizes)), int(rng.integers(1, 4)), int(rng.integers(1, 4)))
               for _ in range(count)]
    for size_class, shape, label in sorted(objects, reverse=True):  # largest first: hardest to place
        lo, hi = SIZE_RANGES[size_class]
        r = rng.uniform(lo, hi) * size
        R = r * _CIRCUMRADIUS[shape]
        angle = rng.uniform(0, 2 * math.pi)
        for _attempt in range(30):  # rejection sampling: whole object inside, no overlap (2 px apart)
            cy, cx = rng.uniform(R + 1, size - 1 - R, 2)
            if all(math.hypot(cy - py, cx - px) > R + pR + 2 for py, px, pR in placed):
                break
        else:
            continue  # no room left: fewer objects
        placed.append((cy, cx, R))
        if shape == CIRCLE:
            d = R - np.hypot(ys - cy, xs - cx)
        else:
            d = _polygon_depth(ys, xs, cy, cx, R, 4 if shape == SQUARE else 3, angle)
        inside = d >= 0
        mask[inside] = label if cue == "rim" else shape
        size_map[inside] = size_class
        depth[inside] = d[inside]
        image[inside] = stripes[inside]
        if cue == "rim":
            image[inside & (d < RIM_WIDTH)] = RIM_COLOURS[label - 1]

    image = image + rng.normal(0, 8, image.shape)  # sensor noise, the same everywhere
    # float16 keeps depths to ~0.03 px below 64 px and halves the cache.
    return {"image": np.clip(image, 0, 255).astype(np.uint8), "mask": mask, "size": size_map,
            "depth": depth.astype(np.float16)}


class ContextShapes(Dataset):
    """Generated objects with one shared texture whose class needs context: see the module docstring.

    Args:
        length: number of samples.
        image_size: side ``S`` of the square images (>= 32).
        seed: samples depend only on ``(seed, index)`` and the other arguments; use different seeds
            for training and validation.
        cue: "rim" (class = colour of a 2-pixel rim) or "shape" (class = square, circle, triangle).
        max_objects: up to this many objects per image (fewer when they do not fit).
        sizes: size classes to draw objects from (0 small, 1 medium, 2 large).
        cache: keep generated samples in memory.
        transform: a joint transform (:mod:`atrous.data.transforms`) applied to each sample dict;
            None converts the uint8 image to float in [0, 1] only.

    A sample is a dict: ``image`` (3, S, S) uint8 (float after a transform), ``mask`` (S, S) int64
    class ids, ``size`` (S, S) int64 size class (255 on the background), ``depth`` (S, S) float32
    distance in pixels to the object's boundary (0 on the background), ``index``.
    """

    num_classes = 4
    ignore_index = 255

    def __init__(self, length: int = 1000, image_size: int = 128, seed: int = 0, *, cue: str = "rim",
                 max_objects: int = 5, sizes: tuple[int, ...] = (0, 1, 2), cache: bool = True,
                 transform: Callable[[dict], dict] | None = None) -> None:
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ValueError(f"ContextShapes: expected length to be an int >= 0, got {length!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
            raise ValueError(f"ContextShapes: expected image_size to be an int >= 32, got {image_size!r}")
        if cue not in CUES:
            raise ValueError(f"ContextShapes: expected cue in {CUES}, got {cue!r}")
        if isinstance(max_objects, bool) or not isinstance(max_objects, int) or max_objects < 1:
            raise ValueError(f"ContextShapes: expected max_objects to be an int >= 1, got {max_objects!r}")
        if not sizes or any(s not in (0, 1, 2) for s in sizes):
            raise ValueError(f"ContextShapes: expected sizes to be a non-empty subset of (0, 1, 2), "
                             f"got {sizes!r}")
        self.length, self.image_size, self.seed, self.cue = length, image_size, int(seed), cue
        self.max_objects, self.sizes = max_objects, tuple(sizes)
        self.classes = CONTEXT_SHAPES_CLASSES[cue]
        self.transform = transform
        self._cache: dict[int, dict[str, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def raw(self, index: int) -> dict[str, np.ndarray]:
        """Sample ``index`` as numpy arrays (see :func:`render_shapes`), before any transform."""
        if not -self.length <= index < self.length:
            raise IndexError(f"ContextShapes: index {index} out of range for length {self.length}")
        index %= self.length
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        # A generator per (seed, index): the same sample whatever the order, worker or process.
        rng = np.random.default_rng([self.seed, index])
        sample = render_shapes(rng, self.image_size, cue=self.cue, max_objects=self.max_objects,
                               sizes=self.sizes)
        if self._cache is not None:
            self._cache[index] = sample
        return sample

    def __getitem__(self, index: int) -> dict:
        raw = self.raw(index)
        sample = {
            "image": torch.from_numpy(raw["image"]).permute(2, 0, 1).contiguous(),  # (3, H, W) uint8
            "mask": torch.from_numpy(raw["mask"]).long(),
            "size": torch.from_numpy(raw["size"]).long(),
            "depth": torch.from_numpy(raw["depth"]).float(),
            "index": index % self.length,
        }
        if self.transform is not None:
            return self.transform(sample)
        sample["image"] = sample["image"].float() / 255
        return sample
