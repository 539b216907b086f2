"""Batching: reproducible augmentation per (seed, epoch, index) and padding samples of unequal sizes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from . import transforms

__all__ = ["Augmented", "pad_collate"]


class Augmented(Dataset):
    """``dataset`` with a random ``transform`` whose randomness is a function of (seed, epoch, index).

    Call :meth:`set_epoch` at the start of each epoch (the training loop does), as with a
    ``DistributedSampler``. DataLoader workers must not be persistent, so they see the new epoch.
    """

    def __init__(self, dataset: Dataset, transform: Callable, seed: int = 0) -> None:
        self.dataset, self.transform, self.seed = dataset, transform, int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def generator(self, index: int) -> torch.Generator:
        # SeedSequence mixes the three numbers into a well-spread seed (no collisions between
        # nearby (epoch, index) pairs as with seed + epoch * n + index).
        state = np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(2, np.uint32)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    def __getitem__(self, index: int) -> dict:
        return self.transform(self.dataset[index], self.generator(index))

    def __getattr__(self, name: str):
        # classes, palette, num_classes, ... of the wrapped dataset
        if name in ("dataset", "transform", "seed", "epoch"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def pad_collate(samples: Sequence[dict], ignore_index: int = 255) -> dict:
    """Batch samples of unequal sizes: pad each to the largest height and width (bottom/right),
    images with 0 (the mean after normalisation), masks with ``ignore_index``, other label maps with
    :data:`atrous.data.transforms.LABEL_FILL` or 0. Non-tensor entries become lists."""
    if not samples:
        raise ValueError("pad_collate: expected at least one sample")
    H = max(s["image"].shape[-2] for s in samples)
    W = max(s["image"].shape[-1] for s in samples)
    batch: dict = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if not isinstance(values[0], torch.Tensor):
            batch[key] = torch.tensor(values) if isinstance(values[0], int) else values
            continue
        if values[0].dim() < 2:
            batch[key] = torch.stack(values)
            continue
        fill = 0 if key == "image" else (ignore_index if key == "mask" else transforms.LABEL_FILL.get(key, 0))
        padded = [torch.nn.functional.pad(v, (0, W - v.shape[-1], 0, H - v.shape[-2]), value=fill)
                  for v in values]
        batch[key] = torch.stack(padded)  # (N, [C,] H, W)
    return batch
