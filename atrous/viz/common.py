"""What every picture shares: saving a Figure, outlining a pixel box, the sample photo, the grid colours."""

from __future__ import annotations

import os

import numpy as np
import torch
from matplotlib import cbook
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .theme import save

__all__ = ["load_sample_image", "sample_image_tensor"]

PathLike = str | os.PathLike | None

_INPUT = "#cfe2f3"  # conv_arithmetic's palette: blue input, darker taps, cyan output
_PAD = "#ffffff"
_TAP = "#1f5f99"
_OUTPUT = "#b6e3e9"
_CURRENT = "#138d90"


def _save(fig: Figure, path: PathLike, dpi: int = 100) -> Figure:
    return save(fig, path, dpi)


def _box_patch(box: tuple[int, int, int, int], **kw) -> Rectangle:
    """A rectangle around the pixels of an inclusive (top, left, bottom, right) box in imshow coordinates."""
    top, left, bottom, right = box
    return Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1, fill=False, **kw)


def load_sample_image(size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Matplotlib's ``grace_hopper.jpg`` as an ``(H, W, 3)`` uint8 array, resized to ``size`` if given."""
    data = cbook.get_sample_data("grace_hopper.jpg")
    # Depending on the matplotlib version this is an open file or a path.
    if isinstance(data, (str, os.PathLike)):
        img = Image.open(data)
    else:
        with data:
            img = Image.open(data)
            img.load()
    img = img.convert("RGB")
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        img = img.resize((w, h), Image.BILINEAR)
    return np.asarray(img)


def sample_image_tensor(size: int | tuple[int, int]) -> tuple[torch.Tensor, np.ndarray]:
    """The sample photo at ``size`` as a ``(3, H, W)`` float tensor normalised with the ImageNet mean and
    standard deviation (what the models expect), and the ``(H, W, 3)`` uint8 picture itself."""
    img = load_sample_image(size)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255  # (3, H, W)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std, img
