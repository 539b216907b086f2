"""Joint image/label transforms: random scale, pad with the ignore label, crop, flip, normalise.

Transforms act on a sample dict. ``"image"`` is a ``(3, H, W)`` tensor (uint8 from the readers, float
after :class:`Normalize`); every other tensor whose last two dimensions equal the image's is a label
map (``"mask"``, and ``"size"``/``"depth"`` of the synthetic dataset) and gets the same geometric
change, with nearest-neighbour sampling so labels stay labels. Other entries pass through.

Alignment is exact by construction: the image is resampled bilinearly and the labels with
``"nearest-exact"`` at the same output size, and both modes place output pixel ``i`` at input
coordinate ``(i + 0.5) * in / out - 0.5`` (``align_corners=False``); nearest-exact takes the input pixel
nearest to that point. (``mode="nearest"`` would not: it floors ``i * in / out`` and shifts labels by
up to half an input pixel against the image.) Crops and flips index image and labels identically.

Randomness comes from an optional ``torch.Generator`` passed to the call, so an augmentation can be
replayed: :class:`~atrous.data.Augmented` derives one per (seed, epoch, index).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LABEL_FILL",
    "Compose",
    "Normalize",
    "PadIfSmaller",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomScale",
    "eval_transform",
    "train_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Padding value per label map; any other label map pads with 0. 255 is the ignore label.
LABEL_FILL = {"mask": 255, "size": 255}

Sample = dict


def _pair(size: int | Sequence[int], where: str) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if len(size) != 2 or any(not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(f"{where}: expected a size int >= 1 or a pair (H, W) of them, got {size!r}")
    return int(size[0]), int(size[1])


def _check_image(sample: Sample, where: str) -> torch.Tensor:
    image = sample.get("image") if isinstance(sample, dict) else None
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        shape = tuple(getattr(image, "shape", ()))
        got = type(sample).__name__ if image is None else f"image of shape {shape}"
        raise ValueError(f"{where}: expected a sample dict with a (C, H, W) tensor 'image', got {got}")
    return image


def _label_keys(sample: Sample) -> list[str]:
    hw = sample["image"].shape[-2:]
    return [k for k, v in sample.items()
            if k != "image" and isinstance(v, torch.Tensor) and v.dim() >= 2 and v.shape[-2:] == hw]


def _rand(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


class Compose:
    """Apply transforms in order, passing the same generator to each."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        for t in self.transforms:
            sample = t(sample, generator)
        return sample

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(map(repr, self.transforms)) + ")"


