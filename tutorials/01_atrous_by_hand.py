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
# # 1. Atrous convolution by hand
#
# **What you will learn**
# - what a dilated (atrous) kernel samples, drawn on a grid;
# - the two formulas everything else rests on: the dilated kernel's extent
#   $k_{\text{eff}} = k + (k-1)(d-1)$ and the output size
#   $H_{\text{out}} = \lfloor (H + 2p - k_{\text{eff}}) / s \rfloor + 1$;
# - a convolution written as plain loops, checked against PyTorch's `F.conv2d`;
# - the receptive field of one layer, computed and measured, and of a stack of layers: the
#   *jump* and the receptive-field recursion that notebooks 2 and 9 build on.
#
# Every claim below is checked by an `assert`, so if a claim stops being true the notebook fails
# in CI.

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
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from atrous import reference, viz
from atrous.receptive_field import compose, measure_receptive_field, receptive_field
from atrous.viz import interactive

torch.manual_seed(0)

# %% [markdown]
# ## 1.1 The sampling grid
#
# A 3x3 kernel with dilation $d$ reads the input at offsets $\{0, d, 2d\}$ in each direction:
# the same 9 weights, spread $d$ pixels apart, with holes ("trous") between them. The picture
# shows the taps of one output for rates 1, 2 and 3 over a 9x9 input.

# %%
fig = viz.plot_dilated_kernel(kernel_size=3, rates=(1, 2, 3), input_size=9)
fig

# %% [markdown]
# The same kernel sliding over a 5x5 input with rate 2 and 'same' padding $p = 2$: one frame per
# output position (in the style of Dumoulin and Visin's conv_arithmetic). Taps that fall in the
# padding are grey: they read zeros.

# %%
anim = viz.animate_dilated_conv(rate=2, kernel_size=3, input_size=5)
assert anim.animation is not None  # displayed as an HTML/JS player by atrous.viz.display
anim

# %% [markdown]
# Your turn: the sliders set the kernel size, rate, stride and input size, and show the taps of
# output $(0, 0)$ with 'same' padding. (Without ipywidgets, or run headless, the cell draws the
# picture for its default arguments.)

# %%
interactive.interactive_dilated_grid(kernel_size=3, rate=2, stride=1, input_size=9)

# %% [markdown]
# The extent covered by the taps is $k_{\text{eff}} = k + (k-1)(d-1)$: the $k$ taps plus the
# $d-1$ holes in each of the $k-1$ gaps.

# %%
def k_eff(k: int, d: int) -> int:
    return k + (k - 1) * (d - 1)


assert [k_eff(3, d) for d in (1, 2, 3, 6)] == [3, 5, 7, 13]
assert k_eff(1, 12) == 1  # a 1x1 kernel has no holes to widen

# %% [markdown]
# The same three rates over a real image: the taps of one output on a 33x33 patch of a photo. At
# rate 1 they cover a 3x3 speck; at rate 4 the same nine weights span 9x9 pixels.

# %%
viz.plot_rates_on_photo(rates=(1, 2, 4))

# %% [markdown]
# ## 1.2 The output size
#
# Sliding the extent $k_{\text{eff}}$ over the padded input of $H + 2p$ pixels with stride $s$
# gives $H_{\text{out}} = \lfloor (H + 2p - k_{\text{eff}}) / s \rfloor + 1$ positions.
# With $p = d(k-1)/2$ and $s = 1$ the size is kept, which is how DeepLab's ASPP applies rates
# 6, 12 and 18 to a 33x33 feature map without shrinking it.

# %%
def output_size(h: int, k: int, s: int, p: int, d: int) -> int:
    return (h + 2 * p - k_eff(k, d)) // s + 1


for rate in (6, 12, 18):
    assert output_size(33, 3, 1, rate, rate) == 33
assert output_size(513, 3, 2, 1, 1) == 257  # Xception's entry flow halves 513 to 257
# The formula agrees with PyTorch on a spread of cases.
for h, k, s, p, d in [(33, 3, 1, 6, 6), (17, 5, 2, 3, 2), (8, 2, 3, 1, 3), (65, 3, 2, 2, 2)]:
    y = F.conv2d(torch.zeros(1, 1, h, h), torch.zeros(1, 1, k, k), stride=s, padding=p, dilation=d)
    assert y.shape[-1] == output_size(h, k, s, p, d), (h, k, s, p, d)

