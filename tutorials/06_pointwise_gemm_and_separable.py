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
# # 6. Pointwise convolution as a GEMM, and separable convolution
#
# **What you will learn**
# - why a 1x1 convolution *is* a matrix product, and how atrous runs it on NCHW and
#   channels_last images without copying them;
# - the parameters and FLOPs of a separable convolution (depthwise 3x3 + pointwise 1x1) against
#   a dense 3x3 one: the ratio $1/C_{\text{out}} + 1/k^2$, with DeepLabV3+'s numbers;
# - how a fast GEMM is blocked: packed panels and a register micro-kernel (`csrc/cpu/gemm.cpp`),
#   rebuilt in NumPy;
# - fusion: `atrous.ops.separable_conv2d` runs both stages tile by tile and never writes the
#   intermediate; how many bytes that saves.
#
# Every claim below is checked by an `assert`. Timings are printed and plotted, never asserted.
# With `ATROUS_TUTORIAL_SMALL=1` (set by the test suite) the timed shapes are smaller and run
# fewer times.

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
import re
from fractions import Fraction
from pathlib import Path

import matplotlib.pyplot as plt  # a Figure that is a cell's value displays as a picture
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import atrous
import atrous.buildinfo
import atrous.ops as ops
from atrous.bench import median_ms  # the harness's timer: warm-up, then the median of timed runs (notebook 8)

torch.manual_seed(0)
SMALL = os.environ.get("ATROUS_TUTORIAL_SMALL") == "1"
REPEATS = 3 if SMALL else 10
CSRC = atrous.sources()
assert (CSRC / "cpu" / "gemm.cpp").exists(), f"expected the C++ sources under {CSRC}"

# %% [markdown]
# ## 6.1 A 1x1 convolution is a matrix product
#
# With a 1x1 kernel every output pixel mixes the $C$ channels of the same input pixel:
#
# $$y[n, o, h, w] = b[o] + \sum_{c} W[o, c]\, x[n, c, h, w].$$
#
# Flatten the plane: $X_n = x[n]$ seen as a $C \times HW$ matrix. Then $Y_n = W X_n$, a GEMM
# (general matrix multiply) with $M = C_{\text{out}}$, $K = C$, $N = HW$, and $2MNK$ flops.

# %%
n, c, c_out, h, w = 2, 16, 24, 9, 7
x = torch.randn(n, c, h, w, dtype=torch.float64)
weight = torch.randn(c_out, c, 1, 1, dtype=torch.float64)
bias = torch.randn(c_out, dtype=torch.float64)

as_einsum = torch.einsum("oc,nchw->nohw", weight[:, :, 0, 0], x) + bias[:, None, None]
as_matmul = (weight[:, :, 0, 0] @ x.reshape(n, c, h * w)).reshape(n, c_out, h, w) + bias[:, None, None]
reference = F.conv2d(x, weight, bias)
torch.testing.assert_close(as_einsum, reference)
torch.testing.assert_close(as_matmul, reference)
for algo in ops.algorithms("pointwise_conv2d"):  # ("naive", "blocked")
    torch.testing.assert_close(ops.pointwise_conv2d(x, weight, bias, algo=algo), reference)
assert ops.algorithms("pointwise_conv2d") == ("naive", "blocked")

# %% [markdown]
# **No copies for channels_last.** In channels_last memory an image is the transposed matrix:
# $X_n^T$, $HW \times C$, row-major. The GEMM reads matrices through strides (`MatrixView`
# in `csrc/cpu/gemm.h`: element $(i, j)$ at `data[i * row_stride + j * col_stride]`), so both
# layouts are views of the same $C \times HW$ matrix, with strides $(HW, 1)$ or $(1, C)$:

# %%
x_cl = x.contiguous(memory_format=torch.channels_last)
matrix = x_cl[0].permute(1, 2, 0).reshape(h * w, c).T  # X_0 as C x HW, a view of x_cl
assert matrix.data_ptr() == x_cl.data_ptr() and matrix.stride() == (1, c)
assert x[0].reshape(c, h * w).stride() == (h * w, 1)
torch.testing.assert_close(matrix, x[0].reshape(c, h * w))
y_cl = ops.pointwise_conv2d(x_cl, weight, bias)
assert y_cl.is_contiguous(memory_format=torch.channels_last)  # written in the input's layout
torch.testing.assert_close(y_cl, reference)

