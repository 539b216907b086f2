"""Receptive fields measured from gradients: the support of one output's gradient, with max pooling
measured as an average over the same taps (a max routes the gradient to one tap only)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .arithmetic import _pair, conv_output_size, effective_kernel_size
from .handlers import _bind
from .inputs import _float_dtype_device, _input_size, _select_output, _size, infer_in_channels
from .report import Box, ReceptiveFieldReport, UnsupportedModelError

__all__ = ["MeasuredRF", "RFComparison", "compare_with_measurement", "measure_receptive_field",
           "measure_receptive_fields"]


@dataclass
class MeasuredRF:
    """Gradient-measured RF of one output position: ``mask`` marks the input pixels with a non-zero
    gradient of ``output[0, :, y, x].sum()``; ``box`` is its bounding box (None if empty)."""

    position: tuple[int, int]
    output_size: tuple[int, int]
    input_size: tuple[int, int]
    gradient: np.ndarray
    mask: np.ndarray
    box: Box | None

    @property
    def size(self) -> tuple[int, int]:
        if self.box is None:
            return 0, 0
        return self.box[2] - self.box[0] + 1, self.box[3] - self.box[1] + 1

    @property
    def centre(self) -> tuple[float, float] | None:
        if self.box is None:
            return None
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


def _avg_like_max_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """An average over exactly the taps a max pool reads (dilation and ceil_mode included): a depthwise
    convolution with constant weights, padded so that the output size matches."""
    k, d, p = _pair(kernel_size, "kernel_size"), _pair(dilation, "dilation"), _pair(padding, "padding")
    s = _pair(stride if stride not in (None, [], ()) else kernel_size, "stride")
    n = _size(x)
    out = [conv_output_size(n[a], k[a], s[a], p[a], d[a], ceil_mode) for a in (0, 1)]
    extra = [max(0, (out[a] - 1) * s[a] + effective_kernel_size(k[a], d[a]) - n[a] - 2 * p[a])
             for a in (0, 1)]
    x = F.pad(x, (p[1], p[1] + extra[1], p[0], p[0] + extra[0]))
    C = x.shape[1]
    w = torch.full((C, 1, *k), 1.0 / (k[0] * k[1]), dtype=x.dtype, device=x.device)
    y = F.conv2d(x, w, stride=s, dilation=d, groups=C)
    return y[..., : out[0], : out[1]]


class _MaxToAverage(TorchFunctionMode):
    """During measurement, max pooling becomes an average over the same taps: a max routes the gradient
    to one tap only, which would hide the rest of the support."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in ("max_pool2d", "max_pool2d_with_indices"):
            names = ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]
            defaults = {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False}
            v = _bind(args, kwargs, names, {**defaults, "return_indices": False})
            if v["return_indices"] or name.endswith("indices"):
                raise UnsupportedModelError(
                    "max pooling with return_indices (for unpooling) cannot be measured"
                )
            return _avg_like_max_pool(v["input"], v["kernel_size"], v["stride"], v["padding"],
                                      v["dilation"], v["ceil_mode"])
        if name in ("adaptive_max_pool2d", "adaptive_max_pool2d_with_indices"):
            v = _bind(args, kwargs, ["input", "output_size", "return_indices"], {"return_indices": False})
            if v["return_indices"] or name.endswith("indices"):
                raise UnsupportedModelError("adaptive max pooling with return_indices cannot be measured")
            return F.adaptive_avg_pool2d(v["input"], v["output_size"])
        if name == "amax":
            v = _bind(args, kwargs, ["input", "dim", "keepdim"], {"dim": (), "keepdim": False})
            return torch.mean(v["input"], dim=v["dim"], keepdim=v["keepdim"])
        return func(*args, **kwargs)


def _measurement_copy(model: nn.Module) -> nn.Module:
    """A float64 eval-mode copy with every path positive: weights of 2+ dims = 1 / fan_in (each conv
    averages its taps, so values stay O(1) and gradients do not overflow), 1-D weights = 1, biases = 0,
    BN running stats = identity."""
    m = copy.deepcopy(model).to(torch.float64).eval()
    with torch.no_grad():
        for mod in m.modules():
            for name, p in mod.named_parameters(recurse=False):
                if not p.is_floating_point():
                    continue
                if p.dim() >= 2:
                    p.fill_(1.0 / p[0].numel())
                elif "bias" in name:
                    p.zero_()
                else:
                    p.fill_(1.0)
            for name, b in mod.named_buffers(recurse=False):
                if name == "running_mean":
                    b.zero_()
                elif name == "running_var":
                    b.fill_(1.0)
    m.requires_grad_(False)
    return m


