"""Tiny dataset trees on disk for command tests: a VOC 2012 layout and a folder of RGB-coloured masks."""

from __future__ import annotations

import numpy as np
from PIL import Image

from atrous.data.palettes import voc_palette


def save_image(path, h=24, w=32, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return rgb


def save_label(path, ids):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(ids.astype(np.uint8))
    img.putpalette(voc_palette(256).reshape(-1).tolist())
    img.save(path)


def voc_tree(root, n=3, split="val", h=24, w=32):
    """root/VOCdevkit/VOC2012 with n images of random pixels and labels: a person box, a class-k box,
    an ignored band. Returns {image id: label array}."""
    voc = root / "VOCdevkit" / "VOC2012"
    labels = {}
    for k in range(n):
        image_id = f"2007_{k:06d}"
        save_image(voc / "JPEGImages" / f"{image_id}.jpg", h, w, seed=k)
        label = np.zeros((h, w), np.uint8)
        label[2:10, 3:15] = 15
        label[1, :] = 255
        label[14:, 18:] = k + 1
        save_label(voc / "SegmentationClass" / f"{image_id}.png", label)
        labels[image_id] = label
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in labels))
    return labels
