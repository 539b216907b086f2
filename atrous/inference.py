"""Inference: ``predict`` (class probabilities, multi-scale and flip) and ``segment(model, image) -> mask``.

``atrous.segment`` is this module's :func:`segment` (``import atrous`` loads it on first use)::

    import atrous
    from atrous.data import read_image
    from atrous.training import load_model
    from atrous.viz import overlay

    model, checkpoint = load_model("demo-out/best.pt")
    mask = atrous.segment(model, "photo.jpg")              # (H, W) int64 class ids
    picture = overlay(read_image("photo.jpg"), mask, checkpoint["dataset"]["palette"])
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import read_image
from .data.palettes import VOC_CLASSES, VOC_PALETTE, palette_for
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .models import deeplabv3_from_torchvision
from .models.pretrained import read_weights

__all__ = ["IMPORTABLE_WEIGHTS", "as_image_tensor", "load_imported_weights", "predict", "segment"]

# What `--weights KIND:NAME=PATH` imports: {kind: {name: the backbone the state dict must have}}.
IMPORTABLE_WEIGHTS = {
    "torchvision": {"deeplabv3_resnet50": "resnet50", "deeplabv3_resnet101": "resnet101",
                    "deeplabv3_mobilenet_v3_large": "mobilenet_v3_large"},
}


def _is_channels_last(model: nn.Module) -> bool:
    """Whether the model's first spatial convolution weight is NHWC (``model.to(memory_format=...)``)."""
    for p in model.parameters():
        if p.dim() == 4 and p.shape[-1] > 1:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, scales: Sequence[float] = (1.0,),
            flip: bool = False) -> torch.Tensor:
    """Class probabilities ``(N, K, H, W)`` of normalised images ``(N, 3, H, W)``, averaged over
    ``scales`` (each input resized bilinearly, each output resized back) and, with ``flip``, over the
    mirrored inputs (DeepLab's multi-scale and flip inference)."""
    size = images.shape[-2:]
    param = next(model.parameters(), None)
    if param is not None and images.dtype != param.dtype and param.is_floating_point():
        images = images.to(param.dtype)
    if _is_channels_last(model):
        images = images.contiguous(memory_format=torch.channels_last)
    total = None
    for s in scales:
        x = images if s == 1 else F.interpolate(images, scale_factor=s, mode="bilinear", align_corners=False)
        for flipped in ((False, True) if flip else (False,)):
            out = model(x.flip(-1) if flipped else x)
            out = out["out"] if isinstance(out, dict) else out
            out = out.flip(-1) if flipped else out
            if out.shape[-2:] != size:
                out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
            prob = (out if out.dtype == torch.float64 else out.float()).softmax(1)  # (N, K, H, W)
            total = prob if total is None else total + prob
    return total / (len(scales) * (2 if flip else 1))


def as_image_tensor(image) -> torch.Tensor:
    """A path, PIL image, ``(H, W, 3)`` uint8 array or ``(3, H, W)`` / ``(N, 3, H, W)`` tensor (uint8, or
    float in [0, 1]) -> float tensor in [0, 1], ``(N, 3, H, W)``."""
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image)
    elif hasattr(image, "convert"):  # PIL
        image = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)  # (3, H, W)
    elif isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"segment: expected an (H, W, 3) image array, got shape {image.shape}")
        image = torch.from_numpy(image.copy()).permute(2, 0, 1)  # (3, H, W)
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"segment: expected a path, PIL image, array or tensor, got {type(image).__name__}")
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"segment: expected a (3, H, W) or (N, 3, H, W) image tensor, "
                         f"got shape {tuple(image.shape)}")
    return image.float() / 255 if not image.is_floating_point() else image.float()


@torch.no_grad()
def segment(model: nn.Module, image, *, mean: Sequence[float] = IMAGENET_MEAN,
            std: Sequence[float] = IMAGENET_STD, scales: Sequence[float] = (1.0,), flip: bool = False,
            device: torch.device | str | None = None, return_probabilities: bool = False) -> torch.Tensor:
    """Class ids ``(H, W)`` (``(N, H, W)`` for a batch) that ``model`` gives ``image``.

    ``image``: a path, a PIL image, an ``(H, W, 3)`` uint8 array or a ``(3, H, W)`` / ``(N, 3, H, W)``
    tensor (uint8, or float in [0, 1]); it is normalised with ``mean``/``std`` (ImageNet's, as in
    training). ``scales`` and ``flip`` average the class probabilities over resized and mirrored
    copies (:func:`predict`). The model runs in eval mode (its mode is restored).
    ``return_probabilities`` returns the ``(N, K, H, W)`` probabilities instead.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"segment: expected model to be an nn.Module, got {type(model).__name__}")
    x = as_image_tensor(image)
    single = not (isinstance(image, torch.Tensor) and image.dim() == 4)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    m = torch.tensor(mean, dtype=torch.float32)[:, None, None]  # (3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32)[:, None, None]
    x = ((x - m) / s).to(device)
    was_training = model.training
    model.eval()
    try:
        prob = predict(model, x, scales, flip)  # (N, K, H, W)
    finally:
        model.train(was_training)
    if return_probabilities:
        return prob.cpu()
    mask = prob.argmax(1).cpu()  # (N, H, W)
    return mask[0] if single else mask


def load_imported_weights(spec: str, impl: str | None = None) -> tuple[nn.Module, dict]:
    """``(model in eval mode, dataset info)`` for ``"torchvision:deeplabv3_resnet50=PATH"`` (or
    ``_resnet101``, ``_mobilenet_v3_large``; PATH may be a URL): a torchvision DeepLabV3 state dict,
    imported exactly (:func:`atrous.models.deeplabv3_from_torchvision`). The info is what inference
    needs, as in a checkpoint: torchvision's normalisation (ImageNet ``mean``/``std`` on [0, 1] RGB) and,
    for its 21-class COCO-with-VOC-labels weights, the VOC class names and colours."""
    kind, _, rest = spec.partition(":")
    name, eq, path = rest.partition("=")
    names = IMPORTABLE_WEIGHTS.get(kind, {})
    if not (names and name in names and eq and path):
        choices = ", ".join(f"{k}:{n}=PATH" for k, ns in IMPORTABLE_WEIGHTS.items() for n in ns)
        raise ValueError(f"--weights: expected one of {choices}, got {spec!r}")
    state, provenance = read_weights(path)
    model = deeplabv3_from_torchvision(state, aux_loss=False, impl=impl)
    expected = names[name]
    got = "mobilenet_v3_large"
    if hasattr(model.backbone, "layer3"):  # a ResNet: its depth is in layer3's block count
        got = {6: "resnet50", 23: "resnet101"}.get(len(model.backbone.layer3), "resnet")
    if got != expected:
        raise ValueError(f"--weights: {path!r} holds a torchvision deeplabv3_{got} state dict, not {name}")
    n = model.num_classes
    classes = list(VOC_CLASSES) if n == len(VOC_CLASSES) else [f"class {i}" for i in range(n)]
    palette = (VOC_PALETTE if n == len(VOC_CLASSES) else palette_for(n)).tolist()
    info = {"classes": classes, "palette": palette, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "weights": {**provenance, "format": f"{kind}:{name}"}}
    return model.eval(), info
