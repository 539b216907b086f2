"""Segmentation metrics from a confusion matrix: per-class IoU, mIoU, pixel accuracy, mean class accuracy.

The confusion matrix ``M`` (``num_classes x num_classes``, int64) counts pixels: ``M[t, p]`` is the
number of pixels of true class ``t`` predicted as ``p``; pixels labelled ``ignore_index`` (255 in VOC
and Cityscapes) are left out. From it, for class ``c``::

    TP = M[c, c]    FN = sum_p M[c, p] - TP    FP = sum_t M[t, c] - TP
    IoU_c = TP / (TP + FP + FN)        (NaN when the class is neither in the labels nor predicted)
    mIoU = mean of IoU_c over the classes whose IoU is defined
    pixel accuracy = trace(M) / sum(M)        class accuracy_c = TP / (TP + FN)

These are the PASCAL VOC and Cityscapes definitions: one matrix accumulated over the whole dataset,
not a mean of per-image IoUs. Matrices add, so a sharded evaluation sums its shards' matrices
(:meth:`ConfusionMatrix.all_reduce` in distributed runs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["ConfusionMatrix", "SegmentationScores", "confusion_matrix", "scores_from_confusion"]


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, *,
                     ignore_index: int | None = 255, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``(num_classes, num_classes)`` int64 counts, rows = true class, columns = predicted class.

    ``pred`` and ``target`` are integer tensors of the same shape (any shape, e.g. ``(N, H, W)``);
    pixels where ``target == ignore_index`` or where ``mask`` is False are not counted. A prediction
    outside ``[0, num_classes)`` raises, as does a label other than those and ``ignore_index``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"confusion_matrix: expected num_classes to be an int >= 1, got {num_classes!r}")
    if pred.shape != target.shape:
        raise ValueError(f"confusion_matrix: expected pred and target of the same shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.is_floating_point() or target.is_floating_point():
        raise TypeError("confusion_matrix: expected integer class ids in pred and target (take argmax of the "
                        f"logits first), got {pred.dtype} and {target.dtype}")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    if mask is not None:
        if mask.numel() != pred.numel():  # any shape with one entry per pixel
            raise ValueError(f"confusion_matrix: expected mask with {pred.numel()} elements, got shape "
                             f"{tuple(mask.shape)}")
        keep &= mask.reshape(-1).bool()
    pred, target = pred[keep], target[keep]
    for name, t in (("target", target), ("pred", pred)):
        if t.numel() and (t.min() < 0 or t.max() >= num_classes):
            bad = t[(t < 0) | (t >= num_classes)][0].item()
            ignore = f" or {ignore_index}" if name == "target" and ignore_index is not None else ""
            raise ValueError(f"confusion_matrix: expected {name} values in [0, {num_classes}){ignore}, "
                             f"got {bad}")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).cpu()  # (true, predicted)


@dataclass
class SegmentationScores:
    """What a confusion matrix says. ``iou`` and ``accuracy`` are per class (NaN: class absent)."""

    iou: list[float]
    accuracy: list[float]
    miou: float
    pixel_accuracy: float
    mean_accuracy: float
    pixels: int

    def as_dict(self) -> dict:
        return {"miou": self.miou, "pixel_accuracy": self.pixel_accuracy, "mean_accuracy": self.mean_accuracy,
                "iou": self.iou, "accuracy": self.accuracy, "pixels": self.pixels}

    def report(self, class_names: Sequence[str] | None = None) -> dict:
        """JSON-ready scores: the means, ``per_class`` {name: {iou, accuracy}} (None: class absent)."""
        names = list(class_names) if class_names is not None else [str(i) for i in range(len(self.iou))]
        if len(names) != len(self.iou):
            raise ValueError(f"SegmentationScores.report: expected {len(self.iou)} class names, "
                             f"got {len(names)}")

        def plain(v: float):
            return None if math.isnan(v) else v

        return {"miou": plain(self.miou), "pixel_accuracy": plain(self.pixel_accuracy),
                "mean_accuracy": plain(self.mean_accuracy), "pixels": self.pixels,
                "per_class": {n: {"iou": plain(i), "accuracy": plain(a)}
                              for n, i, a in zip(names, self.iou, self.accuracy)}}

    def table(self, class_names: Sequence[str] | None = None) -> str:
        """Per-class IoU and accuracy, then the means, as aligned text."""
        names = list(class_names) if class_names is not None else [str(i) for i in range(len(self.iou))]
        if len(names) != len(self.iou):
            raise ValueError(f"SegmentationScores.table: expected {len(self.iou)} class names, "
                             f"got {len(names)}")
        width = max(12, *(len(n) for n in names))
        lines = [f"{'class':<{width}} {'IoU':>7} {'acc':>7}"]
        for name, iou, acc in zip(names, self.iou, self.accuracy):
            lines.append(f"{name:<{width}} {_pct(iou):>7} {_pct(acc):>7}")
        lines.append(f"{'mean':<{width}} {_pct(self.miou):>7} {_pct(self.mean_accuracy):>7}")
        lines.append(f"pixel accuracy {_pct(self.pixel_accuracy)} over {self.pixels} pixels")
        return "\n".join(lines)


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}"


def _nanmean(values: torch.Tensor) -> float:
    values = values[~values.isnan()]
    return float(values.mean()) if values.numel() else math.nan


def scores_from_confusion(matrix: torch.Tensor, classes: Sequence[int] | None = None) -> SegmentationScores:
    """IoU, accuracies and their means from a confusion matrix (rows true, columns predicted).

    ``classes`` restricts the means to those class ids (e.g. the foreground classes); per-class lists
    always cover every class.
    """
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"scores_from_confusion: expected a square matrix, got shape {tuple(matrix.shape)}")
    m = matrix.double()
    tp = m.diag()
    true_total, pred_total = m.sum(1), m.sum(0)
    union = true_total + pred_total - tp
    nan = torch.full_like(tp, math.nan)
    iou = torch.where(union > 0, tp / union.clamp(min=1), nan)
    acc = torch.where(true_total > 0, tp / true_total.clamp(min=1), nan)
    sel = slice(None) if classes is None else torch.as_tensor(list(classes), dtype=torch.long)
    total = float(m.sum())
    return SegmentationScores(
        iou=iou.tolist(), accuracy=acc.tolist(), miou=_nanmean(iou[sel]),
        pixel_accuracy=float(tp.sum() / total) if total > 0 else math.nan,
        mean_accuracy=_nanmean(acc[sel]), pixels=int(total))


class ConfusionMatrix:
    """Accumulates a confusion matrix over batches; :meth:`scores` turns it into IoUs.

    ::

        cm = ConfusionMatrix(21)
        for images, masks in loader:
            cm.update(model(images).argmax(1), masks)
        print(cm.scores().table(VOC_CLASSES))
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"ConfusionMatrix: expected num_classes to be an int >= 1, got {num_classes!r}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor,
               mask: torch.Tensor | None = None) -> ConfusionMatrix:
        """Add a batch: integer predictions and labels of the same shape (and an optional pixel mask)."""
        self.matrix += confusion_matrix(pred, target, self.num_classes, ignore_index=self.ignore_index,
                                        mask=mask)
        return self

    def reset(self) -> None:
        self.matrix.zero_()

    def all_reduce(self, group=None) -> ConfusionMatrix:
        """Sum the matrices of every process (each evaluated its own shard), in place."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" \
                else torch.device("cpu")
            t = self.matrix.to(device)
            dist.all_reduce(t, group=group)
            self.matrix = t.cpu()
        return self

    def scores(self, classes: Sequence[int] | None = None) -> SegmentationScores:
        return scores_from_confusion(self.matrix, classes)
