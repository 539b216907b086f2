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
# # 10. ASPP: atrous spatial pyramid pooling
#
# **What you will learn**
# - the five branches of ASPP and their rates: $(6, 12, 18)$ at output stride (OS) 16, doubled
#   at OS 8;
# - multi-scale context: where each branch samples, in feature pixels and in image pixels;
# - the image-pooling branch: global context, and why it trains with a batch of one image;
# - ASPP's taps over a photo, and what happens when a rate approaches the feature-map size;
# - the `AtrousRateWarning` that flags such rates;
# - what separable branches (DeepLabV3+) save over dense ones (DeepLabV3).
#
# Every claim below is checked by an `assert`, so if a claim stops being true the notebook fails
# in CI.
#
# **Small-size switch.** With the environment variable `ATROUS_TUTORIAL_SMALL=1` (the tests set it)
# the backbone in 10.2 runs on a 65x65 image; without it, 513x513. Everything else uses the
# feature-map sizes of a 513x513 image (33x33 at OS 16), which are cheap.

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
import warnings

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

import atrous.models as M
from atrous import viz
from atrous.nn import PooledBatchNorm2d
from atrous.receptive_field import measure_receptive_field, receptive_field
from atrous.viz import interactive

torch.manual_seed(0)
SMALL = os.environ.get("ATROUS_TUTORIAL_SMALL") == "1"
SIZE = 65 if SMALL else 513
print(f"backbone input in 7.2: {SIZE}x{SIZE}")

# %% [markdown]
# ## 10.1 The branches and their rates
#
# ASPP (DeepLabV3, Sec. 3.3) runs five branches on the backbone's last feature map $x$, each with
# 256 filters, BatchNorm and ReLU, and concatenates them:
#
# 1. a 1x1 conv;
# 2. three 3x3 atrous convs with rates $r \in \{6, 12, 18\}$ at OS 16;
# 3. image pooling: global average, 1x1 conv, broadcast back to the map.
#
# A 1x1 conv then projects the $5 \cdot 256$ channels to 256. At OS 8 the feature map has twice
# the resolution, so the rates double to $(12, 24, 36)$: $\text{rate} = 6 \cdot 16 / \text{OS}$.
# We read the rates from the convs of the DeepLabV3+ model.

