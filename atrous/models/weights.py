"""Weight import into our models from timm (aligned Xception), torchvision (DeepLabV3, ResNet, MobileNetV3).

Nothing here downloads: pass a state dict you have (``torch.load(path)``) or a model built by timm or
torchvision (``timm.create_model("xception65", pretrained=True)``,
``torchvision.models.segmentation.deeplabv3_resnet50(weights="DEFAULT")``). Keys are renamed by a
short list of explicit rules, then every key and shape must match: a checkpoint that differs raises
:class:`WeightImportError` listing what is missing, what is unexpected and which shapes differ,
before anything is loaded. Only the source's ImageNet classifier (timm ``head.*``, torchvision
``fc.*`` / ``classifier.*`` of a classification model) is left out on purpose, and the message of
any failure says so.

The models then compute what the source computes: the tests build randomly initialised timm and
torchvision models and compare outputs.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .deeplab import DeepLabV3, torchvision_deeplabv3
from .mobilenetv3 import MobileNetV3
from .resnet import RESNET_LAYERS, ResNet
from .xception import XceptionAligned

__all__ = [
    "WeightImportError",
    "convert_timm_xception",
    "convert_torchvision_deeplabv3",
    "deeplabv3_from_torchvision",
    "load_timm_xception",
    "load_torchvision_backbone",
    "load_torchvision_deeplabv3",
]

Rules = list[tuple[str, str]]


class WeightImportError(ValueError):
    """A checkpoint's keys or shapes do not match the model; the message lists the differences."""


def _state_dict(source, where: str) -> dict[str, torch.Tensor]:
    if isinstance(source, nn.Module):
        return dict(source.state_dict())
    if isinstance(source, Mapping):
        return dict(source)
    raise TypeError(f"{where}: expected a state dict (a mapping of tensors) or an nn.Module, "
                    f"got {type(source).__name__}")


def _convert(state: Mapping[str, torch.Tensor], rules: Rules, drop: str | None):
    """Apply the first matching rule to each key; keys matching ``drop`` are left out.
    Returns (our state dict, our key -> source key, dropped source keys)."""
    converted, origin, dropped = {}, {}, []
    for key, value in state.items():
        if drop is not None and re.match(drop, key):
            dropped.append(key)
            continue
        new = key
        for pattern, repl in rules:
            if re.match(pattern, key):
                new = re.sub(pattern, repl, key, count=1)
                break
        converted[new] = value
        origin[new] = key
    return converted, origin, dropped


def _listing(title: str, items: list[str], limit: int = 12) -> str:
    shown = "\n".join(f"    {item}" for item in items[:limit])
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"  {title} ({len(items)}):\n{shown}{more}"


def _load_exact(model: nn.Module, state: dict[str, torch.Tensor], origin: dict[str, str], *, where: str,
                source: str, dropped: Sequence[str] = (), hints: Sequence[str] = ()) -> None:
    ours = model.state_dict()
    missing = [k for k in ours if k not in state]  # in model order: the first ones locate the difference
    unexpected = [k for k in state if k not in ours]
    shapes = [f"{k} (checkpoint {origin[k]}): checkpoint {tuple(state[k].shape)}, "
              f"model {tuple(ours[k].shape)}"
              for k in ours if k in state and state[k].shape != ours[k].shape]
    if not (missing or unexpected or shapes):
        model.load_state_dict(state, strict=True)
        return
    parts = [f"{where}: the {source} checkpoint does not match {type(model).__name__}; nothing was loaded."]
    if missing:
        parts.append(_listing("missing from the checkpoint (our names)", missing))
    if unexpected:
        parts.append(_listing("unexpected in the checkpoint (source name -> our name)",
                              [f"{origin[k]} -> {k}" if origin[k] != k else k for k in unexpected]))
    if shapes:
        parts.append(_listing("shape mismatches", shapes))
    if dropped:
        parts.append(f"  left out on purpose ({len(dropped)}): the source's classifier, e.g. {dropped[0]}")
    parts.extend(f"  hint: {h}" for h in hints)
    raise WeightImportError("\n".join(parts))


def _target(model: nn.Module, kind: type, where: str) -> nn.Module:
    """The module to load into: ``model`` itself or its ``backbone``."""
    if isinstance(model, kind):
        return model
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, kind):
        return backbone
    raise TypeError(f"{where}: expected a {kind.__name__} or a model whose .backbone is one, "
                    f"got {type(model).__name__}")


# ---- timm: aligned Xception -------------------------------------------------------------------------

