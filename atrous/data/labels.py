"""Your own labels: RGB-coloured masks to class ids with a palette, class frequencies, class weights.

::

    from atrous.data import rgb_to_ids, class_frequencies, median_frequency_weights
    ids = rgb_to_ids(rgb_mask, [[0, 0, 0], [255, 0, 0], [0, 255, 0]])      # (H, W) uint8 class ids
    counts, image_pixels = class_frequencies(dataset, num_classes)
    weights = median_frequency_weights(counts, image_pixels)                 # for the cross-entropy

Median frequency balancing (Eigen and Fergus, ICCV 2015): ``freq_c`` is the pixels of class ``c``
over the pixels of the images in which ``c`` appears; ``weight_c = median(freq) / freq_c``, so a class
at the median frequency weighs 1, rarer classes more. A class absent from the data weighs 0.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .palettes import DATASET_INFO

__all__ = ["BINARY_PALETTE", "MASK_PALETTES", "class_frequencies", "median_frequency_weights",
           "parse_class_weights", "resolve_mask_palette", "rgb_to_ids"]

# Black background, white foreground: binary masks saved as 0/255 greyscale or RGB.
BINARY_PALETTE = np.array([[0, 0, 0], [255, 255, 255]], dtype=np.uint8)
MASK_PALETTES = ("binary", *sorted(DATASET_INFO))


def _codes(colours: np.ndarray) -> np.ndarray:
    c = colours.astype(np.int64)
    return (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]


def rgb_to_ids(rgb, palette, *, ignore_colors: Sequence[Sequence[int]] = (), ignore_index: int = 255,
               where: str = "mask") -> np.ndarray:
    """``(H, W)`` uint8 class ids of an ``(H, W, 3)`` RGB mask: pixel colour ``palette[i]`` -> ``i``,
    ``ignore_colors`` -> ``ignore_index``. A colour in neither raises naming ``where``, the colour
    and a pixel that has it."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"{where}: expected an (H, W, 3) RGB mask, got shape {rgb.shape}")
    palette = np.asarray(palette, dtype=np.int64).reshape(-1, 3)
    if len(palette) > 255:
        raise ValueError(f"{where}: expected a palette of at most 255 colours, got {len(palette)}")
    keys = np.concatenate([_codes(palette), _codes(np.asarray(ignore_colors, np.int64).reshape(-1, 3))])
    values = np.concatenate([np.arange(len(palette)), np.full(len(keys) - len(palette), ignore_index)])
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    codes = _codes(rgb)
    pos = np.clip(np.searchsorted(keys, codes), 0, len(keys) - 1)
    unknown = keys[pos] != codes
    if unknown.any():
        y, x = (int(v[0]) for v in np.nonzero(unknown))
        colour = tuple(int(v) for v in rgb[y, x])
        raise ValueError(f"{where}: colour {colour} (first at row {y}, column {x}) is not in the mask "
                         f"palette of {len(palette)} colours")
    return values[pos].astype(np.uint8)


def resolve_mask_palette(spec: str | None, default=None) -> np.ndarray | None:
    """``--mask-palette``: None; "binary" (black 0, white 1); a dataset's palette ("voc", "cityscapes",
    "shapes"); "classes" for ``default`` (a folder's classes.json palette); or a JSON file holding a list
    of ``[r, g, b]`` (or ``{"palette": [...]}``)."""
    if spec is None:
        return None
    if spec == "binary":
        return BINARY_PALETTE
    if spec in DATASET_INFO:
        return np.asarray(DATASET_INFO[spec][1], dtype=np.uint8)
    if spec == "classes":
        if default is None:
            raise ValueError("--mask-palette classes: expected a classes.json with a 'palette' in the "
                             "dataset")
        return np.asarray(default, dtype=np.uint8)
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--mask-palette: expected one of {', '.join((*MASK_PALETTES, 'classes'))} or a "
                         f"JSON file of [r, g, b] colours, got {spec!r}")
    try:
        data = json.loads(path.read_text())
        colours = np.asarray(data["palette"] if isinstance(data, dict) else data, dtype=np.int64)
        if colours.ndim != 2 or colours.shape[1] != 3 or colours.min() < 0 or colours.max() > 255:
            raise ValueError("not a list of [r, g, b] with values 0..255")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"--mask-palette: {spec}: expected a JSON list of [r, g, b] colours: {e}") from e
    return colours.astype(np.uint8)


def class_frequencies(dataset, num_classes: int,
                      ignore_index: int = 255) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pixels, image_pixels)``, both ``(num_classes,)`` int64: labelled pixels of each class, and the
    labelled pixels of the images in which each class appears. Reads every mask once, before any
    augmentation (``dataset.load(i)`` where the dataset has it)."""
    base = getattr(dataset, "dataset", dataset)  # Augmented wraps the files
    load = getattr(base, "load", None) or base.__getitem__
    pixels = torch.zeros(num_classes, dtype=torch.int64)
    image_pixels = torch.zeros(num_classes, dtype=torch.int64)
    for i in range(len(base)):
        mask = torch.as_tensor(load(i)["mask"]).reshape(-1)
        mask = mask[mask != ignore_index]
        counts = torch.bincount(mask, minlength=num_classes)[:num_classes]
        pixels += counts
        image_pixels += (counts > 0).long() * mask.numel()
    return pixels, image_pixels


def median_frequency_weights(pixels: torch.Tensor, image_pixels: torch.Tensor) -> torch.Tensor:
    """Median frequency balancing: ``median(freq) / freq_c`` with ``freq_c = pixels_c / image_pixels_c``;
    0 for a class that never appears."""
    pixels, image_pixels = torch.as_tensor(pixels).double(), torch.as_tensor(image_pixels).double()
    present = pixels > 0
    if not present.any():
        raise ValueError("median_frequency_weights: no labelled pixels of any class")
    freq = torch.where(present, pixels / image_pixels.clamp(min=1), torch.zeros_like(pixels))
    median = freq[present].median()  # the lower median for an even count, as torch defines it
    return torch.where(present, median / freq.clamp(min=1e-300), torch.zeros_like(freq))


def parse_class_weights(spec: str, num_classes: int) -> torch.Tensor | None:
    """``--class-weights``: "auto" returns None (compute them from the data), else ``num_classes``
    non-negative numbers separated by commas."""
    if spec == "auto":
        return None
    try:
        values = [float(v) for v in spec.split(",")]
    except ValueError:
        values = []
    if len(values) != num_classes or any(not v >= 0 for v in values):
        raise ValueError(f"--class-weights: expected 'auto' or {num_classes} non-negative numbers "
                         f"separated by commas, got {spec!r}")
    return torch.tensor(values, dtype=torch.float64)