class Normalize:
    """uint8 images to float in [0, 1], then ``(x - mean) / std`` per channel. Labels untouched.

    After normalisation a zero is the mean colour, which is what :class:`PadIfSmaller` pads with
    (as the DeepLab code pads with the mean pixel).
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"Normalize: expected mean and std of equal length with std > 0, "
                             f"got {mean}, {std}")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        image = _check_image(sample, "Normalize")
        if image.shape[0] != len(self.mean):
            raise ValueError(f"Normalize: expected an image with {len(self.mean)} channels, "
                             f"got {tuple(image.shape)}")
        x = image.float() / 255 if image.dtype == torch.uint8 else image.float()
        mean = torch.tensor(self.mean)[:, None, None]  # (C, 1, 1)
        std = torch.tensor(self.std)[:, None, None]
        return {**sample, "image": (x - mean) / std}

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


def resize(sample: Sample, size: tuple[int, int]) -> Sample:
    """Image bilinear, label maps nearest-exact, to ``size`` = (H, W) (see the module docstring)."""
    image = _check_image(sample, "resize")
    out = dict(sample)
    for key in _label_keys(sample):
        v = sample[key]
        lead = v.shape[:-2]
        flat = v.reshape(1, -1, *v.shape[-2:])  # (1, L, H, W); interpolate needs a float batch
        res = F.interpolate(flat.double(), size=size, mode="nearest-exact")
        out[key] = res.reshape(*lead, *size).to(v.dtype)
    x = image.float() if not image.is_floating_point() else image
    y = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]  # (C, H', W')
    out["image"] = y.round().clamp(0, 255).to(image.dtype) if not image.is_floating_point() else y
    return out


class RandomScale:
    """Resize by a factor drawn uniformly from ``[min_scale, max_scale]`` (DeepLab: 0.5 to 2.0)."""

    def __init__(self, min_scale: float = 0.5, max_scale: float = 2.0) -> None:
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"RandomScale: expected 0 < min_scale <= max_scale, "
                             f"got {min_scale}, {max_scale}")
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        image = _check_image(sample, "RandomScale")
        s = self.min_scale + (self.max_scale - self.min_scale) * _rand(generator)
        h, w = image.shape[-2:]
        return resize(sample, (max(1, round(h * s)), max(1, round(w * s))))

    def __repr__(self) -> str:
        return f"RandomScale({self.min_scale}, {self.max_scale})"


class PadIfSmaller:
    """Pad at the bottom and right up to ``size``: the image with ``fill``, label maps with :data:`LABEL_FILL`
    (the ignore label 255 for ``"mask"``, so padding never counts in the loss or the metrics)."""

    def __init__(self, size: int | Sequence[int], fill: float = 0.0,
                 label_fill: dict[str, float] | None = None) -> None:
        self.size = _pair(size, "PadIfSmaller")
        self.fill = fill
        self.label_fill = dict(LABEL_FILL if label_fill is None else label_fill)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        image = _check_image(sample, "PadIfSmaller")
        h, w = image.shape[-2:]
        ph, pw = max(0, self.size[0] - h), max(0, self.size[1] - w)
        if ph == 0 and pw == 0:
            return sample
        out = dict(sample)
        for key in _label_keys(sample):
            out[key] = F.pad(sample[key], (0, pw, 0, ph), value=self.label_fill.get(key, 0))
        out["image"] = F.pad(image, (0, pw, 0, ph), value=self.fill)
        return out

    def __repr__(self) -> str:
        return f"PadIfSmaller({self.size})"


class RandomCrop:
    """A ``size`` window at a uniformly random position (the sample must be at least that large:
    put :class:`PadIfSmaller` first)."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _pair(size, "RandomCrop")

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        image = _check_image(sample, "RandomCrop")
        h, w = image.shape[-2:]
        ch, cw = self.size
        if h < ch or w < cw:
            raise ValueError(f"RandomCrop: expected an image of at least {ch}x{cw}, got {h}x{w}; "
                             "pad it first (PadIfSmaller)")
        top = int(torch.randint(0, h - ch + 1, (), generator=generator))
        left = int(torch.randint(0, w - cw + 1, (), generator=generator))
        out = dict(sample)
        for key in ["image", *_label_keys(sample)]:
            out[key] = sample[key][..., top:top + ch, left:left + cw]
        return out

    def __repr__(self) -> str:
        return f"RandomCrop({self.size})"


class RandomHorizontalFlip:
    """Mirror image and labels left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip: expected 0 <= p <= 1, got {p}")
        self.p = p

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        _check_image(sample, "RandomHorizontalFlip")
        if _rand(generator) >= self.p:
            return sample
        out = dict(sample)
        for key in ["image", *_label_keys(sample)]:
            out[key] = sample[key].flip(-1)
        return out

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip({self.p})"


def train_transform(crop_size: int | Sequence[int] | None, *, scale: tuple[float, float] | None = (0.5, 2.0),
                    flip: bool = True, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> Compose:
    """DeepLab's training augmentation: normalise, random scale, pad (ignore label), random crop, flip.
    ``scale=None`` or ``crop_size=None`` leave those steps out."""
    steps: list[Callable] = [Normalize(mean, std)]
    if scale is not None:
        steps.append(RandomScale(*scale))
    if crop_size is not None:
        steps += [PadIfSmaller(crop_size), RandomCrop(crop_size)]
    if flip:
        steps.append(RandomHorizontalFlip())
    return Compose(steps)


def eval_transform(mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Compose:
    """Evaluation: normalisation only (full images; batches of unequal sizes go through
    :func:`atrous.data.pad_collate`)."""
    return Compose([Normalize(mean, std)])
