"""Transforms of a built model, in place and keeping its weights: :func:`undilate` (every rate to 1)."""

from __future__ import annotations

from torch import nn

from ..nn import same_padding
from .aspp import ASPP

__all__ = ["undilate"]


def undilate(model: nn.Module) -> nn.Module:
    """Set the dilation of every convolution in ``model`` to 1, in place, keeping strides and sizes.

    Padding shrinks with the rate (``(k - 1) // 2``) so every map keeps its size; ASPP modules' ``rates``
    become 1 as well. The weights are untouched: this is the same network without atrous convolution,
    the control of the receptive-field experiment. Returns ``model``.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.dilation != (1, 1):
            if isinstance(m.padding, str):
                raise ValueError(f"undilate: expected numeric padding, got {m.padding!r} in {m}")
            m.padding = tuple(same_padding(k) for k in m.kernel_size)
            m.dilation = (1, 1)
        if isinstance(m, ASPP):
            m.rates = tuple(1 for _ in m.rates)
    return model