# %%
def branch_rates(aspp):
    """Dilation of each 3x3 branch, read from its conv (depthwise in a separable branch)."""
    return tuple(next(m.dilation[0] for m in branch.modules()
                      if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
                 for branch in aspp.convs[1:-1])


models = {os_: M.deeplabv3plus_xception65(num_classes=21, output_stride=os_) for os_ in (16, 8)}
for os_, model in models.items():
    print(f"OS {os_:2}: rates {branch_rates(model.aspp)}, branches "
          f"{[type(b).__name__ for b in model.aspp.convs]}")
assert branch_rates(models[16].aspp) == (6, 12, 18) == M.default_aspp_rates(16)
assert branch_rates(models[8].aspp) == (12, 24, 36) == M.default_aspp_rates(8)
assert len(models[16].aspp.convs) == 5 and isinstance(models[16].aspp.convs[-1], M.ASPPPooling)

# %% [markdown]
# Each 3x3 branch pads by its rate, $p = r$, so the map keeps its size (notebook 1). Its taps
# are $r$ feature pixels apart, that is $r \cdot \text{OS}$ image pixels: 96, 192 and 288 at both
# output strides. Doubling the rates at OS 8 keeps the taps where they were in the image.

# %%
for os_, model in models.items():
    for branch, rate in zip(model.aspp.convs[1:-1], branch_rates(model.aspp)):
        conv = branch.conv_dw  # DeepLabV3+ uses separable branches: depthwise 3x3, then 1x1
        assert conv.padding == (rate, rate) and conv.stride == (1, 1)
    assert [rate * os_ for rate in branch_rates(model.aspp)] == [96, 192, 288]

# %% [markdown]
# The whole module at a glance, drawn from the small DeepLabV3+ itself (forward hooks record the
# shape on every arrow, so the picture cannot drift from the code).

# %%
viz.plot_aspp_diagram(M.deeplabv3plus_small(num_classes=4).eval(), input_size=129)

# %% [markdown]
# ## 10.2 Multi-scale context
#
# On the feature map, a 3x3 branch with rate $r$ has RF $2r + 1$: 13, 25 and 37 feature pixels
# at OS 16. The 1x1 branch has RF 1; image pooling sees the whole map. We trace an ASPP (with 16
# channels: the RF does not depend on the width) on the 33x33 map of a 513x513 image.

# %%
aspp = M.ASPP(16, 16, (6, 12, 18)).eval()
report = receptive_field(aspp, 33)
cat = next(row for row in reversed(report.layers) if row.op == "cat")
branches = report.branches(cat)  # one row per branch, in order
centre = cat.centre_position
for row in branches:
    theory = row.rf[0].size if row.rf is not None else "-"
    print(f"{row.name:9}  RF {theory!s:>3}  clipped RF of the central output {row.size_at(*centre)}")
assert [row.rf[0].size for row in branches[:4]] == [1, 13, 25, 37]
assert branches[4].rf is None  # image pooling: broadcast, no single RF
assert branches[4].box_clipped(0, 0) == (0, 0, 32, 32)  # even a corner output sees the whole map

# %% [markdown]
# Look at the last column. The central output is pixel $(16, 16)$ of the 33x33 map. The rate-18
# branch reads pixels $16 \pm 18$, that is $-2$ and $34$: outside the map, in the zero padding.
# Its clipped RF is a single pixel. At the centre, this branch is a 1x1 conv. (We see more of this
# in 10.4.)

# %%
assert [row.size_at(*centre) for row in branches[1:4]] == [(13, 13), (25, 25), (1, 1)]

# %% [markdown]
# In image pixels, each branch adds its feature-pixel RF on top of the backbone's (RF $r_b$,
# jump OS):
#
# $$r_{\text{branch}} = r_b + (2r + 1 - 1)\,\text{OS} = r_b + 2\,r\,\text{OS}.$$
#
# We check this on Xception-65 at OS 16 ($r_b = 1915$, notebook 9) followed by an ASPP. With
# the small switch the feature map is only 5x5 and ASPP warns (10.5); we silence the warning here.

# %%
class Encoder(nn.Module):
    """Backbone, then ASPP on its OS feature map: the part of DeepLab that sees the image."""

    def __init__(self, backbone, aspp):
        super().__init__()
        self.backbone, self.aspp = backbone, aspp

    def forward(self, x):
        return self.aspp(self.backbone(x)["out"])


encoder = Encoder(M.xception65(output_stride=16), M.ASPP(2048, 16, (6, 12, 18))).eval()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", M.AtrousRateWarning)
    enc_report = receptive_field(encoder, SIZE)
enc_cat = next(row for row in reversed(enc_report.layers) if row.op == "cat")
enc_branches = enc_report.branches(enc_cat)
in_pixels = [row.rf[0].size for row in enc_branches[:4]]
print("branch RFs in image pixels:", in_pixels, " jump:", enc_branches[0].rf[0].jump)
assert in_pixels == [1915 + 2 * r * 16 for r in (0, 6, 12, 18)] == [1915, 2107, 2299, 2491]

# %% [markdown]
# All four are larger than a 513x513 image: in theory, every branch already sees everything.
# The branches differ in *how* they see it. Each reads 9 feature vectors, 96, 192 or 288 pixels
# apart: context at three scales, plus the 1x1 branch (the pixel itself) and image pooling (the
# whole image, averaged).
#
# ## 10.3 Image pooling
#
# The image-pooling branch computes, for a feature map $x$ of $H \times W$ pixels,
#
# $$p = \text{ReLU}\Big(\text{BN}\Big(W_{1\times1}\,\frac{1}{HW}\sum_{i,j} x_{ij}\Big)\Big),$$
#
# and repeats $p$ at every position. Its output is constant over the map, and every input pixel
# changes it.

# %%
pooling = aspp.convs[4]
features = torch.randn(1, 16, 33, 33)
with torch.no_grad():
    p = pooling(features)
assert p.shape == (1, 16, 33, 33) and torch.equal(p, p[..., :1, :1].expand_as(p))
corner = measure_receptive_field(pooling, 33, position=(0, 0))
assert corner.mask.all()  # the corner output depends on all 33 x 33 pixels

# %% [markdown]
# **Batch size 1.** After global pooling the map is 1x1. With one image, BatchNorm sees one value
# per channel: its batch variance is zero, and `nn.BatchNorm2d` refuses to train on it.

# %%
plain_bn = nn.BatchNorm2d(16).train()
try:
    plain_bn(torch.randn(1, 16, 1, 1))
    raise AssertionError("expected BatchNorm2d to refuse a batch of one 1x1 map")
except ValueError as e:
    print("nn.BatchNorm2d:", e)
    assert "Expected more than 1 value per channel" in str(e)

# %% [markdown]
# The pooling branch uses `atrous.nn.PooledBatchNorm2d`. With one value per channel it normalises
# with the running statistics, as in eval mode, and leaves them unchanged; its scale and shift
# still train. With more values it is an ordinary BatchNorm. So the whole ASPP trains on one
# image: we run a forward and a backward pass in training mode.

# %%
aspp.train()
bn = pooling[2]
assert isinstance(bn, PooledBatchNorm2d)
before = bn.running_mean.clone()
out = aspp(features)  # batch of one, training mode
out.square().mean().backward()
assert torch.equal(bn.running_mean, before)  # one sample: the statistics are left alone
assert pooling[1].weight.grad.abs().sum() > 0 and bn.weight.grad is not None  # the branch trains
aspp(torch.randn(2, 16, 33, 33))  # two images: an ordinary BatchNorm update
assert not torch.equal(bn.running_mean, before)
aspp = aspp.eval()

# %% [markdown]
# ## 10.4 ASPP over a photo
#
# `viz.plot_aspp_coverage` places the taps of the central output on matplotlib's
# `grace_hopper.jpg` at 513x513: grey dots are the feature grid, coloured dots the taps of each
# rate, crosses the taps that land in the zero padding, the dotted frame image pooling.

# %%
SIZE_COVERAGE = 513
fig = viz.plot_aspp_coverage(image_size=SIZE_COVERAGE)
fig

# %% [markdown]
# At OS 16 the map is 33x33 and the centre is pixel 16. A tap $16 \pm r$ lies inside the map when
# $r \le 16$: all 9 taps for rates 6 and 12, only the centre for rate 18. At OS 8 (65x65, centre
# 32) rates 12 and 24 are inside and rate 36 is not. We count the taps in the figure.

# %%
def taps_inside(size, rate):
    c = (size - 1) // 2
    return sum(0 <= c + dy * rate < size and 0 <= c + dx * rate < size
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


drawn = [{c.get_gid(): len(c.get_offsets()) for c in ax.collections} for ax in fig.axes]
for counts, size, rates in ((drawn[0], 33, (6, 12, 18)), (drawn[1], 65, (12, 24, 36))):
    for rate in rates:
        inside = taps_inside(size, rate)
        assert counts[f"taps-in-{rate}"] == inside and counts.get(f"taps-out-{rate}", 0) == 9 - inside
assert [taps_inside(33, r) for r in (6, 12, 18)] == [9, 9, 1]
assert [taps_inside(65, r) for r in (12, 24, 36)] == [9, 9, 1]

# %% [markdown]
# Try other rates: the sliders set the three rates (at OS 16) and the output stride, and redraw
# the taps. Which rate first loses its off-centre taps at OS 16? (Without ipywidgets, or run
# headless, the cell draws the picture for the default rates at OS 16.)

# %%
interactive.interactive_aspp_coverage(rates=(6, 12, 18), output_stride=16, image_size=SIZE_COVERAGE)

# %% [markdown]
# DeepLabV3 (Fig. 4) makes this point over all positions. For a 3x3 kernel with rate $r$ on an
# $n \times n$ map, count the taps that land inside the map, averaged over the positions. Along
# one axis the centre tap always lands inside and each off-centre tap at $n - r$ of the $n$
# positions, so the average is
#
# $$\frac{1}{9}\Big(1 + \frac{2\max(n - r, 0)}{n}\Big)^2 .$$
#
# It falls as the rate grows, and reaches $1/9$ at $r \ge n$: there only the centre weight
# is left and the branch is a 1x1 conv.

# %%
def valid_fraction(n, rate):
    """Share of a 3x3 kernel's taps inside an n x n map, averaged over the n x n positions."""
    i = np.arange(n)
    per_axis = np.mean([sum(0 <= j + t * rate < n for t in (-1, 0, 1)) for j in i])
    return per_axis ** 2 / 9


rates_axis = np.arange(1, 81)
fig = Figure(figsize=(6, 3.5), layout="constrained")
ax = fig.subplots()
for n in (33, 65):
    fractions = [valid_fraction(n, r) for r in rates_axis]
    assert all(a >= b for a, b in zip(fractions, fractions[1:]))  # falls with the rate
    assert all(abs(f - 1 / 9) < 1e-12 for r, f in zip(rates_axis, fractions) if r >= n)
    assert all(abs(f - (1 + 2 * max(n - r, 0) / n) ** 2 / 9) < 1e-12 for r, f in zip(rates_axis, fractions))
    ax.plot(rates_axis, fractions, label=f"{n}x{n} map (OS {16 if n == 33 else 8})")
for r, n in ((6, 33), (12, 33), (18, 33), (24, 65), (36, 65)):
    ax.plot(r, valid_fraction(n, r), "ko", ms=4)
ax.axhline(1 / 9, color="grey", ls=":", label="1/9: only the centre tap")
ax.set_xlabel("rate")
ax.set_ylabel("share of the 9 taps inside the map")
ax.set_title("3x3 atrous conv: taps that read the map, not the padding")
ax.legend()
fig

# %% [markdown]
# This is why ASPP has the image-pooling branch: it supplies the image-wide context that a very
# large rate would only pretend to give.
#
# ## 10.5 When a rate reaches past the map: `AtrousRateWarning`
#
# When a rate is at least the feature-map size, every off-centre tap of every output reads
# padding. ASPP warns then, naming the rate and the map. A 129x129 image at OS 16 gives a 9x9
# map: rates 12 and 18 trigger the warning, rate 6 does not.

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with torch.no_grad():
        aspp(torch.randn(1, 16, 9, 9))
for w in caught:
    print(f"{w.category.__name__}: {str(w.message)[:90]}...")
assert [w.category for w in caught] == [M.AtrousRateWarning] * 2
assert "rate 12 " in str(caught[0].message) and "rate 18 " in str(caught[1].message)

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with torch.no_grad():
        aspp(torch.randn(1, 16, 33, 33))  # the OS-16 map of a 513x513 image: no warning
assert not caught

# %% [markdown]
# In a training script you may prefer an error: `warnings.simplefilter("error", AtrousRateWarning)`.

# %%
with warnings.catch_warnings():
    warnings.simplefilter("error", M.AtrousRateWarning)
    try:
        aspp(torch.randn(1, 16, 9, 9))
        raise AssertionError("expected an AtrousRateWarning raised as an error")
    except M.AtrousRateWarning as e:
        assert "9x9 feature map" in str(e)

# %% [markdown]
# The warning fires only when the rate reaches the map's size. Rate 18 on a 33x33 map does not
# trigger it, but its central output is still a 1x1 conv (10.2): check the coverage of the rates
# you choose for your image size.
#
# ## 10.6 Separable or dense branches
#
# DeepLabV3 uses dense 3x3 branches. DeepLabV3+ uses atrous separable ones: a 3x3 depthwise conv
# (one filter per input channel) followed by a 1x1 conv. For $C_{\text{in}}$ input channels,
# $C_{\text{out}}$ outputs and an $H \times W$ map (weights only; each weight is used once per
# output pixel):
#
# $$\text{dense: } 9\,C_{\text{in}}C_{\text{out}}, \qquad
#   \text{separable: } 9\,C_{\text{in}} + C_{\text{in}}C_{\text{out}}, \qquad
#   \text{MACs} = \text{weights} \times HW .$$
#
# The ratio is $9\,C_{\text{out}} / (9 + C_{\text{out}})$, 8.7 for $C_{\text{out}} = 256$. The
# rate changes neither. We compare with `atrous.models.summary` on the DeepLab width (2048 to 256)
# at 33x33.

# %%
C_in, C_out, n = 2048, 256, 33
tables = {}
for separable in (False, True):
    block = M.ASPP(C_in, C_out, (6, 12, 18), separable=separable)
    tables[separable] = M.summary(block, (C_in, n, n), depth=2, receptive_field=False, show=False)
rows = {sep: {r.name: r for r in t.rows} for sep, t in tables.items()}
dense_w, sep_w = 9 * C_in * C_out, 9 * C_in + C_in * C_out
bn_params = {False: 2 * C_out, True: 2 * C_in + 2 * C_out}  # BatchNorm scale and shift
for name in ("convs.1", "convs.2", "convs.3"):
    assert rows[False][name].params == dense_w + bn_params[False]
    assert rows[False][name].macs == dense_w * n * n
    assert rows[True][name].params == sep_w + bn_params[True]
    assert rows[True][name].macs == sep_w * n * n
ratio = dense_w / sep_w
print(f"one 3x3 branch: dense {dense_w:,} weights, {dense_w * n * n / 1e9:.2f} GMACs; "
      f"separable {sep_w:,} weights, {sep_w * n * n / 1e9:.2f} GMACs; {ratio:.2f}x fewer")
print(f"whole ASPP: dense {tables[False].total_params:,} parameters, "
      f"{tables[False].total_macs / 1e9:.1f} GMACs; "
      f"separable {tables[True].total_params:,}, {tables[True].total_macs / 1e9:.1f} GMACs")
assert abs(ratio - 9 * C_out / (9 + C_out)) < 1e-12 and 8.6 < ratio < 8.8
assert tables[False].total_macs > 5 * tables[True].total_macs
assert 3 * sep_w < dense_w  # all three separable branches cost less than one dense branch

# %% [markdown]
# The three separable branches cost less than one dense branch. The 1x1 branch, the pooling
# branch and the projection are the same in both.
#
# ## Summary
# - ASPP runs a 1x1 conv, three 3x3 atrous convs and image pooling side by side. Rates are
#   $(6, 12, 18)$ at OS 16 and $(12, 24, 36)$ at OS 8: the taps stay 96, 192 and 288 image pixels
#   apart.
# - A 3x3 branch with rate $r$ has RF $2r+1$ feature pixels, $r_b + 2r\,\text{OS}$ image pixels.
# - Image pooling gives every position the whole image's average. `PooledBatchNorm2d` lets it
#   train with one image per batch.
# - A tap lands in the padding when the rate is too large for the map. Rate 18 on a 33x33 map
#   already turns the central output's branch into a 1x1 conv; rates at or beyond the map size do
#   so everywhere, and ASPP warns (`AtrousRateWarning`).
# - Separable branches need $9C_{\text{out}}/(9+C_{\text{out}}) \approx 8.7$ times fewer
#   parameters and MACs than dense ones.
#
# ## Exercises
# 1. **Predict, then run.** At OS 8 (a 65x65 map), which rates keep all 9 taps of the central
#    output inside the map? Check your answer with `receptive_field` on an ASPP.
# 2. How many times more MACs does a dense ASPP cost at OS 8 than at OS 16 for a 513x513 image?
#    Check with `summary` on a narrower ASPP.
# 3. Write the image-pooling branch in eval mode with `torch.nn.functional` (mean, conv, batch
#    norm, ReLU) and check it against `ASPPPooling`.
# 4. **Design.** At OS 8 DeepLabV3 doubles the rates to $(12, 24, 36)$, and rate 36 reads only
#    padding through the off-centre taps of the central output on a 65x65 map. Choose three
#    rates for OS 8 that keep all 9 taps of the central output inside the map and spread the
#    branches as widely as possible.
#
# Solutions: `tutorials/solutions/10_aspp.py`.