def measure_receptive_fields(
    model: nn.Module,
    input_size: int | tuple[int, int],
    positions: Iterable[tuple[int, int]] | None = None,
    *,
    in_channels: int | None = None,
    output: str | int | Callable[[Any], torch.Tensor] | None = None,
) -> list[MeasuredRF]:
    """Measure the RF of several output positions (default: the central one) from gradients.

    On a float64 copy with non-negative weights (see ``_measurement_copy``), a ones image and max pooling
    replaced by averaging, every path from an input pixel to an output carries a positive product, so
    no gradients cancel and the support ``{pixels: d output[0, :, y, x].sum() / d pixel != 0}`` is exact:
    it is the set of pixels connected to that output, clipped to the image. Max pooling inside compiled ops
    cannot be replaced and would show only one tap. Deep paths multiply many averaging weights; float64
    holds them for several hundred 3x3 layers.
    """
    H, W = _input_size(input_size)
    if in_channels is None:
        in_channels = infer_in_channels(model)
    m = _measurement_copy(model)
    device = _float_dtype_device(m)[1]
    x = torch.ones(1, in_channels, H, W, dtype=torch.float64, device=device, requires_grad=True)
    with _MaxToAverage():
        y = _select_output(m(x), output)
    if y.dim() != 4:
        raise UnsupportedModelError(f"the output is {y.dim()}-D; measurement needs (N, C, H, W)")
    size = _size(y)
    positions = [((size[0] - 1) // 2, (size[1] - 1) // 2)] if positions is None else list(positions)
    results = []
    for n, (py, px) in enumerate(positions):
        if not (0 <= py < size[0] and 0 <= px < size[1]):
            raise IndexError(f"positions[{n}] = ({py}, {px}) is outside the {size[0]}x{size[1]} output")
        (g,) = torch.autograd.grad(y[0, :, py, px].sum(), x, retain_graph=n + 1 < len(positions))
        grad = g[0].sum(0).cpu().numpy()
        mask = grad != 0
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        box = None if rows.size == 0 else (int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1]))
        results.append(MeasuredRF((py, px), size, (H, W), grad, mask, box))
    return results


def measure_receptive_field(
    model: nn.Module,
    input_size: int | tuple[int, int],
    position: tuple[int, int] | None = None,
    *,
    in_channels: int | None = None,
    output: str | int | Callable[[Any], torch.Tensor] | None = None,
) -> MeasuredRF:
    """Gradient-measured RF of one output position (default: the central one); see
    ``measure_receptive_fields``. Compare with the analysis via ``input_box_clipped`` (always equal) or,
    when the RF fits inside the image, ``input_box``."""
    return measure_receptive_fields(model, input_size, None if position is None else [position],
                                    in_channels=in_channels, output=output)[0]


@dataclass
class RFComparison:
    """The gradient measurement of one output position against the analysis of the same row:
    ``clipped`` (must equal the measured box) and, when the row has a theory, the unclipped ``theory``."""

    measured: MeasuredRF
    clipped: Box | None
    theory: Box | None

    @property
    def agrees(self) -> bool:
        return self.measured.box == self.clipped

    @property
    def theory_inside(self) -> bool:
        """The unclipped box lies inside the image, so it too equals the measurement."""
        H, W = self.measured.input_size
        box = self.theory
        return box is not None and box[0] >= 0 and box[1] >= 0 and box[2] < H and box[3] < W

    def __str__(self) -> str:
        m = self.measured
        lines = [
            f"measured from gradients at output {m.position}: box {m.box}, {m.size[0]}x{m.size[1]} pixels",
            f"analytic (clipped to the image):        box {self.clipped}  -> "
            + ("agrees" if self.agrees else "DISAGREES"),
        ]
        if self.theory is not None:
            lines.append(f"theory (unclipped):                     box {self.theory}  -> "
                         + ("inside the image, so it equals the measurement" if self.theory_inside else
                            "extends past the image; the measurement sees its clipped part"))
        return "\n".join(lines)


def compare_with_measurement(
    model: nn.Module,
    report: ReceptiveFieldReport,
    position: tuple[int, int] | None = None,
    *,
    in_channels: int | None = None,
) -> RFComparison:
    """Measure the RF of the model's output at ``position`` (default: the central one) from gradients
    and set it beside the analysis in ``report`` (of the same model and input size)."""
    row = report.output
    pos = row.centre_position if position is None else position
    measured = measure_receptive_field(model, report.input_size, pos, in_channels=in_channels)
    theory = row.box(*pos) if row.rf is not None else None
    return RFComparison(measured, row.box_clipped(*pos), theory)
