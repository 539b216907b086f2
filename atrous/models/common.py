"""Helpers shared by the backbones and heads: output stride to dilation, initialisation, input checks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn import AtrousConv2d

OUTPUT_STRIDES = (8, 16, 32)


def check_output_stride(output_stride: int, where: str) -> int:
    if isinstance(output_stride, bool) or output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"{where}: expected output_stride in {OUTPUT_STRIDES}, got {output_stride!r}")
    return int(output_stride)


@dataclass
class StrideSchedule:
    """Turns strides into dilation once the output stride is reached (DeepLabV3, Sec. 3.1).

    Walk the network's strided units in order with :meth:`step`. While the accumulated stride stays
    within ``output_stride`` a unit keeps its stride; past it the unit runs at stride 1 and the rate of
    everything after it is multiplied by the stride it dropped, so later layers see the same input
    pixels as in the strided network, only at a denser output.
    """

    output_stride: int
    stride: int = 1  # accumulated stride at the current point
    dilation: int = 1  # rate applied to the layers at the current point

    def step(self, stride: int) -> tuple[int, int, int]:
        """Returns ``(stride, dilation_before, dilation_after)`` for a unit asking for ``stride``.

        ``dilation_before`` is the rate before this unit dropped its stride (what torchvision's ResNet
        and timm's Xception give the de-strided unit itself); ``dilation_after`` the rate after it
        (what torchvision's MobileNetV3 gives it, and every later unit gets).
        """
        before = self.dilation
        if stride > 1 and self.stride * stride > self.output_stride:
            self.dilation *= stride
            return 1, before, self.dilation
        self.stride *= stride
        return stride, before, self.dilation


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan_out) convolutions, unit/zero BatchNorm, as torchvision initialises ResNets."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def check_input(x: torch.Tensor, in_channels: int, where: str, *, output_stride: int | None = None,
                training: bool = False) -> None:
    """Rejects what the models cannot run with a message naming the expected form.

    Any size runs in eval mode. In training mode BatchNorm needs more than one value per channel, so
    a single image must leave more than one pixel at ``output_stride`` (each backbone maps a side n
    to ceil(n / output_stride)).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where}: expected the input to be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{where}: expected an (N, C, H, W) input, got shape {tuple(x.shape)}")
    if x.shape[1] != in_channels:
        raise ValueError(
            f"{where}: expected {in_channels} input channels, got shape {tuple(x.shape)} "
            f"(images go in as (N, {in_channels}, H, W))")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{where}: expected a non-empty image, got shape {tuple(x.shape)}")
    if training and output_stride is not None and x.shape[0] == 1 and \
            -(-x.shape[2] // output_stride) * -(-x.shape[3] // output_stride) == 1:
        raise ValueError(
            f"{where}: in training mode a single {x.shape[2]}x{x.shape[3]} image leaves a 1x1 map at output "
            f"stride {output_stride}, where BatchNorm sees one value per channel; use a batch of 2 or more, "
            f"an input larger than {output_stride} pixels on one side, or eval mode")


def conv1x1(in_channels: int, out_channels: int, stride: int = 1, bias: bool = False) -> AtrousConv2d:
    return AtrousConv2d(in_channels, out_channels, 1, stride=stride, bias=bias)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1,
            bias: bool = False) -> AtrousConv2d:
    return AtrousConv2d(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation,
                        bias=bias)
