# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. Dense atrous convolution: dilated im2col + GEMM
#
# **What you will learn**
# - how a dense (all-channels) atrous convolution becomes one matrix product: **dilated im2col**
#   copies, for every output position, the $C k^2$ input values its taps read into one column,
#   and the convolution is then the weight matrix times the column matrix;
# - that dilation changes only *which* pixels im2col copies (tap $(i, j)$ reads at offset
#   $(i d, j d)$), never the shape of the GEMM;
# - what it costs: the column matrix is about $k^2$ times the input at stride 1;
# - that `atrous.ops.atrous_conv2d` (its `im2col` rung is the C++ version of this notebook, on
#   the blocked GEMM of notebook 6) equals `F.conv2d`.
#
# Every claim is checked by an `assert`. Nothing here is timed, and nothing needs a GPU.

# %% [markdown]
# **Setup.** Where atrous is installed (the course environment, `make install`) the next cell does
# nothing. On Colab or a fresh runtime it installs atrous first, from `ATROUS_PIP_SPEC` if set (the
# git URL of the atrous repository, or a path: `%env ATROUS_PIP_SPEC=git+https://...`), else from
# the checkout this notebook sits in. Compiling the kernels takes a few minutes.

# %%
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("atrous") is None:  # Colab or a fresh runtime
    spec = os.environ.get("ATROUS_PIP_SPEC", "..")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation", spec], check=True)

# %%
import torch
import torch.nn.functional as F

import atrous.ops as ops

torch.manual_seed(0)

# %% [markdown]
# ## 7.1 im2col by hand, with dilation
#
# For output $(o_h, o_w)$, tap $(i, j)$ of channel $c$ reads the padded input at
# $(o_h s + i d,\ o_w s + j d)$. For a fixed tap, those reads over all outputs form one strided
# slice of the padded input, $H_{\text{out}} \times W_{\text{out}}$ values: so im2col is a loop
# over the $k^2$ taps, each one slice, stacked into rows $(c, i, j)$ of the column matrix.

