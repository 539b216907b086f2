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
# # 8. Benchmarking
#
# **What you will learn**
# - how to time a kernel so that the number means something: warm-up, repeated runs, the
#   median, and how to spot noise;
# - arithmetic intensity (flops per byte), and why a depthwise convolution (about 2.25 flop/byte
#   in float32) is memory-bound while a pointwise GEMM (60 to 140 on DeepLab's layers) is
#   compute-bound;
# - this machine's two roofs, copy bandwidth and GEMM GFLOP/s, and the roofline plot with our
#   kernels and PyTorch's on it;
# - the benchmark harness, `atrous.bench` (`python -m atrous bench`), driven from Python, and
#   its ladder mode.
#
# Every claim below is checked by an `assert`, but only arithmetic and correctness are
# asserted: measured times depend on the machine and its load. With `ATROUS_TUTORIAL_SMALL=1`
# (set by the test suite) the notebook copies a 64 MiB buffer instead of 256 MiB, uses a
# 512x512 instead of a 1024x1024 GEMM, and gives each measurement fewer runs and less time.

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
import dataclasses
import math
import os
import statistics
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt  # a Figure that is a cell's value displays as a picture
import torch
import torch.nn.functional as F

import atrous.ops as ops
from atrous import bench

torch.manual_seed(0)
SMALL = os.environ.get("ATROUS_TUTORIAL_SMALL") == "1"
COPY_BYTES = (64 if SMALL else 256) << 20
GEMM_N = 512 if SMALL else 1024
REPEATS, BUDGET_S = (5, 0.05) if SMALL else (20, 0.5)
timer, cpu = bench.CpuTimer(), torch.device("cpu")
print(f"{bench.cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
      f"{torch.get_num_threads()} thread(s)")

# %% [markdown]
# ## 8.1 Timing a kernel: warm-up, median, noise
#
# A single timed call says little. The first call of an op pays one-time costs: page faults on
# fresh memory, thread-pool start-up, caches and branch predictors that are cold. Later calls
# vary too: another process, an interrupt, the CPU's clock changing. So the harness (see the
# docstring of `atrous.bench`):
#
# 1. runs the call `warmup` times untimed;
# 2. times up to `repeats` runs, each on its own with `time.perf_counter` (CPU ops are
#    synchronous), stopping once `budget` seconds are spent and at least 3 runs are in;
# 3. reports the **median**, which one slow run cannot move, and flags a measurement as noisy
#    when the interquartile range of its runs exceeds 25% of the median.
#
# The median's robustness, on made-up runs with one outlier:

# %%
runs = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 1.02, 0.98, 50.0]  # ms; the last run was interrupted
print(f"mean {statistics.mean(runs):.2f} ms, median {statistics.median(runs):.2f} ms")
assert statistics.mean(runs) > 5 and statistics.median(runs) == 1.0
m = bench.Measurement(runs)
q1, _, q3 = statistics.quantiles(runs, n=4, method="inclusive")
assert m.median_ms == 1.0 and math.isclose(m.spread, (q3 - q1) / 1.0)
assert m.spread < bench.NOISY_SPREAD  # one outlier does not make the measurement "noisy"

# %% [markdown]
# Now real runs of the depthwise kernel on the middle-flow shape (728x33x33, 3x3), with no
# warm-up, so that the first call shows:

# %%
x = torch.randn(1, 728, 33, 33)
w = torch.randn(728, 1, 3, 3) / 3
m, y = bench.measure(lambda: ops.depthwise_conv2d(x, w, None, 1, 1, 1), timer,
                     bench.TimingPlan(warmup=0, repeats=3 * REPEATS, budget_s=10.0))
torch.testing.assert_close(y, F.conv2d(x, w, None, 1, 1, 1, groups=728), rtol=1e-5, atol=1e-5)
print(f"first run {m.runs_ms[0]:.3f} ms, median {m.median_ms:.3f} ms, spread {m.spread:.1%}")

