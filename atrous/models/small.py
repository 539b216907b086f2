"""A small DeepLabV3+ that trains on a CPU in minutes: slim Xception-style backbone, separable ASPP, decoder.

It keeps every ingredient of the paper model at a width a CPU trains in minutes: a 3x3 stem, residual
blocks of two atrous separable convolutions (the second one strided), output stride 8, 16 or 32 by
the same strides-to-rates rule as the big backbones (:class:`~atrous.models.common.StrideSchedule`),
ASPP with separable branches and image pooling, and the decoder with stride-4 low-level features.
All of it is built from :mod:`atrous.nn` layers and :class:`~atrous.models.ASPP` /
:class:`~atrous.models.Decoder`, so every convolution runs on the atrous kernels (``impl="atrous"``).

ASPP rates follow the feature-map size, not the paper's 513-pixel crops: at a 128-pixel input and
output stride 8 the map is 16x16, where the paper's (12, 24, 36) would read only padding. The small
model's rates are (2, 4, 6) at output stride 16, scaled by ``16 / output_stride`` like the paper's:
(4, 8, 12) at 8, where the largest reaches 3/4 of the way across a 16x16 map (18 reaches 55% of
DeepLab's 33x33 map).

:func:`~atrous.models.undilate` (in :mod:`atrous.models.transforms`) sets every dilation to 1, strides
unchanged: the "no atrous" control of the experiments.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..nn import AtrousSeparableConv2d, ConvBNAct, set_impl
from .aspp import default_aspp_rates
from .common import StrideSchedule, check_output_stride, init_weights
from .deeplab import DeepLabV3Plus, resolve_aux_loss, with_backbone_weights
from .registry import register_model
from .transforms import undilate

__all__ = ["DILATION_RULES", "SMALL_STAGES", "SlimXception", "deeplabv3plus_small", "small_aspp_rates"]

DILATION_RULES = ("exact", "block")

# (out_channels, blocks, stride) per stage after the stride-2 stem; stage 1 ends at stride 4 and feeds
# the decoder, stage 4 would end at stride 32.
SMALL_STAGES: tuple[tuple[int, int, int], ...] = ((24, 1, 2), (48, 2, 2), (96, 2, 2), (128, 2, 2))


def small_aspp_rates(output_stride: int) -> tuple[int, int, int]:
    """(2, 4, 6) at output stride 16, scaled by ``16 / output_stride``: (4, 8, 12) at 8, (1, 2, 3) at 32."""
    return default_aspp_rates(output_stride, (2, 4, 6), where="small_aspp_rates")


class SeparableBlock(nn.Module):
    """Residual block: separable conv -> separable conv (strided, BN only) -> + shortcut -> ReLU.

    Both convolutions share the block's rate (``dilation``). The shortcut is the identity, or a 1x1 conv
    + BN when the width or the stride changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = AtrousSeparableConv2d(in_channels, out_channels, 3, dilation=dilation)
        self.conv2 = AtrousSeparableConv2d(out_channels, out_channels, 3, stride=stride, dilation=dilation,
                                           activation=None)
        self.shortcut = None
        if in_channels != out_channels or stride != 1:
            self.shortcut = ConvBNAct(in_channels, out_channels, 1, stride, activation=None)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.act(self.conv2(self.conv1(x)) + skip)


