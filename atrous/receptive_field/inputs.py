"""How the analyses feed a model: input size and channels, dtype and device, eval mode, the output tensor."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .arithmetic import _pair

__all__ = ["infer_in_channels"]


def _size(t: torch.Tensor) -> tuple[int, int]:
    return int(t.shape[-2]), int(t.shape[-1])


def _input_size(input_size: Any) -> tuple[int, int]:
    try:
        H, W = _pair(tuple(input_size) if not isinstance(input_size, int) else input_size, "input_size")
    except (TypeError, ValueError):
        raise ValueError(
            f"input_size must be an int or (H, W) of positive ints, got {input_size!r}"
        ) from None
    if H < 1 or W < 1:
        raise ValueError(f"input_size must be positive, got {input_size!r}")
    return H, W


def infer_in_channels(model: nn.Module) -> int:
    """Input channels of the model: those of the first module (in registration order) with a 4-D
    weight, times its groups; 3 when there is none."""
    for m in model.modules():
        w = getattr(m, "weight", None)
        transposed = isinstance(m, nn.modules.conv._ConvTransposeNd)
        if isinstance(w, torch.Tensor) and w.dim() == 4 and not transposed:
            return int(w.shape[1]) * int(getattr(m, "groups", 1))
    return 3


def _float_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype, p.device
    return torch.float32, torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def _select_output(out: Any, output: str | int | Callable[[Any], torch.Tensor] | None) -> torch.Tensor:
    """The tensor to analyse: ``output`` picks it (key, index or function); by default a tensor as is,
    ``out['out']`` or the first value of a dict, the first tensor of a tuple/list."""
    if callable(output):
        out = output(out)
    elif output is not None:
        out = out[output]
    elif isinstance(out, Mapping):
        out = out["out"] if "out" in out else next(iter(out.values()))
    elif isinstance(out, (tuple, list)):
        out = next((t for t in out if isinstance(t, torch.Tensor)), None)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model output must contain a tensor; got {type(out).__name__} (pass output=...)")
    return out