fig, ax = plt.subplots(figsize=(6.5, 2.8))
ax.plot(range(1, len(m.runs_ms) + 1), m.runs_ms, "o-", ms=3, label="runs")
ax.axhline(m.median_ms, color="tab:red", label=f"median {m.median_ms:.3f} ms")
lo, _, hi = statistics.quantiles(m.runs_ms, n=4, method="inclusive")
ax.axhspan(lo, hi, color="tab:red", alpha=0.15, label="interquartile range")
ax.set(xlabel="run", ylabel="ms", ylim=(0, None), title="depthwise 1x728x33x33 3x3: run after run")
ax.title.set_fontsize(9)
ax.legend(fontsize=8)
fig.tight_layout()
plt.close(fig)  # shown once: by returning it, not by pyplot's own display
fig

# %% [markdown]
# ## 8.2 Arithmetic intensity
#
# A kernel's **arithmetic intensity** is its flops divided by the bytes it must move at least
# (read each input and weight once, write each output once):
#
# $$I = \frac{\text{flops}}{\text{bytes}}.$$
#
# **Depthwise** $k \times k$, stride 1, "same" padding, float32 (4 bytes), $C$ channels of
# $H \times W$:
#
# $$I_{\text{dw}} = \frac{2 k^2 C H W}{4\,(C H W + k^2 C + C H W)} \;\to\; \frac{k^2}{4} = 2.25
#   \quad (k = 3,\ HW \gg k^2).$$
#
# Dilation changes neither the flops nor the minimal bytes: an ASPP rate-18 layer has the same
# intensity as a rate-1 layer. **Pointwise** $C \to C_{\text{out}}$, a GEMM with
# $M = C_{\text{out}}$, $K = C$, $N = HW$:
#
# $$I_{\text{pw}} = \frac{2 C_{\text{out}} C H W}{4\,(C H W + C_{\text{out}} C + C_{\text{out}} H W)}.$$
#
# The harness's traffic and flop model, `bench.work`, agrees with both:

# %%
shapes = {s.name: s for s in bench.SHAPES}


def intensity_dw(c, size, k=3, elem=4):
    return 2 * k * k * c * size * size / (elem * (2 * c * size * size + k * k * c))


def intensity_pw(c, c_out, size, elem=4):
    return 2 * c_out * c * size * size / (elem * (c * size * size + c_out * c + c_out * size * size))


def harness_intensity(name, direction="forward", batch=1):
    work = bench.work(bench.Case(shapes[name], batch), direction, 4)
    return work["flops"] / work["bytes"]


for name in ("os16-middle-dw728", "os16-aspp-dw2048-r6", "os16-aspp-dw2048-r18", "dec-dw304"):
    s = shapes[name]
    assert math.isclose(harness_intensity(name), intensity_dw(s.channels, s.size))
    assert 2.2 < harness_intensity(name) < 2.25
for name in ("os16-middle-pw728-728", "os16-aspp-pw2048-256", "dec-pw304-256"):
    s = shapes[name]
    assert math.isclose(harness_intensity(name), intensity_pw(s.channels, s.out_channels, s.size))
    assert 60 < harness_intensity(name) < 140
assert harness_intensity("os16-aspp-dw2048-r6") == harness_intensity("os16-aspp-dw2048-r18")  # rate-free
for name in ("os16-middle-dw728", "os16-aspp-dw2048-r12", "os16-middle-pw728-728", "os16-resnet-dense512-d2"):
    print(f"{name:26s} {harness_intensity(name):7.2f} flop/byte")

# %% [markdown]
# The depthwise layer does 2.25 flops per byte; the pointwise layer on the same plane does about
# 60 times more: every input value takes part in $C_{\text{out}}$ multiply-adds instead of 9.

# %%
ratio = harness_intensity("os16-middle-pw728-728") / harness_intensity("os16-middle-dw728")
print(f"pointwise / depthwise intensity: {ratio:.0f}")
assert 55 < ratio < 65