class SlimXception(nn.Module):
    """Slim Xception-style backbone: 3x3 stem (stride 2) and :data:`SMALL_STAGES` of separable blocks.

    Returns ``{"low": stride-4 features, "aux": stage-3 output, "out": features at output_stride}``.
    Past ``output_stride`` a stage's first block runs at stride 1. ``dilation_rule`` says which layers
    the dropped stride dilates:

    * ``"exact"`` (default): only the layers *after* the dropped stride (the algorithme à trous). The
      de-strided block keeps the rate it had, so the network computes the output-stride-32 network's
      features at every position of a denser grid: ``features[..., ::s, ::s]`` equal them exactly
      (:func:`atrous.models.set_output_stride`). torchvision's ResNet and timm's Xception do this.
    * ``"block"``: the de-strided block itself as well (torchvision's MobileNetV3 convention, and this
      model's before issue 14): not the same function as the strided network at any position.
    """

    def __init__(self, output_stride: int = 16, in_channels: int = 3, *, stem_channels: int = 16,
                 stages: Sequence[tuple[int, int, int]] = SMALL_STAGES, dilation_rule: str = "exact") -> None:
        super().__init__()
        self.output_stride = check_output_stride(output_stride, "SlimXception")
        if dilation_rule not in DILATION_RULES:
            raise ValueError(f"SlimXception: expected dilation_rule in {DILATION_RULES}, "
                             f"got {dilation_rule!r}")
        self.in_channels, self.stem_channels, self.dilation_rule = in_channels, stem_channels, dilation_rule
        self.stage_specs = tuple(tuple(s) for s in stages)
        self.stem = ConvBNAct(in_channels, stem_channels, 3, stride=2)
        schedule = StrideSchedule(output_stride, stride=2)
        self.stages = nn.ModuleList()
        cin = stem_channels
        for cout, blocks, stride in stages:
            stride, before, after = schedule.step(stride)
            # The stride sits on block 0's second conv: under "exact" block 0 keeps the old rate.
            first = before if dilation_rule == "exact" else after
            stage = nn.Sequential(*[SeparableBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1,
                                                   first if i == 0 else after) for i in range(blocks)])
            self.stages.append(stage)
            cin = cout
        self.low_level_channels = stages[0][0]
        self.aux_channels = stages[-2][0]
        self.out_channels = stages[-1][0]
        init_weights(self)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        features: dict[str, torch.Tensor] = {}
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i == 0:
                features["low"] = x
            elif i == len(self.stages) - 2:
                features["aux"] = x
        features["out"] = x
        return features


@register_model
def deeplabv3plus_small(num_classes: int = 4, output_stride: int = 16, *,
                        aspp_rates: Sequence[int] | None = None, aspp_channels: int = 64,
                        decoder_channels: int = 64, low_level_projection: int = 16, dropout: float = 0.1,
                        dilated: bool = True, aux_loss: bool = False, in_channels: int = 3,
                        dilation_rule: str = "exact", impl: str | None = None, weights_backbone=None,
                        weights_backbone_sha256: str | None = None, aux: bool | None = None) -> nn.Module:
    """The small DeepLabV3+ (0.21 M parameters): :class:`SlimXception`, separable ASPP of
    ``aspp_channels`` with :func:`small_aspp_rates`, decoder of ``decoder_channels``.

    ``dilated=False`` builds the same network with every dilation set to 1 (:func:`undilate`);
    ``aux_loss`` adds an auxiliary FCN head on the stage-3 features, as the other factories (``aux``:
    deprecated alias); ``dilation_rule`` is :class:`SlimXception`'s. ``weights_backbone``: a
    checkpoint of this model (its ``backbone.*``) or the backbone's state dict, as
    :func:`~atrous.models.deeplabv3`.
    """
    aux_loss = resolve_aux_loss("deeplabv3plus_small", aux_loss, aux)
    backbone = SlimXception(output_stride, in_channels, dilation_rule=dilation_rule)
    rates = small_aspp_rates(output_stride) if aspp_rates is None else tuple(aspp_rates)
    model = DeepLabV3Plus(backbone, num_classes, aspp_rates=rates, aspp_channels=aspp_channels,
                          separable=True, dropout=dropout, low_level_projection=low_level_projection,
                          decoder_channels=decoder_channels, aux_loss=aux_loss)
    if not dilated:
        undilate(model)
    with_backbone_weights(model, weights_backbone, weights_backbone_sha256)
    return set_impl(model, impl)
