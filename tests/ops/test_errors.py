"""Bad input: each class of mistake raises a clear error naming the argument, before any kernel runs.

Every case runs three ways and must give the same message: through the Python wrapper on CPU
(checked by the C++ kernels), on meta tensors (checked by the Python fake kernels, which is what
torch.compile and torch.export see) and, where the wrapper is bypassed, by calling
torch.ops.atrous directly.
"""

import re

import pytest
import torch
import torch.nn.functional as F

import atrous.ops as ops

A = torch.ops.atrous


def t(*shape, dtype=torch.float32, device="cpu"):
    return torch.zeros(*shape, dtype=dtype, device=device)


# id -> (call(device) -> None, message regex). Each call builds its tensors on `device`.
CASES = {
    # The wrappers take (C, H, W) as F.conv2d does; the registered operators only (N, C, H, W).
    "input_2d": (lambda d: ops.depthwise_conv2d(t(8, 8, device=d), t(3, 1, 3, 3, device=d)),
                 r"atrous.depthwise_conv2d: expected input to be 3-D \(C, H, W\) or 4-D \(N, C, H, W\), "
                 r"got a 2-D tensor of shape \[8, 8\]"),
    "input_5d_pointwise": (lambda d: ops.pointwise_conv2d(t(1, 1, 3, 8, 8, device=d),
                                                          t(4, 3, 1, 1, device=d)),
                           r"expected input to be 3-D \(C, H, W\) or 4-D \(N, C, H, W\), got a 5-D tensor"),
    "direct_call_input_3d": (
        lambda d: A.depthwise_conv2d(t(3, 8, 8, device=d), t(3, 1, 3, 3, device=d), None, [1, 1], [0, 0],
                                     [1, 1]),
        r"expected input to be 4-D \(N, C, H, W\), got a 3-D tensor of shape \[3, 8, 8\]"),
    "depthwise_channel_mismatch": (
        lambda d: ops.depthwise_conv2d(t(1, 3, 8, 8, device=d), t(5, 1, 3, 3, device=d)),
        r"expected weight of shape \(C\*m, 1, kh, kw\) = \(3\*m, 1, kh, kw\) for an input with C=3 channels"
        r".*got \[5, 1, 3, 3\]"),
    "depthwise_weight_not_depthwise": (
        lambda d: ops.depthwise_conv2d(t(1, 3, 8, 8, device=d), t(3, 3, 3, 3, device=d)),
        r"expected weight of shape \(C\*m, 1, kh, kw\).*got \[3, 3, 3, 3\]"),
    "depthwise_weight_3d": (
        lambda d: ops.depthwise_conv2d(t(1, 3, 8, 8, device=d), t(3, 3, 3, device=d)),
        r"expected weight to be 4-D \(C\*m, 1, kh, kw\), got shape \[3, 3, 3\]"),
    "pointwise_channel_mismatch": (
        lambda d: ops.pointwise_conv2d(t(1, 3, 8, 8, device=d), t(4, 2, 1, 1, device=d)),
        r"expected weight of shape \(C_out, C, 1, 1\) = \(C_out, 3, 1, 1\) for an input with C=3 channels, "
        r"got \[4, 2, 1, 1\]"),
    "pointwise_not_1x1": (
        lambda d: ops.pointwise_conv2d(t(1, 3, 8, 8, device=d), t(4, 3, 3, 3, device=d)),
        r"expected weight of shape \(C_out, C, 1, 1\).*got \[4, 3, 3, 3\]"),
    "dense_channel_mismatch": (
        lambda d: ops.atrous_conv2d(t(1, 3, 8, 8, device=d), t(4, 2, 3, 3, device=d)),
        r"expected weight of shape \(C_out, C, kh, kw\) = \(C_out, 3, kh, kw\) "
        r"for an input with C=3 channels, got \[4, 2, 3, 3\]"),
    "stride_zero": (
        lambda d: ops.depthwise_conv2d(t(1, 3, 8, 8, device=d), t(3, 1, 3, 3, device=d), stride=(0, 1)),
        r"expected stride >= 1 in both dimensions, got \[0, 1\]"),
    "dilation_zero": (
        lambda d: ops.atrous_conv2d(t(1, 3, 8, 8, device=d), t(3, 3, 3, 3, device=d), dilation=0),
        r"expected dilation >= 1 in both dimensions, got \[0, 0\]"),
    "negative_padding": (
        lambda d: ops.depthwise_conv2d(t(1, 3, 8, 8, device=d), t(3, 1, 3, 3, device=d), padding=(1, -1)),
        r"expected padding >= 0 in both dimensions, got \[1, -1\]"),
    "dtype_mismatch": (
        lambda d: ops.depthwise_conv2d(t(1, 3, 8, 8, device=d), t(3, 1, 3, 3, dtype=torch.float64, device=d)),
        r"expected weight to have the same dtype as input \(Float\), got Double"),
    "bias_dtype_mismatch": (
        lambda d: ops.pointwise_conv2d(t(1, 3, 8, 8, device=d), t(4, 3, 1, 1, device=d),
                                       t(4, dtype=torch.float64, device=d)),
        r"expected bias to have the same dtype as input \(Float\), got Double"),
    "unsupported_dtype_int": (
        lambda d: ops.depthwise_conv2d(t(1, 3, 8, 8, dtype=torch.int64, device=d), t(3, 1, 3, 3, device=d)),
        r"expected input of dtype torch.float32 or torch.float64, got Long"),
    "unsupported_dtype_half": (
        lambda d: ops.atrous_conv2d(t(1, 3, 8, 8, dtype=torch.float16, device=d),
                                    t(3, 3, 3, 3, dtype=torch.float16, device=d)),
        r"expected input of dtype torch.float32 or torch.float64, got Half"),
    "bias_wrong_length": (
        lambda d: ops.depthwise_conv2d(t(1, 3, 8, 8, device=d), t(6, 1, 3, 3, device=d), t(3, device=d)),
        r"expected bias of shape \(C_out,\) = \(6,\), got \[3\]"),
    "bias_2d": (
        lambda d: ops.atrous_conv2d(t(1, 3, 8, 8, device=d), t(4, 3, 3, 3, device=d), t(4, 1, device=d)),
        r"expected bias of shape \(C_out,\) = \(4,\), got \[4, 1\]"),
    "kernel_wider_than_padded_input": (
        lambda d: ops.depthwise_conv2d(t(1, 3, 5, 9, device=d), t(3, 1, 3, 3, device=d), padding=1,
                                       dilation=4),
        r"Calculated padded input size per channel: \(7 x 11\). Kernel size \(dilated\): \(9 x 9\). "
        r"Kernel size can't be greater than actual input size"),
    "empty_channels": (
        lambda d: ops.pointwise_conv2d(t(1, 0, 8, 8, device=d), t(4, 0, 1, 1, device=d)),
        r"expected input \(N, C, H, W\) with C, H, W >= 1, got shape \[1, 0, 8, 8\]"),
    # Backward ops, called directly as autograd or a user would.
    "backward_input_wrong_grad_shape": (
        lambda d: A.depthwise_conv2d_backward_input(t(1, 3, 7, 8, device=d), t(3, 1, 3, 3, device=d),
                                                    [1, 3, 8, 8], [1, 1], [1, 1], [1, 1]),
        r"expected grad_output of shape \[1, 3, 8, 8\] \(the forward output's shape\), "
        r"got \[1, 3, 7, 8\]"),
    "backward_input_bad_input_size": (
        lambda d: A.atrous_conv2d_backward_input(t(1, 3, 8, 8, device=d), t(3, 3, 3, 3, device=d),
                                                 [3, 8, 8], [1, 1], [1, 1], [1, 1]),
        r"expected input_size \(N, C, H, W\), got \[3, 8, 8\]"),
    "backward_weight_channel_mismatch": (
        lambda d: A.depthwise_conv2d_backward_weight(t(1, 4, 8, 8, device=d), t(1, 3, 8, 8, device=d),
                                                     [4, 1, 3, 3], [1, 1], [1, 1], [1, 1]),
        r"expected weight of shape \(C\*m, 1, kh, kw\) = \(3\*m, 1, kh, kw\).*got \[4, 1, 3, 3\]"),
    "pointwise_backward_weight_3d_input": (
        lambda d: A.pointwise_conv2d_backward_weight(t(1, 4, 8, 8, device=d), t(3, 8, 8, device=d)),
        r"expected input to be 4-D \(N, C, H, W\), got a 3-D tensor of shape \[3, 8, 8\]"),
    "bias_grad_3d": (lambda d: A.conv2d_backward_bias(t(4, 8, 8, device=d)),
                     r"expected grad_output to be 4-D \(N, C_out, H_out, W_out\), got a 3-D tensor"),
    "unknown_algo": (
        lambda d: ops.depthwise_conv2d(t(1, 3, 8, 8, device=d), t(3, 1, 3, 3, device=d), algo="fast"),
        r"expected algo to be one of 'auto', 'naive', 'rows', 'stencil', 'nhwc', got 'fast'"),
    "unknown_algo_pointwise_backward": (
        lambda d: A.pointwise_conv2d_backward_input(t(1, 4, 8, 8, device=d), t(4, 3, 1, 1, device=d),
                                                    "im2col"),
        r"expected algo to be one of 'auto', 'naive', 'blocked', got 'im2col'"),
    "direct_call_stride_not_pair": (
        lambda d: A.atrous_conv2d(t(1, 3, 8, 8, device=d), t(3, 3, 3, 3, device=d), None, [1], [1, 1],
                                  [1, 1]),
        r"expected stride to be a pair \(sh, sw\), got \[1\]"),
}