# %%
def im2col(x: torch.Tensor, k: int, stride: int, padding: int, dilation: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C k k, H_out W_out): one column per output, rows ordered (c, i, j)."""
    n, c, h, w = x.shape
    k_eff = dilation * (k - 1) + 1
    ho, wo = (h + 2 * padding - k_eff) // stride + 1, (w + 2 * padding - k_eff) // stride + 1
    xp = F.pad(x, (padding,) * 4)  # (N, C, H + 2p, W + 2p): zeros where taps fall in the padding
    taps = []
    for i in range(k):
        for j in range(k):
            rows = slice(i * dilation, i * dilation + (ho - 1) * stride + 1, stride)
            cols = slice(j * dilation, j * dilation + (wo - 1) * stride + 1, stride)
            taps.append(xp[:, :, rows, cols])  # (N, C, H_out, W_out): tap (i, j) for every output
    return torch.stack(taps, dim=2).reshape(n, c * k * k, ho * wo)  # (N, C k k, H_out W_out)


def conv_by_gemm(x, weight, stride=1, padding=0, dilation=1):
    n, _, h, w = x.shape
    o, c, k, _ = weight.shape
    cols = im2col(x, k, stride, padding, dilation)
    ho = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    y = weight.reshape(o, c * k * k) @ cols  # (O, C k k) @ (N, C k k, HW) -> (N, O, HW): one GEMM per image
    return y.reshape(n, o, ho, -1)  # (N, O, H_out, W_out)


x = torch.randn(2, 3, 13, 11, dtype=torch.float64)
weight = torch.randn(4, 3, 3, 3, dtype=torch.float64)
for stride, padding, dilation in [(1, 0, 1), (1, 2, 2), (2, 3, 3), (1, 6, 6)]:
    torch.testing.assert_close(conv_by_gemm(x, weight, stride, padding, dilation),
                               F.conv2d(x, weight, None, stride, padding, dilation))
    # PyTorch's own im2col, F.unfold, builds the same matrix, row for row.
    torch.testing.assert_close(im2col(x, 3, stride, padding, dilation),
                               F.unfold(x, 3, dilation=dilation, padding=padding, stride=stride))

# %% [markdown]
# ## 7.2 Dilation moves the reads, not the GEMM
#
# The GEMM is $(C_{\text{out}} \times C k^2) \cdot (C k^2 \times H_{\text{out}} W_{\text{out}})$
# whatever the rate: with 'same' padding $p = d$ the output size, and so every GEMM dimension, is
# the same at rate 1 and at rate 18. ASPP's three 3x3 branches on a 33x33 map cost the same
# multiply-adds as one ordinary 3x3 convolution each.

# %%
shapes = {}
x33 = torch.randn(1, 8, 33, 33, dtype=torch.float64)
for d in (1, 6, 12, 18):
    shapes[d] = tuple(im2col(x33, 3, 1, d, d).shape)
assert set(shapes.values()) == {(1, 8 * 9, 33 * 33)}
print("column matrix (N, C k^2, H_out W_out) at rates 1, 6, 12, 18:", shapes[1])

# %% [markdown]
# What the rate does change is how many of the copied values are zeros from the padding: at
# rate 18 on a 33x33 map most of the off-centre taps of most outputs fall outside the image. A
# direct kernel skips them; the column matrix stores them, and the GEMM multiplies them.

# %%
ones = torch.ones(1, 1, 33, 33)
zero_share = {d: (im2col(ones, 3, 1, d, d) == 0).float().mean().item() for d in (1, 6, 18)}
print({d: f"{share:.0%}" for d, share in zero_share.items()}, "of the column matrix is padding")
assert zero_share[1] < zero_share[6] < zero_share[18]
cols18 = im2col(ones, 3, 1, 18, 18)  # ones: a copied zero is padding
# At rate 18 an off-centre tap reads inside the 33x33 map only for outputs at least 18 px from the
# near edge and at most 14 px from the far one: 15 of 33 positions per axis.
assert (cols18[0, 4] == 1).all()  # the centre tap always reads the image
assert int(cols18[0, 0].sum()) == 15 * 15

# %% [markdown]
# ## 7.3 The memory it takes
#
# At stride 1 the column matrix holds $k^2$ values for each input value (per image): 9 times the
# input for a 3x3 kernel. For DeepLab's ASPP on a 33x33 map with 2048 channels in float32:

# %%
c, size, k = 2048, 33, 3
input_mb = c * size * size * 4 / 2**20
cols_mb = c * k * k * size * size * 4 / 2**20
print(f"input {input_mb:.1f} MiB, column matrix {cols_mb:.1f} MiB per image and branch")
assert cols_mb == 9 * input_mb and round(cols_mb, 1) == 76.6
# This is why the C++ rung builds the matrix one image at a time, and why a 1x1 conv at stride 1 with
# no padding skips im2col entirely: its column matrix would be the image itself.
x1 = torch.randn(1, 5, 7, 7, dtype=torch.float64)
assert torch.equal(im2col(x1, 1, 1, 0, 1), x1.reshape(1, 5, 49))

# %% [markdown]
# ## 7.4 The library's operator
#
# `atrous.ops.atrous_conv2d` runs the same idea in C++ (`csrc/cpu/atrous_conv2d.cpp`): per image,
# dilated im2col into a buffer, then the blocked GEMM of notebook 6. Its `naive` rung is the
# direct loop with a bounds check per tap. The `implicit` rung (the default forward) never writes
# the buffer: it works on channels_last, where one pixel's channels sit side by side, so the output
# pixels are the rows of $A$ and each (pixel, tap) is one contiguous run that the GEMM copies
# straight into its packed panels (an NCHW image is converted first, and the result back). So the
# memory of 7.3 is not spent. It also leaves out the taps that land in the padding for every output
# (at rate 12 on a 9x9 map only the centre tap is left) and, for each tap, the pixels where it reads
# only padding. All three rungs equal `F.conv2d`, in both layouts:

# %%
assert ops.algorithms("atrous_conv2d", "cpu") == ("naive", "im2col", "implicit")
xa = torch.randn(2, 6, 17, 19)
wa = torch.randn(5, 6, 3, 3)
ba = torch.randn(5)
for stride, padding, dilation in [(1, 2, 2), (2, 6, 6), (1, (1, 4), (1, 4))]:
    expected = F.conv2d(xa, wa, ba, stride, padding, dilation)
    for algo in ("naive", "im2col", "implicit"):
        torch.testing.assert_close(ops.atrous_conv2d(xa, wa, ba, stride, padding, dilation, algo=algo),
                                   expected, rtol=1e-4, atol=1e-4)
        xa_cl = xa.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(ops.atrous_conv2d(xa_cl, wa, ba, stride, padding, dilation, algo=algo),
                                   expected, rtol=1e-4, atol=1e-4)
# Rate 12 on a 9x9 map: only the centre tap reads the image, so the sum is a 1x1 convolution.
x9 = torch.randn(1, 6, 9, 9)
torch.testing.assert_close(ops.atrous_conv2d(x9, wa, ba, padding=12, dilation=12),
                           F.conv2d(x9, wa[:, :, 1:2, 1:2], ba), rtol=1e-4, atol=1e-4)

# %% [markdown]
# ## Summary
# - Dilated im2col copies, for each output, the $C k^2$ values its taps read (tap $(i, j)$ at
#   offset $(i d, j d)$) into one column; the convolution is then one GEMM per image,
#   $(C_{\text{out}} \times C k^2)(C k^2 \times H_{\text{out}} W_{\text{out}})$.
# - The rate changes which pixels are copied and how many are padding zeros, not the GEMM's shape.
# - The price is memory: $k^2$ times the input at stride 1 (77 MiB per image for an ASPP branch).
# - `atrous.ops.atrous_conv2d` (rungs `naive` and `im2col`) equals `F.conv2d`.
#
# ## Exercises
# 1. **Predict, then run.** At stride 2 with 'same'-style padding $p = d$, how many times larger
#    than the input is the column matrix of a 3x3 kernel on a 64x64 map? Predict, then measure
#    it with `im2col`.
# 2. **Design.** The column matrix of a rate-18 branch on a 33x33 map is mostly zeros. Sketch an
#    im2col that skips the taps that read only padding (which rows of the matrix could go, and
#    for which outputs?), and say what the GEMM would then compute for the other outputs.
#
# Solutions: `tutorials/solutions/07_dense_atrous_im2col.py`.
