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
# # 9. Xception and output stride
#
# **What you will learn**
# - what the output stride (OS) is, and the feature size it gives: $\lceil H / \text{OS} \rceil$;
# - how DeepLab reaches OS 16 or 8: from that point on, strides become dilation, layer by layer;
# - why the receptive field (RF) stays the same when strides become dilation, and what multi-grid
#   rates add;
# - the gridding artifact of equal rates, and rate schedules without it;
# - RF growth with depth in the aligned Xception-65 backbone of DeepLabV3+.
#
# Every claim below is checked by an `assert`, so if a claim stops being true the notebook fails
# in CI.
#
# **Small-size switch.** With the environment variable `ATROUS_TUTORIAL_SMALL=1` (the tests set it)
# the input is 65x65 pixels; without it, 513x513 as in the DeepLab papers. The RF numbers do not
# depend on the input size; the feature sizes do.

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
import math
import os

import torch

import atrous.models as M
from atrous import viz
from atrous.receptive_field import conv_stack, measure_receptive_field, receptive_field
from atrous.receptive_field.arithmetic import hdc_max_distance, reachable_offsets
from atrous.viz import interactive

torch.manual_seed(0)
SMALL = os.environ.get("ATROUS_TUTORIAL_SMALL") == "1"
SIZE = 65 if SMALL else 513
print(f"input {SIZE}x{SIZE}")

# %% [markdown]
# ## 9.1 Output stride
#
# A classification backbone halves its feature maps five times: the last map has one pixel per
# $32 \times 32$ input pixels. This ratio is the **output stride**. It is the product of the
# strides on the way, and it is the *jump* $j$ of the receptive-field recursion (notebook 1):
# neighbouring outputs look at input windows $j$ pixels apart.
#
# A 3x3 convolution with stride 2 and padding 1 maps $n$ to
# $\lfloor (n + 2 - 3)/2 \rfloor + 1 = \lceil n/2 \rceil$, and
# $\lceil \lceil n/a \rceil / b \rceil = \lceil n/(ab) \rceil$. So the feature size is
#
# $$n_{\text{out}} = \lceil n / \text{OS} \rceil .$$
#
# At 513x513: 17x17 at OS 32, 33x33 at OS 16, 65x65 at OS 8. For segmentation 17x17 is too coarse.
# DeepLab builds the same aligned Xception-65 at OS 16 (DeepLabV3+'s default) or 8.

# %%
backbones = {os_: M.xception65(output_stride=os_).eval() for os_ in (32, 16, 8)}
x = torch.randn(1, 3, SIZE, SIZE)
with torch.no_grad():
    features = {os_: net(x) for os_, net in backbones.items()}
for os_, f in features.items():
    print(f"OS {os_:2}: " + ", ".join(f"{k} {tuple(v.shape[1:])}" for k, v in f.items()))
    assert f["out"].shape[-2:] == (math.ceil(SIZE / os_),) * 2
    assert f["out"].shape[1] == 2048
    assert f["low"].shape[-2:] == (math.ceil(SIZE / 4),) * 2  # the decoder's stride-4 map, at every OS
if SIZE == 513:
    assert [features[os_]["out"].shape[-1] for os_ in (32, 16, 8)] == [17, 33, 65]

# %% [markdown]
# The weights are the same at every OS: only strides and dilations differ, so one set of trained
# weights runs at any of the three.

# %%
shapes = [[p.shape for p in net.parameters()] for net in backbones.values()]
assert shapes[0] == shapes[1] == shapes[2]
print(f"{sum(p.numel() for p in backbones[16].parameters()):,} parameters at every output stride")

# %% [markdown]
# ## 9.2 Strides become dilation
#
# Aligned Xception (DeepLabV3+, Sec. 3.2) has a two-conv stem (the first with stride 2) and 21
# blocks of three separable convolutions: 3 entry-flow blocks, 16 middle-flow blocks, 2 exit-flow
# blocks. Each strided block does its stride in its third 3x3 depthwise conv. At OS 32 the strided
# convs are the stem's first conv and blocks 0, 1, 2 and 19: $2^5 = 32$.
#
# To stop at OS 16 or 8 (DeepLabV3, Sec. 3.1), the first strided conv that would pass the target
# runs at stride 1, and every conv after it gets its dilation multiplied by the stride it dropped.
# We read the `stride` and `dilation` attributes of each block's strided depthwise conv
# (`blocks.i.stack.conv3.conv_dw`).

