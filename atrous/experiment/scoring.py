"""Pixel scores the designs share: boundary band, depth bins, IoU by object size, speckle (label flips)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..metrics import ConfusionMatrix

__all__ = ["boundary_band", "depth_bins", "label_flips", "size_mious"]


def boundary_band(masks: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Pixels within ``width`` pixels (Chebyshev) of a label edge of ``masks`` (N, H, W): a bool map.

    An edge pixel has a 4-neighbour of another label; the band is the edge map dilated by ``width``.
    """
    m = masks.long()
    edge = torch.zeros_like(m, dtype=torch.bool)
    edge[:, 1:] |= m[:, 1:] != m[:, :-1]
    edge[:, :-1] |= m[:, 1:] != m[:, :-1]
    edge[:, :, 1:] |= m[:, :, 1:] != m[:, :, :-1]
    edge[:, :, :-1] |= m[:, :, 1:] != m[:, :, :-1]
    band = F.max_pool2d(edge[:, None].float(), 2 * width + 1, stride=1, padding=width)  # (N, 1, H, W)
    return band[:, 0] > 0


def depth_bins(pred: torch.Tensor, masks: torch.Tensor, depths: torch.Tensor,
               max_depth: int) -> tuple[list, list]:
    """``(right, total)`` per integer depth bin ``[d, d + 1)``, d = 0 .. max_depth, over object pixels."""
    obj = masks > 0
    right, total = [], []
    for d in range(max_depth + 1):
        here = obj & (depths >= d) & (depths < d + 1)
        total.append(int(here.sum()))
        right.append(int((pred[here] == masks[here]).sum()))
    return right, total


def size_mious(pred: torch.Tensor, masks: torch.Tensor, sizes: torch.Tensor, num_classes: int,
               groups: int = 3) -> list[float]:
    """Object mIoU (classes 1 .. num_classes - 1) on the pixels of objects of each size class."""
    out = []
    for g in range(groups):
        cm = ConfusionMatrix(num_classes)
        cm.update(pred, masks, mask=sizes == g)
        out.append(cm.scores(list(range(1, num_classes))).miou)
    return out


def label_flips(pred: torch.Tensor, masks: torch.Tensor) -> float:
    """Percentage of neighbouring pixel pairs inside one object (same label, not background, 4-neighbours)
    whose predictions differ: 0 for predictions constant over each object; grid-patterned errors raise it."""
    flips = pairs = 0
    for a, b, pa, pb in ((masks[:, 1:], masks[:, :-1], pred[:, 1:], pred[:, :-1]),
                         (masks[:, :, 1:], masks[:, :, :-1], pred[:, :, 1:], pred[:, :, :-1])):
        same = (a == b) & (a > 0)
        pairs += int(same.sum())
        flips += int((same & (pa != pb)).sum())
    return 100.0 * flips / pairs if pairs else float("nan")
