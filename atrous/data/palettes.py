"""Class names, colour palettes (Pascal VOC, Cityscapes trainIds, ContextShapes) and mask colouring.

``get_palette`` resolves a palette argument, ``colorize`` turns class ids into colours and ``overlay`` blends
them into an image; :mod:`atrous.viz` re-exports the three.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .synthetic import CONTEXT_SHAPES_CLASSES

__all__ = [
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_PALETTE",
    "CONTEXT_SHAPES_PALETTE",
    "DATASET_INFO",
    "VOC_CLASSES",
    "VOC_PALETTE",
    "colorize",
    "get_palette",
    "overlay",
    "palette_for",
    "voc_palette",
]

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)


def voc_palette(n: int = 256) -> np.ndarray:
    """The VOC devkit's colour map, ``(n, 3)`` uint8: the bits of the class id, spread over the high
    bits of R, G and B (class 1 is (128, 0, 0), 15 "person" is (192, 128, 128))."""
    if not 1 <= n <= 256:
        raise ValueError(f"voc_palette: expected 1 <= n <= 256, got {n}")
    palette = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


VOC_PALETTE = voc_palette(21)

# cityscapesScripts/helpers/labels.py, in trainId order.
CITYSCAPES_PALETTE = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
], np.uint8)

# Black background, then Okabe-Ito orange, sky blue and reddish purple (Okabe & Ito, 2008): told apart
# under the common colour-vision deficiencies, and unlike the pure red, green and blue of the rims the
# images are drawn with, so a prediction's colour is never mistaken for a colour in the image.
CONTEXT_SHAPES_PALETTE = np.array([(0, 0, 0), (230, 159, 0), (86, 180, 233), (204, 121, 167)], np.uint8)

# name -> (class names, palette); also the `--palette` choices of the segment command.
DATASET_INFO: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
    "voc": (VOC_CLASSES, VOC_PALETTE),
    "cityscapes": (CITYSCAPES_CLASSES, CITYSCAPES_PALETTE),
    "shapes": (CONTEXT_SHAPES_CLASSES["rim"], CONTEXT_SHAPES_PALETTE),
}


def palette_for(num_classes: int, name: str | None = None) -> np.ndarray:
    """``(num_classes, 3)`` uint8 colours: a named dataset's palette, else the VOC colour map
    (which gives distinct colours to any number of classes up to 256)."""
    if name is not None:
        if name not in DATASET_INFO:
            raise ValueError(f"palette_for: expected name in {sorted(DATASET_INFO)} or None, got {name!r}")
        palette = DATASET_INFO[name][1]
        if len(palette) < num_classes:
            raise ValueError(f"palette_for: the {name!r} palette has {len(palette)} colours, "
                             f"{num_classes} classes asked for")
        return palette[:num_classes]
    return voc_palette(num_classes)


# ---- colouring masks -----------------------------------------------------------------------------

def get_palette(
    palette: str | np.ndarray | Sequence[Sequence[int]] | None, num_classes: int = 256
) -> np.ndarray:
    """``(K, 3)`` uint8 colours: a name ("voc", "cityscapes", "shapes"), an array/list of RGB triples, or
    None for the VOC colour map with ``num_classes`` entries."""
    if palette is None:
        return palette_for(num_classes)
    if isinstance(palette, str):
        if palette not in DATASET_INFO:
            raise ValueError(
                f"palette: expected one of {sorted(DATASET_INFO)} or an (K, 3) array, got {palette!r}"
            )
        return DATASET_INFO[palette][1]
    colours = np.asarray(palette)
    if colours.ndim != 2 or colours.shape[1] != 3 or colours.min() < 0 or colours.max() > 255:
        raise ValueError(f"palette: expected (K, 3) RGB values in 0..255, got shape {colours.shape}")
    return colours.astype(np.uint8)


def _as_hw3_uint8(image) -> np.ndarray:
    """PIL image, (H, W, 3) array or (3, H, W) tensor (uint8, or float in [0, 1]) -> (H, W, 3) uint8."""
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
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype.kind not in "iu":
        raise ValueError(
            f"overlay: expected an (H, W) integer mask of class ids, got {mask.dtype} {mask.shape}"
        )
    return mask


def colorize(
    mask, palette=None, ignore_index: int = 255, ignore_colour: Sequence[int] = (255, 255, 255)
) -> np.ndarray:
    """Class ids ``(H, W)`` -> colours ``(H, W, 3)`` uint8; ``ignore_index`` pixels get ``ignore_colour``."""
    mask = _as_mask(mask)
    valid = mask != ignore_index
    colours = get_palette(palette, int(mask[valid].max()) + 1 if valid.any() else 1)
    if valid.any() and mask[valid].max() >= len(colours):
        raise ValueError(
            f"colorize: the mask has class {int(mask[valid].max())}, the palette {len(colours)} colours"
        )
    out = np.empty((*mask.shape, 3), np.uint8)
    out[valid] = colours[mask[valid]]
    out[~valid] = ignore_colour
    return out


def overlay(image, mask, palette=None, alpha: float = 0.5, *, ignore_index: int = 255,
            transparent: Sequence[int] = (), path: str | os.PathLike | None = None) -> np.ndarray:
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
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(out).save(path)
    return out

