"""The atrous operators: Python wrappers, fake kernels and autograd over the compiled kernels.

Three ops, each a forward plus backward-input and backward-weight operators registered in C++
(csrc/ops.cpp) under torch.ops.atrous, with a shared bias-gradient op, and a fused forward-only
separable convolution for inference:

    depthwise_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, algo="auto")
    pointwise_conv2d(input, weight, bias=None, algo="auto")
    atrous_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, algo="auto")
    separable_conv2d(input, dw_weight, dw_bias, pw_weight, pw_bias, stride=1, padding=0,
                     dilation=1, activation=None)

They follow F.conv2d's conventions (an int or a pair; padding also 'same' or 'valid') and equal
F.conv2d(..., groups=C) / F.conv2d(...). Like F.conv2d, every wrapper also takes an unbatched
(C, H, W) input and returns an unbatched output: it runs the 4-D operator on a batch of one
(an unsqueeze/squeeze view, so autograd, the fake kernels and torch.compile see the 4-D op).
Output layout, PyTorch's rule: channels_last when the
input or the weight is channels_last, else contiguous NCHW (backward ops follow grad_output and
the weight). dtypes: float32 and float64; on CUDA also float16 and bfloat16 (accumulated in
float32). `algo` picks a rung of the op's kernel ladder, from the readable "naive" version to
the fastest; each device has its own ladder (`algorithms(name, device)` lists them); the
backward pass uses the same rung. Gradients are registered with torch.library.register_autograd and
the backward ops are differentiable too, so double backward (gradgradcheck) works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import _checks
from ._extension import load as _load_extension
from .receptive_field.arithmetic import _pair  # F.conv2d's int-or-pair rule, shared with the analysis

_EXTENSION = _load_extension()  # registers torch.ops.atrous.*; raises with build instructions if missing

_ops = torch.ops.atrous

__all__ = ["algorithms", "atrous_conv2d", "depthwise_conv2d", "pointwise_conv2d", "separable_conv2d"]

# {device type: {op name: rungs}}: each device has its own ladder (csrc/common/algorithms.h).
_ALGORITHMS: dict = {device: dict(ladders) for device, ladders in _EXTENSION.algorithms.items()}


def _ladder_device(device) -> str:
    """The ladder a tensor on `device` uses: CUDA's on CUDA, the CPU's everywhere else (meta too)."""
    return "cuda" if torch.device(device).type == "cuda" else "cpu"


def algorithms(name: str, device="cpu") -> tuple:
    """The kernel ladder of op `name` ("depthwise_conv2d", "pointwise_conv2d", "atrous_conv2d") on
    `device` ("cpu" or "cuda", a torch.device or a string), in teaching order from the naive
    version to the fastest; any of them, or "auto", is a valid `algo` for tensors on that device."""
    ladders = _ALGORITHMS["cpu"]
    if name not in ladders:
        raise ValueError(f"atrous.ops.algorithms: expected one of {sorted(ladders)}, got {name!r}")
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        kind = None
    if kind not in _ALGORITHMS:
        raise ValueError(f"atrous.ops.algorithms: expected device to be one of {sorted(_ALGORITHMS)}, "
                         f"got {device!r}")
    return tuple(_ALGORITHMS[kind][name])


def _check_algo(op: str, name: str, algo, device="cpu") -> None:
    """Same message as parse_algorithm in csrc/common/algorithms.h, for the ladder of `device`."""
    choices = _ALGORITHMS[_ladder_device(device)][name]
    if algo != "auto" and algo not in choices:
        listed = ", ".join(f"'{c}'" for c in ("auto", *choices))
        raise RuntimeError(f"{op}: expected algo to be one of {listed}, got '{algo}'")


# --------------------------------------------------------------------------------------------
# Argument normalisation (F.conv2d conventions)
# --------------------------------------------------------------------------------------------

def _padding(op: str, input: torch.Tensor, weight: torch.Tensor, padding, stride, dilation):
    """Resolves 'valid'/'same' padding. Returns (input, (ph, pw)).

    'same' with an odd total padding d*(k-1) pads one extra row/column at the bottom/right,
    as F.conv2d does (it pads the input with zeros and then convolves symmetrically).
    """
    if not isinstance(padding, str):
        return input, _pair(padding, "padding", op)
    if padding == "valid":
        return input, (0, 0)
    if padding != "same":
        raise ValueError(f"{op}: expected padding to be an int, a pair, 'same' or 'valid', got {padding!r}")
    if stride != (1, 1):
        raise ValueError(f"{op}: padding='same' is not supported for strided convolutions (stride={stride})")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise ValueError(f"{op}: padding='same' needs a 4-D weight to know the kernel size")
    pads, extra = [], [0, 0, 0, 0]  # extra in F.pad order: (left, right, top, bottom)
    for axis, (k, d) in enumerate(zip(weight.shape[2:], dilation)):
        total = d * (k - 1)
        pads.append(total // 2)
        if total % 2:
            extra[3 if axis == 0 else 1] = 1
    if any(extra):
        input = torch.nn.functional.pad(input, extra)
    return input, (pads[0], pads[1])


def _check_devices(op: str, qualname: str, input, weight, bias) -> None:
    """Device agreement and kernel availability, checked before dispatch: the dispatcher would
    otherwise pick a backend from the mix of devices and fail with a less helpful message."""
    for name, t in (("input", input), ("weight", weight), ("bias", bias)):
        if not isinstance(t, torch.Tensor) and not (name == "bias" and t is None):
            expected = "a torch.Tensor or None" if name == "bias" else "a torch.Tensor"
            raise TypeError(f"{op}: expected {name} to be {expected}, got {type(t).__name__}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.device != input.device:
            raise RuntimeError(
                f"{op}: expected {name} on the same device as input ({input.device}), got {t.device}")
    device_type = input.device.type
    if device_type in ("cpu", "meta"):
        return
    key = {"cuda": "CUDA"}.get(device_type, device_type.upper())
    try:
        has_kernel = torch._C._dispatch_has_kernel_for_dispatch_key(qualname, key)
    except RuntimeError:
        has_kernel = False
    if not has_kernel:
        raise RuntimeError(
            f"{op}: this build of atrous has no {key} kernel (input is on {input.device}). "
            "Run `python -m atrous.info` to see what was compiled.")


def _batched(op: str, input):
    """(input as 4-D, whether it was unbatched): F.conv2d's rule, a (C, H, W) input is a batch of one."""
    if not isinstance(input, torch.Tensor):
        return input, False  # _check_devices names the type
    unbatched = _checks.check_input_rank(op, input)
    return (input.unsqueeze(0), True) if unbatched else (input, False)  # (1, C, H, W)