# %% [markdown]
# ## 6.2 Separable against dense: parameters and FLOPs
#
# A dense $k \times k$ convolution from $C$ to $C_{\text{out}}$ channels on an
# $H_o \times W_o$ output has $k^2 C C_{\text{out}}$ weights and does
# $2 k^2 C C_{\text{out}} H_o W_o$ flops. A separable one, depthwise $k \times k$ then pointwise
# $1 \times 1$, has $k^2 C + C C_{\text{out}}$ weights and $2(k^2 C + C C_{\text{out}}) H_o W_o$
# flops. Both ratios are
#
# $$\frac{k^2 C + C C_{\text{out}}}{k^2 C C_{\text{out}}} = \frac{1}{C_{\text{out}}} + \frac{1}{k^2}.$$
#
# In Xception-65's middle flow ($728 \to 728$ at 33x33, output stride 16) that is
# $1/728 + 1/9 \approx 0.112$: about 9 times fewer weights and flops. We count the weights of
# real modules and the flops with PyTorch's `FlopCounterMode` (on meta tensors: shapes only,
# nothing computed).

# %%
def dense_counts(c, c_out, k, ho, wo):
    return k * k * c * c_out, 2 * k * k * c * c_out * ho * wo  # weights, flops


def separable_counts(c, c_out, k, ho, wo):
    return k * k * c + c * c_out, 2 * (k * k * c + c * c_out) * ho * wo


def counted(c, c_out, k, size):
    """(weights, flops) of dense and separable convs, from modules and FlopCounterMode."""
    dense = torch.nn.Conv2d(c, c_out, k, padding=k // 2, bias=False, device="meta")
    depthwise = torch.nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False, device="meta")
    pointwise = torch.nn.Conv2d(c, c_out, 1, bias=False, device="meta")
    inp = torch.empty(1, c, size, size, device="meta")
    with FlopCounterMode(display=False) as dense_flops:
        dense(inp)
    with FlopCounterMode(display=False) as separable_flops:
        pointwise(depthwise(inp))
    weights = lambda *mods: sum(p.numel() for m in mods for p in m.parameters())  # noqa: E731
    return ((weights(dense), dense_flops.get_total_flops()),
            (weights(depthwise, pointwise), separable_flops.get_total_flops()))


# DeepLabV3+ (Xception-65, 513x513 input, output stride 16) layers: (C, C_out, size)
layers = {"middle flow 728->728": (728, 728, 33), "exit flow 1536->2048": (1536, 2048, 33),
          "decoder 304->256": (304, 256, 129)}
for name, (ci, co, size) in layers.items():
    dense, separable = counted(ci, co, 3, size)
    assert dense == dense_counts(ci, co, 3, size, size)
    assert separable == separable_counts(ci, co, 3, size, size)
    ratio = Fraction(separable[0], dense[0])
    assert ratio == Fraction(separable[1], dense[1]) == Fraction(1, co) + Fraction(1, 9)
    print(f"{name:22s} dense {dense[0] / 1e6:6.2f} M weights {dense[1] / 1e9:6.2f} GFLOP | separable "
          f"{separable[0] / 1e6:5.2f} M {separable[1] / 1e9:5.2f} GFLOP | ratio {float(ratio):.4f}")

# %% [markdown]
# The middle flow repeats 16 blocks of three such convolutions. Dense 3x3 convolutions there
# would need 229 M weights; the separable ones need 25.8 M.

# %%
dense_w, sep_w = dense_counts(728, 728, 3, 33, 33)[0], separable_counts(728, 728, 3, 33, 33)[0]
assert round(48 * dense_w / 1e6) == 229 and round(48 * sep_w / 1e6, 1) == 25.8

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
outs = np.logspace(0, np.log10(4096), 200)
for k in (3, 5, 7):
    ax.plot(outs, 1 / outs + 1 / k**2, label=f"$k={k}$: $1/C_{{out}} + 1/{k * k}$")