# timm's ConvNormAct names its parts conv/bn; our ConvBNAct is torchvision-style Sequential 0/1. The
# separable convs (conv_dw, bn_dw, conv_pw, bn_pw) and block names are the same in both.
_TIMM_XCEPTION_RULES: Rules = [
    (r"^(stem\.\d+|blocks\.\d+\.shortcut)\.conv\.", r"\1.0."),
    (r"^(stem\.\d+|blocks\.\d+\.shortcut)\.bn\.", r"\1.1."),
]
_TIMM_HEAD = r"^head\."


def convert_timm_xception(state_dict) -> dict[str, torch.Tensor]:
    """timm ``xception41/65/71`` state dict -> our :class:`XceptionAligned` keys (the ``head.*``
    ImageNet classifier is left out)."""
    converted, _, _ = _convert(_state_dict(state_dict, "convert_timm_xception"), _TIMM_XCEPTION_RULES,
                               _TIMM_HEAD)
    return converted


def load_timm_xception(model: nn.Module, state_dict) -> nn.Module:
    """Load timm's aligned Xception weights (``xception41``, ``xception65``, ``xception71``; not the
    pre-activation ``*p`` variants) into an :class:`XceptionAligned` or a DeepLab model's backbone.

    The output stride does not matter (it changes strides and rates, not weights). Returns ``model``.
    """
    where = "load_timm_xception"
    target = _target(model, XceptionAligned, where)
    state, origin, dropped = _convert(_state_dict(state_dict, where), _TIMM_XCEPTION_RULES, _TIMM_HEAD)
    _load_exact(target, state, origin, where=where, source="timm xception", dropped=dropped,
                hints=[(f"the model is {target.variant}; timm's checkpoint must be the same variant "
                        "(block count) and not a pre-activation ('p') one")])
    return model


# ---- torchvision: DeepLabV3 -------------------------------------------------------------------------

# torchvision's head is one Sequential: ASPP (0), 3x3 conv (1), BN (2), ReLU (3), classifier (4); ours
# names them. Its backbone is the ResNet itself, or MobileNetV3's `features` Sequential directly.
_TORCHVISION_HEAD_RULES: Rules = [
    (r"^classifier\.0\.", "aspp."),
    (r"^classifier\.1\.", "head_conv.0."),
    (r"^classifier\.2\.", "head_conv.1."),
    (r"^classifier\.4\.", "classifier."),
]


def _torchvision_rules(model: DeepLabV3) -> Rules:
    if isinstance(model.backbone, MobileNetV3):
        return [(r"^backbone\.", "backbone.features."), *_TORCHVISION_HEAD_RULES]
    return list(_TORCHVISION_HEAD_RULES)


def convert_torchvision_deeplabv3(state_dict, backbone: str) -> dict[str, torch.Tensor]:
    """torchvision ``deeplabv3_<backbone>`` state dict -> our :class:`DeepLabV3` keys."""
    rules = list(_TORCHVISION_HEAD_RULES)
    if backbone == "mobilenet_v3_large":
        rules.insert(0, (r"^backbone\.", "backbone.features."))
    elif backbone not in RESNET_LAYERS:
        raise ValueError("convert_torchvision_deeplabv3: expected backbone 'resnet50', 'resnet101' or "
                         f"'mobilenet_v3_large', got {backbone!r}")
    converted, _, _ = _convert(_state_dict(state_dict, "convert_torchvision_deeplabv3"), rules, None)
    return converted


def load_torchvision_deeplabv3(model: DeepLabV3, state_dict, *, strict_aux: bool = True) -> DeepLabV3:
    """Load a torchvision ``deeplabv3_resnet50``, ``deeplabv3_resnet101`` or
    ``deeplabv3_mobilenet_v3_large`` state dict into a model from :func:`torchvision_deeplabv3`.

    ``strict_aux``: the auxiliary head must match too (default). With ``strict_aux=False`` the
    checkpoint's ``aux_classifier.*`` keys are ignored when the model has no auxiliary head (it is a
    training aid; torchvision's COCO checkpoints carry one). Returns ``model``.
    """
    where = "load_torchvision_deeplabv3"
    if not isinstance(model, DeepLabV3):
        raise TypeError(f"{where}: expected an atrous.models.DeepLabV3, got {type(model).__name__}")
    source = _state_dict(state_dict, where)
    drop = r"^aux_classifier\." if not strict_aux and model.aux_classifier is None else None
    state, origin, _ = _convert(source, _torchvision_rules(model), drop)
    hints = []
    has_aux = any(k.startswith("aux_classifier.") for k in source)
    if has_aux and model.aux_classifier is None:
        hints.append("the checkpoint has an auxiliary head (aux_classifier.*): build the model with "
                     "aux_loss=True, or pass strict_aux=False to ignore it")
    if not has_aux and model.aux_classifier is not None:
        hints.append("the model has an auxiliary head but the checkpoint has none: "
                     "build it with aux_loss=False")
    hints.append("build the model with atrous.models.torchvision_deeplabv3(backbone, num_classes, aux_loss) "
                 "or use atrous.models.deeplabv3_from_torchvision(checkpoint), which reads all three from it")
    _load_exact(model, state, origin, where=where, source="torchvision deeplabv3", hints=hints)
    return model


