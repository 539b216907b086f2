"""Atrous Spatial Pyramid Pooling (DeepLabV3, Sec. 3.3) with rates that follow the output stride.

Branches, each with ``out_channels`` filters, BN and ReLU: one 1x1 conv; one 3x3 atrous conv per rate
(dense, or an atrous separable conv as in DeepLabV3+); image pooling (global average -> 1x1 conv ->
BN -> ReLU -> broadcast back to the map). They are concatenated and projected by a 1x1 conv + BN +
ReLU, followed by dropout.

Rates (6, 12, 18) are for output stride 16; the paper doubles them at 8 (12, 24, 36).
:func:`default_aspp_rates` scales them as ``16 / output_stride`` (so (3, 6, 9) at 32, our choice: the
paper gives none). When a rate reaches the feature-map size, a 3x3 kernel's off-centre taps see only
padding and the branch degenerates to a 1x1 conv (the paper's Fig. 4): ASPP warns then.

Module layout and parameter names equal torchvision's ``ASPP`` (``convs.{i}.*``, ``project.*``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from ..nn import AtrousConv2d, AtrousSeparableConv2d, ConvBNAct, PooledBatchNorm2d
from .common import check_output_stride

__all__ = ["ASPP", "ASPPPooling", "AtrousRateWarning", "default_aspp_rates"]


class AtrousRateWarning(UserWarning):
    """An ASPP rate is at least the feature-map size, so its branch sees mostly padding."""


def default_aspp_rates(output_stride: int, base: tuple[int, int, int] = (6, 12, 18), *,
                       where: str = "default_aspp_rates") -> tuple[int, int, int]:
    """``base`` (the paper's (6, 12, 18)) at output stride 16, scaled by ``16 / output_stride``:
    (12, 24, 36) at 8, (3, 6, 9) at 32."""
    output_stride = check_output_stride(output_stride, where)
    return tuple(r * 16 // output_stride for r in base)


class ASPPPooling(nn.Sequential):
    """Image-level features: global average pooling -> 1x1 conv -> BN -> ReLU, broadcast to H x W.

    The BN is a :class:`~atrous.nn.PooledBatchNorm2d`, so the branch also trains with batch size 1
    (torchvision's and most ports' raise there).
    """

    def __init__(self, in_channels: int, out_channels: int, bn_eps: float = 1e-5) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            AtrousConv2d(in_channels, out_channels, 1, bias=False),
            PooledBatchNorm2d(out_channels, eps=bn_eps),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)  # (N, C_out, 1, 1)
        # Bilinear upsampling of a 1x1 map is a broadcast; expand says so and is exact.
        y = y.expand(-1, -1, x.shape[-2], x.shape[-1])  # (N, C_out, H, W)
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            # Materialised channels_last like the other branches: torch.cat of mixed layouts returns
            # NCHW, which sent the ASPP output and the whole decoder of a channels_last model to NCHW.
            y = y.contiguous(memory_format=torch.channels_last)
        return y


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling over the backbone's last feature map.

    Args:
        in_channels: channels of the backbone output.
        out_channels: filters per branch and after the projection (256 in the papers).
        rates: one 3x3 atrous branch per rate; see :func:`default_aspp_rates`.
        separable: atrous separable branches (DeepLabV3+) instead of dense 3x3 convs (DeepLabV3).
        dropout: after the projection (0.1 in the DeepLab code, 0.5 in torchvision).
        bn_eps: BatchNorm epsilon (1e-5 in the DeepLab code and torchvision).
    """

    def __init__(self, in_channels: int, out_channels: int = 256, rates: Sequence[int] = (6, 12, 18), *,
                 separable: bool = False, dropout: float = 0.1, bn_eps: float = 1e-5) -> None:
        super().__init__()
        rates = tuple(int(r) for r in rates)
        if any(r < 1 for r in rates):
            raise ValueError(f"ASPP: expected positive rates, got {rates}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ASPP: expected 0 <= dropout < 1, got {dropout}")
        self.rates, self.separable = rates, separable
        self.in_channels, self.out_channels = in_channels, out_channels
        branches: list[nn.Module] = [ConvBNAct(in_channels, out_channels, 1, bn_eps=bn_eps)]
        for rate in rates:
            if separable:
                branches.append(
                    AtrousSeparableConv2d(in_channels, out_channels, 3, dilation=rate, bn_eps=bn_eps))
            else:
                branches.append(ConvBNAct(in_channels, out_channels, 3, dilation=rate, bn_eps=bn_eps))
        branches.append(ASPPPooling(in_channels, out_channels, bn_eps))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            AtrousConv2d(len(branches) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels, eps=bn_eps),
            nn.ReLU(),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            self._warn_degenerate_rates(x.shape[-2], x.shape[-1])
        y = torch.cat([branch(x) for branch in self.convs], dim=1)  # (N, branches * C_out, H, W)
        return self.project(y)

    def _warn_degenerate_rates(self, height: int, width: int) -> None:
        for rate in self.rates:
            axes = [name for name, n in (("height", height), ("width", width)) if rate >= n]
            if axes:
                warnings.warn(
                    f"ASPP: atrous rate {rate} is not smaller than the {height}x{width} feature map, so the "
                    f"off-centre taps of its 3x3 kernel see only zero padding along the "
                    f"{' and '.join(axes)}: "
                    "the branch degenerates towards a 1x1 conv there (DeepLabV3, Sec. 3.3). Use a larger "
                    "input, a smaller output_stride or smaller rates.",
                    AtrousRateWarning, stacklevel=3)
