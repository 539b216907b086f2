"""atrous.reference, the readable pure-PyTorch ops: hand-computed cases and agreement with F.conv2d."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

from atrous import reference

from helpers.conv_cases import conv_cases


def test_output_size_formula():
    # floor((H + 2p - k_eff) / s) + 1 with k_eff = d(k-1) + 1.
    assert reference.output_size(33, 3, 1, 6, 6) == 33      # ASPP keeps the size
    assert reference.output_size(513, 3, 2, 1, 1) == 257    # Xception entry flow
    assert reference.output_size(5, 3, 1, 0, 2) == 1        # k_eff = 5 fills the input
    assert reference.output_size(8, 2, 3, 1, 3) == 3        # (8 + 2 - 4) // 3 + 1 = 3


def test_depthwise_hand_computed():
    # 0..24 on 5x5, ones 3x3, dilation 2, no padding: the 9 taps at rows/cols {0, 2, 4} sum to 108.
    x = torch.arange(25.0).view(1, 1, 5, 5)
    w = torch.ones(1, 1, 3, 3)
    assert reference.depthwise_conv2d(x, w, dilation=2).item() == 108.0


def test_dense_is_sum_over_channels():
    x = torch.stack([torch.ones(3, 3), 2 * torch.ones(3, 3)]).unsqueeze(0)
    w = torch.stack([torch.ones(2, 2), 10 * torch.ones(2, 2)]).unsqueeze(0)
    assert reference.atrous_conv2d(x, w, dilation=2).item() == 84.0


def test_too_large_kernel_is_rejected():
    with pytest.raises(RuntimeError, match="larger than the padded input"):
        reference.depthwise_conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3), dilation=3)


@settings(max_examples=30)
@given(conv_cases("depthwise"))
def test_depthwise_matches_torch(case):
    x = torch.randn(case.n, case.c, case.h, case.w, dtype=torch.float64)
    w = torch.randn(*case.weight_shape(), dtype=torch.float64)
    torch.testing.assert_close(
        reference.depthwise_conv2d(x, w, None, case.stride, case.padding, case.dilation),
        F.conv2d(x, w, None, case.stride, case.padding, case.dilation, groups=case.c))


@settings(max_examples=30)
@given(conv_cases("dense"))
def test_dense_matches_torch(case):
    x = torch.randn(case.n, case.c, case.h, case.w, dtype=torch.float64)
    w = torch.randn(*case.weight_shape(), dtype=torch.float64)
    torch.testing.assert_close(
        reference.atrous_conv2d(x, w, None, case.stride, case.padding, case.dilation),
        F.conv2d(x, w, None, case.stride, case.padding, case.dilation))
