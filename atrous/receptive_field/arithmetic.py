"""Closed forms of receptive-field arithmetic along one axis: kernel span, output size, (r, j, start) growth.

Conventions (one spatial axis; both axes are handled independently):

* a window op (convolution or pooling) has kernel ``k``, stride ``s``, padding ``p`` (left/top side),
  dilation ``d``; its effective kernel is ``k_eff = d (k - 1) + 1 = k + (k - 1)(d - 1)``;
* feature size: ``n_l = floor((n_{l-1} + 2 p - k_eff) / s) + 1`` (``ceil`` with ``ceil_mode``);
* RF size:  ``r_l = r_{l-1} + (k_eff - 1) j_{l-1}``, with ``r_0 = 1``;
* jump (effective stride, input pixels between neighbouring outputs): ``j_l = j_{l-1} s``, ``j_0 = 1``;
* start (centre of the RF of output 0, in input pixel coordinates):
  ``start_l = start_{l-1} + ((k_eff - 1) / 2 - p) j_{l-1}``, ``start_0 = 0``. It can be negative
  (the centre lies in the padding) and is a half-integer when some ``k_eff`` is even.
* output ``i`` then sees input pixels ``start + i j - (r - 1) / 2 .. start + i j + (r - 1) / 2``.

This module imports nothing from atrous (standard library only), so every layer may use it: the ops'
argument checks, the reference implementation and the analysis share ``_pair`` and ``conv_output_size``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["AxisRF", "compose", "conv_output_size", "effective_kernel_size", "hdc_max_distance",
           "reachable_offsets", "union"]


def _is_int(value: Any) -> bool:
    # numbers.Integral covers numpy integers; bool is an int but never a size.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _pair(value: Any, name: str, op: str | None = None) -> tuple[int, int]:
    """An int or a pair of ints (tuple, list, torch.Size) -> ``(h, w)``.

    Anything else raises naming the argument: with ``op`` (the atrous ops) a TypeError
    ``"{op}: expected {name} to be an int or a pair of ints, got ..."``, as F.conv2d would; without it
    (the analysis, where a bad value is a model it cannot read) a ValueError."""
    if _is_int(value):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        return int(value[0]), int(value[1])
    if op is not None:
        raise TypeError(f"{op}: expected {name} to be an int or a pair of ints, got {value!r}")
    raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")


def effective_kernel_size(kernel_size: int, dilation: int = 1) -> int:
    """Span of a dilated kernel: ``k_eff = d (k - 1) + 1 = k + (k - 1)(d - 1)``."""
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    return dilation * (kernel_size - 1) + 1


def conv_output_size(
    size: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output length of a convolution/pooling: ``floor((n + 2p - k_eff) / s) + 1``.

    With ``ceil_mode`` (pooling) the division rounds up, and, as in PyTorch, a last window that would
    start in the right padding is dropped.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    k_eff = effective_kernel_size(kernel_size, dilation)
    span = size + 2 * padding - k_eff
    # PyTorch's pooling_output_shape: ceil_mode rounds the division up (a window may hang over the end)
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    if (span < 0 and not ceil_mode) or out < 1:
        raise ValueError(
            f"input size {size} with padding {padding} is smaller than the effective kernel {k_eff}"
        )
    return out


@dataclass(frozen=True)
class AxisRF:
    """Theoretical (unclipped) receptive field along one axis.

    ``size`` r: pixels spanned by one output's RF; ``jump`` j: input pixels between neighbouring
    outputs; ``start``: centre of output 0's RF in input coordinates (may be negative or a half-integer).
    """

    size: int = 1
    jump: int = 1
    start: float = 0.0

    def then(self, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> AxisRF:
        """The RF after one more window op:
        ``r' = r + (k_eff - 1) j``, ``j' = j s``, ``start' = start + ((k_eff - 1)/2 - p) j``."""
        k_eff = effective_kernel_size(kernel_size, dilation)
        return AxisRF(
            size=self.size + (k_eff - 1) * self.jump,
            jump=self.jump * stride,
            start=self.start + ((k_eff - 1) / 2 - padding) * self.jump,
        )

    @property
    def first(self) -> int:
        """First input pixel of output 0's RF: ``start - (r - 1) / 2`` (always an integer)."""
        return round(self.start - (self.size - 1) / 2)

    def centre(self, i: int) -> float:
        """Centre of output ``i``'s RF: ``start + i j``."""
        return self.start + i * self.jump

    def interval(self, i: int) -> tuple[int, int]:
        """Input pixels ``(lo, hi)`` (inclusive, unclipped) seen by output ``i``."""
        lo = self.first + i * self.jump
        return lo, lo + self.size - 1


def compose(layers: Iterable[Sequence[int]], rf: AxisRF | None = None) -> list[AxisRF]:
    """RF after each layer of a chain given as ``(kernel, stride, padding, dilation)`` tuples
    (stride, padding and dilation may be left out: ``(3,)`` is a 3-tap, stride-1, unpadded window)."""
    rf = rf or AxisRF()
    out = []
    for n, layer in enumerate(layers):
        if not 1 <= len(layer) <= 4:
            raise ValueError(f"layers[{n}] must be (kernel, stride, padding, dilation), got {layer!r}")
        rf = rf.then(*layer)
        out.append(rf)
    return out


def union(rfs: Sequence[AxisRF]) -> AxisRF | None:
    """Union of equally-strided RFs (parallel branches): the hull of the first outputs' intervals."""
    if len({r.jump for r in rfs}) != 1:
        return None
    lo = min(r.first for r in rfs)
    hi = max(r.first + r.size - 1 for r in rfs)
    return AxisRF(size=hi - lo + 1, jump=rfs[0].jump, start=(lo + hi) / 2)


def reachable_offsets(rates: Sequence[int], kernel_size: int = 3) -> tuple[int, ...]:
    """Input offsets a stack of ``kernel_size`` convolutions with ``rates`` can reach from an output:
    ``{sum a_i r_i : a_i in -(k // 2) .. k // 2}``, sorted. Gaps in it are the gridding holes."""
    half = kernel_size // 2
    offsets = {0}
    for r in rates:
        offsets = {o + a * r for o in offsets for a in range(-half, half + 1)}
    return tuple(sorted(offsets))


def hdc_max_distance(rates: Sequence[int], kernel_size: int = 3) -> int:
    """``M_2`` of the hybrid dilated convolution criterion (Wang et al. 2018, "Understanding
    Convolution for Semantic Segmentation"): ``M_n = r_n``,
    ``M_i = max(M_{i+1} - 2 r_i, M_{i+1} - 2 (M_{i+1} - r_i), r_i)``. The schedule leaves no holes when
    ``M_2 <= kernel_size``."""
    rates = [int(r) for r in rates]
    if not rates or min(rates) < 1:
        raise ValueError(f"hdc_max_distance: expected one or more positive rates, got {rates}")
    m = rates[-1]
    for r in reversed(rates[1:-1]):
        m = max(m - 2 * r, m - 2 * (m - r), r)
    return m
