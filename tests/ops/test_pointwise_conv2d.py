"""Pointwise (1x1) convolution on the project's GEMM: property tests and hand-computed cases."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

import atrous.ops as ops

from helpers.conv_cases import DEVICES, ConvCase, check_case, conv_cases, device_algos  # noqa: F401

ALGOS = device_algos("pointwise_conv2d")  # each device's ladder


@pytest.mark.parametrize("device,algo", ALGOS)
@settings(max_examples=40)
@given(case=conv_cases("pointwise", max_batch=3))
def test_matches_torch_float64(device, algo, case):
    check_case(case, algo=algo, device=device)


@pytest.mark.parametrize("device,algo", ALGOS)
@settings(max_examples=20)
@given(case=conv_cases("pointwise", dtypes=(torch.float32,)))
def test_matches_torch_float32(device, algo, case):
    check_case(case, algo=algo, device=device)



@pytest.mark.parametrize("device,algo", ALGOS)
@settings(max_examples=25)
@given(case=conv_cases("pointwise", dtypes=(torch.float32, torch.float64), unbatched=True))
def test_matches_torch_unbatched(device, algo, case):
    # An unbatched (C, H, W) input, as F.conv2d takes it: forward and every gradient.
    check_case(case, algo=algo, device=device)

@pytest.mark.parametrize("device", DEVICES)
def test_hand_computed(device):
    # Two channels [1, 2] and [3, 4] over two pixels; weight rows (1, 10) and (100, 1000):
    # out0 = 1*x0 + 10*x1 = [31, 42]; out1 = 100*x0 + 1000*x1 = [3100, 4200]; bias (0.5, -1).
    x = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]], dtype=torch.float64, device=device)  # (1, 2, 1, 2)
    w = torch.tensor([[1.0, 10.0], [100.0, 1000.0]], dtype=torch.float64, device=device).view(2, 2, 1, 1)
    b = torch.tensor([0.5, -1.0], dtype=torch.float64, device=device)
    y = ops.pointwise_conv2d(x, w, b)
    assert y.tolist() == [[[[31.5, 42.5]], [[3099.0, 4199.0]]]]


@pytest.mark.parametrize("c_in,c_out,size", [
    (728, 728, 33),   # Xception middle flow
    (2048, 256, 9),   # ASPP projection (smaller plane for speed)
    (304, 256, 17),   # decoder
    (13, 7, 65),      # sizes that are not multiples of the register tile
    (300, 5, 1),      # K larger than one K block, a single pixel
])
@pytest.mark.parametrize("device", DEVICES)
def test_gemm_blocking_edges_float64(c_in, c_out, size, device):
    # Exercises M, N, K across several cache blocks and ragged edges of the register tiles
    # (CPU 6x8 / 6x16; CUDA 64x64 block tiles with K steps of 16).
    torch.manual_seed(c_in + c_out)
    x = torch.randn(2, c_in, size, size, dtype=torch.float64)
    w = torch.randn(c_out, c_in, 1, 1, dtype=torch.float64)
    for layout in (torch.contiguous_format, torch.channels_last):
        xl = x.contiguous(memory_format=layout).to(device)
        torch.testing.assert_close(ops.pointwise_conv2d(xl, w.to(device)).cpu(), F.conv2d(x, w),
                                   rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_large_k_accuracy(device):
    # K = 2048 summed in float32 registers per K block; error stays at float32 GEMM level.
    torch.manual_seed(0)
    x = torch.randn(1, 2048, 9, 9)
    w = torch.randn(64, 2048, 1, 1)
    expected = F.conv2d(x.double(), w.double())
    err = (ops.pointwise_conv2d(x.to(device), w.to(device)).cpu().double() - expected).abs().max().item()
    assert err < 1e-4 * expected.abs().max().item()
