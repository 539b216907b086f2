"""MobileNetV3-Large backbone in torchvision's layout, output_stride 8/16/32 through dilated depthwise convs.

Howard et al., "Searching for MobileNetV3" (2019), Table 1: inverted residual blocks (1x1 expand ->
depthwise kxk -> optional squeeze-and-excitation -> 1x1 project), ReLU or hard-swish. Layout, widths
and parameter names are torchvision's (``torchvision/models/mobilenetv3.py``, ``features.*``), so its
ImageNet and DeepLabV3 weights load 1:1. Every depthwise conv is an atrous depthwise conv.

Output stride: a strided block past ``output_stride`` runs at stride 1 and, as in torchvision's
``dilated=True`` (which is output stride 16), that block *and* all later ones are dilated by the
dropped stride. (torchvision's ResNet instead keeps the old rate in the de-strided unit; each
backbone follows its source so the imported weights see the same geometry they were trained with.)

:meth:`MobileNetV3.forward` returns ``"low"`` (``features[3]``, stride 4, 24 channels),
``"aux"`` (``features[4]``, stride 8, 40 channels: torchvision's auxiliary head input) and ``"out"``
(``features[16]``, the 960-channel 1x1 conv).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn import AtrousConv2d, ConvBNAct
from .common import StrideSchedule, check_output_stride, init_weights

__all__ = ["MOBILENET_V3_LARGE", "InvertedResidual", "MobileNetV3", "SqueezeExcitation", "mobilenet_v3_large"]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to a multiple of ``divisor``, never below 90% of ``value`` (the MobileNet rule)."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


@dataclass(frozen=True)
class BlockSpec:
    """A row of the MobileNetV3 paper's Table 1."""

    in_channels: int
    kernel: int
    expanded: int
    out_channels: int
    use_se: bool
    hard_swish: bool
    stride: int


MOBILENET_V3_LARGE = (
    BlockSpec(16, 3, 16, 16, False, False, 1),
    BlockSpec(16, 3, 64, 24, False, False, 2),  # C1
    BlockSpec(24, 3, 72, 24, False, False, 1),
    BlockSpec(24, 5, 72, 40, True, False, 2),  # C2
    BlockSpec(40, 5, 120, 40, True, False, 1),
    BlockSpec(40, 5, 120, 40, True, False, 1),
    BlockSpec(40, 3, 240, 80, False, True, 2),  # C3
    BlockSpec(80, 3, 200, 80, False, True, 1),
    BlockSpec(80, 3, 184, 80, False, True, 1),
    BlockSpec(80, 3, 184, 80, False, True, 1),
    BlockSpec(80, 3, 480, 112, True, True, 1),
    BlockSpec(112, 3, 672, 112, True, True, 1),
    BlockSpec(112, 5, 672, 160, True, True, 2),  # C4
    BlockSpec(160, 5, 960, 160, True, True, 1),
    BlockSpec(160, 5, 960, 160, True, True, 1),
)

# torchvision's MobileNetV3 BatchNorm: eps 1e-3, momentum 0.01.
_BN = {"bn_eps": 1e-3, "bn_momentum": 0.01}


class SqueezeExcitation(nn.Module):
    """x * hardsigmoid(fc2(relu(fc1(avgpool(x))))), with 1x1 convs as the two fully connected layers."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = AtrousConv2d(channels, squeeze_channels, 1)
        self.fc2 = AtrousConv2d(squeeze_channels, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.avgpool(x)  # (N, C, 1, 1)
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(scale))))
        return x * scale


class InvertedResidual(nn.Module):
    """1x1 expand -> depthwise atrous kxk (stride or rate) -> [SE] -> 1x1 project; residual if shapes fit."""

    def __init__(self, spec: BlockSpec, stride: int, dilation: int) -> None:
        super().__init__()
        act = nn.Hardswish if spec.hard_swish else nn.ReLU
        self.use_res_connect = spec.stride == 1 and spec.in_channels == spec.out_channels
        layers: list[nn.Module] = []
        if spec.expanded != spec.in_channels:
            layers.append(ConvBNAct(spec.in_channels, spec.expanded, 1, activation=act, **_BN))
        layers.append(ConvBNAct(spec.expanded, spec.expanded, spec.kernel, stride, dilation=dilation,
                                groups=spec.expanded, activation=act, **_BN))
        if spec.use_se:
            layers.append(SqueezeExcitation(spec.expanded, make_divisible(spec.expanded // 4, 8)))
        layers.append(ConvBNAct(spec.expanded, spec.out_channels, 1, activation=None, **_BN))
        self.block = nn.Sequential(*layers)
        self.out_channels = spec.out_channels
        self.stride, self.dilation = stride, dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return y + x if self.use_res_connect else y


class MobileNetV3(nn.Module):
    """MobileNetV3-Large feature extractor (no classifier) with ``output_stride`` in {8, 16, 32}."""

    LOW_INDEX, AUX_INDEX = 3, 4  # features[] positions of the stride-4 and stride-8 outputs

    def __init__(self, output_stride: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        self.output_stride = check_output_stride(output_stride, "MobileNetV3")
        self.in_channels = in_channels
        layers: list[nn.Module] = [
            ConvBNAct(in_channels, 16, 3, stride=2, activation=nn.Hardswish, **_BN)
        ]
        schedule = StrideSchedule(output_stride, stride=2)
        for spec in MOBILENET_V3_LARGE:
            stride, _, dilation = schedule.step(spec.stride)  # the de-strided block is dilated too
            layers.append(InvertedResidual(spec, stride, dilation))
        last = MOBILENET_V3_LARGE[-1].out_channels
        layers.append(ConvBNAct(last, 6 * last, 1, activation=nn.Hardswish, **_BN))
        self.features = nn.Sequential(*layers)
        self.out_channels = 6 * last
        self.low_level_channels = MOBILENET_V3_LARGE[self.LOW_INDEX - 1].out_channels
        self.aux_channels = MOBILENET_V3_LARGE[self.AUX_INDEX - 1].out_channels
        init_weights(self)  # torchvision's initialisation

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self.LOW_INDEX:
                features["low"] = x
            elif i == self.AUX_INDEX:
                features["aux"] = x
        features["out"] = x
        return features


def mobilenet_v3_large(output_stride: int = 16, in_channels: int = 3) -> MobileNetV3:
    """MobileNetV3-Large backbone; torchvision ``mobilenet_v3_large`` ``features.*`` weights load into it."""
    return MobileNetV3(output_stride, in_channels)