# %% [markdown]
# ## 1.3 A worked example by hand
#
# Take the input $x_{ij} = 5i + j$ on a 5x5 grid (0 to 24) and a 3x3 kernel of ones with
# dilation 2. Without padding there is one output; its taps are the rows and columns
# $\{0, 2, 4\}$:
#
# $$y = x_{00} + x_{02} + x_{04} + x_{20} + x_{22} + x_{24} + x_{40} + x_{42} + x_{44}
#     = 0 + 2 + 4 + 10 + 12 + 14 + 20 + 22 + 24 = 108.$$

# %%
x = torch.arange(25.0).view(1, 1, 5, 5)
w = torch.ones(1, 1, 3, 3)
by_hand = 0 + 2 + 4 + 10 + 12 + 14 + 20 + 22 + 24
assert by_hand == 108
assert F.conv2d(x, w, dilation=2).item() == by_hand

# %% [markdown]
# ## 1.4 The convolution as loops
#
# The definition, for one input and one output channel:
#
# $$y[o_h, o_w] = \sum_{i<k}\sum_{j<k} w[i, j]\; x[o_h s - p + i d,\; o_w s - p + j d],$$
#
# where taps that land outside the image read zero (the padding). Written as loops:

# %%
def atrous_conv_loops(x2d: torch.Tensor, w2d: torch.Tensor, stride: int, padding: int,
                      dilation: int) -> torch.Tensor:
    h, wid = x2d.shape
    k = w2d.shape[0]
    ho, wo = output_size(h, k, stride, padding, dilation), output_size(wid, k, stride, padding, dilation)
    y = torch.zeros(ho, wo, dtype=x2d.dtype)
    for oh in range(ho):
        for ow in range(wo):
            for i in range(k):
                for j in range(k):
                    ih, iw = oh * stride - padding + i * dilation, ow * stride - padding + j * dilation
                    if 0 <= ih < h and 0 <= iw < wid:  # outside: zero padding, contributes nothing
                        y[oh, ow] += w2d[i, j] * x2d[ih, iw]
    return y


x = torch.randn(13, 11, dtype=torch.float64)
w = torch.randn(3, 3, dtype=torch.float64)
for stride, padding, dilation in [(1, 0, 1), (1, 2, 2), (2, 3, 3), (1, 6, 6)]:
    ours = atrous_conv_loops(x, w, stride, padding, dilation)
    theirs = F.conv2d(x[None, None], w[None, None], stride=stride, padding=padding, dilation=dilation)[0, 0]
    torch.testing.assert_close(ours, theirs)

# %% [markdown]
# Four nested loops, one multiply-add each: correct and slow. `atrous.reference` vectorises the
# same idea one step: for each of the $k^2$ taps it takes the shifted, strided slice of the
# padded input and adds it in with its weight, so the loop runs over taps, not pixels.

# %%
x = torch.randn(2, 4, 33, 33, dtype=torch.float64)
w = torch.randn(4, 1, 3, 3, dtype=torch.float64)  # depthwise: one 3x3 kernel per channel
torch.testing.assert_close(reference.depthwise_conv2d(x, w, padding=6, dilation=6),
                           F.conv2d(x, w, padding=6, dilation=6, groups=4))

# %% [markdown]
# ## 1.5 The receptive field of one layer
#
# The receptive field (RF) of an output is the set of input pixels that can change it. For one
# layer it is the kernel's extent, $k_{\text{eff}}$ pixels wide: dilation grows the RF at no
# cost in weights or multiply-adds. We compute it from the layer's geometry, and measure it from
# gradients: the input pixels with a non-zero gradient of the central output.

# %%
layer = torch.nn.Conv2d(1, 1, kernel_size=3, padding=6, dilation=6)
report = receptive_field(layer, (33, 33))
measured = measure_receptive_field(layer, (33, 33))
print(report.table())
top, left, bottom, right = measured.box
assert (bottom - top + 1, right - left + 1) == (k_eff(3, 6), k_eff(3, 6)) == (13, 13)
assert report.output.rf[0].size == 13

# %% [markdown]
# The measured support (input pixels with a non-zero gradient) is exactly the 9 taps:

# %%
assert int(measured.mask.sum()) == 9
fig, ax = plt.subplots(figsize=(5, 5))
ax.imshow(measured.mask, cmap="Greys")
ax.add_patch(plt.Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1, fill=False,
                           ec="#D55E00", lw=2, label="receptive field, 13x13"))