for co in (256, 728, 1024, 2048):
    ax.plot(co, 1 / co + 1 / 9, "ko", ms=4)
    ax.annotate(str(co), (co, 1 / co + 1 / 9), textcoords="offset points", xytext=(0, 6), fontsize=7,
                ha="center")
ax.set(xscale="log", yscale="log", xlabel="$C_{out}$", ylabel="separable / dense (weights, flops)",
       title="cost of a separable conv relative to a dense one (dots: DeepLabV3+ widths, k=3)")
ax.title.set_fontsize(9)
ax.legend(fontsize=8)
fig.tight_layout()
plt.close(fig)  # shown once: by returning it, not by pyplot's own display
fig

# %% [markdown]
# For wide layers the pointwise GEMM is almost all of the work: at $728 \to 728$ it is
# $C_{\text{out}} / (k^2 + C_{\text{out}}) \approx 99\%$ of the separable flops. The depthwise
# stage is cheap in flops but, as notebook 8 shows, limited by memory bandwidth.

# %%
dw_flops, pw_flops = 2 * 9 * 728 * 33 * 33, 2 * 728 * 728 * 33 * 33
assert Fraction(pw_flops, dw_flops + pw_flops) == Fraction(728, 9 + 728) > Fraction(98, 100)

# %% [markdown]
# ## 6.3 Blocking: how the GEMM is fast
#
# The triple loop `for i, j, k: C[i, j] += A[i, k] * B[k, j]` does 2 flops per two loads: it is
# limited by the caches, not by the FMA units. A fast GEMM (Goto's algorithm, as in BLIS) reuses
# every loaded value many times:
#
# 1. **Register tile.** The micro-kernel computes an $M_R \times N_R$ tile of $C$ whose sums
#    live in vector registers for the whole $k$ loop. Each step loads $M_R$ values of $A$ and
#    $N_R$ of $B$ and does a rank-1 update: $2 M_R N_R$ flops for $M_R + N_R$ loads.
# 2. **Packing.** $A$ and $B$ are copied into contiguous panels in the exact order the
#    micro-kernel reads them, zero-padded at the edges. That absorbs any strides (NCHW,
#    channels_last, transposes) and removes edge cases from the inner loop.
# 3. **Cache blocks.** $K$ is cut into blocks of $K_C$, $M$ into $M_C$ and $N$ into $N_C$, so
#    that a $K_C \times N_R$ panel of $B$ stays near L1, an $M_C \times K_C$ block of $A$ in
#    L2, and a $K_C \times N_C$ block of $B$ in L3.
#
# The block sizes and the micro-kernel of `csrc/cpu/gemm.cpp`:

# %%
gemm_src = (CSRC / "cpu" / "gemm.cpp").read_text()
lines = gemm_src.splitlines()
start = next(i for i, line in enumerate(lines) if re.search(r"void micro_kernel\(", line))
start -= 1  # its template line
end = next(i for i in range(start, len(lines)) if "if (mr == MR" in lines[i])  # the edge-tile code follows
print("\n".join(lines[start:end]) + "\n  ...")

# The same source is compiled once per instruction set (csrc/cpu/isa_*.cpp), each with its own
# vector width and tile; the extension picks the best set this CPU runs when it loads.
TILES = {}
for isa in ("avx512", "avx2", "generic", "neon"):
    defines = dict(re.findall(r"#define ATROUS_(\w+) (\d+)", (CSRC / "cpu" / f"isa_{isa}.cpp").read_text()))
    TILES[isa] = {k: int(defines[k]) for k in ("ISA_VECTOR_BYTES", "GEMM_MR", "GEMM_NV", "GEMM_KC")}
# The k loop holds M_R x N_V vectors of sums, N_V vectors of B and one broadcast value of A.
REGISTERS = {"avx512": 32, "avx2": 16, "generic": 16, "neon": 32}  # zmm, ymm, xmm (SSE2), q
for isa, t in TILES.items():
    needed = t["GEMM_MR"] * t["GEMM_NV"] + t["GEMM_NV"] + 1
    lanes = t["ISA_VECTOR_BYTES"] // 4
    print(f"{isa:8s} M_R = {t['GEMM_MR']}, N_R = {t['GEMM_NV']} x {lanes} = {t['GEMM_NV'] * lanes} floats, "
          f"K_C = {t['GEMM_KC']}: {needed} of {REGISTERS[isa]} vector registers")
    assert needed <= REGISTERS[isa]  # every set's tile fits its register file: nothing spills
