"""Cityscapes reader (fine annotations): label ids mapped to the 19 training classes (trainIds), 255 ignored.

Standard layout (``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip`` unpacked in ``root``)::

    root/leftImg8bit/{train,val,test}/CITY/CITY_SEQ_FRAME_leftImg8bit.png
    root/gtFine/{train,val,test}/CITY/CITY_SEQ_FRAME_gtFine_labelIds.png

The label files hold the 34 label ids of ``cityscapesScripts/helpers/labels.py``; training and
evaluation use the 19 classes with a trainId, the other ids (void, license plate, ...) become 255.
If you ran ``createTrainIdLabelImgs.py``, ``labels="labelTrainIds"`` reads its files instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .files import DatasetLayoutError, SegmentationFiles
from .palettes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE

__all__ = ["CITYSCAPES_ID_TO_TRAIN_ID", "CITYSCAPES_SPLITS", "Cityscapes", "id_to_train_id_lut"]

CITYSCAPES_SPLITS = ("train", "val", "test")

# label id -> trainId (cityscapesScripts/helpers/labels.py); ids absent here map to 255.
CITYSCAPES_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}


def id_to_train_id_lut() -> np.ndarray:
    """``(256,)`` uint8 lookup table: ``lut[label_id]`` is the trainId, 255 for ignored ids."""
    lut = np.full(256, 255, np.uint8)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut


class Cityscapes(SegmentationFiles):
    """Cityscapes fine annotations, 19 classes (``classes`` in trainId order), ignore label 255.

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: "train" (2,975 images), "val" (500) or "test" (1,525; its public labels are void).
        labels: "labelIds" (mapped id -> trainId) or "labelTrainIds" (already mapped).
        transform: a joint transform; None returns uint8 images.

    Construction pairs every image with its label file and names the first image without one.
    """

    classes = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE

    def __init__(self, root: str | os.PathLike, split: str = "train", *, labels: str = "labelIds",
                 transform: Callable[[dict], dict] | None = None) -> None:
        if split not in CITYSCAPES_SPLITS:
            raise ValueError(f"Cityscapes: expected split in {CITYSCAPES_SPLITS}, got {split!r}")
        if labels not in ("labelIds", "labelTrainIds"):
            raise ValueError(f"Cityscapes: expected labels 'labelIds' or 'labelTrainIds', got {labels!r}")
        root = Path(root)
        layout = ("root/leftImg8bit/<split>/<city>/*_leftImg8bit.png and "
                  "root/gtFine/<split>/<city>/*_gtFine_labelIds.png")
        if not root.is_dir():
            raise DatasetLayoutError(f"Cityscapes: root {str(root)!r} is not a folder (expected {layout})")
        image_dir, label_dir = root / "leftImg8bit" / split, root / "gtFine" / split
        for folder in (image_dir, label_dir):
            if not folder.is_dir():
                raise DatasetLayoutError(f"Cityscapes: missing folder {str(folder)!r} (expected {layout})")
        suffix = "_leftImg8bit.png"
        images = sorted(image_dir.glob(f"*/*{suffix}"))
        if not images:
            raise DatasetLayoutError(f"Cityscapes: no images *{suffix} in the city folders of "
                                     f"{str(image_dir)!r} "
                                     f"(expected {layout})")
        pairs = []
        for image in images:
            stem = image.name[: -len(suffix)]
            label = label_dir / image.parent.name / f"{stem}_gtFine_{labels}.png"
            if not label.is_file():
                raise DatasetLayoutError(f"Cityscapes: image {str(image)!r} has no label file {str(label)!r}")
            pairs.append((image, label, stem))
        self.root, self.split, self.labels = root, split, labels
        super().__init__(pairs, len(CITYSCAPES_CLASSES), transform=transform,
                         lut=id_to_train_id_lut() if labels == "labelIds" else None)
