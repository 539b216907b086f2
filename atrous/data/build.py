"""The datasets a training configuration names: train/validation sets, augmentation, class names, colours."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset

from . import transforms as T
from .batching import Augmented
from .cityscapes import Cityscapes
from .files import SegmentationFolder
from .palettes import palette_for
from .synthetic import ContextShapes
from .voc import VOCSegmentation, find_voc_root

__all__ = ["EVAL_DATASETS", "DataBundle", "build_data", "build_eval_data"]

EVAL_DATASETS = ("shapes", "voc", "cityscapes", "folder")


@dataclass
class DataBundle:
    """Training and validation datasets plus what the model and inference need to know about them."""

    train: Dataset
    val: Dataset
    num_classes: int
    classes: tuple[str, ...]
    palette: list[list[int]]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    ignore_index: int = 255

    def info(self) -> dict:
        return {"classes": list(self.classes), "palette": self.palette, "mean": list(self.mean),
                "std": list(self.std), "num_classes": self.num_classes, "ignore_index": self.ignore_index}


def build_data(config) -> DataBundle:
    """The datasets a config names, with their augmentation (see :class:`~atrous.data.Augmented`).

    ``config``: an :class:`atrous.training.TrainConfig`, or any object with its data fields (dataset,
    data_root, train/val sizes and splits, image/crop size, scales, flip, cue, seeds, num_classes).
    """
    mean, std = T.IMAGENET_MEAN, T.IMAGENET_STD
    if config.dataset == "shapes":
        train = ContextShapes(config.train_size, config.image_size, seed=config.data_seed, cue=config.cue)
        val = ContextShapes(config.val_size, config.image_size, seed=config.data_seed + 1000, cue=config.cue)
        crop, scale = config.crop_size, None
        if config.min_scale is not None or config.max_scale is not None:
            scale = (config.min_scale or 1.0, config.max_scale or 1.0)
        classes = train.classes
        palette = palette_for(4, "shapes")  # colour-blind safe, unlike any rim colour in the images
    else:
        if config.data_root is None:
            raise ValueError(f"train: expected --data-root for dataset {config.dataset!r}")
        scale = (config.min_scale if config.min_scale is not None else 0.5,
                 config.max_scale if config.max_scale is not None else 2.0)
        split = config.train_split
        if config.dataset == "voc":
            if split is None:
                lists = find_voc_root(config.data_root) / "ImageSets" / "Segmentation"
                split = "train_aug" if (lists / "train_aug.txt").is_file() else "train"
            train = VOCSegmentation(config.data_root, split)
            val = VOCSegmentation(config.data_root, config.val_split)
            crop = config.crop_size or 513
        elif config.dataset == "cityscapes":
            train = Cityscapes(config.data_root, split or "train")
            val = Cityscapes(config.data_root, config.val_split)
            crop = config.crop_size or 768
        else:
            mask_palette = getattr(config, "mask_palette", None)
            train = SegmentationFolder(config.data_root, split or "train", config.num_classes,
                                       mask_palette=mask_palette)
            val = SegmentationFolder(config.data_root, config.val_split, config.num_classes,
                                     mask_palette=mask_palette)
            crop = config.crop_size or 512
        classes, palette = train.classes, train.palette
    if getattr(config, "mask_palette", None) is not None and config.dataset != "folder":
        raise ValueError(f"train: --mask-palette applies to --dataset folder, not {config.dataset!r}")
    if config.num_classes is not None and config.num_classes != len(classes):
        raise ValueError(f"train: --num-classes {config.num_classes} differs from the {len(classes)} classes "
                         f"of dataset {config.dataset!r}")
    train_tf = T.train_transform(crop, scale=scale, flip=config.flip, mean=mean, std=std)
    train = Augmented(train, train_tf, seed=config.seed)
    val.transform = T.eval_transform(mean, std)
    return DataBundle(train, val, len(classes), tuple(classes), np.asarray(palette).tolist(), tuple(mean),
                      tuple(std))


def build_eval_data(dataset: str, data_root=None, split: str = "val", *, num_classes: int | None = None,
                    mask_palette=None, size: int = 200, image_size: int = 128, seed: int = 1001,
                    cue: str = "rim",
                    mean=T.IMAGENET_MEAN, std=T.IMAGENET_STD) -> tuple[Dataset, tuple[str, ...], list]:
    """``(dataset, classes, palette)`` to evaluate on, normalised with ``mean``/``std``: a split of VOC,
    Cityscapes or a folder (``data_root``), or ``size`` generated ContextShapes images (``seed``: 1001
    is the validation set of ``atrous train``'s defaults)."""
    if dataset not in EVAL_DATASETS:
        raise ValueError(f"eval: expected dataset in {EVAL_DATASETS}, got {dataset!r}")
    if dataset == "shapes":
        data = ContextShapes(size, image_size, seed=seed, cue=cue)
        palette = palette_for(4, "shapes") if cue == "rim" else palette_for(4)
    elif data_root is None:
        raise ValueError(f"eval: expected --data-root for dataset {dataset!r}")
    elif dataset == "voc":
        data = VOCSegmentation(data_root, split)
    elif dataset == "cityscapes":
        data = Cityscapes(data_root, split)
    else:
        data = SegmentationFolder(data_root, split, num_classes, mask_palette=mask_palette)
    if mask_palette is not None and dataset != "folder":
        raise ValueError(f"eval: --mask-palette applies to --dataset folder, not {dataset!r}")
    classes = tuple(data.classes)
    if dataset != "shapes":
        palette = data.palette
    if num_classes is not None and num_classes != len(classes):
        raise ValueError(f"eval: --num-classes {num_classes} differs from the {len(classes)} classes "
                         f"of dataset {dataset!r}")
    data.transform = T.eval_transform(mean, std)
    return data, classes, np.asarray(palette).tolist()