# %% [markdown]
# ## 8.3 This machine's roofs
#
# A kernel cannot go faster than the memory can feed it, nor faster than the cores can compute.
# Two measurements give the roofs:
#
# - **Bandwidth** $B$: the rate of a large copy, `dst.copy_(src)`. The buffer must be much larger
#   than the last-level cache, or the copy measures the cache. The harness counts
#   $2 \times$ bytes (read `src`, write `dst`), but that is not what the memory bus carries. With
#   ordinary stores a core cannot write part of a cache line it does not hold: each line of `dst`
#   is first *read* into the cache (write-allocate), then written back. A copy without
#   non-temporal (streaming) stores therefore moves $3 \times$ bytes: read, allocate, write back.
#   Counting 2 underestimates the bus rate by a third. That is how a kernel, whose rate is its
#   *minimal* bytes over its time, can appear to beat the copy ("107% of copy"): it is compared
#   with a figure a third below what the bus did. We print both; the roofline below keeps the
#   harness's 2x count, so that kernels and copy are counted alike.
# - **Compute** $P$: the GFLOP/s of a large float32 matrix product, $2n^3$ flops. We take
#   PyTorch's `torch.mm` (its BLAS) as the achievable peak, and time our own GEMM on the same
#   problem: a 1x1 convolution with $C = C_{\text{out}} = n$ on a plane of $n$ pixels is exactly
#   an $n \times n \times n$ GEMM.