# %%
def block_geometry(net):
    """(stride, dilation) of each block's third depthwise conv, the one that can be strided."""
    return [(blk.stack.conv3.conv_dw.stride[0], blk.stack.conv3.conv_dw.dilation[0]) for blk in net.blocks]


geometry = {os_: block_geometry(net) for os_, net in backbones.items()}
flows = [blk.spec.flow for blk in backbones[16].blocks]
print("block  flow    OS 32   OS 16   OS 8    (stride, dilation)")
for i, flow in enumerate(flows):
    if 4 <= i <= 17:
        continue  # middle-flow blocks 4..17 repeat block 3
    print(f"{i:5}  {flow:6}  " + "  ".join(f"{str(geometry[os_][i]):6}" for os_ in (32, 16, 8)))

# %%
strided = {os_: [i for i, (s, d) in enumerate(g) if s == 2] for os_, g in geometry.items()}
assert strided == {32: [0, 1, 2, 19], 16: [0, 1, 2], 8: [0, 1]}
assert all(d == 1 for _, d in geometry[32])
assert geometry[16][19] == (1, 1) and geometry[16][20] == (1, 2)  # block 19 drops its stride 2
assert geometry[8][2] == (1, 1)  # block 2 drops its stride: rate 2 from block 3 on
assert all(geometry[8][i] == (1, 2) for i in range(3, 20)) and geometry[8][20] == (1, 4)
for os_, net in backbones.items():  # the product of all strides is the output stride
    assert math.prod(m.stride[0] for m in net.modules() if isinstance(m, torch.nn.Conv2d)
                     and m.kernel_size == (3, 3)) == os_

# %% [markdown]
# The de-strided conv itself keeps the rate it had ("the stride it drops applies after it"), as in
# the DeepLab code and timm. Every 3x3 conv after it is dilated; the 1x1 convs need no rate.
#
# **Why this works.** Take a 3x3 conv whose input has jump $j$. It reads pixels $d\,j$ input
# pixels apart: call $d\,j$ its *tap spacing*. In the strided network a later conv sees a jump of
# $2j$ and rate 1; in the dilated one a jump of $j$ and rate 2. The tap spacing is the same, so the
# conv reads the same input pixels, only at more output positions. We check this for every 3x3
# conv of the main path (the 1x1 shortcuts excepted): the tap spacing is the same at every OS.

# %%
def tap_spacings(net):
    """{conv name: dilation x jump of its input} along the main path, in execution order."""
    jump, out = 1, {}
    for name, m in net.named_modules():
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3):
            out[name] = m.dilation[0] * jump
            jump *= m.stride[0]
    return out


spacings = {os_: tap_spacings(net) for os_, net in backbones.items()}
assert spacings[32] == spacings[16] == spacings[8]
assert len(spacings[16]) == 2 + 21 * 3  # the stem's two convs and three per block
print("tap spacings (input pixels), last 6 convs:", list(spacings[8].values())[-6:])

# %% [markdown]
# ## 9.3 The receptive field is kept
#
# The RF recursion makes the same point: a conv adds $(k_{\text{eff}} - 1)\,j$ to the RF, with
# $k_{\text{eff}} - 1 = (k - 1)\,d$. That is $(k - 1)$ times the tap spacing $d\,j$, which we just
# saw is unchanged. So the RF is unchanged and only the jump differs:
#
# $$r_l = r_{l-1} + (k - 1)\,d_l\,j_{l-1}, \qquad j_l = j_{l-1}\,s_l .$$
#
# `receptive_field` traces the backbone (`output="out"` picks the OS feature map).

