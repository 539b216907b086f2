"""Datasets read from image and label files: the shared loader, and a folder layout for custom data."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .labels import resolve_mask_palette, rgb_to_ids
from .palettes import palette_for

__all__ = ["DatasetLayoutError", "SegmentationFiles", "SegmentationFolder", "read_image", "read_label"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder is missing, incomplete or laid out differently than the reader expects."""


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """An image file as a ``(3, H, W)`` uint8 RGB tensor."""
    from PIL import Image

    with Image.open(path) as img:
        array = np.asarray(img.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()  # (3, H, W)


def read_label(path: str | os.PathLike, palette=None) -> np.ndarray:
    """A label PNG as an ``(H, W)`` uint8 array of class ids: palette ('P') or greyscale ('L') images.

    Without ``palette``, RGB-coloured masks are refused: the colour-to-class mapping is the dataset's
    business, and a silently wrong conversion would train on garbage. With ``palette`` (``(K, 3)``
    colours: ``--mask-palette``), the colours the image shows map to class ids
    (:func:`atrous.data.rgb_to_ids`), and a colour outside it raises naming the file.
    """
    from PIL import Image

    if palette is not None:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
        return rgb_to_ids(rgb, palette, where=str(path))
    with Image.open(path) as img:
        if img.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected a palette-indexed ('P') or greyscale ('L') label image whose "
                             f"pixel values are class ids, got mode {img.mode!r} (give the colours with "
                             "--mask-palette / palette=, or convert coloured masks to class ids first)")
        return np.asarray(img).copy()


class SegmentationFiles(Dataset):
    """A list of (image, label) file pairs read on access, with an optional id -> class mapping.

    A sample is a dict: ``image`` (3, H, W) uint8, ``mask`` (H, W) int64 (255 = ignore), ``name``;
    then ``transform`` (from :mod:`atrous.data.transforms`) if given.
    """

    classes: tuple[str, ...] = ()
    ignore_index = 255

    def __init__(self, pairs: Sequence[tuple[Path, Path | None, str]], num_classes: int, *,
                 transform: Callable[[dict], dict] | None = None, lut: np.ndarray | None = None,
                 mask_palette=None) -> None:
        self.pairs = list(pairs)
        self.mask_palette = mask_palette  # (K, 3) colours of RGB masks; None: pixel values are ids
        self.num_classes = num_classes
        self.transform = transform
        self.lut = lut  # (256,) uint8: stored id -> class id (Cityscapes id -> trainId)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> dict:
        """Sample ``index`` before the transform."""
        image_path, label_path, name = self.pairs[index]
        image = read_image(image_path)
        if label_path is None:  # unlabelled split: every pixel ignored
            mask = torch.full(image.shape[-2:], self.ignore_index, dtype=torch.int64)
            return {"image": image, "mask": mask, "name": name}
        label = read_label(label_path, self.mask_palette)
        if label.shape != tuple(image.shape[-2:]):
            raise ValueError(f"{label_path}: expected a label of the image's size {tuple(image.shape[-2:])}, "
                             f"got {label.shape}")
        if self.lut is not None:
            label = self.lut[label]
        bad = (label >= self.num_classes) & (label != self.ignore_index)
        if bad.any():
            raise ValueError(f"{label_path}: expected class ids in [0, {self.num_classes}) or "
                             f"{self.ignore_index}, found {int(label[bad][0])}")
        return {"image": image, "mask": torch.from_numpy(label.astype(np.int64)), "name": name}

    def __getitem__(self, index: int) -> dict:
        sample = self.load(index)
        return self.transform(sample) if self.transform is not None else sample


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        p = folder / (stem + suffix)
        if p.is_file():
            return p
    return None


