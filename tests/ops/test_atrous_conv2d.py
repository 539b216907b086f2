"""Dense atrous convolution (im2col + GEMM): property tests and hand-computed cases."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

import atrous.ops as ops

from helpers.conv_cases import DEVICES, ConvCase, check_case, conv_cases, device_algos  # noqa: F401

ALGOS = device_algos("atrous_conv2d")  # each device's ladder


@pytest.mark.parametrize("device,algo", ALGOS)
@settings(max_examples=40)
@given(case=conv_cases("dense"))
def test_matches_torch_float64(device, algo, case):
    check_case(case, algo=algo, device=device)


@pytest.mark.parametrize("device,algo", ALGOS)
@settings(max_examples=20)
@given(case=conv_cases("dense", dtypes=(torch.float32,)))
def test_matches_torch_float32(device, algo, case):
    check_case(case, algo=algo, device=device)



@pytest.mark.parametrize("device,algo", ALGOS)
@settings(max_examples=25)
@given(case=conv_cases("dense", dtypes=(torch.float32, torch.float64), unbatched=True))
def test_matches_torch_unbatched(device, algo, case):
    # An unbatched (C, H, W) input, as F.conv2d takes it: forward and every gradient.
    check_case(case, algo=algo, device=device)

@pytest.mark.parametrize("device", DEVICES)
def test_hand_computed_two_channels(device):
    # Channel 0 is all ones, channel 1 all twos, on a 3x3 plane. A 2x2 kernel with dilation 2
    # reads the four corners; weights 1 on channel 0 and 10 on channel 1:
    # 4 * (1 * 1) + 4 * (10 * 2) = 84.
    x = torch.stack([torch.ones(3, 3), 2 * torch.ones(3, 3)]).unsqueeze(0).double().to(device)
    # (1, 2, 2, 2)
    w = torch.stack([torch.ones(2, 2), 10 * torch.ones(2, 2)]).unsqueeze(0).double().to(device)
    assert ops.atrous_conv2d(x, w, dilation=2).flatten().tolist() == [84.0]


@pytest.mark.parametrize("stride,padding,dilation", [
    (1, 2, 2), (1, 4, 4), (2, 1, 1), (2, 3, 2), ((1, 2), (3, 1), (3, 1)), (1, 0, 1),
])
@pytest.mark.parametrize("device", DEVICES)
def test_resnet_like_layers(stride, padding, dilation, device):
    # ResNet multi-grid / ASPP style layers, and the 1x1 stride-1 path that skips im2col.
    torch.manual_seed(3)
    kernel = 1 if padding == 0 else 3
    x = torch.randn(2, 16, 21, 19, dtype=torch.float64)
    w = torch.randn(24, 16, kernel, kernel, dtype=torch.float64)
    b = torch.randn(24, dtype=torch.float64)
    for layout in (torch.contiguous_format, torch.channels_last):
        y = ops.atrous_conv2d(x.contiguous(memory_format=layout).to(device), w.to(device), b.to(device),
                              stride, padding, dilation).cpu()
        torch.testing.assert_close(y, F.conv2d(x, w, b, stride, padding, dilation), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_one_by_one_equals_pointwise(device):
    torch.manual_seed(4)
    x = torch.randn(2, 9, 7, 5, dtype=torch.float64, device=device)
    w = torch.randn(4, 9, 1, 1, dtype=torch.float64, device=device)
    torch.testing.assert_close(ops.atrous_conv2d(x, w), ops.pointwise_conv2d(x, w), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_dilated_kernel_wider_than_input_with_padding(device):
    # d*(k-1) = 24 >= H = 9: only the centre tap ever lands inside the image.
    torch.manual_seed(5)
    x = torch.randn(1, 3, 9, 9, dtype=torch.float64)
    w = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    y = ops.atrous_conv2d(x.to(device), w.to(device), padding=12, dilation=12).cpu()
    torch.testing.assert_close(y, F.conv2d(x, w[:, :, 1:2, 1:2]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("size,dilation,padding,stride",
                         [(9, 12, 12, 1), (9, 6, 6, 1), (13, 2, 2, 2), (11, 4, 0, 1)])
def test_implicit_gemm_deep_input_and_dead_taps(dtype, layout, size, dilation, padding, stride):
    # C = 130: K = 9 * 130 spans several of the GEMM's K blocks, cut inside one tap's channels
    # (channels_last) or one channel's taps (NCHW). At dilation 12 on 9x9 only the centre tap reads
    # the image, so the implicit GEMM sums that tap alone; the result must not change.
    torch.manual_seed(7)
    x = torch.randn(2, 130, size, size + 2, dtype=dtype).contiguous(memory_format=layout)
    w = torch.randn(37, 130, 3, 3, dtype=dtype).contiguous(memory_format=layout)
    b = torch.randn(37, dtype=dtype)
    y = ops.atrous_conv2d(x, w, b, stride, padding, dilation, algo="implicit")
    want = F.conv2d(x.double(), w.double(), b.double(), stride, padding, dilation)
    scale = want.abs().max().item()
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert (y.double() - want).abs().max().item() <= tol * scale
    assert y.is_contiguous(memory_format=layout)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("kernel,padding,dilation", [((3, 3), (2, 2), (2, 2)), ((3, 3), (12, 12), (12, 12)),
                                                     ((2, 3), (0, 1), (1, 3)), ((3, 3), (5, 1), (2, 1))])
def test_backward_input_as_flipped_forward(layout, kernel, padding, dilation):
    # Stride 1: grad_input is the forward convolution of grad_output by the flipped kernel with the
    # channels swapped, padding d*(k-1) - p; (5, 1) with d = 2 has d*(k-1) - p < 0, the col2im path.
    torch.manual_seed(8)
    x = torch.randn(2, 70, 9, 11, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()
    w = torch.randn(9, 70, *kernel, dtype=torch.float64)
    y = F.conv2d(x, w, None, 1, padding, dilation)
    gy = torch.randn_like(y)
    (want,) = torch.autograd.grad(y, x, gy)
    for algo in ("auto", "implicit", "im2col"):
        gx = torch.ops.atrous.atrous_conv2d_backward_input(gy, w, list(x.shape), [1, 1], list(padding),
                                                           list(dilation), algo)
        torch.testing.assert_close(gx, want, rtol=1e-10, atol=1e-10)
        assert gx.is_contiguous(memory_format=layout)


def test_every_tap_in_the_padding_gives_the_bias():
    # A 1x1 kernel, stride 10, padding 2 on 3x3: the one output pixel reads (-2, -2), padding.
    x = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    w = torch.randn(4, 3, 1, 1, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    for layout in (torch.contiguous_format, torch.channels_last):
        y = ops.atrous_conv2d(x.contiguous(memory_format=layout), w, b, stride=10, padding=2)
        torch.testing.assert_close(y, F.conv2d(x, w, b, stride=10, padding=2), rtol=0, atol=0)
        assert y.flatten(1).eq(b[None, :]).all()


@pytest.mark.parametrize("op_name", ["depthwise", "pointwise", "dense"])
@pytest.mark.parametrize("input_cl,weight_cl", [(False, False), (True, False), (False, True), (True, True)])
def test_output_layout_follows_pytorch(op_name, input_cl, weight_cl):
    # PyTorch's rule: channels_last out when the input or the weight is channels_last, so a
    # model converted with .to(memory_format=torch.channels_last) stays channels_last.
    torch.manual_seed(6)
    x = torch.randn(2, 8, 9, 9, dtype=torch.float64)
    shapes = {"depthwise": (8, 1, 3, 3), "pointwise": (6, 8, 1, 1), "dense": (6, 8, 3, 3)}
    w = torch.randn(*shapes[op_name], dtype=torch.float64)
    groups = 8 if op_name == "depthwise" else 1
    pad = 0 if op_name == "pointwise" else 1
    cl = torch.channels_last
    if input_cl:
        x = x.contiguous(memory_format=cl)
    if weight_cl:
        w = w.contiguous(memory_format=cl)
    ours = {"depthwise": lambda: ops.depthwise_conv2d(x, w, padding=pad),
            "pointwise": lambda: ops.pointwise_conv2d(x, w),
            "dense": lambda: ops.atrous_conv2d(x, w, padding=pad)}[op_name]()
    theirs = F.conv2d(x, w, padding=pad, groups=groups)
    torch.testing.assert_close(ours, theirs)
    assert ours.is_contiguous(memory_format=cl) == theirs.is_contiguous(memory_format=cl)
    assert ours.is_contiguous() == theirs.is_contiguous()
