"""Segmentation data: generated ContextShapes, Pascal VOC / Cityscapes / folder readers, joint transforms.

::

    from atrous.data import ContextShapes, VOCSegmentation, Cityscapes, Augmented, transforms as T

    train = Augmented(VOCSegmentation("data/VOCdevkit", "train_aug"), T.train_transform(513), seed=0)
    val = VOCSegmentation("data/VOCdevkit", "val", transform=T.eval_transform())
    shapes = ContextShapes(2000, image_size=128, seed=1)       # generated: no download

Every dataset returns a dict with ``image`` and ``mask`` (255 = ignore) and, for ContextShapes, the
per-pixel ``size`` and ``depth`` maps. :class:`Augmented` makes the random augmentation of sample ``i``
in epoch ``e`` a function of ``(seed, e, i)``, so runs replay exactly whatever the number of loader
workers or processes.
"""

from __future__ import annotations

from . import transforms
from .batching import Augmented, pad_collate
from .build import EVAL_DATASETS, DataBundle, build_data, build_eval_data
from .cityscapes import CITYSCAPES_ID_TO_TRAIN_ID, Cityscapes, id_to_train_id_lut
from .files import DatasetLayoutError, SegmentationFiles, SegmentationFolder, read_image, read_label
from .labels import (
    BINARY_PALETTE,
    MASK_PALETTES,
    class_frequencies,
    median_frequency_weights,
    parse_class_weights,
    resolve_mask_palette,
    rgb_to_ids,
)
from .palettes import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    CONTEXT_SHAPES_PALETTE,
    DATASET_INFO,
    VOC_CLASSES,
    VOC_PALETTE,
    palette_for,
    voc_palette,
)
from .synthetic import CONTEXT_SHAPES_CLASSES, SIZE_NAMES, ContextShapes, render_shapes
from .voc import VOC_SPLITS, VOCSegmentation, find_voc_root

__all__ = [
    "BINARY_PALETTE",
    "MASK_PALETTES",
    "class_frequencies",
    "median_frequency_weights",
    "parse_class_weights",
    "resolve_mask_palette",
    "rgb_to_ids",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_ID_TO_TRAIN_ID",
    "CITYSCAPES_PALETTE",
    "CONTEXT_SHAPES_CLASSES",
    "CONTEXT_SHAPES_PALETTE",
    "DATASET_INFO",
    "EVAL_DATASETS",
    "SIZE_NAMES",
    "VOC_CLASSES",
    "VOC_PALETTE",
    "VOC_SPLITS",
    "Augmented",
    "DataBundle",
    "Cityscapes",
    "ContextShapes",
    "DatasetLayoutError",
    "SegmentationFiles",
    "SegmentationFolder",
    "VOCSegmentation",
    "build_data",
    "build_eval_data",
    "find_voc_root",
    "id_to_train_id_lut",
    "pad_collate",
    "palette_for",
    "read_image",
    "read_label",
    "render_shapes",
    "transforms",
    "voc_palette",
]
