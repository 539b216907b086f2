"""DeepLabV3 and DeepLabV3+ segmentation models and their factory functions.

* DeepLabV3 (Chen et al., "Rethinking Atrous Convolution for Semantic Image Segmentation", 2017):
  backbone at output stride 16 (or 8) -> ASPP -> 1x1 classifier -> bilinear upsampling.
* DeepLabV3+ (Chen et al., "Encoder-Decoder with Atrous Separable Convolution", 2018): the same
  encoder with separable ASPP, plus a decoder that refines with stride-4 low-level features.

Both accept any input size: every resampling goes to the actual size of the map it must match
(``F.interpolate(size=...)``, ``align_corners=False`` as torchvision), so sizes need not be
multiples of the output stride. A model returns the logits ``(N, num_classes, H, W)``, or, when
built with an auxiliary head, a dict ``{"out": logits, "aux": aux_logits}`` as torchvision does.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import AtrousConv2d, ConvBNAct, set_impl
from .aspp import ASPP, default_aspp_rates
from .common import check_input, init_weights
from .decoder import Decoder, FCNHead
from .mobilenetv3 import MobileNetV3
from .resnet import RESNET_LAYERS, ResNet
from .xception import XCEPTION_BLOCKS, XceptionAligned

__all__ = [
    "BACKBONES",
    "DeepLabV3",
    "DeepLabV3Plus",
    "build_backbone",
    "deeplabv3",
    "deeplabv3plus",
    "torchvision_deeplabv3",
]

BACKBONES = ("resnet50", "resnet101", "mobilenet_v3_large", "xception41", "xception65", "xception71")
_MULTI_GRID_DEFAULT = (1, 2, 4)


def resolve_aux_loss(where: str, aux_loss: bool, aux: bool | None) -> bool:
    """``aux_loss`` (torchvision's name, the one name atrous uses), with the old ``aux`` keyword as a
    deprecated alias."""
    if aux is None:
        return bool(aux_loss)
    warnings.warn(f"{where}: the argument aux= is deprecated, use aux_loss= (torchvision's name)",
                  DeprecationWarning, stacklevel=3)
    return bool(aux or aux_loss)


def with_backbone_weights(model: nn.Module, weights_backbone, sha256: str | None = None) -> nn.Module:
    """Load ``weights_backbone`` (a path, URL or state dict; None: keep the random initialisation) into
    ``model.backbone``; the provenance is kept as ``model.backbone_provenance`` (plain data)."""
    model.backbone_provenance = None
    if weights_backbone is None:
        return model
    # Imported here: atrous.models.pretrained imports weights, which imports this module (DeepLabV3).
    from .pretrained import load_backbone_weights

    model.backbone_provenance = load_backbone_weights(model, weights_backbone, sha256=sha256)
    return model


def build_backbone(name: str, output_stride: int = 16, *, multi_grid: Sequence[int] | None = None,
                   in_channels: int = 3) -> nn.Module:
    """A backbone by name (see :data:`BACKBONES`); ``multi_grid`` applies to the ResNets only."""
    if name in RESNET_LAYERS:
        return ResNet(RESNET_LAYERS[name], output_stride, multi_grid, in_channels)
    if multi_grid is not None:
        raise ValueError(f"build_backbone: multi_grid applies to the ResNet backbones, not {name!r}")
    if name in XCEPTION_BLOCKS:
        return XceptionAligned(name, output_stride, in_channels)
    if name == "mobilenet_v3_large":
        return MobileNetV3(output_stride, in_channels)
    raise ValueError(f"build_backbone: expected name in {BACKBONES}, got {name!r}")


def _check_backbone(backbone: nn.Module, where: str, needs: Sequence[str]) -> None:
    missing = [a for a in ("output_stride", "in_channels", *needs) if not hasattr(backbone, a)]
    if missing:
        raise TypeError(
            f"{where}: expected a backbone with attributes {', '.join(missing)} whose forward returns a dict "
            f"with 'out' (and 'low'/'aux'), such as atrous.models.build_backbone(...); "
            f"got {type(backbone).__name__}")


class DeepLabV3(nn.Module):
    """DeepLabV3: backbone -> ASPP -> [3x3 conv] -> 1x1 classifier -> upsampling to the input size.

    Args:
        backbone: a feature extractor from :func:`build_backbone` (or one with the same interface).
        num_classes: output channels of the classifier.
        aspp_rates: ASPP rates; None follows the backbone's output stride (:func:`default_aspp_rates`).
        aspp_channels: filters per ASPP branch (256).
        separable_aspp: atrous separable ASPP branches instead of dense ones.
        dropout: after the ASPP projection.
        head_conv: torchvision's extra 3x3 conv + BN + ReLU between ASPP and classifier (not in the paper).
        aux_loss: torchvision's auxiliary FCN head on the backbone's ``"aux"`` features (a training aid;
            ``aux`` is its deprecated old name).
    """

    def __init__(self, backbone: nn.Module, num_classes: int = 21, *, aspp_rates: Sequence[int] | None = None,
                 aspp_channels: int = 256, separable_aspp: bool = False, dropout: float = 0.1,
                 head_conv: bool = False, aux_loss: bool = False, aux: bool | None = None) -> None:
        super().__init__()
        aux = resolve_aux_loss("DeepLabV3", aux_loss, aux)
        _check_backbone(backbone, "DeepLabV3", ("out_channels",) + (("aux_channels",) if aux else ()))
        self.backbone = backbone
        self.num_classes = num_classes
        rates = default_aspp_rates(backbone.output_stride) if aspp_rates is None else tuple(aspp_rates)
        self.aspp = ASPP(backbone.out_channels, aspp_channels, rates, separable=separable_aspp,
                         dropout=dropout)
        self.head_conv = ConvBNAct(aspp_channels, aspp_channels, 3) if head_conv else None
        self.classifier = AtrousConv2d(aspp_channels, num_classes, 1)
        self.aux_classifier = FCNHead(backbone.aux_channels, num_classes) if aux else None
        init_weights(self.aspp)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        check_input(x, self.backbone.in_channels, type(self).__name__,
                    output_stride=self.backbone.output_stride, training=self.training)
        size = x.shape[-2:]
        features = self.backbone(x)
        y = self.aspp(features["out"])
        if self.head_conv is not None:
            y = self.head_conv(y)
        y = F.interpolate(self.classifier(y), size=size, mode="bilinear", align_corners=False)
        if self.aux_classifier is None:
            return y
        aux = F.interpolate(self.aux_classifier(features["aux"]), size=size, mode="bilinear",
                            align_corners=False)
        return {"out": y, "aux": aux}


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+: backbone -> ASPP (separable) -> decoder with stride-4 low-level features.

    Args:
        backbone: a feature extractor from :func:`build_backbone` (its ``"low"`` output feeds the decoder).
        num_classes: output channels of the classifier.
        aspp_rates: ASPP rates; None follows the backbone's output stride.
        separable: atrous separable convs in ASPP and decoder (the paper's choice, Sec. 3.2).
        dropout: after the ASPP projection.
        low_level_projection: channels of the low-level 1x1 projection (48, paper Table 1).
        decoder_channels: width of the decoder's two 3x3 convs (256, paper Table 2).
        aux_loss: an auxiliary FCN head on the backbone's ``"aux"`` features (``aux``: deprecated alias).
    """

    def __init__(self, backbone: nn.Module, num_classes: int = 21, *, aspp_rates: Sequence[int] | None = None,
                 aspp_channels: int = 256, separable: bool = True, dropout: float = 0.1,
                 low_level_projection: int = 48, decoder_channels: int = 256, aux_loss: bool = False,
                 aux: bool | None = None) -> None:
        super().__init__()
        aux = resolve_aux_loss("DeepLabV3Plus", aux_loss, aux)
        _check_backbone(backbone, "DeepLabV3Plus",
                        ("out_channels", "low_level_channels") + (("aux_channels",) if aux else ()))
        self.backbone = backbone
        self.num_classes = num_classes
        rates = default_aspp_rates(backbone.output_stride) if aspp_rates is None else tuple(aspp_rates)
        self.aspp = ASPP(backbone.out_channels, aspp_channels, rates, separable=separable, dropout=dropout)
        self.decoder = Decoder(backbone.low_level_channels, num_classes, aspp_channels,
                               low_level_projection=low_level_projection, channels=decoder_channels,
                               separable=separable)
        self.aux_classifier = FCNHead(backbone.aux_channels, num_classes) if aux else None
        init_weights(self.aspp)
        init_weights(self.decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        check_input(x, self.backbone.in_channels, type(self).__name__,
                    output_stride=self.backbone.output_stride, training=self.training)
        size = x.shape[-2:]
        features = self.backbone(x)
        y = self.decoder(self.aspp(features["out"]), features["low"], size)
        if self.aux_classifier is None:
            return y
        aux = F.interpolate(self.aux_classifier(features["aux"]), size=size, mode="bilinear",
                            align_corners=False)
        return {"out": y, "aux": aux}


def _multi_grid_for(backbone: str, multi_grid):
    if multi_grid == "default":
        return _MULTI_GRID_DEFAULT if backbone in RESNET_LAYERS else None
    return multi_grid


def deeplabv3(backbone: str = "resnet101", num_classes: int = 21, output_stride: int = 16, *,
              multi_grid: Sequence[int] | None | str = "default", aspp_rates: Sequence[int] | None = None,
              separable_aspp: bool = False, dropout: float = 0.1, head_conv: bool = False,
              aux_loss: bool = False, in_channels: int = 3, impl: str | None = None,
              weights_backbone=None, weights_backbone_sha256: str | None = None,
              aux: bool | None = None) -> DeepLabV3:
    """DeepLabV3 as in the paper: output stride 16, ASPP rates (6, 12, 18) (doubled at 8), image
    pooling, multi-grid (1, 2, 4) in a ResNet's last stage (``multi_grid="default"``; None for none).

    ``impl`` sets every convolution's implementation ("atrous", "torch"; None follows
    :func:`atrous.nn.use_impl`). ``aux_loss`` adds torchvision's auxiliary head (the model then returns
    ``{"out", "aux"}``; ``aux`` is the deprecated old name). ``weights_backbone``: pretrained backbone
    weights, a path, URL or state dict (timm Xception, torchvision ResNet/MobileNetV3, an atrous
    checkpoint; see :mod:`atrous.models.pretrained`); a URL is checked against
    ``weights_backbone_sha256`` (or the hash in its file name) and cached.
    """
    aux_loss = resolve_aux_loss("deeplabv3", aux_loss, aux)
    net = build_backbone(backbone, output_stride, multi_grid=_multi_grid_for(backbone, multi_grid),
                         in_channels=in_channels)
    model = DeepLabV3(net, num_classes, aspp_rates=aspp_rates, separable_aspp=separable_aspp, dropout=dropout,
                      head_conv=head_conv, aux_loss=aux_loss)
    with_backbone_weights(model, weights_backbone, weights_backbone_sha256)
    return set_impl(model, impl)


def deeplabv3plus(backbone: str = "xception65", num_classes: int = 21, output_stride: int = 16, *,
                  multi_grid: Sequence[int] | None | str = "default", aspp_rates: Sequence[int] | None = None,
                  separable: bool = True, dropout: float = 0.1, aux_loss: bool = False, in_channels: int = 3,
                  impl: str | None = None, weights_backbone=None, weights_backbone_sha256: str | None = None,
                  aux: bool | None = None) -> DeepLabV3Plus:
    """DeepLabV3+ as in the paper: aligned Xception-65 at output stride 16, separable ASPP with rates
    (6, 12, 18) (doubled at 8), decoder with 48-channel low-level projection and two separable 3x3
    convs of 256. ``multi_grid="default"`` gives (1, 2, 4) to ResNet backbones, nothing to others.
    ``aux_loss`` adds an auxiliary FCN head (``aux``: deprecated alias). ``weights_backbone``: as
    :func:`deeplabv3`."""
    aux_loss = resolve_aux_loss("deeplabv3plus", aux_loss, aux)
    net = build_backbone(backbone, output_stride, multi_grid=_multi_grid_for(backbone, multi_grid),
                         in_channels=in_channels)
    model = DeepLabV3Plus(net, num_classes, aspp_rates=aspp_rates, separable=separable, dropout=dropout,
                          aux_loss=aux_loss)
    with_backbone_weights(model, weights_backbone, weights_backbone_sha256)
    return set_impl(model, impl)


# torchvision.models.segmentation.deeplabv3_*: ASPP (12, 24, 36), dropout 0.5, the extra 3x3 conv in
# the head, no multi-grid; ResNets at output stride 8 (replace_stride_with_dilation=[False, True,
# True]), MobileNetV3 at 16 (dilated=True).
_TORCHVISION_OUTPUT_STRIDE = {"resnet50": 8, "resnet101": 8, "mobilenet_v3_large": 16}


def torchvision_deeplabv3(backbone: str, num_classes: int = 21, aux_loss: bool = False, *,
                          impl: str | None = None) -> DeepLabV3:
    """Our DeepLabV3 configured exactly as ``torchvision.models.segmentation.deeplabv3_<backbone>``,
    so its state dicts load (:func:`atrous.models.load_torchvision_deeplabv3`) and outputs match.

    ``backbone``: "resnet50", "resnet101" or "mobilenet_v3_large". ``aux_loss``: build the auxiliary
    head (torchvision's COCO checkpoints have one).
    """
    if backbone not in _TORCHVISION_OUTPUT_STRIDE:
        raise ValueError(
            f"torchvision_deeplabv3: expected backbone in {tuple(_TORCHVISION_OUTPUT_STRIDE)}, "
            f"got {backbone!r}")
    return deeplabv3(backbone, num_classes, _TORCHVISION_OUTPUT_STRIDE[backbone], multi_grid=None,
                     aspp_rates=(12, 24, 36), dropout=0.5, head_conv=True, aux_loss=aux_loss, impl=impl)
