"""The tracer: one forward pass under a TorchFunctionMode that gives every tensor its receptive-field row.

``receptive_field(model, input_size)`` is the entry point; the per-op rules live in ``handlers``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from .arithmetic import AxisRF, _pair, conv_output_size
from .handlers import _CONST, _UNKNOWN_ORIGIN, HANDLERS, _unknown_op
from .inputs import _eval_mode, _float_dtype_device, _input_size, _select_output, infer_in_channels
from .report import LayerRF, ReceptiveFieldReport, _fmt_pair
from .taps import _BIG, _adaptive_taps, _propagate, _window_taps

__all__ = ["receptive_field"]


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
                row = HANDLERS.get(name, _unknown_op)(self, name, args, kwargs, outs[0], ins, states)
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
