"""Depthwise atrous convolution: property tests against F.conv2d(groups=C) and hand-computed cases."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

import atrous.ops as ops

from helpers.conv_cases import DEVICES, ConvCase, check_case, conv_cases, device_algos

# Every rung of each device's kernel ladder (CPU: naive, rows, stencil, nhwc; CUDA: naive,
# tiled) and "auto" pass the same tests.
ALGOS = device_algos("depthwise_conv2d")


@pytest.mark.parametrize("device,algo", ALGOS)
@settings(max_examples=50)
@given(case=conv_cases("depthwise"))
def test_matches_torch_float64(device, algo, case):
    check_case(case, algo=algo, device=device)


@pytest.mark.parametrize("device,algo", ALGOS)
@settings(max_examples=20)
@given(case=conv_cases("depthwise", dtypes=(torch.float32,)))
def test_matches_torch_float32(device, algo, case):
    check_case(case, algo=algo, device=device)


@pytest.mark.parametrize("device,algo", ALGOS)
@settings(max_examples=25)
@given(case=conv_cases("depthwise", dtypes=(torch.float32, torch.float64), max_batch=2,
                       channels=[8, 15, 16, 17, 31, 33, 64, 65, 70]))
def test_matches_torch_wide_channels(device, algo, case):
    # Channel counts around the vector widths: full blocks, overlapping last blocks, tails.
    check_case(case, algo=algo, device=device)


@pytest.mark.parametrize("device,algo", ALGOS)
@pytest.mark.parametrize("dilation,padding", [(1, 1), (2, 2), (6, 6), (12, 12), (18, 18), (24, 24)])
def test_deeplab_rates_on_odd_planes(dilation, padding, device, algo):
    # ASPP-like rates on 33x33 and 65x65 planes, including d*(k-1) >= H at rate 18 and 24 on 33.
    for size in (33, 65):
        for layout in ("contiguous", "channels_last"):
            check_case(ConvCase("depthwise", 2, 3, 6, size, size, 3, 3, (1, 1), (padding, padding),
                                (dilation, dilation), True, layout, torch.float64), algo=algo, device=device)


@pytest.mark.parametrize("device,algo", ALGOS)
@pytest.mark.parametrize("kernel", [(1, 1), (3, 3), (5, 5), (7, 7), (2, 3)])
def test_kernel_sizes_with_stride_2_and_dilation(kernel, device, algo):
    for layout in ("contiguous", "channels_last"):
        check_case(ConvCase("depthwise", 1, 2, 4, 17, 16, *kernel, (2, 2), (3, 2), (2, 3), True,
                            layout, torch.float64), algo=algo, device=device)


@pytest.mark.parametrize("device,algo", ALGOS)
def test_wide_channel_blocks_and_tails(device, algo):
    # 70 channels: full vector blocks of the nhwc rung plus a tail; 37 columns: full register
    # chunks of the stencil rung plus a tail; padding larger than the kernel reach.
    check_case(ConvCase("depthwise", 2, 70, 70, 9, 37, 3, 3, (1, 1), (5, 4), (2, 1), True,
                        "channels_last", torch.float32), algo=algo, device=device)
    check_case(ConvCase("depthwise", 2, 70, 140, 9, 37, 3, 3, (1, 2), (3, 3), (2, 1), True,
                        "contiguous", torch.float64), algo=algo, device=device)



@pytest.mark.parametrize("device,algo", ALGOS)
@settings(max_examples=25)
@given(case=conv_cases("depthwise", dtypes=(torch.float32, torch.float64), unbatched=True))
def test_matches_torch_unbatched(device, algo, case):
    # An unbatched (C, H, W) input, as F.conv2d takes it: forward and every gradient.
    check_case(case, algo=algo, device=device)

@pytest.mark.parametrize("device", DEVICES)
def test_hand_computed_dilated_sum(device):
    # x = 0..24 on a 5x5 grid, a 3x3 kernel of ones, dilation 2, padding 2.
    # Centre output (2, 2) reads rows/cols {0, 2, 4}: 0+2+4+10+12+14+20+22+24 = 108.
    # Corner output (0, 0) reads rows/cols {-2, 0, 2}; only (0,0),(0,2),(2,0),(2,2) are inside:
    # 0 + 2 + 10 + 12 = 24. Output (0, 2) reads rows {-2,0,2} x cols {0,2,4}: 0+2+4+10+12+14 = 42.
    x = torch.arange(25, dtype=torch.float64, device=device).view(1, 1, 5, 5)
    w = torch.ones(1, 1, 3, 3, dtype=torch.float64, device=device)
    y = ops.depthwise_conv2d(x, w, padding=2, dilation=2)
    assert y.shape == (1, 1, 5, 5)
    assert y[0, 0, 2, 2].item() == 108
    assert y[0, 0, 0, 0].item() == 24
    assert y[0, 0, 0, 2].item() == 42
    # Without padding only the centre survives: (5 + 0 - 5) / 1 + 1 = 1.
    assert ops.depthwise_conv2d(x, w, dilation=2).flatten().tolist() == [108.0]


@pytest.mark.parametrize("device", DEVICES)
def test_depth_multiplier_channel_order(device):
    # Output channel c*m + k reads input channel c (F.conv2d's grouping), here m = 2:
    # channel 1 = 1 * x0, channel 2 = 10 * x1 (weights are 1x1 scalars 0.., 1, 10, 100).
    x = torch.stack([torch.full((2, 2), 1.0), torch.full((2, 2), 2.0)]).unsqueeze(0).double().to(device)
    w = torch.tensor([0.0, 1.0, 10.0, 100.0], dtype=torch.float64, device=device).view(4, 1, 1, 1)
    y = ops.depthwise_conv2d(x, w)
    assert y[0, :, 0, 0].tolist() == [0.0, 1.0, 20.0, 200.0]


@pytest.mark.parametrize("device", DEVICES)
def test_equals_independent_single_channel_convolutions(device):
    # A depthwise conv is C independent single-channel convs.
    torch.manual_seed(0)
    x = torch.randn(2, 5, 19, 23, dtype=torch.float64)
    w = torch.randn(5, 1, 3, 3, dtype=torch.float64)
    y = ops.depthwise_conv2d(x.to(device), w.to(device), padding=4, dilation=4).cpu()
    for c in range(5):
        single = F.conv2d(x[:, c:c + 1], w[c:c + 1], padding=4, dilation=4)
        torch.testing.assert_close(y[:, c:c + 1], single, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_batch_of_zero(device):
    x = torch.randn(0, 3, 8, 8, device=device)
    w = torch.randn(3, 1, 3, 3, device=device, requires_grad=True)
    y = ops.depthwise_conv2d(x, w, padding=2, dilation=2)
    assert y.shape == (0, 3, 8, 8)
    y.sum().backward()
    assert torch.equal(w.grad, torch.zeros_like(w))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("kernel,dilation", [(3, 6), (2, 1), (4, 3), (5, 2)])
def test_string_padding_matches_torch(padding, kernel, dilation, device):
    # Even kernels with odd dilation give an odd total padding for 'same': F.conv2d pads the
    # extra row/column at the bottom/right.
    torch.manual_seed(1)
    x = torch.randn(1, 3, 20, 15, dtype=torch.float64)
    w = torch.randn(3, 1, kernel, kernel, dtype=torch.float64)
    y = ops.depthwise_conv2d(x.to(device), w.to(device), padding=padding, dilation=dilation).cpu()
    torch.testing.assert_close(y, F.conv2d(x, w, padding=padding, dilation=dilation, groups=3))
