"""Aligned Xception-41/65/71 backbones as modified for DeepLabV3+, output_stride 8/16/32 through dilation.

Chen et al., "Encoder-Decoder with Atrous Separable Convolution" (DeepLabV3+, 2018), Sec. 3.2, after
Dai et al.'s aligned Xception: a deeper middle flow (8 / 16 / 16 blocks for 41 / 65 / 71), every max
pooling replaced by a depthwise separable convolution with stride 2 (so atrous convolution can take
over any stride), and BatchNorm after each 3x3 depthwise convolution.

The layout and parameter names follow the released DeepLab code as ported by timm
(``timm/models/xception_aligned.py``), so timm's ``xception41/65/71`` ImageNet weights load into it
(:func:`atrous.models.load_timm_xception`). In that code the ReLU sits *before* each separable conv of
the entry and middle flows (and between their depthwise and pointwise convs there is BN only); the
last exit-flow block, which has no residual, uses BN+ReLU after both its depthwise and pointwise convs.

Features returned by :meth:`XceptionAligned.forward`:

* ``"low"``: stride 4, 256 channels, for the DeepLabV3+ decoder. As in the DeepLab code
  (``entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise``; ``block3`` for Xception-71):
  the output of the second separable conv of the entry-flow block that goes from stride 4 to 8, after
  its BN and before the ReLU that starts the next conv (timm's feature tap is the same map after that ReLU).
* ``"aux"``: the end of the middle flow (728 channels), for an optional auxiliary head.
* ``"out"``: the exit flow, 2048 channels at ``output_stride``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn import AtrousSeparableConv2d, ConvBNAct
from .common import StrideSchedule, check_output_stride, init_weights

__all__ = ["XCEPTION_BLOCKS", "XceptionAligned", "XceptionBlock", "xception41", "xception65", "xception71"]

# timm / TF DeepLab use BatchNorm eps 1e-3 in Xception.
_BN_EPS = 1e-3


@dataclass(frozen=True)
class BlockSpec:
    """One Xception module: three separable convs (widths ``out_channels``), the last one strided."""

    in_channels: int
    out_channels: tuple[int, int, int]
    stride: int
    start_with_relu: bool = True
    no_skip: bool = False
    flow: str = "middle"


def _entry(cin: int, cout: int, stride: int) -> BlockSpec:
    return BlockSpec(cin, (cout, cout, cout), stride, flow="entry")


_MIDDLE = BlockSpec(728, (728, 728, 728), 1)
_EXIT = (
    BlockSpec(728, (728, 1024, 1024), 2, flow="exit"),
    BlockSpec(1024, (1536, 1536, 2048), 1, start_with_relu=False, no_skip=True, flow="exit"),
)

XCEPTION_BLOCKS: dict[str, tuple[BlockSpec, ...]] = {
    "xception41": (_entry(64, 128, 2), _entry(128, 256, 2), _entry(256, 728, 2), *[_MIDDLE] * 8, *_EXIT),
    "xception65": (_entry(64, 128, 2), _entry(128, 256, 2), _entry(256, 728, 2), *[_MIDDLE] * 16, *_EXIT),
    # Xception-71 splits two entry blocks in two (a stride-1 block, then the strided one).
    "xception71": (_entry(64, 128, 2), _entry(128, 256, 1), _entry(256, 256, 2), _entry(256, 728, 1),
                   _entry(728, 728, 2), *[_MIDDLE] * 16, *_EXIT),
}


class XceptionBlock(nn.Module):
    """Xception module: [ReLU] -> sep conv, three times (the third strided), plus a residual.

    The residual is the identity, or a strided 1x1 conv + BN when the width or the stride changes;
    ``no_skip`` drops it (last exit-flow block). Keys: ``stack.conv{1,2,3}.*``, ``shortcut.{0,1}.*``.
    """

    def __init__(self, spec: BlockSpec, stride: int, dilation: int) -> None:
        super().__init__()
        self.spec, self.stride, self.dilation = spec, stride, dilation
        self.no_skip = spec.no_skip
        out = spec.out_channels
        self.shortcut = None
        if not spec.no_skip and (out[-1] != spec.in_channels or stride != 1):
            self.shortcut = ConvBNAct(spec.in_channels, out[-1], 1, stride, activation=None, bn_eps=_BN_EPS)
        # Pre-activated blocks: a ReLU before each separable conv and none inside it; otherwise
        # BN+ReLU after the depthwise and the pointwise conv (see the module docstring).
        sep_act = None if spec.start_with_relu else nn.ReLU
        self.stack = nn.Sequential()
        cin = spec.in_channels
        for i in range(3):
            if spec.start_with_relu:
                self.stack.add_module(f"act{i + 1}", nn.ReLU())
            self.stack.add_module(f"conv{i + 1}", AtrousSeparableConv2d(
                cin, out[i], 3, stride=stride if i == 2 else 1, dilation=dilation,
                activation=sep_act, bn_eps=_BN_EPS))
            cin = out[i]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(output, tap)``; ``tap`` is the second separable conv's output (the decoder's
        low-level feature when this is the stride-4 entry block)."""
        y, tap = x, x
        for name, layer in self.stack.named_children():
            y = layer(y)
            if name == "conv2":
                tap = y
        if not self.no_skip:
            y = y + (self.shortcut(x) if self.shortcut is not None else x)
        return y, tap


