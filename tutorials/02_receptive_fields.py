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
# # 2. Receptive fields: theoretical, measured and effective
#
# **What you will learn**
# - the theoretical receptive field (RF) of every layer from three numbers: size, jump and start;
# - how the RFs of toy stacks and DeepLab backbones compare;
# - that gradients measure exactly the theory, clipped to the image, at the centre and at corners;
# - the effective RF (Luo et al., 2016): where the gradient actually goes. It is much smaller than
#   the theoretical RF in plain stacks and DeepLab, and spread out in an atrous stack;
# - the command line: `python -m atrous rf`.
#
# Every claim below is checked by an `assert`, so if a claim stops being true the notebook fails
# in CI.
#
# **Small-size switch.** With the environment variable `ATROUS_TUTORIAL_SMALL=1` (the tests set it)
# inputs are 65x65 pixels; without it, 129x129. The theoretical RFs do not depend on the input
# size; clipped and effective RFs do.

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
import os
import subprocess
import sys
import warnings

import torch

import atrous.models as M
from atrous import viz
from atrous.receptive_field import (
    atrous_stack,
    compose,
    effective_receptive_field,
    hybrid_stack,
    measure_receptive_fields,
    plain_stack,
    receptive_field,
    strided_stack,
)

torch.manual_seed(0)
SMALL = os.environ.get("ATROUS_TUTORIAL_SMALL") == "1"
SIZE = 65 if SMALL else 129
print(f"input {SIZE}x{SIZE}")
# The DeepLab models below run on small images, where ASPP's rates reach past the feature map.
# ASPP warns about it (notebook 10); here it does not matter, so we silence that warning.
warnings.simplefilter("ignore", M.AtrousRateWarning)

# %% [markdown]
# ## 2.1 The theory, layer by layer
#
# A window op (conv or pooling) with kernel $k$, stride $s$, padding $p$ and dilation $d$ has the
# span $k_{\text{eff}} = d(k-1) + 1$. Along one axis, three numbers describe every layer $l$:
#
# $$r_l = r_{l-1} + (k_{\text{eff}} - 1)\,j_{l-1}, \qquad j_l = j_{l-1}\,s, \qquad
#   \text{start}_l = \text{start}_{l-1} + \Big(\frac{k_{\text{eff}} - 1}{2} - p\Big)\,j_{l-1},$$
#
# with $r_0 = j_0 = 1$ and $\text{start}_0 = 0$. $r$ is the RF size, $j$ the jump (input pixels
# between neighbouring outputs) and start the centre of output 0's RF. Output $i$ sees the input
# pixels $\text{start} + i\,j \pm (r-1)/2$. `receptive_field` traces a model and tabulates them.
# Here is the atrous stack: 3x3 convs with rates 1, 2, 4, 8, 16 (the idea of Yu & Koltun's
# context module).

# %%
report = receptive_field(atrous_stack(), SIZE)
print(report.table())
rates = (1, 2, 4, 8, 16)
theory = compose([(3, 1, r, r) for r in rates])  # the recursion above
convs = [row for row in report.layers if row.op == "Conv2d"]
assert [row.rf[0] for row in convs] == theory
assert [row.rf[0].size for row in convs] == [3, 7, 15, 31, 63]  # r_l = r_{l-1} + 2 d_l: exponential
assert all(row.rf[0].jump == 1 and row.rf[0].start == 0 for row in convs)  # full resolution, centred

# %% [markdown]
# Across models, the output's RF and jump (`output="out"` picks a backbone's last feature map):

# %%
models = {
    "plain: six 3x3 convs": plain_stack(),
    "strided: six 3x3 convs, stride 2 every other": strided_stack(),
    "atrous: rates 1, 2, 4, 8, 16": atrous_stack(),
    "small DeepLabV3+ backbone, OS 16": M.SlimXception(output_stride=16),
    "ResNet-50, OS 16, multi-grid": M.resnet50(output_stride=16),
    "Xception-65, OS 16": M.xception65(output_stride=16),
    "MobileNetV3-Large, OS 16": M.MobileNetV3(output_stride=16),
}
found = {}
for name, model in models.items():
    out = "out" if isinstance(model, (M.SlimXception, M.ResNet, M.XceptionAligned, M.MobileNetV3)) else None
    row = receptive_field(model.eval(), SIZE, output=out).output
    found[name] = None if row.rf is None else (row.rf[0].size, row.rf[0].jump)
    print(f"{name:46} RF, jump: {found[name] or 'none (see below)'}")
assert list(found.values()) == [(13, 1), (43, 8), (63, 1), (347, 16), (715, 16), (1915, 16), None]

