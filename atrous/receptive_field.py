"""Receptive fields of convolutional networks: exact theory with dilation, gradient measurement, effective RF.

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

These "theoretical" numbers are *unclipped*: they describe a network on an endless image. At borders the
pixels that actually influence an output are fewer (the rest is zero padding); ``input_box_clipped`` gives
the exact bounding box of those pixels, which is what a gradient measures. Measure at a central output,
whose RF lies inside the image, and the two agree.

``receptive_field`` traces any ``nn.Module`` (see its docstring for what it understands), ``measure_*``
and ``effective_receptive_field`` use gradients, so they work on any differentiable model and serve as
the cross-check of the analysis.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

__all__ = [
    "TEACHING_STACKS",
    "AxisRF",
    "EffectiveRF",
    "ImagePooling",
    "LayerRF",
    "MeasuredRF",
    "Parallel",
    "ReceptiveFieldReport",
    "UnsupportedModelError",
    "aspp_stack",
    "atrous_stack",
    "compose",
    "conv_output_size",
    "conv_stack",
    "effective_kernel_size",
    "effective_receptive_field",
    "format_table",
    "gridding_stack",
    "hybrid_stack",
    "infer_in_channels",
    "input_box",
    "input_box_clipped",
    "measure_receptive_field",
    "measure_receptive_fields",
    "multigrid_stack",
    "plain_stack",
    "receptive_field",
    "strided_stack",
]

Box = tuple[int, int, int, int]  # (top, left, bottom, right), inclusive


class UnsupportedModelError(ValueError):
    """The analysis met an operation it cannot describe, or a question it cannot answer exactly."""


# --------------------------------------------------------------------------------------------------
# Arithmetic
# --------------------------------------------------------------------------------------------------


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


def _union(rfs: Sequence[AxisRF]) -> AxisRF | None:
    """Union of equally-strided RFs (parallel branches): the hull of the first outputs' intervals."""
    if len({r.jump for r in rfs}) != 1:
        return None
    lo = min(r.first for r in rfs)
    hi = max(r.first + r.size - 1 for r in rfs)
    return AxisRF(size=hi - lo + 1, jump=rfs[0].jump, start=(lo + hi) / 2)


# --------------------------------------------------------------------------------------------------
# Per-layer records and the report
# --------------------------------------------------------------------------------------------------

_BIG = np.int64(1) << 62  # "empty" marker: lo = +BIG, hi = -BIG, so min/max ignore it


@dataclass(frozen=True, eq=False)
class LayerRF:
    """One row of the analysis: a feature map produced by a module or a functional op.

    ``rf`` is the theory ``(vertical, horizontal)`` or ``None`` where it does not exist (after
    upsampling, uneven adaptive pooling or broadcasting the map is not translation-equivariant, so no
    single ``(r, j, start)`` describes it) or where the op is unsupported. ``parents`` index the rows this
    one reads; more than one means a union of branches (concatenation, addition).
    """

    index: int
    name: str
    op: str
    params: str
    size: tuple[int, int]
    channels: int | None
    parents: tuple[int, ...]
    rf: tuple[AxisRF, AxisRF] | None
    supported: bool = True
    note: str = ""
    # Exact clipped support per output position and axis (bounding boxes; lo > hi means empty).
    lo: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    hi: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return self.name or "<model>"

    @property
    def centre_position(self) -> tuple[int, int]:
        """The central output position ``((H - 1) // 2, (W - 1) // 2)``."""
        return (self.size[0] - 1) // 2, (self.size[1] - 1) // 2

    def _check_position(self, y: int, x: int) -> None:
        if not (0 <= y < self.size[0] and 0 <= x < self.size[1]):
            raise IndexError(
                f"output position (y={y}, x={x}) is outside the {self.size[0]}x{self.size[1]} map "
                f"of #{self.index}"
            )

    def _require_supported(self) -> None:
        if not self.supported:
            raise UnsupportedModelError(
                f"#{self.index} {self.label} ({self.op}) cannot be analysed: {self.note}"
            )

    def box(self, y: int, x: int) -> Box:
        """Unclipped theoretical RF of output ``(y, x)`` as ``(top, left, bottom, right)``, inclusive."""
        self._require_supported()
        if self.rf is None:
            raise UnsupportedModelError(
                f"#{self.index} {self.label} ({self.op}) is not translation-equivariant "
                f"({self.note or 'upsampling or broadcasting upstream'}), "
                "so it has no unclipped theoretical RF; use input_box_clipped"
            )
        self._check_position(y, x)
        top, bottom = self.rf[0].interval(y)
        left, right = self.rf[1].interval(x)
        return top, left, bottom, right

    def box_clipped(self, y: int, x: int) -> Box | None:
        """Exact bounding box of the input pixels that influence output ``(y, x)`` (what a gradient
        measures), or ``None`` when it sees only padding. Contained in ``box`` intersected with the image."""
        self._require_supported()
        self._check_position(y, x)
        assert self.lo is not None and self.hi is not None
        top, bottom = int(self.lo[0][y]), int(self.hi[0][y])
        left, right = int(self.lo[1][x]), int(self.hi[1][x])
        if top > bottom or left > right:
            return None
        return top, left, bottom, right

    def size_at(self, y: int, x: int) -> tuple[int, int]:
        """Height and width of the clipped RF of output ``(y, x)`` (0 when empty)."""
        b = self.box_clipped(y, x)
        return (0, 0) if b is None else (b[2] - b[0] + 1, b[3] - b[1] + 1)


@dataclass
class ReceptiveFieldReport:
    """The per-layer analysis of a model for one input size; ``output`` is the model's output row."""

    input_size: tuple[int, int]
    layers: list[LayerRF]
    output_index: int | None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def output(self) -> LayerRF:
        if self.output_index is None:
            raise UnsupportedModelError("the model output could not be traced: " + "; ".join(self.problems))
        return self.layers[self.output_index]

    @property
    def supported(self) -> bool:
        return self.output_index is not None and self.layers[self.output_index].supported

    def __getitem__(self, key: int | str) -> LayerRF:
        """Row by index, or the last row produced by the module with that qualified name."""
        if isinstance(key, int):
            return self.layers[key]
        rows = [r for r in self.layers if r.name == key]
        if not rows:
            raise KeyError(f"no layer named {key!r}; names: {sorted({r.name for r in self.layers})}")
        return rows[-1]

    def __len__(self) -> int:
        return len(self.layers)

    def branches(self, layer: int | str | LayerRF) -> list[LayerRF]:
        """The rows a union row merges (one per branch); a plain row returns its single parent."""
        row = layer if isinstance(layer, LayerRF) else self[layer]
        return [self.layers[i] for i in row.parents]

    def ancestors(self, layer: int | str | LayerRF | None = None) -> list[LayerRF]:
        """Rows the given row (default: output) depends on, itself included, in execution order."""
        row = self.output if layer is None else layer if isinstance(layer, LayerRF) else self[layer]
        seen, stack = set(), [row.index]
        while stack:
            i = stack.pop()
            if i not in seen:
                seen.add(i)
                stack.extend(self.layers[i].parents)
        return [self.layers[i] for i in sorted(seen)]

    def table(self) -> str:
        return format_table(self)

    def __str__(self) -> str:
        return self.table()


def _rf_of(info: ReceptiveFieldReport | LayerRF) -> LayerRF:
    if isinstance(info, ReceptiveFieldReport):
        return info.output
    if isinstance(info, LayerRF):
        return info
    raise TypeError(f"rf_info must be a ReceptiveFieldReport or LayerRF, got {type(info).__name__}")


