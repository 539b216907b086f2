"""The named DeepLab factories (the paper models on each backbone), registered in ``atrous.models.MODELS``.

Each is :func:`~atrous.models.deeplabv3` / :func:`~atrous.models.deeplabv3plus` with the backbone fixed;
keyword arguments pass through.
"""

from __future__ import annotations

from .deeplab import DeepLabV3, DeepLabV3Plus, deeplabv3, deeplabv3plus
from .registry import register_model

__all__ = [
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large",
    "deeplabv3_xception41",
    "deeplabv3_xception65",
    "deeplabv3_xception71",
    "deeplabv3plus_resnet50",
    "deeplabv3plus_resnet101",
    "deeplabv3plus_mobilenet_v3_large",
    "deeplabv3plus_xception41",
    "deeplabv3plus_xception65",
    "deeplabv3plus_xception71",
]


@register_model
def deeplabv3_resnet50(num_classes: int = 21, output_stride: int = 16, **kwargs) -> DeepLabV3:
    """DeepLabV3, ResNet-50, multi-grid (1, 2, 4), dense ASPP. See :func:`deeplabv3` for the options."""
    return deeplabv3("resnet50", num_classes, output_stride, **kwargs)


@register_model
def deeplabv3_resnet101(num_classes: int = 21, output_stride: int = 16, **kwargs) -> DeepLabV3:
    """DeepLabV3, ResNet-101 (the paper's main model), multi-grid (1, 2, 4), dense ASPP."""
    return deeplabv3("resnet101", num_classes, output_stride, **kwargs)


@register_model
def deeplabv3_mobilenet_v3_large(num_classes: int = 21, output_stride: int = 16, **kwargs) -> DeepLabV3:
    """DeepLabV3, MobileNetV3-Large (atrous depthwise convs), dense ASPP on its 960-channel output."""
    return deeplabv3("mobilenet_v3_large", num_classes, output_stride, **kwargs)


@register_model
def deeplabv3_xception41(num_classes: int = 21, output_stride: int = 16, **kwargs) -> DeepLabV3:
    """DeepLabV3, aligned Xception-41."""
    return deeplabv3("xception41", num_classes, output_stride, **kwargs)


@register_model
def deeplabv3_xception65(num_classes: int = 21, output_stride: int = 16, **kwargs) -> DeepLabV3:
    """DeepLabV3, aligned Xception-65."""
    return deeplabv3("xception65", num_classes, output_stride, **kwargs)


@register_model
def deeplabv3_xception71(num_classes: int = 21, output_stride: int = 16, **kwargs) -> DeepLabV3:
    """DeepLabV3, aligned Xception-71."""
    return deeplabv3("xception71", num_classes, output_stride, **kwargs)


@register_model
def deeplabv3plus_resnet50(num_classes: int = 21, output_stride: int = 16, **kwargs) -> DeepLabV3Plus:
    """DeepLabV3+, ResNet-50 (decoder on layer1), multi-grid (1, 2, 4). See :func:`deeplabv3plus`."""
    return deeplabv3plus("resnet50", num_classes, output_stride, **kwargs)


@register_model
def deeplabv3plus_resnet101(num_classes: int = 21, output_stride: int = 16, **kwargs) -> DeepLabV3Plus:
    """DeepLabV3+, ResNet-101 (decoder on layer1), multi-grid (1, 2, 4)."""
    return deeplabv3plus("resnet101", num_classes, output_stride, **kwargs)


@register_model
def deeplabv3plus_mobilenet_v3_large(num_classes: int = 21, output_stride: int = 16,
                                     **kwargs) -> DeepLabV3Plus:
    """DeepLabV3+, MobileNetV3-Large (decoder on the 24-channel stride-4 features)."""
    return deeplabv3plus("mobilenet_v3_large", num_classes, output_stride, **kwargs)


@register_model
def deeplabv3plus_xception41(num_classes: int = 21, output_stride: int = 16, **kwargs) -> DeepLabV3Plus:
    """DeepLabV3+, aligned Xception-41."""
    return deeplabv3plus("xception41", num_classes, output_stride, **kwargs)


@register_model
def deeplabv3plus_xception65(num_classes: int = 21, output_stride: int = 16, **kwargs) -> DeepLabV3Plus:
    """DeepLabV3+ as in the paper: aligned Xception-65, separable ASPP and decoder."""
    return deeplabv3plus("xception65", num_classes, output_stride, **kwargs)


@register_model
def deeplabv3plus_xception71(num_classes: int = 21, output_stride: int = 16, **kwargs) -> DeepLabV3Plus:
    """DeepLabV3+, aligned Xception-71."""
    return deeplabv3plus("xception71", num_classes, output_stride, **kwargs)