# %% [markdown]
# The strided stack grows fast but loses resolution (jump 8). The atrous stack grows as fast at
# full resolution. The DeepLab backbones have RFs far beyond their input.
#
# MobileNetV3 has no single RF: its squeeze-and-excitation blocks multiply each feature map by a
# vector pooled over the whole map. From the first such block on, every output depends on every
# input pixel, and no $(r, j, \text{start})$ describes the map. The table marks such rows with `*`;
# their clipped RF (next section) still exists.

# %% [markdown]
# **The receptive field as a tower** (one axis, three 3x3 layers): walk down from one output and
# mark every position that reaches it. Plain layers grow by 2 per layer (7 positions); a stride
# in the first layer spaces the later layers' taps by 2 (11); rates 1, 2, 4 reach 15 positions
# with no hole; one rate repeated (2, 2, 2) reaches as far as 6 but only the even positions: the
# holes of the gridding artifact (notebook 9).

# %%
towers = {name: sorted(viz.tower_reach(layers)[0]) for name, layers in viz.DEFAULT_TOWERS.items()}
assert towers["plain"] == list(range(-3, 4)) and towers["strided"] == list(range(-5, 6))
assert towers["atrous (1, 2, 4)"] == list(range(-7, 8))
assert towers["equal rates (2, 2, 2)"] == list(range(-6, 7, 2))  # every odd offset is a hole
viz.plot_rf_tower()

# %% [markdown]
# ## 2.2 Measured equals theory, clipped to the image
#
# The theory is *unclipped*: it describes a network on an endless image. At a border part of the
# RF lies in the zero padding. The pixels that actually influence an output lie in the
# theoretical box intersected with the image, and `input_box_clipped` gives their exact bounding
# box, even through ASPP, decoder and upsampling.
#
# `measure_receptive_fields` measures it: it copies the model in float64 with positive weights,
# feeds an image of ones, and keeps the input pixels with a non-zero gradient. (All paths carry a
# positive product, so no gradients cancel; max pooling is replaced by averaging over the same
# taps.) We measure at the centre and the four corners.

# %%
deeplab = M.deeplabv3plus_xception65(num_classes=21, output_stride=16).eval()
checked = {"plain": plain_stack(), "atrous": atrous_stack(), "hybrid 1, 2, 3, 1, 2, 3": hybrid_stack(),
           "DeepLabV3+ Xception-65": deeplab}