def _unbatch(output: torch.Tensor, unbatched: bool) -> torch.Tensor:
    return output.squeeze(0) if unbatched else output  # (C_out, H_out, W_out)


# --------------------------------------------------------------------------------------------
# Public wrappers
# --------------------------------------------------------------------------------------------

def depthwise_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, algo="auto"):
    """Depthwise atrous convolution: F.conv2d(input, weight, bias, stride, padding, dilation, groups=C).

    input (N, C, H, W) or unbatched (C, H, W); weight (C*m, 1, kh, kw) with depth multiplier
    m >= 1; bias (C*m,) or None. Output (N, C*m, H_out, W_out) (unbatched: (C*m, H_out, W_out)),
    H_out = floor((H + 2*ph - dh*(kh-1) - 1) / sh) + 1.
    algo: "auto" or a rung of algorithms("depthwise_conv2d").
    """
    op = "atrous.depthwise_conv2d"
    _check_devices(op, "atrous::depthwise_conv2d", input, weight, bias)
    input, unbatched = _batched(op, input)
    stride, dilation = _pair(stride, "stride", op), _pair(dilation, "dilation", op)
    input, padding = _padding(op, input, weight, padding, stride, dilation)
    return _unbatch(_ops.depthwise_conv2d(input, weight, bias, stride, padding, dilation, algo), unbatched)


