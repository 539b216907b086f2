"""Pointwise (1x1) convolution on the project's GEMM: property tests and hand-computed cases."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

import atrous.ops as ops
from conv_cases import ConvCase, check_case, conv_cases, ladder

ALGOS = ladder("pointwise_conv2d")


@pytest.mark.parametrize("algo", ALGOS)
@settings(max_examples=40)
@given(case=conv_cases("pointwise", max_batch=3))
def test_matches_torch_float64(algo, case):
    check_case(case, algo=algo)


@pytest.mark.parametrize("algo", ALGOS)
@settings(max_examples=20)
@given(case=conv_cases("pointwise", dtypes=(torch.float32,)))
def test_matches_torch_float32(algo, case):
    check_case(case, algo=algo)


def test_hand_computed():
    # Two channels [1, 2] and [3, 4] over two pixels; weight rows (1, 10) and (100, 1000):
    # out0 = 1*x0 + 10*x1 = [31, 42]; out1 = 100*x0 + 1000*x1 = [3100, 4200]; bias (0.5, -1).
    x = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]], dtype=torch.float64)  # (1, 2, 1, 2)
    w = torch.tensor([[1.0, 10.0], [100.0, 1000.0]], dtype=torch.float64).view(2, 2, 1, 1)
    b = torch.tensor([0.5, -1.0], dtype=torch.float64)
    y = ops.pointwise_conv2d(x, w, b)
    assert y.tolist() == [[[[31.5, 42.5]], [[3099.0, 4199.0]]]]


@pytest.mark.parametrize("c_in,c_out,size", [
    (728, 728, 33),   # Xception middle flow
    (2048, 256, 9),   # ASPP projection (smaller plane for speed)
    (304, 256, 17),   # decoder
    (13, 7, 65),      # sizes that are not multiples of the register tile
    (300, 5, 1),      # K larger than one K block, a single pixel
])
def test_gemm_blocking_edges_float64(c_in, c_out, size):
    # Exercises M, N, K across several cache blocks and ragged edges of the 6x8 / 6x16 tiles.
    torch.manual_seed(c_in + c_out)
    x = torch.randn(2, c_in, size, size, dtype=torch.float64)
    w = torch.randn(c_out, c_in, 1, 1, dtype=torch.float64)
    for layout in (torch.contiguous_format, torch.channels_last):
        xl = x.contiguous(memory_format=layout)
        torch.testing.assert_close(ops.pointwise_conv2d(xl, w), F.conv2d(x, w), rtol=1e-10, atol=1e-10)


def test_float32_large_k_accuracy():
    # K = 2048 summed in float32 registers per K block; error stays at float32 GEMM level.
    torch.manual_seed(0)
    x = torch.randn(1, 2048, 9, 9)
    w = torch.randn(64, 2048, 1, 1)
    expected = F.conv2d(x.double(), w.double())
    err = (ops.pointwise_conv2d(x, w).double() - expected).abs().max().item()
    assert err < 1e-4 * expected.abs().max().item()