last = SIZE - 1
positions = [(last // 2, last // 2), (0, 0), (0, last), (last, 0), (last, last)]
corner_sizes = []
for name, model in checked.items():
    rep = receptive_field(model, SIZE)
    measured = measure_receptive_fields(model, SIZE, positions)
    for m in measured:
        assert m.box == rep.output.box_clipped(*m.position), (name, m.position)
    centre, corner = measured[0], measured[1]
    corner_sizes.append(corner.size[0])
    if rep.output.rf is not None:  # the stacks: their RF fits inside the image at the centre
        assert centre.box == rep.output.box(*centre.position)
    print(f"{name:24} centre {centre.size}, corner {corner.size}: measured == analytic at all 5")
assert corner_sizes == [7, 32, 13, SIZE]  # at a corner: the inner half of the RF (plus its centre)

# %% [markdown]
# At corner $(0, 0)$ the plain stack's 13x13 RF keeps only its inner 7x7, and the atrous stack's
# 63x63 RF its inner 32x32. The DeepLab model's RF (over 1915 px) covers the whole image from
# every output. `viz.plot_measured_rf` shows the corner of the atrous stack: the measured support
# (colour), the clipped box (dashed) and the theoretical box reaching into the padding (solid).

# %%
rep = receptive_field(checked["atrous"], SIZE)
corner = measure_receptive_fields(checked["atrous"], SIZE, [(0, 0)])[0]
assert rep.output.box(0, 0) == (-31, -31, 31, 31) and corner.box == (0, 0, 31, 31)
fig = viz.plot_measured_rf(corner, rep)
fig

# %% [markdown]
# ## 2.3 The effective receptive field
#
# Inside the theoretical RF, pixels do not count equally. Luo et al. (NeurIPS 2016) define the
# effective RF (ERF) of the output at position $(u, v)$ as the mean gradient magnitude of what the
# output is trained on,
#
# $$\text{ERF}(i, j) \propto
#   \mathbb{E}_x \sum_c \Big|\frac{\partial \log \operatorname{softmax}(y_{\cdot,u,v})_{\hat k}}
#   {\partial x_{c,i,j}}\Big| ,\qquad \hat k = \arg\max_k y_{k,u,v},$$
#
# over random inputs $x$, normalised to sum 1: the gradient of the centre pixel's loss, the
# log-probability of its predicted class. Why not simply the sum of the class scores
# $\sum_k y_{k,u,v}$? Because the softmax is blind to a shift common to all scores:
# $\operatorname{softmax}(y + c\mathbf{1}) = \operatorname{softmax}(y)$, so the loss's gradient with
# respect to the scores, $e_{\hat k} - \operatorname{softmax}(y)$, always sums to zero, while the
# gradient of $\sum_k y_k$ is exactly $\mathbf{1}$: the one direction training never sees. The sum
# would measure how the input moves something no loss depends on.
#
# A pixel near the centre reaches the output through many paths, a pixel at the border through
# few. For a stack of $n$ 3x3 convs the number of paths from each pixel is the $n$-fold
# convolution of a 3x3 box, which tends to a Gaussian of width
# $\propto \sqrt n$ (central limit theorem), while the RF grows as $2n + 1$. So the ERF fills a
# shrinking share of the RF as the network deepens.
#
# `effective_receptive_field` computes it (eval mode, the model's own weights). `side_for_mass(f)`
# is the side of the smallest centred square that holds the share $f$ of the map's mass.

# %%
scores = torch.randn(5, 21, requires_grad=True)  # 5 pixels' scores for 21 classes
log_p = torch.log_softmax(scores, dim=1).gather(1, scores.argmax(1, keepdim=True)).sum()
(g_loss,) = torch.autograd.grad(log_p, scores)
torch.testing.assert_close(g_loss.sum(dim=1), torch.zeros(5), atol=1e-6, rtol=0)  # orthogonal to 1
torch.testing.assert_close(torch.log_softmax(scores + 7.0, dim=1), torch.log_softmax(scores, dim=1))
(g_sum,) = torch.autograd.grad(scores.sum(), scores)
assert torch.equal(g_sum, torch.ones(5, 21))  # the sum of scores: all of it along the ignored direction

# %% [markdown]
# Untrained plain stacks of 16 channels, depth 4 to 32:

# %%
sides = {}
for depth in (4, 8, 16, 32):
    torch.manual_seed(0)
    erf = effective_receptive_field(plain_stack(depth, channels=16), input_size=SIZE, samples=8)
    sides[depth] = erf.side_for_mass(0.5)
    print(f"depth {depth:2}: RF {2 * depth + 1:2}, 50% of the gradient within {sides[depth]}x{sides[depth]}")
shares = [sides[d] / (2 * d + 1) for d in sides]
assert all(a > b for a, b in zip(shares, shares[1:]))  # the ERF fills less and less of the RF
assert sides[32] / sides[4] < 4 < (2 * 32 + 1) / (2 * 4 + 1)  # 8 times deeper: ERF < 4x, RF 7.2x wider

# %% [markdown]
# Now three models side by side. To see what dilation does, and not depth, the plain and the
# atrous stacks have the **same depth**, five 3x3 convs of 16 channels: rates 1 everywhere
# (RF 11) against rates 1, 2, 4, 8, 16 (RF 63). The third is an untrained DeepLabV3+ with
# Xception-65 at OS 16 (RF far beyond the image, so its clipped RF is the whole image).
# `mass_in_squares` gives the share of the gradient inside centred squares.

# %%
torch.manual_seed(0)
erf_models = {"plain, depth 5": plain_stack(5, channels=16),
              "atrous 1, 2, 4, 8, 16": atrous_stack(channels=16),
              "DeepLabV3+ Xception-65": deeplab}
erfs = {name: effective_receptive_field(model, input_size=SIZE, samples=8)
        for name, model in erf_models.items()}
square_sides = [1, 3, 5, 9, 17, 33, 65, 129]
print("share of |gradient| in centred squares of side", square_sides)
half_mass = {}
for name, erf in erfs.items():
    masses = erf.mass_in_squares(square_sides)
    box = erf.clipped_box  # the theoretical RF clipped to the image
    rf_side = box[2] - box[0] + 1
    half = rf_side // 4 * 2 + 1  # the central half of the RF per axis, odd: 17 of 33, 31 of 63
    half_mass[name] = erf.mass_in_squares([half])[half]
    print(f"{name:24} " + " ".join(f"{masses[s]:.2f}" for s in square_sides) +
          f"   RF {rf_side}: {half_mass[name]:.0%} within its central {half}x{half}, "
          f"50% within {erf.side_for_mass(0.5)}")
    values = list(masses.values())
    assert all(a <= b + 1e-12 for a, b in zip(values, values[1:]))  # grows with the square
    assert abs(values[-1] - 1) < 1e-9 and abs(erf.heatmap.sum() - 1) < 1e-9
assert half_mass["atrous 1, 2, 4, 8, 16"] < 0.5  # spread out: most of the gradient in the outer part
assert half_mass["DeepLabV3+ Xception-65"] > 0.75  # concentrated: the ERF is much smaller than the RF
assert erfs["DeepLabV3+ Xception-65"].side_for_mass(0.5) < 0.4 * SIZE
assert erfs["DeepLabV3+ Xception-65"].clipped_box == (0, 0, SIZE - 1, SIZE - 1)
# Same depth, same weights count: dilation alone spreads the gradient far wider and flatter.
plain5, atrous5 = erfs["plain, depth 5"], erfs["atrous 1, 2, 4, 8, 16"]
assert half_mass["atrous 1, 2, 4, 8, 16"] < half_mass["plain, depth 5"]
assert atrous5.side_for_mass(0.5) >= 5 * plain5.side_for_mass(0.5)

# %% [markdown]
# `viz.plot_erf` draws the maps with the theoretical RF (solid), the clipped RF (dashed) and the
# square holding 95% of the gradient (dotted).

# %%
fig = viz.plot_erf(erfs)
fig

# %% [markdown]
# DeepLab behaves as Luo et al. found: most of the gradient comes from a small central region,
# although the RF is much larger than the image. At equal depth the atrous stack's ERF is several
# times wider than the plain stack's, and flatter. Its last conv (rate 16) reaches 8 of its 9
# taps 16 pixels away directly, with one path each, and so on for every rate: the gradient is
# spread over a sparse pattern that covers the RF. Dilation does not only enlarge the theoretical
# RF; it moves the effective RF outwards too. Training changes all of these maps (Luo et al. saw
# the ERF grow); these are at initialisation.
#
# ## 2.4 The command line
#
# `python -m atrous rf MODEL` prints the table, checks it against the gradient measurement, and
# draws the pictures of this notebook (`--no-pictures` skips them; `--teaching` adds the general
# ones: dilated kernels, RF growth, gridding, ASPP coverage). MODEL is a built-in name (`plain`,
# `atrous`, `aspp`, `deeplabv3plus_xception65`, ...) or `package.module:factory`. Exit status 0
# means the analysis and the measurement agree.

# %%
command = [sys.executable, "-m", "atrous", "rf", "atrous", "--input-size", "65", "65", "--no-pictures"]
cli = subprocess.run(command, capture_output=True, text=True, timeout=300)
print(cli.stdout[-700:])
assert cli.returncode == 0, cli.stderr
assert "agrees" in cli.stdout and "Conv2d  k3 s1 p16 d16" in cli.stdout

# %% [markdown]
# ## Summary
# - Three numbers per layer and axis, $r$, $j$ and start, follow from
#   $r_l = r_{l-1} + (k_{\text{eff}}-1)\,j_{l-1}$ and $j_l = j_{l-1}\,s$. Rates grow the RF
#   exponentially at full resolution (63 after rates 1 to 16).
# - The DeepLab backbones here have RFs of 347 to 1915 px at OS 16. Squeeze-and-excitation (MobileNetV3)
#   makes every output see the whole image, so there is no single RF.
# - The theory clipped to the image equals the bounding box of the gradient-measured support, at
#   the centre and at the corners, also through ASPP, decoder and upsampling.
# - The effective RF, the gradient of the centre pixel's loss (not of the sum of its scores, a
#   direction the softmax ignores), is much smaller than the theoretical one in plain stacks (it
#   grows as $\sqrt n$) and in an untrained DeepLabV3+. At equal depth an atrous stack spreads it
#   over its RF, several times wider than a plain stack's.
# - `python -m atrous rf MODEL` gives the table, the check and the pictures for any model.
#
# ## Exercises
# 1. **Predict, then run.** Compute by hand the RF, jump and start of `conv_stack([(3, 2, 0, 1),
#    (5, 1, 0, 1)])` (no padding), then check with `receptive_field`.
# 2. Take a linear plain stack (`conv_stack([(3, 1, 1, 1)] * n, channels=1, in_channels=1,
#    relu=False)`) with every weight $1/9$. Its ERF is the $n$-fold convolution of a 3x3 box:
#    compute it with numpy and check it against `effective_receptive_field`. What is its
#    standard deviation per axis?
# 3. In MobileNetV3-Large, which is the first layer without a theoretical RF, and which op
#    causes it?
# 4. **Design.** With five 3x3 layers of 16 channels at full resolution, you want half of the
#    gradient of the centre output to come from a square at least 21 pixels wide. Choose the
#    rates, and check your choice with `effective_receptive_field` against the plain stack.
#
# Solutions: `tutorials/solutions/02_receptive_fields.py`.