ax.set_xlabel("input x (pixels)")
ax.set_ylabel("input y (pixels)")
ax.legend(loc="upper right", fontsize=8)
ax.set_title("central output: 9 taps (black) with a non-zero gradient")
plt.close(fig)  # shown once, as the cell's value
fig

# %% [markdown]
# The 9 taps touch only 9 of the 169 pixels inside the RF. A single dilated layer sees far, but
# sparsely; stacking layers fills the holes, or fails to (the "gridding" artifact of
# notebook 9).
#
# ## 1.6 Stacking layers: the jump and the receptive-field recursion
#
# After a stride-$s$ layer, neighbouring outputs sit $s$ input pixels apart. This spacing, counted
# in input pixels, is the **jump** $j$: $j_0 = 1$ and $j_l = j_{l-1} s_l$. A later layer's taps are
# $d$ of *its* input pixels apart, so $d\,j$ pixels of the image apart, and its $k_{\text{eff}}$
# span adds $(k_{\text{eff}} - 1)$ jumps to the receptive field:
#
# $$r_l = r_{l-1} + (k_{\text{eff},l} - 1)\, j_{l-1}, \qquad j_l = j_{l-1}\, s_l, \qquad r_0 = 1.$$
#
# Two 3x3 layers, the first with stride 2, the second with rate 2: $r_1 = 1 + 2 \cdot 1 = 3$,
# $j_1 = 2$; $k_{\text{eff},2} = 5$, so $r_2 = 3 + 4 \cdot 2 = 11$. We check the recursion
# against the gradient measurement, then against `atrous.receptive_field.compose`, which
# implements it (with the RF's centre, the third number, in notebook 2).

# %%
def rf_recursion(layers):
    """(r, j) after each (k, s, d) layer."""
    r, j, out = 1, 1, []
    for k, s, d in layers:
        r, j = r + (k_eff(k, d) - 1) * j, j * s
        out.append((r, j))
    return out


layers = [(3, 2, 1), (3, 1, 2)]
assert rf_recursion(layers) == [(3, 2), (11, 2)]
stack = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, stride=2, padding=1),
                            torch.nn.Conv2d(1, 1, 3, padding=2, dilation=2))
box = measure_receptive_field(stack, (33, 33)).box  # the central output of the 17x17 map
assert (box[2] - box[0] + 1, box[3] - box[1] + 1) == (11, 11)
assert [(a.size, a.jump) for a in compose([(3, 2, 1, 1), (3, 1, 2, 2)])] == rf_recursion(layers)
# Dilation and stride both widen the RF, but only stride coarsens the output: the same RF of 11 at
# full resolution takes rates 1 and 4 (r = 1 + 2 + 8), and the jump stays 1.
assert rf_recursion([(3, 1, 1), (3, 1, 4)]) == [(3, 1), (11, 1)]
#
# ## Summary
# - A dilated kernel keeps its $k^2$ weights and spreads them $d$ pixels apart:
#   $k_{\text{eff}} = k + (k-1)(d-1)$.
# - $H_{\text{out}} = \lfloor (H + 2p - k_{\text{eff}})/s \rfloor + 1$; with $p = d(k-1)/2$ and
#   $s=1$ the size is kept.
# - The loop definition equals `F.conv2d`; `atrous.reference` is the same thing, a loop over taps.
# - One layer's receptive field is $k_{\text{eff}}$ wide, but it reads only $k^2$ pixels of it.
# - Through a stack: $r_l = r_{l-1} + (k_{\text{eff},l} - 1) j_{l-1}$ and $j_l = j_{l-1} s_l$;
#   dilation widens the RF without coarsening the output, stride does both.
#
# ## Exercises
# 1. For which dilation does a 3x3 kernel's extent first exceed a 33x33 feature map? With 'same'
#    padding $p = d$, which outputs then read only padding through their off-centre taps, and
#    from which dilation on do all of them?
# 2. Extend `atrous_conv_loops` to asymmetric stride, padding and dilation (pairs), and check it
#    against `F.conv2d`.
# 3. **Predict, then run.** Compute $H_{\text{out}}$ for $H=8$, $k=2$, $s=3$, $p=1$, $d=3$ by
#    hand, then check.
# 4. **Design.** You need an RF of at least 31 pixels at full resolution (jump 1) with as few
#    3x3 layers as possible, and no holes. Choose the rates, and check the RF with
#    `rf_recursion` (the holes: notebook 9).
#
# Solutions: `tutorials/solutions/01_atrous_by_hand.py`.