# %%
reports = {os_: receptive_field(net, SIZE, output="out") for os_, net in backbones.items()}
for os_, rep in reports.items():
    rf = rep.output.rf[0]
    print(f"Xception-65 OS {os_:2}: RF {rf.size} px, jump {rf.jump}, feature map {rep.output.size}")
    assert (rf.size, rf.jump) == (1915, os_)
    assert rep.output.size == (math.ceil(SIZE / os_),) * 2

# %% [markdown]
# The RF of 1915 pixels is much larger than a 513x513 image: in theory every output sees the whole
# image, wherever it is. (Notebook 2 shows that the *effective* RF is much smaller.)
#
# ResNet-50 gives the same result. With `multi_grid=None` (torchvision's rates) the RF is 427 px at
# every OS: at OS 8 with jump 8, at OS 16 with jump 16.

# %%
resnets = {os_: M.resnet50(output_stride=os_, multi_grid=None).eval() for os_ in (32, 16, 8)}
plain_rf = {}
for os_, net in resnets.items():
    rf = receptive_field(net, SIZE, output="out").output.rf[0]
    plain_rf[os_] = rf
    print(f"ResNet-50 OS {os_:2}: RF {rf.size} px, jump {rf.jump}, layer4 rates "
          f"{[u.conv2.dilation[0] for u in net.layer4]}")
assert {os_: (rf.size, rf.jump) for os_, rf in plain_rf.items()} == {32: (427, 32), 16: (427, 16),
                                                                     8: (427, 8)}

# %% [markdown]
# ## 9.4 Multi-grid
#
# DeepLabV3 (Sec. 3.2) gives the three units of ResNet's last stage (`layer4`) the rates
# $\text{rate} \times (r_1, r_2, r_3)$, with the stage's rate from 9.2 and the unit rates
# $(1, 2, 4)$: $(2, 4, 8)$ at OS 16 and $(4, 8, 16)$ at OS 8. We read them from the convs.

# %%
multigrid = {os_: M.resnet50(output_stride=os_, multi_grid=(1, 2, 4)).eval() for os_ in (16, 8)}
rates = {os_: tuple(u.conv2.dilation[0] for u in net.layer4) for os_, net in multigrid.items()}
print("layer4 rates:", rates)
assert rates == {16: (2, 4, 8), 8: (4, 8, 16)}
assert all(u.conv2.stride == (1, 1) for net in multigrid.values() for u in net.layer4)

# %% [markdown]
# Multi-grid enlarges the RF. At OS 16 `layer4` works at jump 16, and each 3x3 conv adds
# $2\,d \cdot 16 = 32\,d$ pixels. torchvision's rates $(1, 2, 2)$ add $32 \cdot 5 = 160$;
# multi-grid's $(2, 4, 8)$ add $32 \cdot 14 = 448$. The difference is $32 \cdot 9 = 288$:
# $427 + 288 = 715$ pixels. At OS 8 the rates and the jump are $(4, 8, 16)$ and 8: the same
# spacings, so the same 715.

# %%
mg_rf = {os_: receptive_field(net, SIZE, output="out").output.rf[0] for os_, net in multigrid.items()}
tv_rates = tuple(u.conv2.dilation[0] for u in resnets[16].layer4)
assert tv_rates == (1, 2, 2)
assert mg_rf[16].size == 427 + 2 * 16 * (sum(rates[16]) - sum(tv_rates)) == 715
assert (mg_rf[16].size, mg_rf[16].jump, mg_rf[8].size, mg_rf[8].jump) == (715, 16, 715, 8)

# %% [markdown]
# ## 9.5 The gridding artifact
#
# Stack three 3x3 convs with the same rate 2. Each conv reads offsets $\{-2, 0, 2\}$, so one output
# reads the sums of three such offsets: only even offsets, from $-6$ to $6$. The RF is 13x13 = 169
# pixels, but only $7 \times 7 = 49$ of them reach the output. Odd rows and columns are never
# seen: a grid of holes, the **gridding artifact** (Wang et al., 2018).
#
# Hybrid rates $(1, 2, 3)$ reach every offset from $-6$ to $6$; multi-grid $(1, 2, 4)$ reaches
# every offset from $-7$ to $7$. In one dimension the reached offsets are all sums
# $\sum_l t_l r_l$ with $t_l \in \{-1, 0, 1\}$ (`reachable_offsets`); in two dimensions their
# square. We count them, then measure them from gradients on real stacks.