def _error(call, device):
    with pytest.raises(Exception) as info:
        call(device)
    return info.value


@pytest.mark.parametrize("case", CASES)
def test_error_message_on_cpu_and_meta(case):
    call, pattern = CASES[case]
    on_cpu, on_meta = _error(call, "cpu"), _error(call, "meta")
    assert isinstance(on_cpu, RuntimeError), f"{type(on_cpu).__name__}: {on_cpu}"
    assert re.search(pattern, str(on_cpu)), str(on_cpu)
    assert str(on_cpu).startswith("atrous."), str(on_cpu)  # names the op
    # The fake kernels (meta) say exactly what the C++ kernels say.
    assert type(on_meta) is type(on_cpu)
    assert str(on_meta) == str(on_cpu)


def test_kernel_too_large_is_the_same_kind_of_error_as_torch():
    x, w = t(1, 3, 5, 9), t(3, 1, 3, 3)
    with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
        F.conv2d(x, w, padding=1, dilation=4, groups=3)
    with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
        ops.depthwise_conv2d(x, w, padding=1, dilation=4)


@pytest.mark.parametrize("kwargs,exc,pattern", [
    (dict(stride=(1, 2, 3)), TypeError, r"expected stride to be an int or a pair of ints, got \(1, 2, 3\)"),
    (dict(dilation=1.5), TypeError, r"expected dilation to be an int or a pair of ints, got 1.5"),
    (dict(padding="full"), ValueError,
     r"expected padding to be an int, a pair, 'same' or 'valid', got 'full'"),
    (dict(padding="same", stride=2), ValueError, r"padding='same' is not supported for strided convolutions"),
    (dict(stride=True), TypeError, r"expected stride to be an int or a pair of ints, got True"),
])
@pytest.mark.parametrize("op", [ops.depthwise_conv2d, ops.atrous_conv2d])
def test_argument_forms(op, kwargs, exc, pattern):
    weight = t(3, 1, 3, 3) if op is ops.depthwise_conv2d else t(3, 3, 3, 3)
    with pytest.raises(exc, match=pattern):
        op(t(1, 3, 8, 8), weight, **kwargs)


def test_device_mismatch_is_named():
    with pytest.raises(RuntimeError, match=r"expected weight on the same device as input \(cpu\), got meta"):
        ops.depthwise_conv2d(t(1, 3, 8, 8), t(3, 1, 3, 3, device="meta"))
    with pytest.raises(RuntimeError, match=r"expected bias on the same device as input \(cpu\), got meta"):
        ops.pointwise_conv2d(t(1, 3, 8, 8), t(4, 3, 1, 1), t(4, device="meta"))


def test_non_tensor_arguments():
    with pytest.raises(TypeError, match="expected input to be a torch.Tensor, got list"):
        ops.pointwise_conv2d([[1.0]], t(4, 3, 1, 1))
    with pytest.raises(TypeError, match="expected weight to be a torch.Tensor, got NoneType"):
        ops.depthwise_conv2d(t(1, 3, 8, 8), None)


def test_errors_leave_the_interpreter_usable():
    # A burst of bad calls straight into the C++ ops, then a good one.
    for call, _ in CASES.values():
        with pytest.raises(RuntimeError):
            call("cpu")
    y = ops.depthwise_conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 3, 3), padding=1)
    assert y[0, 0, 1, 1].item() == 9.0