class SegmentationFolder(SegmentationFiles):
    """Your own data in a simple layout::

        root/images/<split>/NAME.jpg   (or .png, ...)
        root/masks/<split>/NAME.png    class ids 0 .. num_classes - 1, 255 = ignore ('P' or 'L' PNG)
        root/classes.json              optional: {"names": [...], "palette": [[r, g, b], ...]}

    Args:
        root: the dataset folder.
        split: a subfolder name under ``images/`` and ``masks/`` ("train", "val", ...).
        num_classes: classes in the masks; None reads it from ``classes.json``.
        transform: a joint transform.
        mask_palette: masks are RGB colours: a ``(K, 3)`` palette, or a name for
            :func:`~atrous.data.resolve_mask_palette` ("binary", "voc", "classes" for the classes.json
            palette, a JSON file); colour ``i`` is class ``i``.

    ``classes`` and ``palette`` come from ``classes.json`` when present, else generic names ("class 0",
    ...) and the VOC colour map.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", num_classes: int | None = None, *,
                 transform: Callable[[dict], dict] | None = None, mask_palette=None) -> None:
        root = Path(root)
        images_dir, masks_dir = root / "images" / split, root / "masks" / split
        layout = "root/images/<split>/NAME.jpg and root/masks/<split>/NAME.png"
        if not root.is_dir():
            raise DatasetLayoutError(f"SegmentationFolder: root {str(root)!r} is not a folder "
                                     f"(expected {layout})")
        for folder in (images_dir, masks_dir):
            if not folder.is_dir():
                splits = sorted(p.name for p in (root / "images").iterdir() if p.is_dir()) \
                    if (root / "images").is_dir() else []
                raise DatasetLayoutError(f"SegmentationFolder: missing folder {str(folder)!r} for split "
                                         f"{split!r} (expected {layout}; splits found: {splits or 'none'})")
        names, palette = self._read_classes(root / "classes.json")
        if num_classes is None:
            if names is None:
                raise ValueError("SegmentationFolder: expected num_classes, or a classes.json with 'names' "
                                 f"in {str(root)!r}")
            num_classes = len(names)
        if names is not None and len(names) != num_classes:
            raise ValueError(f"SegmentationFolder: classes.json lists {len(names)} names, "
                             f"num_classes={num_classes}")
        pairs = []
        for mask_path in sorted(masks_dir.glob("*.png")):
            image_path = _find_image(images_dir, mask_path.stem)
            if image_path is None:
                raise DatasetLayoutError(f"SegmentationFolder: mask {str(mask_path)!r} has no image "
                                         f"{mask_path.stem}.{{jpg,png,...}} in {str(images_dir)!r}")
            pairs.append((image_path, mask_path, mask_path.stem))
        if not pairs:
            raise DatasetLayoutError(f"SegmentationFolder: no masks (*.png) in {str(masks_dir)!r}")
        if isinstance(mask_palette, str):
            mask_palette = resolve_mask_palette(mask_palette, palette)
        if mask_palette is not None and len(mask_palette) < num_classes:
            raise ValueError(f"SegmentationFolder: the mask palette has {len(mask_palette)} colours for "
                             f"{num_classes} classes")
        super().__init__(pairs, num_classes, transform=transform, mask_palette=mask_palette)
        self.classes = tuple(names) if names is not None else tuple(f"class {i}" for i in range(num_classes))
        self.palette = palette if palette is not None else palette_for(num_classes)

    @staticmethod
    def _read_classes(path: Path) -> tuple[list[str] | None, np.ndarray | None]:
        if not path.is_file():
            return None, None
        try:
            info = json.loads(path.read_text())
            names = info.get("names")
            palette = info.get("palette")
            if names is not None and not all(isinstance(n, str) for n in names):
                raise ValueError("'names' must be a list of strings")
            if palette is not None:
                palette = np.asarray(palette, dtype=np.int64)
                if palette.ndim != 2 or palette.shape[1] != 3 or palette.min() < 0 or palette.max() > 255:
                    raise ValueError("'palette' must be a list of [r, g, b] with values 0..255")
                palette = palette.astype(np.uint8)
        except (ValueError, AttributeError, TypeError) as e:
            expected = '{"names": [...], "palette": [[r, g, b], ...]}'
            raise ValueError(f"{path}: expected {expected}: {e}") from e
        if names is not None and palette is not None and len(palette) < len(names):
            raise ValueError(f"{path}: the palette has {len(palette)} colours for {len(names)} names")
        return names, palette