# AVX-512's 8 x 2 tile (16 vectors of 64 B) would need 64 NEON or 32 ymm registers: hence one tile per set.
assert TILES["avx512"]["GEMM_MR"] * TILES["avx512"]["GEMM_NV"] * 64 // 32 == 32 > REGISTERS["avx2"]

ACTIVE = atrous.buildinfo.cpu_isa()["active"]  # the set this machine runs
MR, NV, KC = (TILES[ACTIVE][k] for k in ("GEMM_MR", "GEMM_NV", "GEMM_KC"))
NR = NV * TILES[ACTIVE]["ISA_VECTOR_BYTES"] // 4
MC, NC = (96 + MR - 1) // MR * MR, 4096  # gemm.cpp: M_C whole tiles near 96 rows, N_C = 4096
assert f"MC = (96 + MR - 1) / MR * MR, NC = {NC}" in gemm_src
print(f"this machine runs {ACTIVE}: M_R = {MR}, N_R = {NR}, K_C = {KC}, M_C = {MC}, N_C = {NC}")

# %% [markdown]
# What that buys, counted per step of the $k$ loop, and the footprint of each block (float32):

# %%
flops_per_step, loads_per_step = 2 * MR * NR, MR + NR
print(f"micro-kernel: {flops_per_step} flops per {loads_per_step} loaded floats "
      f"= {flops_per_step / (4 * loads_per_step):.1f} flop per byte read (the naive loop: 0.25)")


def cache_size(level: int) -> str:
    """This machine's data cache of that level, from Linux's sysfs (or '?')."""
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            is_data = "Instruction" not in (index / "type").read_text()
            if int((index / "level").read_text()) == level and is_data:
                return (index / "size").read_text().strip()
        except (OSError, ValueError):
            pass
    return "?"


for what, elems, level in [("B micro-panel K_C x N_R", KC * NR, 1), ("A block M_C x K_C", MC * KC, 2),
                           ("B block K_C x N_C", KC * NC, 3)]:
    print(f"{what:24s} {elems * 4 / 1024:8.0f} KiB   (this machine's L{level}: {cache_size(level)})")

# %% [markdown]
# The same algorithm in NumPy, with small blocks so that every edge case shows up. The loop
# nest is the one of `gemm()` and `multiply_block()`: $j_c$, $p_c$, $i_c$, then $j_r$, $i_r$,
# and the micro-kernel's $k$ loop of rank-1 updates (`np.outer`).

