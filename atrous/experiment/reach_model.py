"""The reach design's networks: a stem and four 3x3 convolutions whose rates and strides alone differ.

No image pooling, no global path: what a pixel's prediction can use is exactly its receptive field.
Every variant has the same layers, so the same parameters; only the geometry changes:

* **A** rates (1, 1, 1, 1): the plain network, reach (RF - 1) / 2 = 9 px;
* **B** rates (1, 2, 5, 9): a hybrid schedule that meets the HDC criterion (no holes), reach 35 px;
* **C** rates (3, 3, 3, 3): one rate repeated (gridding: it sees every 3rd feature pixel only), reach 25 px;
* **D** rates 1 and strides (2, 2) on the first two convs: more stride instead of dilation, reach 23 px,
  output stride 8 instead of 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import AtrousConv2d, ConvBNAct
from ..receptive_field.arithmetic import compose

__all__ = ["REACH_VARIANTS", "ReachNet", "ReachVariant"]


@dataclass(frozen=True)
class ReachVariant:
    key: str
    name: str
    rates: tuple[int, int, int, int]
    strides: tuple[int, int, int, int] = (1, 1, 1, 1)

    def layers(self) -> list[tuple[int, int, int, int]]:
        """``(kernel, stride, padding, dilation)`` of the stem and the four convolutions."""
        return [(3, 2, 1, 1)] + [(3, s, r, r) for r, s in zip(self.rates, self.strides)]

    @property
    def rf(self) -> int:
        return compose(self.layers())[-1].size

    @property
    def reach(self) -> int:
        """``(RF - 1) / 2``: the farthest input pixel an output pixel sees, in pixels."""
        return (self.rf - 1) // 2

    @property
    def output_stride(self) -> int:
        return compose(self.layers())[-1].jump


REACH_VARIANTS = (
    ReachVariant("A", "A plain (1,1,1,1)", (1, 1, 1, 1)),
    ReachVariant("B", "B hybrid (1,2,5,9)", (1, 2, 5, 9)),
    ReachVariant("C", "C equal (3,3,3,3)", (3, 3, 3, 3)),
    ReachVariant("D", "D strided (2,2,1,1)", (1, 1, 1, 1), (2, 2, 1, 1)),
)


class ReachNet(nn.Module):
    """Stem (3x3, stride 2) -> four 3x3 ConvBNAct at the variant's rates and strides -> 1x1 classifier ->
    bilinear upsampling to the input. Fully convolutional, no pooling."""

    def __init__(self, variant: ReachVariant, num_classes: int = 4, width: int = 32,
                 impl: str | None = None) -> None:
        super().__init__()
        self.variant = variant
        self.stem = ConvBNAct(3, width, 3, stride=2, impl=impl)
        self.convs = nn.Sequential(*[ConvBNAct(width, width, 3, stride=s, dilation=r, impl=impl)
                                     for r, s in zip(variant.rates, variant.strides)])
        self.classifier = AtrousConv2d(width, num_classes, 1, impl=impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.classifier(self.convs(self.stem(x)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
