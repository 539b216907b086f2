"""Class names and colour palettes: Pascal VOC (21 classes), Cityscapes (19 trainIds), ContextShapes."""

from __future__ import annotations

import numpy as np

from .synthetic import CONTEXT_SHAPES_CLASSES, RIM_COLOURS

__all__ = [
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_PALETTE",
    "CONTEXT_SHAPES_PALETTE",
    "DATASET_INFO",
    "VOC_CLASSES",
    "VOC_PALETTE",
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

CONTEXT_SHAPES_PALETTE = np.array([(0, 0, 0), *RIM_COLOURS], np.uint8)  # black background, the rim colours

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