def input_box(rf_info: ReceptiveFieldReport | LayerRF | tuple[AxisRF, AxisRF], y: int, x: int) -> Box:
    """Unclipped input box ``(top, left, bottom, right)`` (inclusive) seen by output ``(y, x)``:
    ``top = start_y + y j_y - (r_y - 1)/2``, ``bottom = top + r_y - 1``, likewise for columns.
    Accepts a report (its output), a row, or a ``(vertical, horizontal)`` pair of ``AxisRF``."""
    if isinstance(rf_info, tuple) and len(rf_info) == 2 and all(isinstance(a, AxisRF) for a in rf_info):
        top, bottom = rf_info[0].interval(y)
        left, right = rf_info[1].interval(x)
        return top, left, bottom, right
    return _rf_of(rf_info).box(y, x)


def input_box_clipped(rf_info: ReceptiveFieldReport | LayerRF, y: int, x: int) -> Box | None:
    """Exact bounding box of the image pixels that influence output ``(y, x)`` (padding excluded),
    or ``None`` if it sees only padding. Equals the gradient-measured support's bounding box."""
    return _rf_of(rf_info).box_clipped(y, x)


# --------------------------------------------------------------------------------------------------
# Tap maps: which parent positions each output position reads, per axis
# --------------------------------------------------------------------------------------------------


def _window_taps(n_out: int, k: int, s: int, p: int, d: int) -> np.ndarray:
    return np.arange(n_out, dtype=np.int64)[:, None] * s - p + np.arange(k, dtype=np.int64)[None, :] * d


def _identity_taps(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)[:, None]


def _broadcast_taps(n_out: int, n_in: int) -> np.ndarray:
    return np.zeros((n_out, 1), np.int64) if n_in == 1 else _identity_taps(n_out)


def _adaptive_taps(n_in: int, n_out: int) -> np.ndarray:
    # PyTorch's adaptive pooling windows: [floor(i n_in / n_out), ceil((i + 1) n_in / n_out)).
    i = np.arange(n_out, dtype=np.int64)
    starts = (i * n_in) // n_out
    ends = ((i + 1) * n_in + n_out - 1) // n_out
    width = int((ends - starts).max())
    taps = starts[:, None] + np.arange(width)[None, :]
    return np.where(taps < ends[:, None], taps, -1)


def _interp_taps(
    n_in: int, n_out: int, mode: str, align_corners: bool | None, scale: float | None
) -> np.ndarray:
    """Taps of F.interpolate along one axis, with PyTorch's own index arithmetic (``scale`` is the
    user's scale_factor when the kernel receives it) so the zero-weight neighbours agree with what a
    float64 gradient sees. -1 marks an absent tap."""
    i = np.arange(n_out, dtype=np.int64)
    if mode in ("nearest", "nearest-exact"):
        if n_out == n_in:
            return _identity_taps(n_out)
        if mode == "nearest" and n_out == 2 * n_in:
            return (i >> 1)[:, None]
        # the CPU kernel computes the scale and the index in float32
        s32 = np.float32(1.0 / scale) if scale else np.float32(n_in) / np.float32(n_out)
        if mode == "nearest":
            src = np.floor(i.astype(np.float32) * s32)
        else:
            src = np.floor(((i + 0.5) * np.float64(s32)).astype(np.float32))
        return np.minimum(src.astype(np.int64), n_in - 1)[:, None]
    assert mode == "bilinear"
    if n_out == n_in:  # the kernel copies
        return _identity_taps(n_out)
    if align_corners:
        ratio = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        src = ratio * i.astype(np.float64)
    else:
        ratio = 1.0 / scale if scale else n_in / n_out
        src = np.maximum(ratio * (i + 0.5) - 0.5, 0.0)
    # PyTorch floors with floorf, i.e. after rounding the float64 index to float32
    i0 = np.minimum(np.floor(src.astype(np.float32)).astype(np.int64), n_in - 1)
    lam = np.clip(src - i0, 0.0, 1.0)
    i1 = i0 + (i0 < n_in - 1)
    return np.stack([np.where(1.0 - lam != 0, i0, -1), np.where(lam != 0, i1, -1)], axis=1)