def _infer_torchvision_deeplabv3(state: Mapping[str, torch.Tensor]) -> tuple[str, int, bool]:
    """(backbone, num_classes, has aux head) of a torchvision DeepLabV3 state dict."""
    where = "deeplabv3_from_torchvision"
    if "classifier.4.weight" not in state:
        raise WeightImportError(f"{where}: expected a torchvision DeepLabV3 state dict with a "
                                "'classifier.4.weight' key (the final 1x1 conv); it has none")
    num_classes = int(state["classifier.4.weight"].shape[0])
    has_aux = any(k.startswith("aux_classifier.") for k in state)
    if any(k.startswith("backbone.layer4.") for k in state):
        units = {int(m.group(1)) for k in state if (m := re.match(r"^backbone\.layer3\.(\d+)\.", k))}
        by_units = {layers[2]: name for name, layers in RESNET_LAYERS.items()}
        if len(units) not in by_units:
            raise WeightImportError(f"{where}: a ResNet with {len(units)} units in layer3 is neither "
                                    "ResNet-50 (6) nor ResNet-101 (23)")
        return by_units[len(units)], num_classes, has_aux
    if "backbone.16.0.weight" in state:
        return "mobilenet_v3_large", num_classes, has_aux
    raise WeightImportError(f"{where}: the backbone keys match neither torchvision's ResNet "
                            "(backbone.layer4.*) nor MobileNetV3-Large (backbone.16.*)")


def deeplabv3_from_torchvision(state_dict, *, aux_loss: bool | None = None, impl: str | None = None,
                               aux: bool | None = None) -> DeepLabV3:
    """Build the matching :class:`DeepLabV3` for a torchvision DeepLabV3 checkpoint and load it.

    The backbone, the number of classes and the auxiliary head are read from the checkpoint.
    ``aux_loss=False`` drops the auxiliary head explicitly (its keys are then ignored); ``None`` keeps
    what the checkpoint has (``aux``: deprecated alias). E.g. with torchvision's COCO weights::

        sd = torch.load("deeplabv3_resnet50_coco-cd0a2569.pth")
        model = atrous.models.deeplabv3_from_torchvision(sd).eval()
    """
    if aux is not None:
        warnings.warn("deeplabv3_from_torchvision: the argument aux= is deprecated, use aux_loss= "
                      "(torchvision's name)", DeprecationWarning, stacklevel=2)
        aux_loss = aux if aux_loss is None else aux_loss
    aux = aux_loss
    state = _state_dict(state_dict, "deeplabv3_from_torchvision")
    backbone, num_classes, has_aux = _infer_torchvision_deeplabv3(state)
    build_aux = has_aux if aux is None else bool(aux)
    model = torchvision_deeplabv3(backbone, num_classes, aux_loss=build_aux, impl=impl)
    return load_torchvision_deeplabv3(model, state, strict_aux=aux is not False)


# ---- torchvision: ImageNet backbones ---------------------------------------------------------------

def load_torchvision_backbone(model: nn.Module, state_dict) -> nn.Module:
    """Load a torchvision ImageNet classification checkpoint (``resnet50``, ``resnet101``,
    ``mobilenet_v3_large``) into our backbone (or a DeepLab model's backbone), leaving out its
    classifier (``fc.*`` / ``classifier.*``). This is how the papers start: ImageNet-pretrained
    backbone, randomly initialised ASPP and decoder. Returns ``model``.
    """
    where = "load_torchvision_backbone"
    backbone = getattr(model, "backbone", model)
    if isinstance(backbone, ResNet):
        drop, source = r"^fc\.", "torchvision resnet"
    elif isinstance(backbone, MobileNetV3):
        drop, source = r"^classifier\.", "torchvision mobilenet_v3_large"
    else:
        raise TypeError(f"{where}: expected a ResNet or MobileNetV3 backbone (or a model whose .backbone is "
                        f"one), got {type(backbone).__name__}")
    state, origin, dropped = _convert(_state_dict(state_dict, where), [], drop)
    _load_exact(backbone, state, origin, where=where, source=source, dropped=dropped)
    return model