class XceptionAligned(nn.Module):
    """Aligned Xception backbone with ``output_stride`` in {8, 16, 32}.

    Stem: 3x3 conv stride 2 (32) -> 3x3 conv (64), each with BN+ReLU. Then the entry, middle and exit
    flows of :data:`XCEPTION_BLOCKS`. Once the accumulated stride reaches ``output_stride`` the next
    strided block runs at stride 1 and all later blocks are dilated by the stride it dropped (at
    output stride 16 the exit flow's last block has rate 2; at 8 the middle flow has rate 2 and the
    last block rate 4), as in DeepLab and timm.
    """

    def __init__(self, variant: str = "xception65", output_stride: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        if variant not in XCEPTION_BLOCKS:
            raise ValueError(
                f"XceptionAligned: expected variant in {sorted(XCEPTION_BLOCKS)}, got {variant!r}")
        self.variant = variant
        self.output_stride = check_output_stride(output_stride, "XceptionAligned")
        self.in_channels = in_channels
        self.stem = nn.Sequential(
            ConvBNAct(in_channels, 32, 3, stride=2, bn_eps=_BN_EPS),
            ConvBNAct(32, 64, 3, bn_eps=_BN_EPS),
        )
        schedule = StrideSchedule(output_stride, stride=2)  # the stem already halves the image
        self.blocks = nn.Sequential()
        self.low_level_index = self.aux_index = -1
        for i, spec in enumerate(XCEPTION_BLOCKS[variant]):
            if spec.stride > 1 and schedule.stride == 4 and self.low_level_index < 0:
                self.low_level_index = i  # its conv2 output is the last stride-4 map
            stride, dilation, _ = schedule.step(spec.stride)
            self.blocks.add_module(str(i), XceptionBlock(spec, stride, dilation))
            if spec.flow == "middle":
                self.aux_index = i
        self.out_channels = XCEPTION_BLOCKS[variant][-1].out_channels[-1]
        self.low_level_channels = XCEPTION_BLOCKS[variant][self.low_level_index].out_channels[1]
        self.aux_channels = XCEPTION_BLOCKS[variant][self.aux_index].out_channels[-1]
        init_weights(self)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        features: dict[str, torch.Tensor] = {}
        for i, block in enumerate(self.blocks):
            x, tap = block(x)
            if i == self.low_level_index:
                features["low"] = tap
            if i == self.aux_index:
                features["aux"] = x
        features["out"] = x
        return features


def xception41(output_stride: int = 16, in_channels: int = 3) -> XceptionAligned:
    """Aligned Xception-41 (8 middle-flow blocks); timm ``xception41`` weights load into it."""
    return XceptionAligned("xception41", output_stride, in_channels)


def xception65(output_stride: int = 16, in_channels: int = 3) -> XceptionAligned:
    """Aligned Xception-65 (16 middle-flow blocks), DeepLabV3+'s backbone; timm ``xception65`` loads."""
    return XceptionAligned("xception65", output_stride, in_channels)


def xception71(output_stride: int = 16, in_channels: int = 3) -> XceptionAligned:
    """Aligned Xception-71 (entry blocks split in two); timm ``xception71`` weights load into it."""
    return XceptionAligned("xception71", output_stride, in_channels)