# %%
def pack_a(a: np.ndarray, mr: int) -> np.ndarray:
    """(m x kc) -> panels (ceil(m/mr), kc, mr): for each k, mr consecutive rows; zero-padded."""
    m, kc = a.shape
    padded = np.zeros((-(-m // mr) * mr, kc))
    padded[:m] = a
    return padded.reshape(-1, mr, kc).transpose(0, 2, 1)


def pack_b(b: np.ndarray, nr: int) -> np.ndarray:
    """(kc x n) -> panels (ceil(n/nr), kc, nr): for each k, nr consecutive columns; zero-padded."""
    kc, n = b.shape
    padded = np.zeros((kc, -(-n // nr) * nr))
    padded[:, :n] = b
    return padded.reshape(kc, -1, nr).transpose(1, 0, 2)


def blocked_gemm(a, b, mr=4, nr=8, kc_=16, mc_=8, nc_=32):
    m, k = a.shape
    n = b.shape[1]
    c = np.zeros((m, n))
    for jc in range(0, n, nc_):
        nc = min(nc_, n - jc)
        for pc in range(0, k, kc_):
            kc = min(kc_, k - pc)
            b_panels = pack_b(b[pc:pc + kc, jc:jc + nc], nr)
            for ic in range(0, m, mc_):
                mc = min(mc_, m - ic)
                a_panels = pack_a(a[ic:ic + mc, pc:pc + kc], mr)
                for jr in range(0, nc, nr):
                    for ir in range(0, mc, mr):
                        acc = np.zeros((mr, nr))  # the register tile
                        for kk in range(kc):  # the micro-kernel: rank-1 updates
                            acc += np.outer(a_panels[ir // mr][kk], b_panels[jr // nr][kk])
                        rows, cols = min(mr, mc - ir), min(nr, nc - jr)  # store what exists
                        c[ic + ir:ic + ir + rows, jc + jr:jc + jr + cols] += acc[:rows, :cols]
    return c


rng = np.random.default_rng(0)
for m, k, n in [(13, 50, 37), (8, 16, 32), (1, 1, 1), (5, 33, 70)]:
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    np.testing.assert_allclose(blocked_gemm(a, b), a @ b, rtol=1e-12, atol=1e-12)

# %% [markdown]
# The order of each element's sum depends only on the block sizes, not on which thread computes
# which tile. That is why atrous's results are the same, bit for bit, whatever the number of
# threads:

# %%
threads = torch.get_num_threads()
xt, wt = torch.randn(1, 300, 20, 20), torch.randn(200, 300, 1, 1)
results = []
for n_threads in (1, 2):
    torch.set_num_threads(n_threads)
    results.append(ops.pointwise_conv2d(xt, wt))
torch.set_num_threads(threads)
assert torch.equal(results[0], results[1])

# %% [markdown]
#
# Timing the pointwise ladder on one layer (the middle flow's 728 -> 728 1x1 at 33x33; small
# switch: 256 channels), with its rate in GFLOP/s $= 2MNK / t$:

# %%
pw_c = 256 if SMALL else 728
xp = torch.randn(1, pw_c, 33, 33)
wp = torch.randn(pw_c, pw_c, 1, 1) / pw_c**0.5
flops = 2 * pw_c * pw_c * 33 * 33
for algo in ("naive", "blocked"):
    torch.testing.assert_close(ops.pointwise_conv2d(xp, wp, algo=algo), F.conv2d(xp, wp),
                               rtol=1e-4, atol=1e-4)
pw_times = {"naive (triple loop)": median_ms(lambda: ops.pointwise_conv2d(xp, wp, algo="naive"), 1, warmup=0),
            "blocked (gemm.cpp)": median_ms(lambda: ops.pointwise_conv2d(xp, wp, algo="blocked"), REPEATS),
            "PyTorch F.conv2d": median_ms(lambda: F.conv2d(xp, wp), REPEATS)}
for name, ms in pw_times.items():
    print(f"{name:22s} {ms:9.2f} ms {flops / (ms * 1e-3) / 1e9:8.1f} GFLOP/s")

# %% [markdown]
# ## 6.4 Separable convolution = depthwise, then pointwise
#
# `atrous.ops.separable_conv2d(x, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding,
# dilation, activation)` computes
# $\text{pointwise}(\text{act}(\text{depthwise}(x)))$, the separable block of DeepLabV3+ after
# batch norms are folded into the biases.

# %%
for (ci, co, size, s, p, d, act) in [(8, 5, 9, 1, 2, 2, "relu"), (16, 12, 17, 2, 1, 1, None),
                                     (3, 7, 6, 1, 6, 6, "relu"), (32, 48, 11, 1, 1, 1, None)]:
    xs = torch.randn(2, ci, size, size, dtype=torch.float64)
    dw_w, dw_b = torch.randn(ci, 1, 3, 3, dtype=torch.float64), torch.randn(ci, dtype=torch.float64)
    pw_w, pw_b = torch.randn(co, ci, 1, 1, dtype=torch.float64), torch.randn(co, dtype=torch.float64)
    mid = F.conv2d(xs, dw_w, dw_b, s, p, d, groups=ci)
    want = F.conv2d(mid.relu() if act else mid, pw_w, pw_b)
    fused = ops.separable_conv2d(xs, dw_w, dw_b, pw_w, pw_b, s, p, d, activation=act)
    mid = ops.depthwise_conv2d(xs, dw_w, dw_b, s, p, d)
    two_ops = ops.pointwise_conv2d(mid.relu() if act else mid, pw_w, pw_b)
    torch.testing.assert_close(fused, want)
    torch.testing.assert_close(two_ops, want)

# %% [markdown]
# The same two steps on real tensors: each input channel convolved with its own dilated 3x3 filter
# (rate 2), then a 1x1 convolution mixing the channels (the picture's function checks its result
# against the two chained `F.conv2d` calls).

# %%
from atrous import viz

viz.plot_separable_conv(rate=2)

# %% [markdown]
# ## 6.5 Fusion: the intermediate never leaves the cache
#
# Unfused, the depthwise output ($N \times C \times H_o \times W_o$) is written to memory and
# read back by the GEMM. The fused operator takes a tile of output pixels, computes their
# depthwise outputs for all channels into a buffer of at most 256 KiB, sized to stay in L2,
# and multiplies it by the prepacked pointwise weight at once. The minimal traffic, without the
# weights, in float32 (4 bytes):
#
# $$\text{unfused} = 4(\underbrace{CHW}_{x} + \underbrace{2 C H_o W_o}_{\text{mid, written and read}}
#   + \underbrace{C_{\text{out}} H_o W_o}_{y}), \qquad \text{fused} = 4(CHW + C_{\text{out}} H_o W_o).$$

# %%
sep_src = (CSRC / "cpu" / "separable_conv2d.cpp").read_text()
assert "const int64_t budget = 256 * 1024 / elem_size;" in sep_src
assert "std::clamp<int64_t>(budget / channels / 16 * 16, 16, 512)" in sep_src


def tile_pixels(channels: int, elem_size: int = 4) -> int:
    """The Python twin of tile_pixels() in separable_conv2d.cpp."""
    return min(max((256 * 1024 // elem_size) // channels // 16 * 16, 16), 512)


def traffic(c, c_out, size, elem=4):
    x_b, mid_b, y_b = c * size * size * elem, c * size * size * elem, c_out * size * size * elem
    return x_b + 2 * mid_b + y_b, x_b + y_b  # unfused, fused (stride 1, same padding)


for name, (ci, co, size) in layers.items():
    unfused_b, fused_b = traffic(ci, co, size)
    tile = tile_pixels(ci)
    assert tile * ci * 4 <= 256 * 1024  # the tile buffer fits the budget at DeepLab's widths
    print(f"{name:22s} intermediate {ci * size * size * 4 / 2**20:5.1f} MiB; traffic unfused "
          f"{unfused_b / 2**20:5.1f} MiB, fused {fused_b / 2**20:5.1f} MiB "
          f"({1 - fused_b / unfused_b:.0%} less); tile {tile} px = {tile * ci * 4 / 1024:.0f} KiB")
assert traffic(728, 728, 33) == (4 * 4 * 728 * 33 * 33, 2 * 4 * 728 * 33 * 33)  # half the traffic

# %% [markdown]
# Whether fewer bytes means less time depends on where the intermediate would have lived. At
# 728x33x33 it is 3 MiB, which fits in a typical last-level cache, so the unfused version
# barely touches DRAM either. The decoder's 304x129x129 intermediate (19 MiB) is where fusion
# should pay. The timed shape below is the decoder's separable conv (small switch: 128
# channels at 65x65):

# %%
fc_in, fc_out, fsize = (128, 128, 65) if SMALL else (304, 256, 129)
xf = torch.randn(1, fc_in, fsize, fsize)
dw_w, dw_b = torch.randn(fc_in, 1, 3, 3) / 3, torch.randn(fc_in)
pw_w, pw_b = torch.randn(fc_out, fc_in, 1, 1) / fc_in**0.5, torch.randn(fc_out)
contenders = {
    "fused separable_conv2d":
        lambda: ops.separable_conv2d(xf, dw_w, dw_b, pw_w, pw_b, 1, 1, 1, activation="relu"),
    "unfused: depthwise, pointwise": lambda: ops.pointwise_conv2d(
        ops.depthwise_conv2d(xf, dw_w, dw_b, 1, 1, 1).relu_(), pw_w, pw_b),
    "PyTorch: two F.conv2d":
        lambda: F.conv2d(F.conv2d(xf, dw_w, dw_b, 1, 1, 1, groups=fc_in).relu_(), pw_w, pw_b),
}
with torch.no_grad():
    want = contenders["PyTorch: two F.conv2d"]()
    for fn in contenders.values():
        torch.testing.assert_close(fn(), want, rtol=1e-4, atol=1e-4)
    sep_times = {name: median_ms(fn, REPEATS) for name, fn in contenders.items()}
for name, ms in sep_times.items():
    print(f"{name:30s} {ms:8.2f} ms")

fig, ax = plt.subplots(figsize=(6.5, 2.2))
ax.barh(list(sep_times), list(sep_times.values()), color=["tab:blue", "tab:cyan", "tab:gray"])
ax.invert_yaxis()
ax.set_xlabel("median ms")
ax.set_title(f"separable conv {fc_in}x{fsize}x{fsize} -> {fc_out}, 3x3 + 1x1, float32, "
             f"{torch.get_num_threads()} thread(s)", fontsize=9)
fig.tight_layout()
plt.close(fig)  # shown once: by returning it, not by pyplot's own display
fig

# %% [markdown]
# The fused operator is for inference. When autograd records (an input requires grad), backward
# would need the intermediate, so `separable_conv2d` runs the two ops unfused and gradients
# flow as usual:

# %%
xg = torch.randn(1, 8, 9, 9, dtype=torch.float64, requires_grad=True)
dwg, pwg = torch.randn(8, 1, 3, 3, dtype=torch.float64), torch.randn(4, 8, 1, 1, dtype=torch.float64)
yg = ops.separable_conv2d(xg, dwg, None, pwg, None, 1, 1, 1, activation="relu")
assert "pointwise_conv2d" in yg.grad_fn.name()  # the last op recorded is the unfused pointwise
(grad,) = torch.autograd.grad(yg.sum(), xg)
xr = xg.detach().requires_grad_(True)
(grad_ref,) = torch.autograd.grad(F.conv2d(F.conv2d(xr, dwg, None, 1, 1, 1, groups=8).relu(), pwg).sum(), xr)
torch.testing.assert_close(grad, grad_ref)

# %% [markdown]
# ## Summary
# - A 1x1 convolution is $Y_n = W X_n$: a GEMM with $M = C_{\text{out}}$, $K = C$,
#   $N = HW$. NCHW and channels_last are the same matrix seen through different strides.
# - Separable / dense $= 1/C_{\text{out}} + 1/k^2$ in weights and in flops: about 0.112 in
#   DeepLabV3+'s middle flow, where almost all of the separable flops are in the GEMM.
# - A fast GEMM packs its operands into panels and keeps an $M_R \times N_R$ tile of sums in
#   registers: $2 M_R N_R$ flops per $M_R + N_R$ loads; cache blocks keep the panels close.
# - Fusion computes the depthwise output tile by tile in a cache-sized buffer: it halves the
#   minimal traffic of a square separable layer. It pays when the intermediate would not have
#   stayed in cache.
#
# ## Exercises
# 1. DeepLabV3+'s decoder refines with two 3x3 convolutions of 256 channels at 129x129 (304 ->
#    256, then 256 -> 256). Compute the weights and GFLOPs of both as dense and as separable
#    convolutions, and check your formulas with `FlopCounterMode`.
# 2. **Predict, then run.** For which $C_{\text{out}}$ does a separable 3x3 convolution save
#    less than half of the flops of a dense one?
# 3. A 1x1 convolution with stride 2 is also a GEMM. On which matrix? Check it against
#    `F.conv2d(x, w, stride=2)`.
# 4. Extend `blocked_gemm` to compute $C \mathrel{+}= AB$ on a given $C$ (as `gemm(...,
#    accumulate=true)` does for the bias) and check it.
# 5. **Design.** Choose $M_R$ and $N_V$ for AVX2 (16 ymm registers of 32 bytes, 8 floats) so
#    that the k loop does not spill, maximising flops per loaded float. Does the BLIS choice, a
#    6 x 16 tile, satisfy your constraint, and why might it still be preferred?
#
# Solutions: `tutorials/solutions/06_pointwise_gemm_and_separable.py`.