def _propagate(lo: np.ndarray, hi: np.ndarray, taps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box per output = hull of the boxes of the taps that land inside the parent map."""
    valid = (taps >= 0) & (taps < len(lo))
    safe = np.where(valid, taps, 0)
    return (
        np.where(valid, lo[safe], _BIG).min(axis=1),
        np.where(valid, hi[safe], -_BIG).max(axis=1),
    )


# --------------------------------------------------------------------------------------------------
# Tracing
# --------------------------------------------------------------------------------------------------

_CONST = -1  # state of tensors that do not depend on the input (parameters, buffers, constants)

# Ops that act on each position independently (or only across channels): the RF passes through.
# Binary ones among them merge their operands' RFs when more than one depends on the input.
_POINTWISE = frozenset(
    """relu relu_ relu6 leaky_relu leaky_relu_ elu elu_ selu selu_ celu celu_ gelu silu silu_ mish hardswish
    hardswish_ hardsigmoid hardsigmoid_ hardtanh hardtanh_ sigmoid sigmoid_ tanh tanh_ softplus softsign
    prelu rrelu threshold threshold_ logsigmoid glu dropout dropout_ dropout1d dropout2d dropout3d
    alpha_dropout feature_alpha_dropout batch_norm local_response_norm clone contiguous detach detach_ to
    float double half bfloat16 type type_as abs abs_ neg neg_ __neg__ __pos__ exp exp_ log log_ sqrt
    sqrt_ rsqrt rsqrt_ square square_ reciprocal reciprocal_ clamp clamp_ clip clip_ clamp_min clamp_min_
    clamp_max clamp_max_ add add_ __add__ __radd__ __iadd__ sub sub_ __sub__ __rsub__ __isub__ rsub mul
    mul_ __mul__ __rmul__ __imul__ div div_ __truediv__ __rtruediv__ __itruediv__ true_divide
    true_divide_ pow pow_ __pow__ __rpow__ maximum minimum where masked_fill masked_fill_ addcmul
    addcmul_ addcdiv addcdiv_ lerp lerp_ requires_grad_ cpu cuda nan_to_num nan_to_num_""".split()  # noqa: SIM905
)
# Normalisations whose statistics span the feature map: treated as pointwise, with a warning.
_SPATIAL_STATS = frozenset({"group_norm", "instance_norm", "layer_norm"})
_RESHAPES = frozenset(
    {"view", "reshape", "view_as", "reshape_as", "unflatten", "squeeze", "unsqueeze", "squeeze_",
     "unsqueeze_"}
)
_REDUCTIONS = frozenset({"mean", "sum", "amax", "amin", "max", "min", "logsumexp", "nanmean", "nansum"})


def _bind(args: tuple, kwargs: dict, names: Sequence[str], defaults: Mapping[str, Any] | None = None) -> dict:
    values = dict(defaults or {})
    values.update(zip(names, args))
    values.update(kwargs)
    return values


def _pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, (tuple, list, torch.Size)) and len(value) == 2 and all(
        isinstance(v, (int, np.integer)) for v in value
    ):
        return int(value[0]), int(value[1])
    raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")


def _fmt_pair(a: Any, b: Any) -> str:
    def one(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:g}"
        return str(v)

    return one(a) if a == b else f"{one(a)}x{one(b)}"


def _window_params(k, s, p, d) -> str:
    return f"k{_fmt_pair(*k)} s{_fmt_pair(*s)} p{_fmt_pair(*p)} d{_fmt_pair(*d)}"


_EXCLUDED_DUCKS = (nn.modules.conv._ConvTransposeNd, nn.Unfold, nn.Fold)


def _is_window_module(module: nn.Module) -> bool:
    """Modules the tracer treats as one window op, described by their own attributes."""
    if isinstance(module, _EXCLUDED_DUCKS):
        return False
    if isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return True
    return all(hasattr(module, a) for a in ("kernel_size", "stride", "padding", "dilation"))


@dataclass
class _Slot:
    ref: weakref.ref
    row: int


class _Tracer(TorchFunctionMode):
    """Propagates one RF record per tensor through every torch function call and through modules that
    describe their own window geometry (so their internals, e.g. compiled ops, are never looked at)."""

    def __init__(self, model: nn.Module, input_size: tuple[int, int]):
        super().__init__()
        self.layers: list[LayerRF] = []
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self._state: dict[int, _Slot] = {}
        self._stack: list[str] = []
        self._opaque = 0
        self._busy = False
        self._names = {id(m): n for n, m in model.named_modules()}
        self._const_ids = {id(t) for t in model.parameters()} | {id(t) for t in model.buffers()}
        for m in model.modules():  # plain tensor attributes (not registered) are constants too
            self._const_ids.update(id(v) for v in vars(m).values() if isinstance(v, torch.Tensor))
        H, W = input_size
        self.layers.append(
            LayerRF(0, "input", "input", "", (H, W), None, (), (AxisRF(), AxisRF()),
                    lo=(np.arange(H, dtype=np.int64), np.arange(W, dtype=np.int64)),
                    hi=(np.arange(H, dtype=np.int64), np.arange(W, dtype=np.int64)))
        )
        self._handles: list[Any] = []
        for m in model.modules():
            self._handles.append(m.register_forward_pre_hook(self._pre_hook))
            self._handles.append(m.register_forward_hook(self._post_hook, always_call=True))

    # -- tensor state ------------------------------------------------------------------------------
    def set(self, t: torch.Tensor, row: int) -> None:
        self._state[id(t)] = _Slot(weakref.ref(t), row)

    def get(self, t: torch.Tensor) -> int | None:
        slot = self._state.get(id(t))
        if slot is not None and slot.ref() is t:
            return slot.row
        return _CONST if id(t) in self._const_ids else None

    def remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    # -- rows ------------------------------------------------------------------------------------
    @property
    def where(self) -> str:
        return self._stack[-1] if self._stack else ""

    def unsupported(
        self, op: str, reason: str, parents: Sequence[int] = (), size=(0, 0), channels=None, name=None
    ) -> int:
        name = self.where if name is None else name
        row = LayerRF(len(self.layers), name, op, "", size, channels, tuple(parents), None, False, reason)
        self.layers.append(row)
        self.problems.append(f"#{row.index} {row.label} ({op}): {reason}")
        return row.index

    def add_row(self, op: str, params: str, edges: Sequence[tuple[int, np.ndarray, np.ndarray]],
                size: tuple[int, int], channels: int | None, rf: tuple[AxisRF, AxisRF] | None,
                note: str = "", name: str | None = None) -> int:
        """edges: (parent row, vertical taps, horizontal taps); several edges = union of branches."""
        los, his = [], []
        for axis in (0, 1):
            lo = np.full(size[axis], _BIG, np.int64)
            hi = np.full(size[axis], -_BIG, np.int64)
            for parent, *taps in edges:
                p = self.layers[parent]
                a, b = _propagate(p.lo[axis], p.hi[axis], taps[axis])
                lo, hi = np.minimum(lo, a), np.maximum(hi, b)
            los.append(lo)
            his.append(hi)
        row = LayerRF(len(self.layers), self.where if name is None else name, op, params, size, channels,
                      tuple(e[0] for e in edges), rf, True, note, lo=tuple(los), hi=tuple(his))
        self.layers.append(row)
        return row.index

    def window_row(self, parent: int, op: str, k, s, p, d, size, channels, name=None, ceil_mode=False,
                   extra=(0, 0), check_size=True, params: str | None = None) -> int:
        """A convolution/pooling row; checks the declared geometry against the produced size.
        ``extra``: padding on the right/bottom beyond ``p`` (padding='same' with an even span)."""
        prow = self.layers[parent]
        if not prow.supported:
            return parent
        params = params or _window_params(k, s, p, d)
        n_in = prow.size
        for axis in (0, 1) if check_size else ():
            try:
                n = n_in[axis] + extra[axis]
                expected = conv_output_size(n, k[axis], s[axis], p[axis], d[axis], ceil_mode)
            except ValueError as e:
                expected = f"an error ({e})"
            if expected != size[axis]:
                return self.unsupported(
                    op,
                    f"declares kernel_size={_fmt_pair(*k)}, stride={_fmt_pair(*s)}, "
                    f"padding={_fmt_pair(*p)}, dilation={_fmt_pair(*d)}{', ceil_mode' if ceil_mode else ''}, "
                    f"which maps {n_in[0]}x{n_in[1]} to {expected} along axis {axis}, "
                    f"but it produced {size[0]}x{size[1]}",
                    [parent], size, channels, name,
                )
        rf = None if prow.rf is None else tuple(prow.rf[a].then(k[a], s[a], p[a], d[a]) for a in (0, 1))
        taps = [_window_taps(size[a], k[a], s[a], p[a], d[a]) for a in (0, 1)]
        return self.add_row(op, params, [(parent, *taps)], size, channels, rf, name=name)

    # -- modules -----------------------------------------------------------------------------------
    def _pre_hook(self, module: nn.Module, args: tuple) -> None:
        self._stack.append(self._names.get(id(module), type(module).__name__))
        if self._opaque or _is_window_module(module):
            self._opaque += 1

    def _post_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        try:
            if self._opaque:
                self._opaque -= 1
                if self._opaque == 0:
                    self._busy = True
                    try:
                        self._window_module(module, args, output)
                    finally:
                        self._busy = False
        finally:
            self._stack.pop()

    def _window_module(self, module: nn.Module, args: tuple, output: Any) -> None:
        outs = [t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor)]
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if not outs or x is None:
            return
        parent = self.get(x)
        op = type(module).__name__
        if parent == _CONST:
            for t in outs:
                self.set(t, _CONST)
            return
        row = self._window_module_row(module, op, x, outs[0], parent)
        for t in outs:
            self.set(t, row)

    def _window_module_row(self, module, op, x, y, parent) -> int:
        if parent is None:
            return self.unsupported(op, _UNKNOWN_ORIGIN)
        if x.dim() != 4 or y.dim() != 4:
            reason = f"expects (N, C, H, W) tensors, got {x.dim()}-D in and {y.dim()}-D out"
            return self.unsupported(op, reason, [parent])
        size, channels = (int(y.shape[-2]), int(y.shape[-1])), int(y.shape[1])
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            return self.adaptive_row(parent, op, size, channels)
        try:
            k = _pair(module.kernel_size, "kernel_size")
            s = _pair(module.stride if module.stride is not None else module.kernel_size, "stride")
            d = _pair(getattr(module, "dilation", 1), "dilation")
            pad = module.padding
            ceil_mode = bool(getattr(module, "ceil_mode", False))
            mode = getattr(module, "padding_mode", "zeros")
            if mode != "zeros":
                reason = f"padding_mode={mode!r}: only zero padding keeps the support exact"
                return self.unsupported(op, reason, [parent], size, channels)
            p, extra = self.resolve_padding(pad, k, s, d)
        except ValueError as e:
            return self.unsupported(op, f"cannot read its geometry: {e}", [parent], size, channels)
        return self.window_row(parent, op, k, s, p, d, size, channels, ceil_mode=ceil_mode, extra=extra)

    @staticmethod
    def resolve_padding(pad, k, s, d) -> tuple[tuple[int, int], tuple[int, int]]:
        """(left/top padding, extra right/bottom padding) per axis."""
        if pad == "valid":
            return (0, 0), (0, 0)
        if pad == "same":
            if s != (1, 1):
                raise ValueError("padding='same' needs stride 1")
            # PyTorch puts total // 2 on the left/top (the odd pixel goes right/bottom).
            total = [d[a] * (k[a] - 1) for a in (0, 1)]
            return tuple(t // 2 for t in total), tuple(t % 2 for t in total)
        return _pair(pad, "padding"), (0, 0)

    def adaptive_row(self, parent: int, op: str, size, channels) -> int:
        prow = self.layers[parent]
        if not prow.supported:
            return parent
        n_in = prow.size
        rf = None
        if prow.rf is not None and all(n_in[a] % size[a] == 0 for a in (0, 1)):
            k = tuple(n_in[a] // size[a] for a in (0, 1))  # even windows: a k = s = n_in / n_out pooling
            rf = tuple(prow.rf[a].then(k[a], k[a], 0, 1) for a in (0, 1))
        taps = [_adaptive_taps(n_in[a], size[a]) for a in (0, 1)]
        params = f"-> {_fmt_pair(*size)}" + (" (global)" if size == (1, 1) else "")
        note = "" if rf is not None else "uneven adaptive windows"
        return self.add_row(op, params, [(parent, *taps)], size, channels, rf, note)

    # -- functions ---------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self._opaque or self._busy:
            return out
        self._busy = True
        try:
            self._record(func, args, kwargs, out)
        finally:
            self._busy = False
        return out

    def _record(self, func, args, kwargs, out) -> None:
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if not outs:
            return
        ins = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        states = [self.get(t) for t in ins]
        if all(s == _CONST for s in states):
            for t in outs:
                self.set(t, _CONST)
            return
        name = _op_name(func)
        rows = [s for s in states if s is not None and s != _CONST]
        bad = [r for r in rows if not self.layers[r].supported]
        if bad:
            row = bad[0]  # the first problem propagates; it is already reported
        elif any(s is None for s in states):
            row = self.unsupported(name, _UNKNOWN_ORIGIN, rows)
        else:
            try:
                row = _HANDLERS.get(name, _unknown_op)(self, name, args, kwargs, outs[0], ins, states)
            except Exception as e:  # noqa: BLE001 - an analysis gap must never crash the model's forward
                row = self.unsupported(name, f"analysis failed: {type(e).__name__}: {e}", rows)
        for t in outs:
            self.set(t, row)


def _op_name(func: Any) -> str:
    """Python-level name of a torch function; dispatcher ops (``torch.ops.ns.op``) keep their namespace
    unless it is aten, so e.g. ``atrous::atrous_conv2d`` stays distinct from ``conv2d``."""
    if isinstance(func, torch._ops.OpOverload):
        name = func._schema.name
    elif isinstance(func, torch._ops.OpOverloadPacket):
        name = func._qualified_op_name
    else:
        return getattr(func, "__name__", type(func).__name__)
    return name.removeprefix("aten::")


_UNKNOWN_ORIGIN = (
    "reads a tensor that depends on the input through an operation the tracer cannot see (a compiled op "
    "outside a module?); give that module kernel_size/stride/padding/dilation attributes describing it"
)


def _first_stateful(ins, states) -> tuple[torch.Tensor, int]:
    for t, s in zip(ins, states):
        if s is not None and s != _CONST:
            return t, s
    raise AssertionError("no input-dependent tensor")


def _size(t: torch.Tensor) -> tuple[int, int]:
    return int(t.shape[-2]), int(t.shape[-1])


def _unknown_op(tr: _Tracer, name, args, kwargs, out, ins, states) -> int:
    rows = [s for s in states if s is not None and s != _CONST]
    size = _size(out) if out.dim() == 4 else (0, 0)
    reason = "not a spatial op the analysis knows (see receptive_field's docstring)"
    return tr.unsupported(name, reason, rows, size)


def _merge(tr: _Tracer, name, out, ins, states) -> int:
    """Pointwise or merging op: union of the input-dependent operands' RFs, broadcasting 1-pixel axes."""
    pairs = [(t, s) for t, s in zip(ins, states) if s is not None and s != _CONST]
    if out.dim() != 4 or any(t.dim() != 4 for t, _ in pairs):
        return tr.unsupported(name, "expects (N, C, H, W) tensors", [s for _, s in pairs])
    size = _size(out)
    unique: dict[int, torch.Tensor] = {}
    for t, s in pairs:
        unique.setdefault(s, t)
    if len(unique) == 1:
        (s, t), = unique.items()
        if _size(t) == size:
            return s  # RF unchanged: no new row
    edges, rfs, broadcast = [], [], False
    for s, t in unique.items():
        n_in = _size(t)
        if any(n_in[a] not in (1, size[a]) for a in (0, 1)):
            return tr.unsupported(name, f"operand of size {n_in} does not broadcast to {size}", list(unique))
        broadcast |= n_in != size
        edges.append((s, _broadcast_taps(size[0], n_in[0]), _broadcast_taps(size[1], n_in[1])))
        rfs.append(tr.layers[s].rf)
    rf = None
    if not broadcast and all(r is not None for r in rfs):
        axes = [_union([r[a] for r in rfs]) for a in (0, 1)]
        rf = None if None in axes else tuple(axes)
    if broadcast:
        note = "broadcast"
    else:
        note = "branch strides differ" if rf is None and all(r is not None for r in rfs) else ""
    params = "union " + ",".join(f"#{s}" for s in unique) if len(unique) > 1 else "broadcast"
    return tr.add_row(name, params, edges, size, int(out.shape[1]), rf, note)


def _pointwise(tr, name, args, kwargs, out, ins, states) -> int:
    if name in _SPATIAL_STATS:
        where = tr.where or "<model>"
        tr.warnings.append(f"{name} in {where}: its statistics span the feature map; treated as pointwise")
    return _merge(tr, name, out, ins, states)


def _conv2d(tr, name, args, kwargs, out, ins, states) -> int:
    v = _bind(args, kwargs, ["input", "weight", "bias", "stride", "padding", "dilation", "groups"],
              {"stride": 1, "padding": 0, "dilation": 1})
    if tr.get(v["input"]) in (None, _CONST) or tr.get(v["weight"]) != _CONST:
        rows = [s for s in states if s not in (None, _CONST)]
        return tr.unsupported(name, "the weight depends on the input (dynamic filters)", rows)
    parent = tr.get(v["input"])
    k = _pair(tuple(v["weight"].shape[-2:]), "kernel_size")
    s, d = _pair(v["stride"], "stride"), _pair(v["dilation"], "dilation")
    p, extra = tr.resolve_padding(v["padding"], k, s, d)
    return tr.window_row(parent, name, k, s, p, d, _size(out), int(out.shape[1]), extra=extra)


# Argument names of the atrous operators (csrc/ops.cpp): only the geometry matters here.
_ATROUS_ARGS = {
    "atrous::depthwise_conv2d": ["input", "weight", "bias", "stride", "padding", "dilation", "algo"],
    "atrous::atrous_conv2d": ["input", "weight", "bias", "stride", "padding", "dilation", "algo"],
    "atrous::pointwise_conv2d": ["input", "weight", "bias", "algo"],
    # The fused separable op: its receptive field is the depthwise stage's (the 1x1 adds none).
    "atrous::separable_conv2d": ["input", "weight", "bias", "pw_weight", "pw_bias", "stride", "padding",
                                 "dilation", "activation"],
}


def _atrous_op(tr, name, args, kwargs, out, ins, states) -> int:
    names = next(v for k, v in _ATROUS_ARGS.items() if name.startswith(k))
    v = _bind(args, kwargs, names, {"stride": 1, "padding": 0, "dilation": 1})
    return _conv2d(tr, name, (), {k: v.get(k, d) for k, d in
                                  (("input", None), ("weight", None), ("bias", None), ("stride", 1),
                                   ("padding", 0), ("dilation", 1))}, out, ins, states)


def _max_pool2d(tr, name, args, kwargs, out, ins, states) -> int:
    v = _bind(args, kwargs, ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode"],
              {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False})
    return _pool(tr, name, v, out, ins, states)


def _avg_pool2d(tr, name, args, kwargs, out, ins, states) -> int:
    v = _bind(args, kwargs, ["input", "kernel_size", "stride", "padding", "ceil_mode"],
              {"stride": None, "padding": 0, "ceil_mode": False})
    return _pool(tr, name, v, out, ins, states)


def _pool(tr, name, v, out, ins, states) -> int:
    _, parent = _first_stateful(ins, states)
    k = _pair(v["kernel_size"], "kernel_size")
    s = _pair(v["stride"] if v["stride"] not in (None, [], ()) else v["kernel_size"], "stride")
    p, d = _pair(v["padding"], "padding"), _pair(v.get("dilation", 1), "dilation")
    ceil_mode = bool(v["ceil_mode"])
    return tr.window_row(parent, name, k, s, p, d, _size(out), int(out.shape[1]), ceil_mode=ceil_mode)


def _adaptive(tr, name, args, kwargs, out, ins, states) -> int:
    _, parent = _first_stateful(ins, states)
    return tr.adaptive_row(parent, name, _size(out), int(out.shape[1]))


def _interpolate(tr, name, args, kwargs, out, ins, states) -> int:
    if name == "upsample_bilinear":
        defaults = {"mode": "bilinear", "align_corners": True}
    elif name == "upsample_nearest":
        defaults = {"mode": "nearest"}
    else:
        defaults = {"mode": "nearest"}
    names = ["input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias"]
    v = _bind(args, kwargs, names, {"size": None, "scale_factor": None, "align_corners": None,
                                    "recompute_scale_factor": None, "antialias": False, **defaults})
    x, parent = _first_stateful(ins, states)
    mode = v["mode"]
    if x.dim() != 4:
        return tr.unsupported(name, f"expects (N, C, H, W), got {x.dim()}-D", [parent])
    if mode == "area":
        return tr.adaptive_row(parent, f"{name}(area)", _size(out), int(out.shape[1]))
    if mode not in ("nearest", "nearest-exact", "bilinear") or v["antialias"]:
        reason = (f"mode={mode!r}{' with antialias' if v['antialias'] else ''}: only nearest, nearest-exact, "
                  "bilinear and area are analysed (bicubic has negative weights)")
        return tr.unsupported(name, reason, [parent], _size(out))
    n_in, n_out = _size(x), _size(out)
    sf = v["scale_factor"]
    scales = (None, None)
    if sf is not None and not v["recompute_scale_factor"]:
        scales = (float(sf), float(sf)) if isinstance(sf, (int, float)) else tuple(float(f) for f in sf)
    taps = [_interp_taps(n_in[a], n_out[a], mode, v["align_corners"], scales[a]) for a in (0, 1)]
    prow = tr.layers[parent]
    identity = n_in == n_out
    rf = prow.rf if identity else None
    params = f"{mode} {_fmt_pair(*n_in)}->{_fmt_pair(*n_out)}" + (" ac" if v["align_corners"] else "")
    note = "" if identity else "resampling"
    return tr.add_row(name, params, [(parent, *taps)], n_out, int(out.shape[1]), rf, note)


def _pad(tr, name, args, kwargs, out, ins, states) -> int:
    v = _bind(args, kwargs, ["input", "pad", "mode", "value"], {"mode": "constant", "value": None})
    x, parent = _first_stateful(ins, states)
    pad = list(v["pad"])
    if v["mode"] != "constant" or len(pad) not in (2, 4) or x.dim() != 4:
        reason = f"only constant padding of H and W is analysed (mode={v['mode']!r}, pad={pad})"
        return tr.unsupported(name, reason, [parent], _size(out))
    left, top = pad[0], (pad[2] if len(pad) == 4 else 0)
    p = (top, left)
    prow = tr.layers[parent]
    # a pad (or negative pad = crop) is a 1-tap window shifted by the left/top padding
    rf = None if prow.rf is None else tuple(prow.rf[a].then(1, 1, p[a], 1) for a in (0, 1))
    taps = [_window_taps(_size(out)[a], 1, 1, p[a], 1) for a in (0, 1)]
    return tr.add_row(name, f"pad {tuple(pad)}", [(parent, *taps)], _size(out), int(out.shape[1]), rf)


def _cat(tr, name, args, kwargs, out, ins, states) -> int:
    v = _bind(args, kwargs, ["tensors", "dim"], {"dim": 0})
    if out.dim() != 4 or v["dim"] not in (1, -3):
        reason = f"concatenation along dim {v['dim']}: only channel concatenation (dim=1) is analysed"
        rows = [s for s in states if s not in (None, _CONST)]
        return tr.unsupported(name, reason, rows, _size(out) if out.dim() == 4 else (0, 0))
    return _merge(tr, name, out, ins, states)


def _channel_split(tr, name, args, kwargs, out, ins, states) -> int:
    names = {"chunk": ["input", "chunks", "dim"], "split": ["tensor", "split_size_or_sections", "dim"],
             "split_with_sizes": ["input", "split_sizes", "dim"], "unbind": ["input", "dim"],
             "narrow": ["input", "dim", "start", "length"]}[name]
    v = _bind(args, kwargs, names, {"dim": 0})
    x, parent = _first_stateful(ins, states)
    if x.dim() == 4 and v["dim"] in (1, -3) and name != "unbind":
        return parent
    return tr.unsupported(name, f"splitting along dim {v['dim']}: only channel splits are analysed", [parent])


def _getitem(tr, name, args, kwargs, out, ins, states) -> int:
    x, index = args[0], args[1]
    parent = tr.get(x)
    if parent in (None, _CONST):
        return _unknown_op(tr, name, args, kwargs, out, ins, states)
    index = index if isinstance(index, tuple) else (index,)
    ellipses = [n for n, i in enumerate(index) if i is Ellipsis]  # identity tests: index may hold tensors
    if x.dim() != 4 or out.dim() != 4 or any(i is None for i in index) or len(ellipses) > 1:
        size = _size(out) if out.dim() == 4 else (0, 0)
        return tr.unsupported(name, "indexing that changes the (N, C, H, W) layout", [parent], size)
    if ellipses:
        e = ellipses[0]
        index = index[:e] + (slice(None),) * (4 - len(index) + 1) + index[e + 1:]
    index = index + (slice(None),) * (4 - len(index))
    spatial = index[2:]
    if not all(isinstance(i, slice) for i in spatial):
        return tr.unsupported(name, "advanced indexing along H or W", [parent], _size(out))
    n_in = _size(x)
    starts, steps = [], []
    for a, sl in enumerate(spatial):
        start, _, step = sl.indices(n_in[a])
        if step < 1:
            return tr.unsupported(name, "negative slice step along H or W", [parent], _size(out))
        starts.append(start)
        steps.append(step)
    if starts == [0, 0] and steps == [1, 1] and _size(out) == n_in:
        return parent  # channel/batch selection only
    # a crop is a 1-tap window with stride = step and padding = -start; the slice's stop sets the size
    n_out = _size(out)
    params = ", ".join(
        f"{axis} {a}:{a + (n - 1) * st + 1}" + (f":{st}" if st != 1 else "")
        for axis, a, n, st in zip("HW", starts, n_out, steps)
    )
    return tr.window_row(parent, "crop", (1, 1), tuple(steps), tuple(-s for s in starts), (1, 1),
                         n_out, int(out.shape[1]), check_size=False, params=params)


def _reduction(tr, name, args, kwargs, out, ins, states) -> int:
    v = _bind(args, kwargs, ["input", "dim", "keepdim"], {"dim": None, "keepdim": False})
    if isinstance(v["dim"], torch.Tensor) or "other" in kwargs:  # torch.max(a, b): elementwise
        return _merge(tr, name, out, ins, states)
    x, parent = _first_stateful(ins, states)
    dims = v["dim"]
    dims = () if dims is None else (dims,) if isinstance(dims, int) else tuple(dims)
    dims = {d % x.dim() for d in dims} if x.dim() == 4 else None
    if dims is None or not dims or not v["keepdim"] or out.dim() != 4:
        reason = "reductions are analysed only over channels or over (H, W) with keepdim=True"
        return tr.unsupported(name, reason, [parent])
    if dims <= {0, 1}:
        return parent
    if dims >= {2, 3}:
        return tr.adaptive_row(parent, f"{name}(H,W)", _size(out), int(out.shape[1]))
    return tr.unsupported(name, "reduction over only one of H, W", [parent])


def _softmax(tr, name, args, kwargs, out, ins, states) -> int:
    v = _bind(args, kwargs, ["input", "dim"], {"dim": None})
    x, parent = _first_stateful(ins, states)
    if x.dim() == 4 and v["dim"] in (1, -3):
        return parent
    return tr.unsupported(name, f"{name} over dim {v['dim']} mixes positions", [parent])


def _reshape(tr, name, args, kwargs, out, ins, states) -> int:
    x, parent = _first_stateful(ins, states)
    if x.dim() == 4 and out.dim() == 4 and x.shape[-2:] == out.shape[-2:] and x.shape[0] == out.shape[0]:
        return parent
    reason = f"{name} from {tuple(x.shape)} to {tuple(out.shape)} changes the spatial layout"
    return tr.unsupported(name, reason, [parent])


def _permute(tr, name, args, kwargs, out, ins, states) -> int:
    x, parent = _first_stateful(ins, states)
    if name == "permute":
        dims = args[1:] if len(args) > 2 else args[1] if len(args) > 1 else kwargs.get("dims")
        ok = x.dim() == 4 and [d % 4 for d in dims][2:] == [2, 3]
    else:
        v = _bind(args, kwargs, ["input", "dim0", "dim1"])
        ok = x.dim() == 4 and {v["dim0"] % 4, v["dim1"] % 4} <= {0, 1}
    return parent if ok else tr.unsupported(name, f"{name} moves H or W", [parent])


def _expand(tr, name, args, kwargs, out, ins, states) -> int:
    x, parent = _first_stateful(ins, states)
    if x.dim() == 4 and out.dim() == 4 and all(x.shape[a] in (1, out.shape[a]) for a in (2, 3)):
        if name == "repeat" and _size(x) != _size(out) and _size(x) != (1, 1):
            return tr.unsupported(name, "tiling along H or W", [parent])
        return _merge(tr, name, out, [x], [parent])
    return tr.unsupported(name, f"{name} from {tuple(x.shape)} to {tuple(out.shape)}", [parent])


_HANDLERS: dict[str, Callable[..., int]] = {
    **{n: _pointwise for n in _POINTWISE | _SPATIAL_STATS},
    **{n: _reshape for n in _RESHAPES},
    **{n: _reduction for n in _REDUCTIONS},
    "conv2d": _conv2d,
    # the project's compiled ops (torch.ops.atrous.*) take F.conv2d's arguments, without groups
    "atrous::atrous_conv2d": _atrous_op,
    "atrous::depthwise_conv2d": _atrous_op,
    "atrous::pointwise_conv2d": _atrous_op,
    "atrous::separable_conv2d": _atrous_op,
    "max_pool2d": _max_pool2d,
    "max_pool2d_with_indices": _max_pool2d,
    "avg_pool2d": _avg_pool2d,
    "adaptive_avg_pool2d": _adaptive,
    "adaptive_max_pool2d": _adaptive,
    "adaptive_max_pool2d_with_indices": _adaptive,
    "interpolate": _interpolate,
    "upsample": _interpolate,
    "upsample_bilinear": _interpolate,
    "upsample_nearest": _interpolate,
    "pad": _pad,
    "cat": _cat,
    "concat": _cat,
    "concatenate": _cat,
    "chunk": _channel_split,
    "split": _channel_split,
    "split_with_sizes": _channel_split,
    "unbind": _channel_split,
    "narrow": _channel_split,
    "__getitem__": _getitem,
    "softmax": _softmax,
    "log_softmax": _softmax,
    "permute": _permute,
    "transpose": _permute,
    "swapaxes": _permute,
    "expand": _expand,
    "expand_as": _expand,
    "repeat": _expand,
}


# --------------------------------------------------------------------------------------------------
# Model helpers
# --------------------------------------------------------------------------------------------------


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


def receptive_field(
    model: nn.Module,
    input_size: int | tuple[int, int],
    *,
    in_channels: int | None = None,
    output: str | int | Callable[[Any], torch.Tensor] | None = None,
) -> ReceptiveFieldReport:
    """Trace ``model`` on a zero image of ``input_size`` and report every layer's receptive field.

    One forward pass runs (in eval mode, without gradients; training flags are restored) while

    * a module with ``kernel_size``, ``stride``, ``padding`` and ``dilation`` attributes (``nn.Conv2d``,
      ``nn.MaxPool2d``, or our own modules that call compiled ops) is one window op described by those
      attributes; ``nn.AvgPool2d`` and adaptive pooling likewise. Its produced size is checked against
      ``conv_output_size``, so a module whose attributes lie is reported, not believed;
    * every other torch function is followed: ``conv2d`` and the compiled ``torch.ops.atrous.*``
      convolutions, pooling, ``interpolate`` (nearest, bilinear,
      area), ``pad``, spatial slicing (crops), channel ``cat`` and binary ops (a union of the branches:
      ASPP, residual adds), pointwise ops and BN (pass-through), ``mean(dim=(2, 3), keepdim=True)``
      (global pooling).

    Anything else that touches input-dependent data (flatten, transposed convs, a compiled op outside a
    described module, ...) becomes a row with ``supported=False`` and a reason, listed in ``problems``;
    rows after it inherit it, so nothing downstream is mis-reported. Group/instance/layer norms are
    treated as pointwise (their statistics span the map) and noted in ``warnings``.

    Exactness: the theory (``rf``) is exact for chains and unions of window ops; the clipped boxes are the
    exact bounding boxes of the input pixels that influence each output, for any supported graph. One
    limit: a union is taken per axis, so a branch that sees only padding along one axis but not the other
    would be over-counted (it needs padding larger than the kernel span on a map smaller than the dilation).
    """
    H, W = _input_size(input_size)
    if in_channels is None:
        in_channels = infer_in_channels(model)
    dtype, device = _float_dtype_device(model)
    x = torch.zeros(1, in_channels, H, W, dtype=dtype, device=device)
    tracer = _Tracer(model, (H, W))
    tracer.set(x, 0)
    try:
        with _eval_mode(model), torch.no_grad(), tracer:
            out = model(x)
    except Exception as e:
        raise RuntimeError(
            f"the model's forward failed on a 1x{in_channels}x{H}x{W} input "
            f"(check input_size and in_channels): {e}"
        ) from e
    finally:
        tracer.remove_hooks()
    y = _select_output(out, output)
    row = tracer.get(y)
    out_index = None
    if row is None or row == _CONST:
        tracer.problems.append("the output does not depend on the input through any traced operation")
    elif y.dim() != 4 and tracer.layers[row].supported:
        out_index = tracer.unsupported("output", f"the output is {y.dim()}-D, not (N, C, H, W)", [row])
    else:
        out_index = row
    return ReceptiveFieldReport((H, W), tracer.layers, out_index, tracer.problems, tracer.warnings)


# --------------------------------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------------------------------


def format_table(report: ReceptiveFieldReport) -> str:
    """Distill-style table: layer, op, params, feature size, channels, RF, jump, start, RF at the centre.

    RF, jump and start are the unclipped theory; ``RF@centre`` is the clipped RF of the central output
    (what a gradient measures there). A ``*`` marks rows without a theory (not translation-equivariant).
    """
    header = ["#", "layer", "op", "params", "size", "C", "RF", "jump", "start", "RF@centre"]
    lines = []
    starred = False
    on_path = {r.index for r in report.ancestors()} if report.supported else set()
    for r in report.layers:
        size = _fmt_pair(*r.size) if r.size != (0, 0) else "-"
        if not r.supported:
            note = "unsupported: " + r.note
            lines.append([str(r.index), r.label, r.op, "", size, "-", "-", "-", "-", note])
            continue
        if r.rf is not None:
            rf = _fmt_pair(r.rf[0].size, r.rf[1].size)
            jump = _fmt_pair(r.rf[0].jump, r.rf[1].jump)
            start = _fmt_pair(r.rf[0].start, r.rf[1].start)
        else:
            rf, jump, start, starred = "*", "*", "*", True
        centre = _fmt_pair(*r.size_at(*r.centre_position))
        mark = "" if not on_path or r.index in on_path else "  (not on the output's path)"
        channels = "" if r.channels is None else str(r.channels)
        lines.append([str(r.index), r.label, r.op, r.params, size, channels,
                      rf, jump, start, centre + mark])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header[:-1])]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + cells[-1]

    out = [fmt(header), fmt(["-" * w for w in widths] + ["-" * len(header[-1])])]
    out += [fmt(line).rstrip() for line in lines]
    H, W = report.input_size
    out.append("")
    out.append(f"input {H}x{W}. RF, jump, start: unclipped theory (start = centre of output 0's RF in "
               "input pixels, negative = in the padding); RF@centre: clipped RF of the central output.")
    if starred:
        out.append("*: not translation-equivariant (resampling, uneven adaptive pooling, broadcasting): "
                   "no single (RF, jump, start) exists; see RF@centre and input_box_clipped.")
    if report.supported:
        o = report.output
        cy, cx = o.centre_position
        box = o.box_clipped(cy, cx)
        unclipped = f", {o.box(cy, cx)} unclipped" if o.rf is not None else ""
        out.append(f"output #{o.index} {o.label}: central position ({cy}, {cx}) sees input box {box} "
                   f"(clipped){unclipped}")
    for p in report.problems:
        out.append("problem: " + p)
    for w in report.warnings:
        out.append("warning: " + w)
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# Measurement from gradients
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Effective receptive field (Luo et al., 2016)
# --------------------------------------------------------------------------------------------------


