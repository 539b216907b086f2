"""The tracer's op handlers: how each torch function maps its operands' receptive-field rows to a new row.

A handler ``(tracer, name, args, kwargs, out, ins, states) -> row`` gets the function's arguments, its
first output tensor, its tensor inputs and their rows (``_CONST`` for tensors that do not depend on the
input), and returns the row of the output: a parent's row (the RF passes through), a new row, or an
unsupported row with a reason. ``HANDLERS`` maps torch function names to them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from .arithmetic import _pair, union
from .inputs import _size
from .report import _fmt_pair
from .taps import _broadcast_taps, _interp_taps, _window_taps

if TYPE_CHECKING:
    from .tracer import _Tracer

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


_UNKNOWN_ORIGIN = (
    "reads a tensor that depends on the input through an operation the tracer cannot see (a compiled op "
    "outside a module?); give that module kernel_size/stride/padding/dilation attributes describing it"
)


def _first_stateful(ins, states) -> tuple[torch.Tensor, int]:
    for t, s in zip(ins, states):
        if s is not None and s != _CONST:
            return t, s
    raise AssertionError("no input-dependent tensor")


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
        axes = [union([r[a] for r in rfs]) for a in (0, 1)]
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


HANDLERS: dict[str, Callable[..., int]] = {
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
