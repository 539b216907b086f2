"""Readable pure-PyTorch versions of the three atrous ops: the first rung of the teaching ladder.

No F.conv2d here. Each op is an explicit loop over the kernel taps: tap (i, j) of a kernel
dilated by (dh, dw) reads the input shifted by (i*dh, j*dw), subsampled by the stride. The
tests use these as a second oracle beside F.conv2d, and the tutorials start from them.

For one output pixel (oh, ow) of a depthwise convolution with multiplier m:

    out[n, c*m + k, oh, ow] = bias[c*m + k]
        + sum_{i, j} weight[c*m + k, 0, i, j] * x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]

where x_pad is the input with ph rows and pw columns of zeros on each side.
"""

from __future__ import annotations

import torch

from .receptive_field.arithmetic import _pair, conv_output_size, effective_kernel_size


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """floor((size + 2p - k_eff) / s) + 1 with k_eff = d*(k - 1) + 1, the dilated kernel's extent."""
    return conv_output_size(size, kernel, stride, padding, dilation)


def _zero_pad(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    n, c, h, w = x.shape
    padded = x.new_zeros(n, c, h + 2 * ph, w + 2 * pw)  # (N, C, H + 2ph, W + 2pw)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    return padded


def _tap(x_pad: torch.Tensor, i: int, j: int, out_hw, stride, dilation) -> torch.Tensor:
    """What tap (i, j) sees for every output pixel: x_pad[:, :, oh*sh + i*dh, ow*sw + j*dw]."""
    (oh, ow), (sh, sw), (dh, dw) = out_hw, stride, dilation
    top, left = i * dh, j * dw
    return x_pad[:, :, top:top + (oh - 1) * sh + 1:sh, left:left + (ow - 1) * sw + 1:sw]  # (N, C, Ho, Wo)


def _geometry(x, weight, stride, padding, dilation):
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    dilation = _pair(dilation, "dilation")
    kh, kw = weight.shape[2:]
    if any(n + 2 * p < effective_kernel_size(k, d)
           for n, k, p, d in zip(x.shape[2:], (kh, kw), padding, dilation)):
        raise RuntimeError(f"reference: the dilated kernel is larger than the padded input "
                           f"(input {tuple(x.shape[2:])}, padding {padding}, kernel {(kh, kw)}, "
                           f"dilation {dilation})")
    out_hw = (output_size(x.shape[2], kh, stride[0], padding[0], dilation[0]),
              output_size(x.shape[3], kw, stride[1], padding[1], dilation[1]))
    return stride, padding, dilation, out_hw


def depthwise_conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """Depthwise atrous convolution; weight (C*m, 1, kh, kw). Equals F.conv2d(..., groups=C)."""
    stride, padding, dilation, out_hw = _geometry(x, weight, stride, padding, dilation)
    multiplier = weight.shape[0] // x.shape[1]
    # Output channel c*m + k reads input channel c: repeat each input channel m times.
    x_pad = _zero_pad(x, *padding).repeat_interleave(multiplier, dim=1)  # (N, C*m, Hp, Wp)
    out = x.new_zeros(x.shape[0], weight.shape[0], *out_hw)  # (N, C*m, Ho, Wo)
    for i in range(weight.shape[2]):
        for j in range(weight.shape[3]):
            w_ij = weight[:, 0, i, j].view(1, -1, 1, 1)  # (1, C*m, 1, 1)
            out = out + w_ij * _tap(x_pad, i, j, out_hw, stride, dilation)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def pointwise_conv2d(x, weight, bias=None):
    """Pointwise (1x1) convolution; weight (C_out, C, 1, 1): out[n, o] = sum_c weight[o, c] * x[n, c]."""
    out = torch.einsum("oc,nchw->nohw", weight[:, :, 0, 0], x)  # (N, C_out, H, W)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def atrous_conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """Dense atrous convolution (groups=1); weight (C_out, C, kh, kw). Equals F.conv2d(...).

    Each tap is a pointwise convolution of the shifted input, so the whole op is a sum of
    kh*kw pointwise convolutions: the idea behind im2col + GEMM.
    """
    stride, padding, dilation, out_hw = _geometry(x, weight, stride, padding, dilation)
    x_pad = _zero_pad(x, *padding)
    out = x.new_zeros(x.shape[0], weight.shape[0], *out_hw)  # (N, C_out, Ho, Wo)
    for i in range(weight.shape[2]):
        for j in range(weight.shape[3]):
            out = out + torch.einsum("oc,nchw->nohw", weight[:, :, i, j],
                                     _tap(x_pad, i, j, out_hw, stride, dilation))
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out