@dataclass
class EffectiveRF:
    """Gradient-magnitude map ``|d output[:, :, y, x] / d input|`` summed over channels, averaged over
    the inputs and normalised to sum 1. ``centre`` (input coordinates) is where the squares are centred:
    the theoretical RF centre of the output when the model is analysable (``centre_source`` says which)."""

    heatmap: np.ndarray
    position: tuple[int, int]
    centre: tuple[float, float]
    centre_source: str
    theoretical_box: Box | None
    clipped_box: Box | None
    samples: int

    def mass_in_squares(self, sides: Iterable[int]) -> dict[int, float]:
        """Share of the map's mass inside centred squares: side ``s`` covers the pixels within
        ``(s - 1) / 2`` of ``centre`` along both axes."""
        H, W = self.heatmap.shape
        ys, xs = np.arange(H)[:, None], np.arange(W)[None, :]
        cy, cx = self.centre
        out = {}
        for s in sides:
            if s < 1:
                raise ValueError(f"square sides must be >= 1, got {s}")
            half = (s - 1) / 2 + 1e-9
            inside = (np.abs(ys - cy) <= half) & (np.abs(xs - cx) <= half)
            out[int(s)] = float(self.heatmap[inside].sum())
        return out

    def side_for_mass(self, fraction: float = 0.95) -> int:
        """Smallest centred square side holding at least ``fraction`` of the mass."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        H, W = self.heatmap.shape
        cy, cx = self.centre
        # the square of side s covers pixels with Chebyshev distance <= (s - 1) / 2 from the centre
        ys, xs = np.arange(H)[:, None], np.arange(W)[None, :]
        cheb = np.maximum(np.abs(ys - cy), np.abs(xs - cx)).ravel()
        order = np.argsort(cheb, kind="stable")
        cum = np.cumsum(self.heatmap.ravel()[order])
        k = int(np.searchsorted(cum, fraction * cum[-1] - 1e-12))
        return math.floor(2 * cheb[order][min(k, len(order) - 1)] + 1 + 1e-9)


def effective_receptive_field(
    model: nn.Module,
    inputs: torch.Tensor | None = None,
    *,
    input_size: int | tuple[int, int] | None = None,
    position: tuple[int, int] | None = None,
    samples: int = 8,
    seed: int = 0,
    in_channels: int | None = None,
    output: str | int | Callable[[Any], torch.Tensor] | None = None,
    batch_size: int = 4,
) -> EffectiveRF:
    """The effective receptive field (Luo et al., NeurIPS 2016) of one output position.

    ``inputs`` is an image ``(C, H, W)`` or a batch ``(N, C, H, W)``; without it, ``samples`` standard
    normal images of ``input_size`` are drawn (the paper's setting). The model's own weights are used,
    trained or not, in eval mode (its training flags are restored and nothing is modified). The map is
    ``mean_n sum_c |d sum_k output[n, k, y, x] / d input[n, c]|``, normalised to sum 1.
    """
    if inputs is None:
        if input_size is None:
            raise ValueError("give inputs or input_size")
        H, W = _input_size(input_size)
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        C = in_channels or infer_in_channels(model)
        dtype, device = _float_dtype_device(model)
        gen = torch.Generator().manual_seed(seed)
        inputs = torch.randn(samples, C, H, W, generator=gen, dtype=dtype).to(device)
    else:
        if not isinstance(inputs, torch.Tensor) or inputs.dim() not in (3, 4):
            shape = getattr(inputs, "shape", type(inputs))
            raise ValueError(f"inputs must be a (C, H, W) or (N, C, H, W) tensor, got {shape}")
        inputs = inputs[None] if inputs.dim() == 3 else inputs
        dtype, device = _float_dtype_device(model)
        inputs = inputs.to(dtype=dtype, device=device)
    H, W = _size(inputs)
    heat = torch.zeros(H, W, dtype=torch.float64)
    pos = position
    with _eval_mode(model):
        for chunk in inputs.split(batch_size):
            x = chunk.detach().clone().requires_grad_(True)
            y = _select_output(model(x), output)
            if y.dim() != 4:
                raise UnsupportedModelError(f"the output is {y.dim()}-D; the ERF needs (N, C, H, W)")
            if pos is None:
                pos = ((y.shape[-2] - 1) // 2, (y.shape[-1] - 1) // 2)
            (g,) = torch.autograd.grad(y[:, :, pos[0], pos[1]].sum(), x)
            heat += g.detach().abs().sum(1).sum(0).to("cpu", torch.float64)
    heat = heat.numpy()
    total = heat.sum()
    heat = heat / total if total > 0 else heat

    theoretical = clipped = None
    try:
        report = receptive_field(model, (H, W), in_channels=inputs.shape[1], output=output)
        row = report.output
        clipped = row.box_clipped(*pos)
        if row.rf is not None:
            theoretical = row.box(*pos)
            centre, source = (row.rf[0].centre(pos[0]), row.rf[1].centre(pos[1])), "theory"
        elif clipped is not None:
            centre, source = ((clipped[0] + clipped[2]) / 2, (clipped[1] + clipped[3]) / 2), "clipped box"
        else:
            raise UnsupportedModelError("empty support")
    except UnsupportedModelError:
        ys, xs = np.mgrid[:H, :W]
        if total > 0:
            centre = (float((heat * ys).sum()), float((heat * xs).sum()))
        else:
            centre = ((H - 1) / 2, (W - 1) / 2)
        source = "centroid"
    position = (int(pos[0]), int(pos[1]))
    return EffectiveRF(heat, position, centre, source, theoretical, clipped, int(inputs.shape[0]))


# --------------------------------------------------------------------------------------------------
# Containers and teaching stacks
# --------------------------------------------------------------------------------------------------


class Parallel(nn.Module):
    """Branches applied to the same input and merged by channel concatenation (``'cat'``) or by
    summation (``'sum'``); the analysis reports each branch and their union."""

    def __init__(self, *branches: nn.Module, merge: str = "cat"):
        super().__init__()
        if not branches:
            raise ValueError("Parallel needs at least one branch")
        if merge not in ("cat", "sum"):
            raise ValueError(f"merge must be 'cat' or 'sum', got {merge!r}")
        self.branches = nn.ModuleList(branches)
        self.merge = merge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        return torch.cat(outs, dim=1) if self.merge == "cat" else functools.reduce(torch.add, outs)


class ImagePooling(nn.Module):
    """ASPP's image-level branch: global average pooling, a 1x1 conv, bilinear upsampling back to the
    input's size (its RF is the whole input)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.conv(self.pool(x)), size=x.shape[-2:], mode="bilinear", align_corners=False)


LayerSpec = Sequence[int]  # (kernel, stride, padding, dilation)


def conv_stack(
    layers: Iterable[LayerSpec], channels: int = 4, in_channels: int = 3, relu: bool = True
) -> nn.Sequential:
    """A stack of ``nn.Conv2d(kernel, stride, padding, dilation)`` layers (each followed by ReLU)."""
    mods: list[nn.Module] = []
    c_in = in_channels
    for n, spec in enumerate(layers):
        spec = tuple(spec) + (1, 0, 1)[len(spec) - 1:] if 1 <= len(spec) < 4 else tuple(spec)
        if len(spec) != 4:
            raise ValueError(f"layers[{n}] must be (kernel, stride, padding, dilation), got {spec!r}")
        k, s, p, d = spec
        mods.append(nn.Conv2d(c_in, channels, k, stride=s, padding=p, dilation=d))
        if relu:
            mods.append(nn.ReLU(inplace=True))
        c_in = channels
    return nn.Sequential(*mods)


def _dilated(rates: Iterable[int]) -> list[LayerSpec]:
    return [(3, 1, r, r) for r in rates]


def plain_stack(depth: int = 6, channels: int = 4) -> nn.Sequential:
    """``depth`` 3x3 convolutions: RF ``2 depth + 1``, grows linearly."""
    return conv_stack([(3, 1, 1, 1)] * depth, channels)


def strided_stack(depth: int = 6, channels: int = 4) -> nn.Sequential:
    """3x3 convolutions, every other one with stride 2: the RF grows fast but the map shrinks."""
    return conv_stack([(3, 2 if i % 2 == 0 else 1, 1, 1) for i in range(depth)], channels)


def atrous_stack(rates: Sequence[int] = (1, 2, 4, 8, 16), channels: int = 4) -> nn.Sequential:
    """3x3 convolutions with exponentially growing rates (Yu & Koltun's context module): the RF grows
    exponentially while the map keeps its resolution."""
    return conv_stack(_dilated(rates), channels)


def gridding_stack(rate: int = 2, depth: int = 3, channels: int = 4) -> nn.Sequential:
    """Equal-rate 3x3 convolutions: only every ``rate``-th pixel reaches an output (gridding)."""
    return conv_stack(_dilated([rate] * depth), channels)


def hybrid_stack(rates: Sequence[int] = (1, 2, 3), repeats: int = 2, channels: int = 4) -> nn.Sequential:
    """Hybrid dilated convolution (Wang et al., 2018): rates without a common factor, no holes."""
    return conv_stack(_dilated(list(rates) * repeats), channels)


def multigrid_stack(rates: Sequence[int] = (1, 2, 4), repeats: int = 2, channels: int = 4) -> nn.Sequential:
    """DeepLabV3's multi-grid unit rates (1, 2, 4) in a block: no holes, a larger RF."""
    return conv_stack(_dilated(list(rates) * repeats), channels)


def aspp_stack(
    output_stride: int = 16, rates: Sequence[int] = (6, 12, 18), channels: int = 4
) -> nn.Sequential:
    """A toy DeepLabV3: a stem of stride-2 3x3 convs down to ``output_stride``, then ASPP (a 1x1 branch,
    one 3x3 branch per rate, image pooling) concatenated and projected by a 1x1 conv."""
    if output_stride < 1 or output_stride & (output_stride - 1):
        raise ValueError(f"output_stride must be a power of two, got {output_stride}")
    stem = conv_stack([(3, 2, 1, 1)] * int(math.log2(output_stride)), channels)
    branches = [nn.Sequential(nn.Conv2d(channels, channels, 1), nn.ReLU())]
    branches += [nn.Sequential(nn.Conv2d(channels, channels, 3, padding=r, dilation=r), nn.ReLU())
                 for r in rates]
    branches.append(ImagePooling(channels, channels))
    return nn.Sequential(
        stem,
        Parallel(*branches, merge="cat"),
        nn.Conv2d(channels * len(branches), channels, 1),
    )


TEACHING_STACKS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "plain": (plain_stack, "six 3x3 convs, stride 1"),
    "strided": (strided_stack, "six 3x3 convs, stride 2 every other layer"),
    "atrous": (atrous_stack, "3x3 convs at rates 1, 2, 4, 8, 16"),
    "gridding": (gridding_stack, "three 3x3 convs at rate 2 (holes)"),
    "hybrid": (hybrid_stack, "3x3 convs at rates 1, 2, 3, 1, 2, 3"),
    "multigrid": (multigrid_stack, "3x3 convs at rates 1, 2, 4, 1, 2, 4"),
    "aspp": (aspp_stack, "stride-16 stem + ASPP (1x1, rates 6, 12, 18, image pooling)"),
    "aspp8": (functools.partial(aspp_stack, 8, (12, 24, 36)),
              "stride-8 stem + ASPP (1x1, rates 12, 24, 36, image pooling)"),
}
