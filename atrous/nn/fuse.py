"""Inference fusion: BatchNorm folded into the preceding convolution; the switch to a fused separable op."""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn

from . import layers

__all__ = ["fold_batchnorm", "fuse"]


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Fold an eval-mode BatchNorm into the convolution before it, in place; returns ``conv``.

    ``bn(conv(x)) = s * (W x + b - mean) + beta`` with ``s = gamma / sqrt(var + eps)`` per output
    channel, so the folded conv has ``W' = s W`` (row by row of the output channels, which is the
    same for dense, pointwise and depthwise weights of shape (C_out, C_in / groups, kh, kw)) and
    ``b' = s (b - mean) + beta``.
    """
    if not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"fold_batchnorm: expected bn to be an nn.BatchNorm2d, got {type(bn).__name__}")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_batchnorm: expected bn with running statistics (track_running_stats=True)")
    if bn.num_features != conv.out_channels:
        raise ValueError(
            f"fold_batchnorm: expected bn.num_features == conv.out_channels, got {bn.num_features} "
            f"and {conv.out_channels}")
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        weight = conv.weight * scale.reshape(-1, 1, 1, 1)  # (C_out, C_in / groups, kh, kw)
        conv.weight = nn.Parameter(weight.to(conv.weight.dtype))
        conv.bias = nn.Parameter(shift.to(conv.weight.dtype))
    return conv


def _is_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and type(module) is not nn.ConvTranspose2d


def _pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) child names where the BN reads the conv's output directly.

    Modules declare them in ``fuse_pairs`` (e.g. a ResNet bottleneck); in an ``nn.Sequential`` a conv
    immediately followed by a BN is such a pair (ConvBNAct, ASPP branches, heads).
    """
    declared = getattr(module, "fuse_pairs", None)
    if declared is not None:
        return list(declared)
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        return [(a, b) for a, b in itertools.pairwise(names)
                if _is_conv(module._modules[a]) and isinstance(module._modules[b], nn.BatchNorm2d)]
    return []


def fuse(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """An eval-mode model with every BatchNorm folded into the convolution before it.

    Returns a deep copy (the original keeps training normally) unless ``inplace=True``. Folded BNs
    become ``nn.Identity``; convolutions gain a bias. Eval-mode outputs are unchanged up to rounding.
    Depthwise convolutions fold the same way (one scale per output channel).

    Separable blocks (:class:`~atrous.nn.AtrousSeparableConv2d`) whose two BNs were folded switch to
    the fused operator ``atrous.ops.separable_conv2d`` when that operator exists (it computes the
    depthwise conv tile by tile and feeds the pointwise GEMM without writing the intermediate map);
    they keep running as depthwise then pointwise under ``impl="torch"``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fuse: expected model to be an nn.Module, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    for module in list(model.modules()):
        for conv_name, bn_name in _pairs(module):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if not _is_conv(conv) or not isinstance(bn, nn.BatchNorm2d):
                continue  # already folded, or a declared pair that this model variant lacks
            fold_batchnorm(conv, bn)
            setattr(module, bn_name, nn.Identity())
    _switch_separable_blocks(model)
    return model


def _switch_separable_blocks(model: nn.Module) -> None:
    # FUSED-OPERATOR SWITCH: engages when atrous.ops.separable_conv2d exists (see
    # AtrousSeparableConv2d._forward_fused for the one call that uses it).
    if layers._ops is None or not hasattr(layers._ops, "separable_conv2d"):
        return
    for m in model.modules():
        if (isinstance(m, layers.AtrousSeparableConv2d)
                and isinstance(m.bn_dw, nn.Identity) and isinstance(m.bn_pw, nn.Identity)
                and isinstance(m.act_dw, (nn.Identity, nn.ReLU))):
            m.fused_op = True