# %%
def reached_offsets(rates):
    """1-D offsets that reach one output of stacked 3x3 convs with these rates."""
    return set(reachable_offsets(rates))


counts = {}
for rates_ in [(2, 2, 2), (1, 2, 3), (1, 2, 4)]:
    offsets = reached_offsets(rates_)
    side = 2 * sum(rates_) + 1  # the RF
    stack = conv_stack([(3, 1, r, r) for r in rates_], channels=1, in_channels=1, relu=False)
    measured = measure_receptive_field(stack, side + 4)
    counts[rates_] = (len(offsets) ** 2, side ** 2, int(measured.mask.sum()))
    print(f"rates {rates_}: {len(offsets) ** 2}/{side ** 2} pixels reach the central output "
          f"(measured: {int(measured.mask.sum())})")
assert counts == {(2, 2, 2): (49, 169, 49), (1, 2, 3): (169, 169, 169), (1, 2, 4): (225, 225, 225)}

# %% [markdown]
# `viz.plot_gridding` draws the measured gradients (white inside the dashed RF: never reached).
# Its counts agree with ours.

# %%
fig = viz.plot_gridding()
titles = [ax.get_title() for ax in fig.axes]
assert "49/169" in titles[0] and "169/169" in titles[1] and "225/225" in titles[2]
fig

# %% [markdown]
# **Which schedules leave holes?** Having no common factor is *not* enough: $(2, 3)$ has none,
# yet $2a + 3b$ with $a, b \in \{-1, 0, 1\}$ never makes 4; and $(1, 2, 8)$ misses 4 too
# (1 and 2 reach only $-3 \ldots 3$, and 8 jumps past the gap). Wang et al. (2018) give the
# **hybrid dilated convolution (HDC)** criterion. For rates $r_1 \ldots r_n$, let $M_i$ be the
# largest distance between two neighbouring non-zero taps after layers $i \ldots n$:
#
# $$M_n = r_n, \qquad M_i = \max\big(M_{i+1} - 2 r_i,\ M_{i+1} - 2 (M_{i+1} - r_i),\ r_i\big).$$
#
# The stack has no holes when $M_2 \le K$ (the kernel size, 3) and the first layer is dense
# ($r_1 = 1$, as in their sawtooth groups of non-decreasing rates). `hdc_max_distance` computes
# $M_2$; we check the criterion against the offsets actually reached:

# %%
def hdc_no_holes(rates):
    return rates[0] == 1 and hdc_max_distance(rates) <= 3


def has_holes(rates):
    offsets = reachable_offsets(rates)
    return offsets != set(range(min(offsets), max(offsets) + 1))


assert 4 not in reachable_offsets((2, 3)) and 4 not in reachable_offsets((1, 2, 8))
assert reachable_offsets((1, 2, 5)) == set(range(-8, 9))  # (1, 2, 5): no hole
for schedule in [(2, 3), (1, 2, 8), (1, 2, 5), (1, 2, 3), (1, 2, 4), (2, 2, 2), (1, 2, 9)]:
    assert hdc_no_holes(schedule) == (not has_holes(schedule)), schedule
    print(f"rates {schedule}: M_2 = {hdc_max_distance(schedule)}, holes: {has_holes(schedule)}")
assert hdc_max_distance((1, 2, 8)) == 4 > 3 and hdc_max_distance((1, 2, 5)) == 2 <= 3

# %% [markdown]
# Try it: the sliders below set three rates and redraw which pixels reach the output, naming the
# missing 1-D offsets. (Without ipywidgets, or run headless, the cell draws the picture for its
# default rates $(2, 3, 3)$ instead.)

# %%
interactive.interactive_gridding((2, 3, 3))