def pointwise_conv2d(input, weight, bias=None, algo="auto"):
    """Pointwise (1x1) convolution: F.conv2d(input, weight, bias) with weight (C_out, C, 1, 1).

    Computed as one GEMM per image by the project's blocked GEMM; NCHW and channels_last inputs
    are used in place.
    """
    op = "atrous.pointwise_conv2d"
    _check_devices(op, "atrous::pointwise_conv2d", input, weight, bias)
    input, unbatched = _batched(op, input)
    return _unbatch(_ops.pointwise_conv2d(input, weight, bias, algo), unbatched)


def atrous_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, algo="auto"):
    """Dense atrous convolution (groups=1): F.conv2d(input, weight, bias, stride, padding, dilation).

    input (N, C, H, W); weight (C_out, C, kh, kw); computed as dilated im2col + GEMM.
    """
    op = "atrous.atrous_conv2d"
    _check_devices(op, "atrous::atrous_conv2d", input, weight, bias)
    input, unbatched = _batched(op, input)
    stride, dilation = _pair(stride, "stride", op), _pair(dilation, "dilation", op)
    input, padding = _padding(op, input, weight, padding, stride, dilation)
    return _unbatch(_ops.atrous_conv2d(input, weight, bias, stride, padding, dilation, algo), unbatched)