# %%
def l3_bytes() -> int | None:
    """The largest cache of cpu0, from Linux's sysfs (None elsewhere)."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
            sizes.append(int(text[:-1]) * {"K": 1 << 10, "M": 1 << 20}[text[-1]])
        except (OSError, ValueError, KeyError):
            pass
    return max(sizes, default=None)


llc = l3_bytes()
print(f"last-level cache: {llc / 2**20:.0f} MiB" if llc else "last-level cache: unknown")
copy = bench.copy_bandwidth(cpu, timer, COPY_BYTES)
B = copy["GBps"]  # the harness's count: 2 x bytes
bus_bytes = 3 * COPY_BYTES  # read src, read dst's lines (write-allocate), write them back
B_bus = bus_bytes / (copy["median_ms"] * 1e-3) / 1e9
assert copy["bytes_moved"] == 2 * COPY_BYTES  # the harness counts read + write, not the allocation
print(f"copy of {COPY_BYTES >> 20} MiB: {copy['median_ms']:.2f} ms -> B = {B:.1f} GB/s counting 2x bytes; "
      f"the bus moved 3x bytes with write-allocate: {B_bus:.1f} GB/s")

a, b = torch.randn(GEMM_N, GEMM_N), torch.randn(GEMM_N, GEMM_N)
plan = bench.TimingPlan(warmup=1, repeats=REPEATS, budget_s=4 * BUDGET_S)
mm, _ = bench.measure(lambda: torch.mm(a, b), timer, plan)
xg = torch.randn(1, GEMM_N, GEMM_N // 32, 32)  # a plane of GEMM_N pixels
wg = torch.randn(GEMM_N, GEMM_N, 1, 1)
ours, _ = bench.measure(lambda: ops.pointwise_conv2d(xg, wg), timer, plan)
gemm_flops = 2 * GEMM_N**3
P = gemm_flops / (mm.median_ms * 1e-3) / 1e9
P_ours = gemm_flops / (ours.median_ms * 1e-3) / 1e9
print(f"{GEMM_N}^3 GEMM: torch.mm {P:.1f} GFLOP/s, atrous pointwise_conv2d {P_ours:.1f} GFLOP/s")

# %% [markdown]
# ## 8.4 The roofline
#
# The **roofline model** bounds the rate of a kernel of intensity $I$:
#
# $$\text{attainable GFLOP/s} = \min(P,\; I \cdot B).$$
#
# The two roofs meet at the **ridge point** $I^* = P / B$. A kernel left of the ridge is
# *memory-bound*: only moving fewer bytes (or moving them better) speeds it up. A kernel right of
# it is *compute-bound*: only more flops per cycle help (vector registers, FMAs, register tiles).

# %%
def roof(i: float) -> float:
    return min(P, i * B)


ridge = P / B
i_dw, i_pw = harness_intensity("os16-middle-dw728"), harness_intensity("os16-middle-pw728-728")
for name, i in (("depthwise", i_dw), ("pointwise", i_pw)):
    side_ = "memory-bound" if i < ridge else "compute-bound"
    print(f"ridge at {ridge:.1f} flop/byte: {name} ({i:.2f} flop/byte) is {side_} on this machine")

# %% [markdown]
# One caveat before plotting measured points. At batch 1 a 33x33 layer is small: the
# middle-flow depthwise layer moves about 6 MB, which fits in a 32 MiB last-level cache. Run
# back to back, it reads its input from cache, not DRAM, and can beat the copy roof, which was
# measured out of DRAM on purpose. Points above the slanted roof mean "cache-resident", not
# "faster than memory".

# %%
dw_bytes = bench.work(bench.Case(shapes["os16-middle-dw728"], 1), "forward", 4)["bytes"]
assert dw_bytes == 4 * (2 * 728 * 33 * 33 + 728 * 9)
print(f"os16-middle-dw728 moves {dw_bytes / 1e6:.2f} MB at batch 1")
assert dw_bytes < 32 << 20

# %% [markdown]
# ## 8.5 Ours against PyTorch, with the harness
#
# `bench.Options` holds the flags of `python -m atrous bench` (same names, same defaults);
# `bench.resolve(options)` then `bench.run(config)` do what the command does and return the report
# as a dict. We time four layers of DeepLabV3+ at batch 1 (the harness's shape names; `--list`
# shows them all), on both layouts, forward and backward.
# Every output and gradient is checked against PyTorch: that, and only that, is asserted.

# %%
out_dir = Path(tempfile.mkdtemp(prefix="atrous-tutorial05-"))
names = "os16-middle-dw728,os16-aspp-dw2048-r12,os16-middle-pw728-728,os16-aspp-pw2048-256"
options = bench.Options(shapes=names, repeats=REPEATS, budget=BUDGET_S, out=out_dir)
config = dataclasses.replace(bench.resolve(options), copy_bytes=COPY_BYTES)
report = bench.run(config)
assert bench.report_ok(report)  # every output and gradient matched PyTorch
assert {r["name"] for r in report["results"]} == {n + "-n1" for n in names.split(",")}

# %% [markdown]
# Each record holds the flops and bytes of the call and the median of every contender on each
# layout, so the measured points go straight onto the roofline. Filled markers are ours, open
# ones PyTorch's; circles NCHW, squares channels_last.

# %%
def points(report, direction="forward"):
    """(label, intensity, GFLOP/s, impl, layout) for every measured forward call."""
    for r in report["results"]:
        rec = r["directions"][direction]
        for impl, by_layout in rec["GFLOPs"].items():
            for layout, gflops in by_layout.items():
                yield r["shape"], rec["flops"] / rec["bytes"], gflops, impl, layout


def plot_roofline(pts, title):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [0.1, 2000]
    ax.plot([xs[0], ridge, xs[1]], [roof(xs[0]), P, P], "k-", lw=1.5,
            label=f"roof: min({P:.0f}, I x {B:.1f})")
    ax.axvline(ridge, color="k", ls=":", lw=0.8)
    colors = {}
    for label, i, gflops, impl, layout in pts:
        color = colors.setdefault(label, f"C{len(colors)}")
        ax.plot(i, gflops, "s" if layout == "channels_last" else "o", color=color,
                mfc=color if impl == "ours" else "none", ms=7)
    for label, color in colors.items():
        ax.plot([], [], "o", color=color, label=label)
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (flop/byte)", ylabel="GFLOP/s")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(which="both", alpha=0.2)
    fig.tight_layout()
    plt.close(fig)  # shown once: by the cell that returns it
    return fig


pts = list(points(report))
assert all(math.isclose(i, harness_intensity(label)) for label, i, *_ in pts)
plot_roofline(pts, f"roofline, float32, batch 1, {torch.get_num_threads()} thread(s) "
                   "(filled: atrous, open: PyTorch; o NCHW, s channels_last)")

# %% [markdown]
# Read it column by column: all points of one layer share an intensity, and the height is how
# close each implementation comes to the roof above it. The harness also reports the ratios
# $x = t_{\text{PyTorch}} / t_{\text{ours}}$, per layout and against PyTorch's faster layout:

# %%
for r in report["results"]:
    for direction, rec in r["directions"].items():
        x_ratio = rec["speedup"]["ours"]
        print(f"{r['shape']:24s} {direction:8s} x NCHW {x_ratio.get('nchw', float('nan')):5.2f}  "
              f"x channels_last {x_ratio.get('channels_last', float('nan')):5.2f}")

# %% [markdown]
# ## 8.6 The ladder mode
#
# `--ladder OP` times every rung of one op's kernel ladder (notebook 3) on one shape, then
# `auto` and PyTorch, on both layouts and both directions. "x prev" is what each step bought.
# A rung whose run is estimated above `--rung-budget` seconds is skipped and reported.

# %%
ladder_options = bench.Options(ladder="depthwise_conv2d", shapes="os16-middle-dw728", repeats=REPEATS,
                               budget=BUDGET_S, rung_budget=5, out=out_dir)
ladder_report = bench.run(dataclasses.replace(bench.resolve(ladder_options), copy_bytes=COPY_BYTES))
assert bench.report_ok(ladder_report)  # every rung matched PyTorch
ladder = ladder_report["ladder"]
assert ladder["rungs"] == [*ops.algorithms("depthwise_conv2d"), "auto"]

# %% [markdown]
# All rungs share the layer's intensity $I$, so on the roofline they stack on one vertical line
# under the roof $\min(P, I B)$. As bars: the rate each rung reaches, against that roof. Each
# step climbs toward it; at this cache-resident size a rung may even pass it.

# %%
i_layer = harness_intensity("os16-middle-dw728")
rows_fwd = [row for row in ladder["rows"] if row["direction"] == "forward" and "GFLOPs" in row]
fig, ax = plt.subplots(figsize=(6.5, 0.3 * len(rows_fwd) + 1.2))
labels = [f"{row['rung']} ({bench.LAYOUT_LABEL[row['layout']]})" for row in rows_fwd]
ax.barh(labels, [row["GFLOPs"] for row in rows_fwd],
        color=["tab:gray" if row["rung"] == "torch" else "tab:blue" for row in rows_fwd])
ax.axvline(roof(i_layer), color="k", ls="--", label=f"roof at I = {i_layer:.2f}: {roof(i_layer):.1f} GFLOP/s")
ax.invert_yaxis()
ax.set_xscale("log")
ax.set_xlabel("GFLOP/s (log scale)")
ax.set_title("depthwise 1x728x33x33 forward, each rung of the ladder (gray: PyTorch)", fontsize=9)
ax.legend(fontsize=8)
fig.tight_layout()
plt.close(fig)  # shown once: by returning it, not by pyplot's own display
fig

# %% [markdown]
# The harness also wrote its own chart and the JSON of the whole run (machine, build, every
# run's times) next to it:

# %%
written = sorted(p.name for p in out_dir.iterdir())
print(written)
assert "bench.json" in written and f"ladder-depthwise_conv2d-{ladder['case']}.json" in written

# %% [markdown]
# ## Summary
# - Time with a warm-up, repeated runs and the median; report the spread and treat a wide one
#   as noise, not as a result.
# - Arithmetic intensity $I$ = flops / minimal bytes: about $k^2/4 = 2.25$ for a 3x3
#   depthwise convolution in float32, whatever the dilation, against 60 to 140 for DeepLab's
#   pointwise GEMMs.
# - The roofline $\min(P, I B)$, with $B$ from a large copy and $P$ from a large GEMM, tells
#   which resource bounds a kernel: left of the ridge $P/B$ memory, right of it compute. 8.4
#   prints where this machine's ridge puts the depthwise and pointwise layers.
# - `atrous.bench` does all of this on the DeepLabV3+ shapes and checks every result against
#   PyTorch; `--ladder` shows what each kernel rung bought.
#
# ## Exercises
# 1. Compute the intensity of the depthwise **backward** pass from `bench.work`'s byte model
#    (read grad_output, input and weights; write grad_input and grad_weight). Is it higher or
#    lower than the forward pass's?
# 2. **Predict, then run.** The dilated ResNet-101's dense 3x3 convolution
#    `os16-resnet-dense512-d2` (512 -> 512 at 33x33): derive its intensity by hand and check it
#    against `bench.work`. Which side of a ridge at 10 flop/byte is it on?
# 3. The pointwise intensity grows with the plane. Find its limit as $HW \to \infty$ for $C =
#    C_{\text{out}} = 728$, and the smallest square plane at which it reaches 90% of it.
# 4. From which batch size does the middle-flow depthwise layer (`os16-middle-dw728`) move more
#    than 32 MiB, so that back-to-back runs can no longer stay in a 32 MiB cache?
# 5. **Design.** The copy's bandwidth depends on whether the stores allocate. Design a bandwidth
#    measurement whose byte count does not depend on it, and say what it measures.
#
# Solutions: `tutorials/solutions/08_benchmarking.py`.
