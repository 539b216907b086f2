"""The DeepLabV3+ decoder (Chen et al. 2018, Sec. 3.1 and Fig. 2) and torchvision's auxiliary FCN head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import AtrousConv2d, AtrousSeparableConv2d, ConvBNAct

__all__ = ["Decoder", "FCNHead"]


class Decoder(nn.Module):
    """Low-level 1x1 projection (48) -> concat with the upsampled encoder output -> two 3x3 convs
    (256, separable by default) -> 1x1 classifier -> bilinear upsampling to the output size.

    The paper reduces the stride-4 low-level features to 48 channels (Table 1) so that they do not
    outweigh the 256 encoder channels, and refines with two 3x3 convs of 256 (Table 2). Upsampling is
    bilinear with ``align_corners=False`` to the exact low-level and output sizes, so any input size
    works (the DeepLab TF code used ``align_corners=True``; torchvision and we do not).
    """

    def __init__(self, low_level_channels: int, num_classes: int, in_channels: int = 256, *,
                 low_level_projection: int = 48, channels: int = 256, separable: bool = True,
                 bn_eps: float = 1e-5) -> None:
        super().__init__()
        self.project = ConvBNAct(low_level_channels, low_level_projection, 1, bn_eps=bn_eps)
        cin = in_channels + low_level_projection
        if separable:
            convs = [AtrousSeparableConv2d(cin, channels, 3, bn_eps=bn_eps),
                     AtrousSeparableConv2d(channels, channels, 3, bn_eps=bn_eps)]
        else:
            convs = [ConvBNAct(cin, channels, 3, bn_eps=bn_eps),
                     ConvBNAct(channels, channels, 3, bn_eps=bn_eps)]
        self.convs = nn.Sequential(*convs)
        self.classifier = AtrousConv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor, low_level: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
        low_level = self.project(low_level)
        x = F.interpolate(x, size=low_level.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([x, low_level], dim=1)  # (N, 256 + 48, H / 4, W / 4)
        x = self.classifier(self.convs(x))
        return F.interpolate(x, size=output_size, mode="bilinear", align_corners=False)


class FCNHead(nn.Sequential):
    """Auxiliary head of torchvision's segmentation models: 3x3 conv (C/4) -> BN -> ReLU -> dropout 0.1
    -> 1x1 classifier. Same layout and keys as ``torchvision.models.segmentation.fcn.FCNHead``."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        inter = in_channels // 4
        super().__init__(
            AtrousConv2d(in_channels, inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(),
            nn.Dropout(0.1),
            AtrousConv2d(inter, num_classes, 1),
        )