def separable_conv2d(input, dw_weight, dw_bias, pw_weight, pw_bias, stride=1, padding=0, dilation=1,
                     activation=None):
    """Fused separable convolution for inference, as in DeepLabV3+ after BatchNorm folding:

        pointwise(act(depthwise(input, dw_weight, dw_bias, stride, padding, dilation)), pw_weight, pw_bias)

    with act = ReLU if activation == "relu", identity if None. The depthwise output is computed
    tile by tile into a cache-sized buffer and consumed by the GEMM at once, never written in
    full. Forward only: when autograd is recording and any tensor requires grad, it runs the
    two unfused ops instead, so gradients flow (at the unfused speed).
    """
    op = "atrous.separable_conv2d"
    _check_devices(op, "atrous::separable_conv2d", input, dw_weight, dw_bias)
    _check_devices(op, "atrous::separable_conv2d", input, pw_weight, pw_bias)
    if activation not in (None, "relu"):
        raise ValueError(f"{op}: expected activation to be None or 'relu', got {activation!r}")
    input, unbatched = _batched(op, input)
    stride, dilation = _pair(stride, "stride", op), _pair(dilation, "dilation", op)
    input, padding = _padding(op, input, dw_weight, padding, stride, dilation)
    tensors = (input, dw_weight, dw_bias, pw_weight, pw_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        mid = _ops.depthwise_conv2d(input, dw_weight, dw_bias, stride, padding, dilation)
        if activation == "relu":
            mid = torch.relu(mid)
        return _unbatch(_ops.pointwise_conv2d(mid, pw_weight, pw_bias), unbatched)
    return _unbatch(_ops.separable_conv2d(input, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding,
                                          dilation, activation or "none"), unbatched)


# --------------------------------------------------------------------------------------------
# Fake kernels: shapes, dtypes and layouts without computing (torch.compile, export, meta)
# --------------------------------------------------------------------------------------------

def _empty(shape, like: torch.Tensor, layout_of: torch.Tensor, weight=None) -> torch.Tensor:
    return torch.empty(shape, dtype=like.dtype, device=like.device,
                       memory_format=_checks.output_memory_format(layout_of, weight))


def _register_fakes(kind: str, name: str) -> None:
    op = f"atrous.{name}"

    if kind == "pointwise":
        @torch.library.register_fake(f"atrous::{name}")
        def _forward(input, weight, bias, algo="auto"):
            g = _checks.check_forward(op, kind, input, weight, bias, (), (), ())
            _check_algo(op, name, algo, input.device)
            return _empty(g.output_shape, input, input, weight)

        @torch.library.register_fake(f"atrous::{name}_backward_input")
        def _backward_input(grad_output, weight, algo="auto"):
            g = _checks.check_pointwise_backward_input(op + "_backward_input", grad_output, weight)
            _check_algo(op + "_backward_input", name, algo, grad_output.device)
            return _empty(g.input_shape, grad_output, grad_output, weight)

        @torch.library.register_fake(f"atrous::{name}_backward_weight")
        def _backward_weight(grad_output, input, algo="auto"):
            g = _checks.check_pointwise_backward_weight(op + "_backward_weight", grad_output, input)
            _check_algo(op + "_backward_weight", name, algo, grad_output.device)
            return grad_output.new_empty((g.out_channels, g.in_channels, 1, 1))
        return

    @torch.library.register_fake(f"atrous::{name}")
    def _forward(input, weight, bias, stride, padding, dilation, algo="auto"):
        g = _checks.check_forward(op, kind, input, weight, bias, stride, padding, dilation)
        _check_algo(op, name, algo, input.device)
        return _empty(g.output_shape, input, input, weight)

    @torch.library.register_fake(f"atrous::{name}_backward_input")
    def _backward_input(grad_output, weight, input_size, stride, padding, dilation, algo="auto"):
        _checks.check_backward_input(op + "_backward_input", kind, grad_output, weight,
                                     input_size, stride, padding, dilation)
        _check_algo(op + "_backward_input", name, algo, grad_output.device)
        return _empty(tuple(input_size), grad_output, grad_output, weight)

    @torch.library.register_fake(f"atrous::{name}_backward_weight")
    def _backward_weight(grad_output, input, weight_size, stride, padding, dilation, algo="auto"):
        _checks.check_backward_weight(op + "_backward_weight", kind, grad_output, input,
                                      weight_size, stride, padding, dilation)
        _check_algo(op + "_backward_weight", name, algo, grad_output.device)
        return grad_output.new_empty(tuple(weight_size))


@torch.library.register_fake("atrous::separable_conv2d")
def _separable_conv2d_fake(input, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation,
                           activation="none"):
    g = _checks.check_separable("atrous.separable_conv2d", input, dw_weight, dw_bias, pw_weight, pw_bias,
                                stride, padding, dilation, activation)
    return _empty((g.batch, pw_weight.shape[0], g.out_h, g.out_w), input, input, pw_weight)


@torch.library.register_fake("atrous::conv2d_backward_bias")
def _conv2d_backward_bias_fake(grad_output):
    _checks.check_backward_bias("atrous.conv2d_backward_bias", grad_output)
    return grad_output.new_empty((grad_output.shape[1],))


# --------------------------------------------------------------------------------------------
# Autograd. For y = conv(x, w) every gradient is one of the family's three ops, and so are the
# gradients of the backward ops (each is linear in each argument, and its adjoint is another
# member of the family):
#   gx = backward_input(gy, w):  d/dgy = conv(v, w),   d/dw = backward_weight(gy, v)
#   gw = backward_weight(gy, x): d/dgy = conv(x, u),   d/dx = backward_input(gy, u)
# where v, u are the incoming gradients of gx, gw. Hence double backward needs no new kernels.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Family:
    """The three ops of one convolution kind, called uniformly (pointwise has no conf)."""

    name: str
    has_conf: bool  # (stride, padding, dilation) arguments

    def forward(self, x, w, b, conf, algo):
        return getattr(_ops, self.name)(x, w, b, *conf, algo)

    def backward_input(self, gy, w, x_shape, conf, algo):
        op = getattr(_ops, self.name + "_backward_input")
        return op(gy, w, list(x_shape), *conf, algo) if self.has_conf else op(gy, w, algo)

    def backward_weight(self, gy, x, w_shape, conf, algo):
        op = getattr(_ops, self.name + "_backward_weight")
        return op(gy, x, list(w_shape), *conf, algo) if self.has_conf else op(gy, x, algo)


def _register_autograd(family: _Family) -> None:
    # Arguments after the tensors: (input_size or weight_size,) stride, padding, dilation, algo.
    n_conf = 3 if family.has_conf else 0
    n_backward_extra = (n_conf + 1 if family.has_conf else 0) + 1

    # y = forward(x, w, b, *conf, algo)
    def setup_forward(ctx, inputs, output):
        x, w, b = inputs[:3]
        ctx.conf, ctx.algo = tuple(inputs[3:-1]), inputs[-1]
        ctx.has_bias = b is not None
        ctx.save_for_backward(x, w)

    def backward_forward(ctx, gy):
        x, w = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = family.backward_input(gy, w, x.shape, ctx.conf, ctx.algo)
        if ctx.needs_input_grad[1]:
            gw = family.backward_weight(gy, x, w.shape, ctx.conf, ctx.algo)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = _ops.conv2d_backward_bias(gy)
        return (gx, gw, gb) + (None,) * (n_conf + 1)

    torch.library.register_autograd(f"atrous::{family.name}", backward_forward,
                                    setup_context=setup_forward)

    # gx = backward_input(gy, w, [x_shape, *conf], algo)
    def setup_backward_input(ctx, inputs, output):
        gy, w = inputs[:2]
        ctx.conf = tuple(inputs[3:-1]) if family.has_conf else ()
        ctx.algo = inputs[-1]
        ctx.save_for_backward(gy, w)

    def backward_backward_input(ctx, v):
        gy, w = ctx.saved_tensors
        d_gy = d_w = None
        if ctx.needs_input_grad[0]:
            d_gy = family.forward(v, w, None, ctx.conf, ctx.algo)
        if ctx.needs_input_grad[1]:
            d_w = family.backward_weight(gy, v, w.shape, ctx.conf, ctx.algo)
        return (d_gy, d_w) + (None,) * n_backward_extra

    torch.library.register_autograd(f"atrous::{family.name}_backward_input",
                                    backward_backward_input, setup_context=setup_backward_input)

    # gw = backward_weight(gy, x, [w_shape, *conf], algo)
    def setup_backward_weight(ctx, inputs, output):
        gy, x = inputs[:2]
        ctx.conf = tuple(inputs[3:-1]) if family.has_conf else ()
        ctx.algo = inputs[-1]
        ctx.save_for_backward(gy, x)

    def backward_backward_weight(ctx, u):
        gy, x = ctx.saved_tensors
        d_gy = d_x = None
        if ctx.needs_input_grad[0]:
            d_gy = family.forward(x, u, None, ctx.conf, ctx.algo)
        if ctx.needs_input_grad[1]:
            d_x = family.backward_input(gy, u, x.shape, ctx.conf, ctx.algo)
        return (d_gy, d_x) + (None,) * n_backward_extra

    torch.library.register_autograd(f"atrous::{family.name}_backward_weight",
                                    backward_backward_weight, setup_context=setup_backward_weight)


# gb = conv2d_backward_bias(gy): its gradient broadcasts v back over N, H, W.
def _setup_backward_bias(ctx, inputs, output):
    ctx.gy_shape = tuple(inputs[0].shape)


def _backward_backward_bias(ctx, v):
    return v.reshape(1, -1, 1, 1).expand(ctx.gy_shape)  # (N, C, H, W)


torch.library.register_autograd("atrous::conv2d_backward_bias", _backward_backward_bias,
                                setup_context=_setup_backward_bias)

for _kind, _name in (("depthwise", "depthwise_conv2d"), ("pointwise", "pointwise_conv2d"),
                     ("dense", "atrous_conv2d")):
    _register_fakes(_kind, _name)
    _register_autograd(_Family(_name, has_conf=_kind != "pointwise"))
