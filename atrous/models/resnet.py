"""ResNet-50/101 backbones: output_stride 8/16/32, multi-grid atrous rates in the last stage (DeepLabV3).

The layout and parameter names are torchvision's (``torchvision/models/resnet.py``: bottleneck with
the stride on the 3x3 conv, "ResNet v1.5"), so torchvision checkpoints load 1:1. Chen et al.
("Rethinking Atrous Convolution", DeepLabV3, 2017) used the TF ResNet v1 with the stride on the
first 1x1 conv; the receptive fields and strides are the same.

Output stride (Sec. 3.1): past ``output_stride`` each stage runs at stride 1 and its 3x3 convs are
dilated by the stride it dropped: rate 2 in the last stage at output stride 16, rates 2 and 4 in the
last two stages at 8.

Multi-grid (Sec. 3.2): the last stage's three units get rates ``rate * (r1, r2, r3)``, with
``rate`` that stage's rate and ``(r1, r2, r3) = (1, 2, 4)`` in the paper, so at output stride 16 the
rates are (2, 4, 8). With ``multi_grid=None`` the rates follow torchvision instead: the first unit of
a dilated stage keeps the previous rate, the others get the stage's rate (this is what torchvision's
``replace_stride_with_dilation`` does and what its DeepLabV3 weights were trained with).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..nn import AtrousConv2d
from .common import StrideSchedule, check_output_stride, conv1x1, conv3x3, init_weights

__all__ = ["RESNET_LAYERS", "Bottleneck", "ResNet", "resnet50", "resnet101"]

RESNET_LAYERS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 atrous (stride, rate) -> 1x1 (expand x4), each with BN, plus the residual."""

    expansion = 4
    fuse_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))  # for atrous.nn.fuse

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.stride, self.dilation = stride, dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Bottleneck ResNet backbone (no pooling/classifier) with ``output_stride`` in {8, 16, 32}.

    ``multi_grid``: unit rates of the last stage (one per unit), multiplied by that stage's rate;
    None keeps torchvision's rates (see the module docstring).

    :meth:`forward` returns ``"low"`` (layer1, stride 4, 256 channels: the DeepLabV3+ decoder input),
    ``"aux"`` (layer3, 1024 channels: torchvision's auxiliary head input) and ``"out"`` (layer4, 2048).
    """

    fuse_pairs = (("conv1", "bn1"),)  # the stem, for atrous.nn.fuse

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), output_stride: int = 16,
                 multi_grid: Sequence[int] | None = (1, 2, 4), in_channels: int = 3) -> None:
        super().__init__()
        self.output_stride = check_output_stride(output_stride, "ResNet")
        if multi_grid is not None:
            multi_grid = tuple(int(r) for r in multi_grid)
            if len(multi_grid) != layers[3] or min(multi_grid) < 1:
                raise ValueError(
                    f"ResNet: expected multi_grid to give one positive rate per unit of the last stage "
                    f"({layers[3]} units), got {multi_grid}")
        self.multi_grid = multi_grid
        self.in_channels = in_channels
        self.inplanes = 64
        self.conv1 = AtrousConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        schedule = StrideSchedule(output_stride, stride=4)  # conv1 and the max pooling
        self.layer1 = self._make_layer(64, layers[0], 1, schedule)
        self.layer2 = self._make_layer(128, layers[1], 2, schedule)
        self.layer3 = self._make_layer(256, layers[2], 2, schedule)
        self.layer4 = self._make_layer(512, layers[3], 2, schedule, multi_grid)
        self.out_channels, self.aux_channels, self.low_level_channels = 2048, 1024, 256
        init_weights(self)

    def _make_layer(self, planes: int, blocks: int, stride: int, schedule: StrideSchedule,
                    multi_grid: Sequence[int] | None = None) -> nn.Sequential:
        stride, previous_rate, rate = schedule.step(stride)
        if multi_grid is None:
            rates = [previous_rate] + [rate] * (blocks - 1)
        else:
            rates = [rate * r for r in multi_grid]
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * Bottleneck.expansion, stride),
                                       nn.BatchNorm2d(planes * Bottleneck.expansion))
        units = [Bottleneck(self.inplanes, planes, stride, rates[0], downsample)]
        self.inplanes = planes * Bottleneck.expansion
        units += [Bottleneck(self.inplanes, planes, 1, r) for r in rates[1:]]
        return nn.Sequential(*units)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        aux = self.layer3(self.layer2(low))
        return {"low": low, "aux": aux, "out": self.layer4(aux)}


def resnet50(output_stride: int = 16, multi_grid: Sequence[int] | None = (1, 2, 4),
             in_channels: int = 3) -> ResNet:
    """ResNet-50 backbone (3, 4, 6, 3 bottlenecks); torchvision ``resnet50`` weights load into it."""
    return ResNet(RESNET_LAYERS["resnet50"], output_stride, multi_grid, in_channels)


def resnet101(output_stride: int = 16, multi_grid: Sequence[int] | None = (1, 2, 4),
              in_channels: int = 3) -> ResNet:
    """ResNet-101 backbone (3, 4, 23, 3 bottlenecks); torchvision ``resnet101`` weights load into it."""
    return ResNet(RESNET_LAYERS["resnet101"], output_stride, multi_grid, in_channels)
