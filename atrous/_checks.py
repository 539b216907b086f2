"""Argument checks of the atrous ops in Python, mirroring csrc/common/checks.cpp word for word.

The C++ checks guard eager calls; these run where no C++ kernel does: in the fake (meta)
kernels that torch.compile, torch.export and meta tensors use, so a bad call fails at trace
time with the same message. tests/ops/test_errors.py checks that both paths agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .receptive_field.arithmetic import conv_output_size, effective_kernel_size

FLOAT_DTYPES = (torch.float32, torch.float64)
# The CUDA kernels also take the half types (accumulating in float32); the CPU kernels do not.
CUDA_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

WEIGHT_FORMS = {
    "depthwise": "(C*m, 1, kh, kw)",
    "pointwise": "(C_out, C, 1, 1)",
    "dense": "(C_out, C, kh, kw)",
}


@dataclass(frozen=True)
class Geometry:
    """Sizes of one convolution (ints, or SymInts under torch.compile)."""

    batch: object
    in_channels: object
    out_channels: object
    in_h: object
    in_w: object
    out_h: object
    out_w: object
    kernel_h: object
    kernel_w: object

    @property
    def output_shape(self):
        return (self.batch, self.out_channels, self.out_h, self.out_w)

    @property
    def input_shape(self):
        return (self.batch, self.in_channels, self.in_h, self.in_w)


def _shape(sizes) -> str:
    return "[" + ", ".join(str(s) for s in sizes) + "]"


def _list(values) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def _dtype(dtype: torch.dtype) -> str:
    # c10 prints dtypes as Float/Double; keep the C++ wording.
    return {torch.float32: "Float", torch.float64: "Double", torch.float16: "Half",
            torch.bfloat16: "BFloat16", torch.int64: "Long", torch.int32: "Int"}.get(
        dtype, str(dtype).replace("torch.", ""))


def _fail(*parts) -> None:
    raise RuntimeError("".join(str(p) for p in parts))


def _check_float_tensor(op: str, name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: expected {name} to be a torch.Tensor, got {type(t).__name__}")
    if t.device.type == "cuda":
        if t.dtype not in CUDA_FLOAT_DTYPES:
            _fail(op, ": expected ", name,
                  " of dtype torch.float32, torch.float64, torch.float16 or torch.bfloat16, got ",
                  _dtype(t.dtype))
        return
    if t.dtype not in FLOAT_DTYPES:
        _fail(op, ": expected ", name, " of dtype torch.float32 or torch.float64, got ", _dtype(t.dtype))


def _check_4d(op: str, name: str, t: torch.Tensor, form: str) -> None:
    if t.dim() != 4:
        _fail(op, ": expected ", name, " to be 4-D ", form, ", got a ", t.dim(),
              "-D tensor of shape ", _shape(t.shape))


def check_input_rank(op: str, input: torch.Tensor) -> bool:
    """The wrappers' rule, F.conv2d's: input (N, C, H, W) or unbatched (C, H, W). True if unbatched.
    The registered operators themselves take 4-D input only (_check_4d)."""
    if input.dim() not in (3, 4):
        _fail(op, ": expected input to be 3-D (C, H, W) or 4-D (N, C, H, W), got a ", input.dim(),
              "-D tensor of shape ", _shape(input.shape))
    return input.dim() == 3


def _check_matches(op: str, name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.dtype != ref.dtype:
        _fail(op, ": expected ", name, " to have the same dtype as ", ref_name, " (",
              _dtype(ref.dtype), "), got ", _dtype(t.dtype))
    if t.device != ref.device:
        _fail(op, ": expected ", name, " on the same device as ", ref_name, " (", ref.device,
              "), got ", t.device)


def _check_params(op: str, kind: str, stride, padding, dilation) -> None:
    if kind == "pointwise":
        return
    if len(stride) != 2:
        _fail(op, ": expected stride to be a pair (sh, sw), got ", _list(stride))
    if len(padding) != 2:
        _fail(op, ": expected padding to be a pair (ph, pw), got ", _list(padding))
    if len(dilation) != 2:
        _fail(op, ": expected dilation to be a pair (dh, dw), got ", _list(dilation))
    if not (stride[0] >= 1 and stride[1] >= 1):
        _fail(op, ": expected stride >= 1 in both dimensions, got ", _list(stride))
    if not (dilation[0] >= 1 and dilation[1] >= 1):
        _fail(op, ": expected dilation >= 1 in both dimensions, got ", _list(dilation))
    if not (padding[0] >= 0 and padding[1] >= 0):
        _fail(op, ": expected padding >= 0 in both dimensions, got ", _list(padding))


def _check_weight_shape(op: str, kind: str, w, in_channels) -> None:
    form = WEIGHT_FORMS[kind]
    if len(w) != 4:
        _fail(op, ": expected weight to be 4-D ", form, ", got shape ", _shape(w))
    if not (w[0] >= 1 and w[2] >= 1 and w[3] >= 1):
        _fail(op, ": expected weight of shape ", form, " with positive C_out, kh and kw, got ", _shape(w))
    if kind == "depthwise":
        if not (w[1] == 1 and w[0] % in_channels == 0):
            _fail(op, ": expected weight of shape ", form, " = (", in_channels,
                  "*m, 1, kh, kw) for an input with C=", in_channels,
                  " channels (m >= 1, the depth multiplier), got ", _shape(w))
    elif kind == "pointwise":
        if not (w[1] == in_channels and w[2] == 1 and w[3] == 1):
            _fail(op, ": expected weight of shape ", form, " = (C_out, ", in_channels,
                  ", 1, 1) for an input with C=", in_channels, " channels, got ", _shape(w))
    elif w[1] != in_channels:
        _fail(op, ": expected weight of shape ", form, " = (C_out, ", in_channels,
              ", kh, kw) for an input with C=", in_channels, " channels, got ", _shape(w))


def _spatial(op: str, kind: str, input_size, weight_size, stride, padding, dilation) -> Geometry:
    if kind == "pointwise":
        stride, padding, dilation = (1, 1), (0, 0), (1, 1)
    n, c, h, w = input_size
    kh, kw = weight_size[2], weight_size[3]
    keff_h, keff_w = effective_kernel_size(kh, dilation[0]), effective_kernel_size(kw, dilation[1])
    padded_h, padded_w = h + 2 * padding[0], w + 2 * padding[1]
    if not (padded_h >= keff_h and padded_w >= keff_w):
        _fail(op, ": Calculated padded input size per channel: (", padded_h, " x ", padded_w,
              "). Kernel size (dilated): (", keff_h, " x ", keff_w,
              "). Kernel size can't be greater than actual input size")
    out_h = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
    out_w = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
    return Geometry(n, c, weight_size[0], h, w, out_h, out_w, kh, kw)


def _check_input_size(op: str, input_size) -> None:
    if len(input_size) != 4:
        _fail(op, ": expected input_size (N, C, H, W), got ", _list(input_size))
    n, c, h, w = input_size
    if not (n >= 0 and c >= 1 and h >= 1 and w >= 1):
        _fail(op, ": expected input_size (N, C, H, W) with N >= 0 and C, H, W >= 1, got ",
              _list(input_size))


def _check_grad_output_shape(op: str, grad_output: torch.Tensor, g: Geometry) -> None:
    _check_4d(op, "grad_output", grad_output, "(N, C_out, H_out, W_out)")
    if tuple(grad_output.shape) != tuple(g.output_shape):
        _fail(op, ": expected grad_output of shape ", _shape(g.output_shape),
              " (the forward output's shape), got ", _shape(grad_output.shape))


def check_forward(op: str, kind: str, input, weight, bias, stride, padding, dilation) -> Geometry:
    _check_float_tensor(op, "input", input)
    _check_4d(op, "input", input, "(N, C, H, W)")
    if not (input.shape[1] >= 1 and input.shape[2] >= 1 and input.shape[3] >= 1):
        _fail(op, ": expected input (N, C, H, W) with C, H, W >= 1, got shape ", _shape(input.shape))
    _check_float_tensor(op, "weight", weight)
    _check_matches(op, "weight", weight, "input", input)
    _check_params(op, kind, stride, padding, dilation)
    _check_weight_shape(op, kind, weight.shape, input.shape[1])
    if bias is not None:
        _check_float_tensor(op, "bias", bias)
        _check_matches(op, "bias", bias, "input", input)
        if not (bias.dim() == 1 and bias.shape[0] == weight.shape[0]):
            _fail(op, ": expected bias of shape (C_out,) = (", weight.shape[0], ",), got ",
                  _shape(bias.shape))
    return _spatial(op, kind, input.shape, weight.shape, stride, padding, dilation)


def check_backward_input(op: str, kind: str, grad_output, weight, input_size, stride, padding,
                         dilation) -> Geometry:
    _check_float_tensor(op, "grad_output", grad_output)
    _check_float_tensor(op, "weight", weight)
    _check_matches(op, "weight", weight, "grad_output", grad_output)
    _check_params(op, kind, stride, padding, dilation)
    _check_input_size(op, input_size)
    _check_weight_shape(op, kind, weight.shape, input_size[1])
    g = _spatial(op, kind, input_size, weight.shape, stride, padding, dilation)
    _check_grad_output_shape(op, grad_output, g)
    return g


def check_backward_weight(op: str, kind: str, grad_output, input, weight_size, stride, padding,
                          dilation) -> Geometry:
    _check_float_tensor(op, "grad_output", grad_output)
    _check_float_tensor(op, "input", input)
    _check_matches(op, "input", input, "grad_output", grad_output)
    _check_4d(op, "input", input, "(N, C, H, W)")
    _check_input_size(op, input.shape)
    _check_params(op, kind, stride, padding, dilation)
    _check_weight_shape(op, kind, weight_size, input.shape[1])
    g = _spatial(op, kind, input.shape, weight_size, stride, padding, dilation)
    _check_grad_output_shape(op, grad_output, g)
    return g


def check_pointwise_backward_input(op: str, grad_output, weight) -> Geometry:
    _check_float_tensor(op, "grad_output", grad_output)
    _check_4d(op, "grad_output", grad_output, "(N, C_out, H_out, W_out)")
    _check_float_tensor(op, "weight", weight)
    _check_4d(op, "weight", weight, WEIGHT_FORMS["pointwise"])
    n, _, h, w = grad_output.shape
    return check_backward_input(op, "pointwise", grad_output, weight, (n, weight.shape[1], h, w),
                                (), (), ())


def check_pointwise_backward_weight(op: str, grad_output, input) -> Geometry:
    _check_float_tensor(op, "grad_output", grad_output)
    _check_4d(op, "grad_output", grad_output, "(N, C_out, H_out, W_out)")
    _check_float_tensor(op, "input", input)
    _check_4d(op, "input", input, "(N, C, H, W)")
    return check_backward_weight(op, "pointwise", grad_output, input,
                                 (grad_output.shape[1], input.shape[1], 1, 1), (), (), ())


def check_separable(op: str, input, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding,
                    dilation, activation) -> Geometry:
    g = check_forward(op, "depthwise", input, dw_weight, dw_bias, stride, padding, dilation)
    _check_float_tensor(op, "pw_weight", pw_weight)
    _check_matches(op, "pw_weight", pw_weight, "input", input)
    w = pw_weight.shape
    if not (len(w) == 4 and w[0] >= 1 and w[1] == g.out_channels and w[2] == 1 and w[3] == 1):
        _fail(op, ": expected pw_weight of shape (C_out, ", g.out_channels,
              ", 1, 1) after a depthwise stage with ", g.out_channels, " channels, got ", _shape(w))
    if pw_bias is not None:
        _check_float_tensor(op, "pw_bias", pw_bias)
        _check_matches(op, "pw_bias", pw_bias, "input", input)
        if not (pw_bias.dim() == 1 and pw_bias.shape[0] == w[0]):
            _fail(op, ": expected pw_bias of shape (C_out,) = (", w[0], ",), got ", _shape(pw_bias.shape))
    if activation not in ("none", "relu"):
        _fail(op, ": expected activation to be 'none' or 'relu', got '", activation, "'")
    return g


def check_backward_bias(op: str, grad_output) -> None:
    _check_float_tensor(op, "grad_output", grad_output)
    _check_4d(op, "grad_output", grad_output, "(N, C_out, H_out, W_out)")


def _is_channels_last(t) -> bool:
    return (t is not None and t.dim() == 4 and not t.is_contiguous()
            and t.is_contiguous(memory_format=torch.channels_last))


def output_memory_format(t: torch.Tensor, weight: torch.Tensor | None = None) -> torch.memory_format:
    """The layout rule of every op's 4-D output (see csrc/common/checks.h): channels_last when
    the input (or grad_output) or the weight is channels_last."""
    if _is_channels_last(t) or _is_channels_last(weight):
        return torch.channels_last
    return torch.contiguous_format
