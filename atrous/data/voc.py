"""Pascal VOC 2012 segmentation reader, with the SBD-augmented training list ("train_aug").

Standard layout (the devkit's tarball; ``root`` may point at ``VOC2012`` itself, at ``VOCdevkit`` or
at the folder holding ``VOCdevkit``)::

    VOCdevkit/VOC2012/JPEGImages/2007_000032.jpg
    VOCdevkit/VOC2012/SegmentationClass/2007_000032.png      palette PNG: ids 0-20, 255 = boundary/ignore
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt

Augmented set (Hariharan et al.'s SBD, as used by DeepLab): the 10,582 training images of
``train_aug`` need the SBD masks converted to PNG, in the layout of the DeepLab code::

    VOCdevkit/VOC2012/SegmentationClassAug/*.png
    VOCdevkit/VOC2012/ImageSets/Segmentation/train_aug.txt   one id per line, or DeepLab-v2's
                                                             "/JPEGImages/ID.jpg /SegmentationClassAug/ID.png"

(SBD ships MATLAB ``.mat`` files; the DeepLab repositories' conversion scripts write these PNGs.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .files import DatasetLayoutError, SegmentationFiles
from .palettes import VOC_CLASSES, VOC_PALETTE

__all__ = ["VOC_SPLITS", "VOCSegmentation", "find_voc_root"]

VOC_SPLITS = ("train", "val", "trainval", "train_aug")
_AUG_SPLITS = {"train_aug", "trainval_aug"}


def find_voc_root(root: str | os.PathLike) -> Path:
    """The ``VOC2012`` folder: ``root`` itself, ``root/VOC2012`` or ``root/VOCdevkit/VOC2012``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(
            f"VOCSegmentation: root {str(root)!r} is not a folder (expected the VOC 2012 devkit: "
            "VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation})")
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir() and (candidate / "ImageSets" / "Segmentation").is_dir():
            return candidate
    raise DatasetLayoutError(
        f"VOCSegmentation: no VOC 2012 tree under {str(root)!r}: expected JPEGImages/ and "
        "ImageSets/Segmentation/ in it, in VOC2012/ or in VOCdevkit/VOC2012/")


def _read_ids(list_file: Path) -> list[str]:
    ids = []
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) > 2:
            raise ValueError(f"{list_file}, line {number}: expected an image id (or 'IMAGE LABEL' paths), "
                             f"got {line!r}")
        ids.append(Path(tokens[0]).stem)  # "2007_000032" or "/JPEGImages/2007_000032.jpg"
    if not ids:
        raise ValueError(f"{list_file}: expected one image id per line, the file is empty")
    return ids


class VOCSegmentation(SegmentationFiles):
    """Pascal VOC 2012 segmentation: 21 classes (``classes``), ignore label 255 on object boundaries.

    Args:
        root: folder holding the devkit (see the module docstring for the layout).
        split: "train" (1,464 images), "val" (1,449), "trainval", or "train_aug" (10,582, SBD-augmented;
            masks from ``SegmentationClassAug``).
        transform: a joint transform (:mod:`atrous.data.transforms`); None returns uint8 images.

    Every listed image and mask is checked to exist on construction; a missing one is named.
    """

    classes = VOC_CLASSES
    palette = VOC_PALETTE

    def __init__(self, root: str | os.PathLike, split: str = "train", *,
                 transform: Callable[[dict], dict] | None = None) -> None:
        if split not in VOC_SPLITS and split not in _AUG_SPLITS:
            raise ValueError(f"VOCSegmentation: expected split in {VOC_SPLITS}, got {split!r}")
        self.root = find_voc_root(root)
        self.split = split
        list_dir = self.root / "ImageSets" / "Segmentation"
        list_file = list_dir / f"{split}.txt"
        if not list_file.is_file():
            found = sorted(p.stem for p in list_dir.glob("*.txt"))
            hint = " (the SBD-augmented list comes from the DeepLab code, see atrous.data.voc)" \
                if split in _AUG_SPLITS else ""
            raise DatasetLayoutError(f"VOCSegmentation: missing split list {str(list_file)!r}{hint}; "
                                     f"lists found: {found or 'none'}")
        mask_dir = self.root / ("SegmentationClassAug" if split in _AUG_SPLITS else "SegmentationClass")
        if not mask_dir.is_dir():
            raise DatasetLayoutError(f"VOCSegmentation: missing mask folder {str(mask_dir)!r} "
                                     f"for split {split!r}")
        pairs = []
        for image_id in _read_ids(list_file):
            image, mask = self.root / "JPEGImages" / f"{image_id}.jpg", mask_dir / f"{image_id}.png"
            for path in (image, mask):
                if not path.is_file():
                    raise DatasetLayoutError(f"VOCSegmentation: {str(list_file)!r} lists {image_id!r}, but "
                                             f"{str(path)!r} does not exist")
            pairs.append((image, mask, image_id))
        super().__init__(pairs, len(VOC_CLASSES), transform=transform)
