"""Change a built backbone or DeepLab between output strides 8, 16 and 32 in place, keeping its weights.

The algorithme à trous (Holschneider et al. 1989; shift-and-stitch in FCN and OverFeat): remove a
stride ``s`` and multiply the dilation (and the padding) of every *later* layer by ``s``; the
de-strided layer keeps its old rate. The network then computes the strided network's features at
every ``s``-th position of a denser grid, and the in-between positions too. So
``set_output_stride(model, 8)`` on a model trained at output stride 32 gives features whose
``[..., ::4, ::4]`` equal the original ones (up to float rounding: ``tests/models/test_output_stride.py``
checks 1e-12 in float64 for the small model, Xception-65 and ResNet-50).

It stops being exact where a layer looks at the whole map: ASPP's image pooling averages a 4x4 map
at output stride 32 and a 16x16 map at 8, MobileNetV3's squeeze-excitation pools globally in every
block, and the final bilinear upsampling interpolates different grids. Multi-grid ResNets and
MobileNetV3 (whose de-strided block is dilated too) follow their own, inexact, conventions: this
function gives every backbone the geometry its constructor gives at that output stride, so a
converted model is the model built at ``output_stride`` with the trained weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .aspp import ASPP
from .mobilenetv3 import MobileNetV3
from .resnet import ResNet
from .small import SlimXception
from .xception import XceptionAligned

__all__ = ["backbone_twin", "set_output_stride"]


def backbone_twin(backbone: nn.Module, output_stride: int, *,
                  device: str | torch.device = "meta") -> nn.Module:
    """A fresh backbone of the same architecture at ``output_stride`` (on ``device``; no weights)."""
    with torch.device(device):
        if isinstance(backbone, SlimXception):
            return SlimXception(output_stride, backbone.in_channels, stem_channels=backbone.stem_channels,
                                stages=backbone.stage_specs, dilation_rule=backbone.dilation_rule)
        if isinstance(backbone, XceptionAligned):
            return XceptionAligned(backbone.variant, output_stride, backbone.in_channels)
        if isinstance(backbone, ResNet):
            layers = tuple(len(getattr(backbone, f"layer{i}")) for i in range(1, 5))
            return ResNet(layers, output_stride, backbone.multi_grid, backbone.in_channels)
        if isinstance(backbone, MobileNetV3):
            return MobileNetV3(output_stride, backbone.in_channels)
    raise TypeError(f"set_output_stride: expected a SlimXception, XceptionAligned, ResNet or MobileNetV3 "
                    f"backbone, got {type(backbone).__name__}")


def _rate_conv(branch: nn.Module) -> nn.Conv2d:
    """The 3x3 convolution of an ASPP rate branch (dense ``ConvBNAct`` or separable)."""
    return next(m for m in branch.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))


def set_output_stride(model: nn.Module, output_stride: int) -> nn.Module:
    """Convert ``model`` (a backbone, or a DeepLab with ``.backbone``) to ``output_stride``, in place.

    Every convolution gets the stride, dilation and padding of the same architecture built at
    ``output_stride``; the weights, BatchNorm statistics and the module tree stay as they are. ASPP
    rates (and their convolutions) are scaled by ``old / new`` output stride, as the à trous rule asks
    of every layer after the dropped strides: (1, 2, 3) at 32 become (4, 8, 12) at 8. Returns ``model``.
    """
    backbone = getattr(model, "backbone", model)
    old = getattr(backbone, "output_stride", None)
    if old is None:
        raise TypeError(f"set_output_stride: expected a backbone with an output_stride attribute (or a model "
                        f"with such a .backbone), got {type(model).__name__}")
    twin = backbone_twin(backbone, output_stride)  # checks output_stride
    twins = dict(twin.named_modules())
    for name, m in backbone.named_modules():
        t = twins.get(name)
        if t is None or type(t) is not type(m):
            raise TypeError(f"set_output_stride: {type(backbone).__name__} at output stride {output_stride} "
                            f"has no module {name!r} like the model's")
        if isinstance(m, nn.Conv2d):
            m.stride, m.padding, m.dilation = t.stride, t.padding, t.dilation
        for attr in ("stride", "dilation"):  # blocks record theirs (repr, summaries)
            if not isinstance(m, nn.Conv2d) and isinstance(getattr(t, attr, None), int):
                setattr(m, attr, getattr(t, attr))
    backbone.output_stride = output_stride
    for aspp in (m for m in model.modules() if isinstance(m, ASPP)):
        rates = [r * old / output_stride for r in aspp.rates]
        if any(r != math.floor(r) or r < 1 for r in rates):
            raise ValueError(f"set_output_stride: ASPP rates {aspp.rates} at output stride {old} do not "
                             f"scale to whole rates at {output_stride}")
        aspp.rates = tuple(int(r) for r in rates)
        for branch, rate in zip(aspp.convs[1:], aspp.rates):
            conv = _rate_conv(branch)
            conv.dilation = (rate, rate)
            conv.padding = tuple(rate * (k - 1) // 2 for k in conv.kernel_size)
    return model