# %% [markdown]
# A common factor $g > 1$ of all rates always leaves holes: every reached offset is a multiple of
# $g$. Multi-grid at OS 16 uses $(2, 4, 8)$, with $g = 2$. It has no holes in the network because
# the rate-1 convs before `layer4` already fill the gaps between the taps: one rate-1 conv in front
# is enough.

# %%
assert all(o % 2 == 0 for o in reached_offsets((2, 4, 8)))
assert len(reached_offsets((2, 4, 8))) == 15 < 2 * 14 + 1  # 15 of the 29 offsets in the RF
assert reached_offsets((1, 2, 4, 8)) == set(range(-15, 16))  # a rate-1 conv first: no holes

# %% [markdown]
# The holes show in the outputs too, not only in the footprint: stack 3x3 convolutions with all
# weights 1 and feed them a single bright pixel. With one rate repeated, most of the output is
# exactly zero in a checkerboard; with a hybrid schedule every position is reached.

# %%
viz.plot_gridding_outputs()

# %% [markdown]
# ## 9.6 RF growth with depth
#
# `viz.plot_rf_growth` plots the RF and the jump of every layer on the path to the output. At the
# three output strides the RF curves lie on top of each other; the jump stops at 8, 16 or 32.

# %%
fig = viz.plot_rf_growth({f"OS {os_}": rep for os_, rep in reports.items()})
growth = {os_: [row.rf[1].size for row in rep.ancestors()] for os_, rep in reports.items()}
jumps = {os_: max(row.rf[1].jump for row in rep.ancestors()) for os_, rep in reports.items()}
assert growth[32] == growth[16] == growth[8]
assert jumps == {32: 32, 16: 16, 8: 8}
fig

# %% [markdown]
# The RF grows slowly in the entry flow, where the tap spacing is still 2 to 8 pixels, then
# linearly. The 16 middle-flow blocks have 48 3x3 convs at tap spacing 16 (jump 16 and rate 1 at
# OS 32 or 16, jump 8 and rate 2 at OS 8); each adds $2 \cdot 16 = 32$ pixels, 1536 of the 1915.

# %%
for rep in reports.values():
    assert rep["blocks.18"].rf[0].size - rep["blocks.2"].rf[0].size == 48 * 2 * 16 == 1536

# %% [markdown]
# ## Summary
# - The output stride is the product of the strides; the feature map is $\lceil H/\text{OS}\rceil$
#   wide (33x33 at OS 16 for a 513x513 image).
# - From the point where the target OS is reached, strides become dilation: the de-strided conv
#   keeps its rate, every later conv gets its rate multiplied by the dropped stride.
# - The tap spacing $d\,j$ of every conv is unchanged, so the RF is unchanged (1915 px for
#   Xception-65, 427 px for ResNet-50) and the same weights run at OS 32, 16 and 8.
# - Multi-grid $(1, 2, 4)$ multiplies the last ResNet stage's rates: $(2, 4, 8)$ at OS 16. The RF
#   grows from 427 to 715 px.
# - Equal rates leave holes (49 of 169 pixels for $(2, 2, 2)$). Having no common factor is not
#   enough ($(2, 3)$ and $(1, 2, 8)$ miss offset 4); the HDC criterion $M_2 \le 3$ with $r_1 = 1$
#   is: $(1, 2, 3)$, $(1, 2, 4)$ and $(1, 2, 5)$ reach every pixel of the RF.
#
# ## Exercises
# 1. Build Xception-71 (`M.xception71`) at OS 8. Which blocks are strided, and which rates do
#    the others get? Check that the tap spacings equal those at OS 32.
# 2. **Predict, then run.** Predict the RF of ResNet-50 at OS 16 with multi-grid $(1, 2, 1)$
#    from the formula in 9.4, then check it with `receptive_field`.
# 3. For rates $(1, 2, r)$, what is the largest $r$ with no holes? How many of the RF's pixels
#    does $(3, 3, 3)$ reach?
# 4. **Design.** Four 3x3 layers, rates non-decreasing from 1: find the schedule with the
#    largest RF that has no holes, using the HDC criterion, and confirm it with
#    `reachable_offsets`.
#
# Solutions: `tutorials/solutions/09_xception_output_stride.py`.
