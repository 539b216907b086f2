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
# # 3. Writing the CPU kernel
#
# **What you will learn**
# - how atrous's depthwise kernel grows from the definition to a fast kernel, one rung at a
#   time: `naive` → `rows` → `stencil` → `nhwc`, read from the real C++ files in `csrc/cpu/`;
# - the index arithmetic that removes every bounds check: tap intervals
#   (`tap_output_range` in `csrc/common/conv_index.h`), checked by hand and by brute force;
# - how the extension is built (`setup.py`), and how to JIT-compile your own kernel variant
#   with `torch.utils.cpp_extension.load_inline`;
# - how to test a kernel: property tests with hypothesis, and `gradcheck` / `gradgradcheck`.
#
# Every claim below is checked by an `assert`. Timings are printed and plotted, never asserted:
# they depend on the machine. With `ATROUS_TUTORIAL_SMALL=1` (set by the test suite) the
# notebook uses a smaller plane and fewer runs and hypothesis examples; the compile of your own
# kernel (about 15 s on 2 cores) stays.

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
import tempfile
import time

import matplotlib.pyplot as plt  # a Figure that is a cell's value displays as a picture
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import atrous
import atrous.buildinfo
import atrous.ops as ops
from atrous.bench import median_ms  # the harness's timer: warm-up, then the median of timed runs (notebook 8)

from csrc_source import show  # prints a function of csrc/ (tutorials/csrc_source.py)

torch.manual_seed(0)
SMALL = os.environ.get("ATROUS_TUTORIAL_SMALL") == "1"
CSRC = atrous.sources()  # the kernel sources: csrc/ of a checkout, or the copy an installed package ships
assert (CSRC / "cpu" / "depthwise_v0_naive.cpp").exists(), f"expected the C++ sources under {CSRC}"

# %% [markdown]
# ## 3.1 The contract every rung keeps
#
# A depthwise convolution with depth multiplier $m$ maps input channel $c$ to the $m$ output
# channels $o$ with $\lfloor o/m \rfloor = c$, each through its own $k_h \times k_w$ kernel:
#
# $$y[n, o, o_h, o_w] = b[o] + \sum_{i<k_h}\sum_{j<k_w} w[o, i, j]\;
#   x[n, \lfloor o/m \rfloor,\; o_h s_h - p_h + i d_h,\; o_w s_w - p_w + j d_w],$$
#
# with taps outside the image reading zero. Each rung of the ladder is one C++ file that
# implements the same three functions on raw pointers (`csrc/cpu/depthwise_rungs.h`): `forward`,
# `backward_input` and `backward_weight`. The op picks one with `algo=`.

# %%
RUNGS = ops.algorithms("depthwise_conv2d")
print(RUNGS)
assert RUNGS == ("naive", "rows", "stencil", "nhwc")
rung_files = {rung: next(CSRC.glob(f"cpu/depthwise_v{i}_*.cpp")) for i, rung in enumerate(RUNGS)}
for rung, path in rung_files.items():
    assert f'"{rung}"' in path.read_text().split("\n", 1)[0], path  # "Depthwise ladder vN "rung": ..."
    print(f"{rung:8s} csrc/{path.relative_to(CSRC).as_posix()}")

# %% [markdown]
# One shape for the whole notebook: the middle flow of DeepLabV3+ at output stride 8, 728
# channels at 65x65 with a 3x3 kernel of dilation 2 (small switch: 33x33).

# %%
N, C, H, W, K, S, P, D = 1, 728, (33 if SMALL else 65), (33 if SMALL else 65), 3, 1, 2, 2
REPEATS = 3 if SMALL else 10
x = torch.randn(N, C, H, W)
w = torch.randn(C, 1, K, K) / K
expected = F.conv2d(x, w, None, S, P, D, groups=C)
timings = {"PyTorch F.conv2d": median_ms(lambda: F.conv2d(x, w, None, S, P, D, groups=C), REPEATS)}

# %% [markdown]
# ## 3.2 Rung 0, `naive`: the definition
#
# One output at a time, the sum over the taps, and a bounds check per tap for the padding. It is
# obviously correct, which is its job: every other rung is checked against it.

# %%
_ = show("cpu/depthwise_v0_naive.cpp", r"void forward\(")  # note the bounds check per tap

# %%
y = ops.depthwise_conv2d(x, w, None, S, P, D, algo="naive")
torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
timings["naive"] = median_ms(lambda: ops.depthwise_conv2d(x, w, None, S, P, D, algo="naive"), REPEATS)
print(f"naive: {timings['naive']:.2f} ms (PyTorch {timings['PyTorch F.conv2d']:.2f} ms)")

# %% [markdown]
# Its costs: a branch per tap per output; index arithmetic recomputed for every tap; one
# thread; and the inner loop runs over taps (9 iterations), too short to vectorise.
#
# ## 3.3 Rung 1, `rows`: tap intervals instead of bounds checks
#
# Tap $j$ of output column $o$ reads input column $o s - p + j d$. It is inside the image when
# $0 \le o s - p + j d < W$, which is linear in $o$, so the valid outputs form one interval:
#
# $$\Big\lceil \tfrac{p - j d}{s} \Big\rceil \le o \le \Big\lfloor \tfrac{W - 1 + p - j d}{s} \Big\rfloor,
# \quad \text{clipped to } [0, W_{\text{out}}).$$
#
# `tap_output_range` computes it. Note the floor and ceiling divisions: C++'s `/` rounds toward
# zero, which is wrong for the negative numerators of taps in the padding.

# %%
_ = show("common/conv_index.h", r"tap_output_range\(")


def floor_div(a: int, b: int) -> int:  # Python's // already rounds toward -inf
    return a // b


def ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def tap_output_range(n_in: int, n_out: int, s: int, p: int, d: int, t: int) -> tuple[int, int]:
    """The Python twin of conv_index.h: output positions [begin, end) whose tap t is inside."""
    offset = t * d - p
    begin = min(n_out, max(0, ceil_div(-offset, s)))
    end = min(n_out, floor_div(n_in - 1 - offset, s) + 1)
    return begin, max(begin, end)


def out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


# %% [markdown]
# **By hand.** ASPP rate 6 on a 33-wide map ($s=1$, $p=d=6$, $W_{\text{out}}=33$): tap 0
# reads column $o - 6$, valid for $o \in [6, 33)$; tap 1 reads $o$, valid everywhere; tap 2
# reads $o + 6 \le 32$, so $o \in [0, 27)$. A strided case, $W=10$, $s=2$, $p=1$, $d=2$:
# $W_{\text{out}} = \lfloor (10 + 2 - 5)/2 \rfloor + 1 = 4$; tap 0 reads $2o - 1 \ge 0$, so
# $o \ge 1$: $[1, 4)$; tap 2 reads $2o + 3 \le 9$, so $o \le 3$: $[0, 4)$.

# %%
assert [tap_output_range(33, 33, 1, 6, 6, t) for t in range(3)] == [(6, 33), (0, 33), (0, 27)]
assert out_size(10, 3, 2, 1, 2) == 4
assert [tap_output_range(10, 4, 2, 1, 2, t) for t in range(3)] == [(1, 4), (0, 4), (0, 4)]
# And against brute force on a grid of geometries (including kernels wider than the input).
for n_in in (1, 2, 5, 10, 33):
    for k, s, p, d in [(1, 1, 0, 1), (3, 1, 1, 1), (3, 2, 1, 2), (3, 1, 12, 12), (5, 3, 4, 3), (2, 2, 0, 7)]:
        n_out = out_size(n_in, k, s, p, d)
        if n_out < 1:
            continue
        for t in range(k):
            valid = [o for o in range(n_out) if 0 <= o * s - p + t * d < n_in]
            begin, end = tap_output_range(n_in, n_out, s, p, d, t)
            assert valid == list(range(begin, end)), (n_in, k, s, p, d, t)

# %% [markdown]
# With the intervals, `rows` builds each output row as one "axpy" per tap,
# `out_row[ow] += w * in_row[ow + offset]` over the tap's interval: no branch, unit stride, and
# the compiler vectorises it. Taps in the padding are never visited, which matters at large
# rates: at ASPP rate 18 on a 33x33 map, most taps read padding.

# %%
_ = show("cpu/depthwise_v1_rows.cpp", r"void forward_plane\(")


def tap_fraction_inside(n: int, k: int, p: int, d: int) -> float:
    """Fraction of the k*k taps of an n x n 'same' convolution (s=1) that read the image."""
    per_axis = sum(e - b for b, e in (tap_output_range(n, n, 1, p, d, t) for t in range(k)))
    return (per_axis / (n * k)) ** 2


inside = {rate: tap_fraction_inside(33, 3, rate, rate) for rate in (1, 6, 12, 18)}
print({rate: f"{f:.0%}" for rate, f in inside.items()})
# Brute force for rate 18: count the taps inside the image.
brute = sum(0 <= oh - 18 + 18 * i < 33 and 0 <= ow - 18 + 18 * j < 33
            for oh in range(33) for ow in range(33) for i in range(3) for j in range(3))
assert brute == round(inside[18] * 33 * 33 * 9) == 63 * 63
assert inside[18] < 0.5  # at rate 18 more than half of the naive kernel's taps are padding

# %%
y = ops.depthwise_conv2d(x, w, None, S, P, D, algo="rows")
torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
timings["rows"] = median_ms(lambda: ops.depthwise_conv2d(x, w, None, S, P, D, algo="rows"), REPEATS)
print(f"rows: {timings['rows']:.2f} ms")

# %% [markdown]
# `rows` also runs the planes in parallel (`at::parallel_for`). Its remaining cost is memory
# traffic: each output row is read and written once per tap, $k^2$ times in all.
#
# ## 3.4 Rung 2, `stencil`: one flat array, every tap a constant shift
#
# Copy the plane once into a zero-padded buffer whose rows have a fixed pitch
# $P_w = W + 2p$ (left and right padding). Index outputs by the flat position $q = o_h P_w + o_w$.
# Then tap $(i, j)$ reads the buffer at $q + i d P_w + j d$: **the same shift for every output**.
# The convolution becomes a sum of $k^2$ shifted copies of one array, a 1-D problem:
#
# $$y_{\text{flat}}[q] = \sum_{i,j} w[i,j]\; \text{buf}[q + i d P_w + j d].$$
#
# In this flat form the columns $o_w \ge W_{\text{out}}$ of each pitched row are computed and
# thrown away. Here it is in PyTorch, padding rows as well for brevity (the kernel instead splits
# the output rows into segments with the same valid row taps, step 3 in its header):

# %%
def stencil_plane(plane: torch.Tensor, kernel: torch.Tensor, p: int, d: int) -> torch.Tensor:
    k = kernel.shape[0]
    h, wid = plane.shape
    ho, wo = out_size(h, k, 1, p, d), out_size(wid, k, 1, p, d)
    pitch = wid + 2 * p
    buf = F.pad(plane, (p, p, p, p)).flatten()
    buf = torch.cat([buf, buf.new_zeros(pitch)])  # slack for the last row's over-reads
    flat = torch.zeros(ho * pitch, dtype=plane.dtype)
    for i in range(k):
        for j in range(k):
            shift = i * d * pitch + j * d  # the same for every output q
            flat += kernel[i, j] * buf[shift:shift + ho * pitch]
    return flat.view(ho, pitch)[:, :wo]  # drop the columns past W_out


plane, kernel = torch.randn(13, 11, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64)
for p, d in [(0, 1), (1, 1), (2, 2), (6, 6)]:
    torch.testing.assert_close(stencil_plane(plane, kernel, p, d),
                               F.conv2d(plane[None, None], kernel[None, None], padding=p, dilation=d)[0, 0])

# %% [markdown]
# **Strides: polyphase.** With stride $s$, output $o$ reads padded column $u = o s + j d$, and
# consecutive outputs are $s$ apart. Split the padded columns into $s$ phases, column $c$ of
# phase $r$ holding padded column $c s + r$. Then tap $j$ reads phase $(j d) \bmod s$ at column
# $o + \lfloor j d / s \rfloor$: consecutive outputs read consecutive elements again.

# %%
for s, d in [(2, 1), (2, 3), (3, 2), (4, 6)]:
    for j in range(3):
        for o in range(20):
            u = o * s + j * d  # padded column read by output o through tap j
            phase, column = (j * d) % s, o + (j * d) // s
            assert column * s + phase == u

# %% [markdown]
# **Registers.** The kernel's inner function (printed below) computes a chunk of consecutive
# outputs. Their sums stay in an array of vector registers, `acc`, across *all* taps, and each
# vector is stored once at the end. `simd::Vec` is a GCC/Clang vector type of 32 or 64 bytes
# (`csrc/cpu/simd.h`), so the same source compiles to AVX-512, AVX2 or NEON.

# %%
_ = show("cpu/depthwise_v2_stencil.cpp", r"void shifted_\w+\(")  # acc[...] += per tap, one store

# %% [markdown]
# The output traffic between the core and its registers and L1 cache drops from a read and a write
# of each output per tap (`rows`) to one write: $2k^2 = 18$ times fewer loads and stores of
# outputs, at the price of one copy of the input plane into the buffer. This is register/L1
# traffic, not memory (DRAM) traffic: a plane of outputs (a few kB) stays in L1 between taps in
# `rows` too, so DRAM sees each output written back about once either way.

# %%
Ho, Wo = out_size(H, K, S, P, D), out_size(W, K, S, P, D)
rows_out_bytes = 2 * K * K * Ho * Wo * 4  # read + write of every output, once per tap (fp32)
stencil_out_bytes = Ho * Wo * 4  # one write
print(f"output loads and stores per plane (register/L1 traffic): rows {rows_out_bytes / 1e3:.0f} kB, "
      f"stencil {stencil_out_bytes / 1e3:.0f} kB (+ {H * (W + 2 * P) * 4 / 1e3:.0f} kB for the buffer copy)")
assert rows_out_bytes / stencil_out_bytes == 2 * K * K == 18
# One plane of outputs fits in a 32 KiB L1 data cache, so the 18x is not a DRAM saving.
assert Ho * Wo * 4 <= 32 * 1024, (Ho, Wo)

# %%
y = ops.depthwise_conv2d(x, w, None, S, P, D, algo="stencil")
torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
timings["stencil"] = median_ms(lambda: ops.depthwise_conv2d(x, w, None, S, P, D, algo="stencil"), REPEATS)
print(f"stencil: {timings['stencil']:.2f} ms")

# %% [markdown]
# ## 3.5 Rung 3, `nhwc`: vectorise across channels
#
# In channels_last memory the $C$ values of a pixel are contiguous: element $(n, c, h, w)$ sits
# at $((n H + h) W + w) C + c$. A depthwise tap multiplies each channel by its own weight, so a
# vector of channels is one contiguous load *whatever the dilation*, and there is no shift to
# arrange. `interior_block` keeps the sums of $P$ consecutive pixels x up to 2 vectors of
# channels in registers and loads each tap's weights once for the $P$ pixels; interval
# arithmetic again skips the taps in the padding (border pixels take `border_pixel`).

# %%
x_cl = x.contiguous(memory_format=torch.channels_last)
assert x_cl.stride() == (C * H * W, 1, W * C, C)  # channel stride 1: channels are contiguous
_ = show("cpu/depthwise_v3_nhwc.cpp", r"void interior_block\(")
nhwc_src = (CSRC / "cpu/depthwise_v3_nhwc.cpp").read_text()
assert "constexpr int P = ATROUS_ISA_NHWC_PIXELS;" in nhwc_src  # set per instruction set (csrc/cpu/isa_*.cpp)
active = atrous.buildinfo.cpu_isa()["active"]  # the set this machine runs
isa_src = (CSRC / "cpu" / f"isa_{active}.cpp").read_text()
pixels = int(re.search(r"#define ATROUS_ISA_NHWC_PIXELS (\d+)", isa_src).group(1))
print(f"P = {pixels} pixels per interior block on {active}")

# %%
y = ops.depthwise_conv2d(x_cl, w, None, S, P, D, algo="nhwc")
assert y.is_contiguous(memory_format=torch.channels_last)  # the output follows the input's layout
torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
timings["nhwc (channels_last input)"] = median_ms(
    lambda: ops.depthwise_conv2d(x_cl, w, None, S, P, D, algo="nhwc"), REPEATS)
timings["PyTorch F.conv2d (channels_last)"] = median_ms(
    lambda: F.conv2d(x_cl, w, None, S, P, D, groups=C), REPEATS)
# "auto" picks stencil for NCHW and nhwc for channels_last: both equal the reference too.
torch.testing.assert_close(ops.depthwise_conv2d(x, w, None, S, P, D), expected, rtol=1e-5, atol=1e-5)
torch.testing.assert_close(ops.depthwise_conv2d(x_cl, w, None, S, P, D), expected, rtol=1e-5, atol=1e-5)

# %% [markdown]
# ## 3.6 What each step bought
#
# Median times on this machine (threads: `torch.get_num_threads()`). They vary with the
# machine, the load and the shape, so nothing here asserts them; notebook 8 and
# `python -m atrous bench --ladder depthwise_conv2d` measure them with more care.

# %%
def plot_times(times: dict, title: str):
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(times) + 1))
    names = list(times)
    ax.barh(names, [times[n] for n in names], color=["tab:gray" if n.startswith("PyTorch") else "tab:blue"
                                                      for n in names])
    for i, n in enumerate(names):
        ax.text(times[n], i, f" {times[n]:.2f} ms", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("median time, ms (log scale)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    plt.close(fig)  # shown once: by the cell that returns it
    return fig


print(f"threads: {torch.get_num_threads()}")
for name, ms in timings.items():
    print(f"{name:34s} {ms:8.2f} ms")
plot_times(timings, f"depthwise {N}x{C}x{H}x{W}, 3x3 d={D}, float32")

# %% [markdown]
# ## 3.7 Building the extension
#
# `setup.py` compiles the files of `csrc/`, `csrc/common/` and `csrc/cpu/` into one module,
# `atrous._C`, with `torch.utils.cpp_extension.CppExtension` (plus the CUDA sources when a
# toolkit is found). The kernel cores (the four rungs and the GEMM) are listed in
# `csrc/cpu/isa_kernels.inc` and compiled once per instruction set by `isa_generic.cpp`,
# `isa_avx2.cpp` and `isa_avx512.cpp` (`isa_neon.cpp` on ARM64); the extension picks the best set this
# CPU runs when it loads. The rest is compiled for the baseline, so the module runs on any x86-64.
# `pip install --no-build-isolation -e .` runs it once; `make build` recompiles only what changed,
# with ninja. The flags it chose are recorded:

# %%
from atrous.buildinfo import build_config  # noqa: E402

config = build_config()
print("flags:  ", " ".join(config.get("cxx_flags", [])))
print("sources:", *config.get("sources", []), sep="\n  ")
cores = (CSRC / "cpu" / "isa_kernels.inc").read_text()
for path in rung_files.values():
    assert f'#include "{path.name}"' in cores  # every rung is compiled in, once per instruction set
    assert f"csrc/{path.relative_to(CSRC).as_posix()}" not in config["sources"]  # not on its own
assert {"csrc/cpu/isa_generic.cpp", "csrc/cpu/isa_avx2.cpp"} <= set(config["sources"])
assert "-march=native" not in config.get("cxx_flags", [])  # portable: no flag for this CPU alone
_ = show("cpu/depthwise_conv2d.cpp", r"Rung choose\(")

# %% [markdown]
# The kernels are registered as PyTorch operators with `TORCH_LIBRARY` (`csrc/ops.cpp`, the
# schemas) and `TORCH_LIBRARY_IMPL(atrous, CPU, m)` (each kernel file), so Python calls them as
# `torch.ops.atrous.depthwise_conv2d`.
#
# ## 3.8 Your own kernel, compiled from the notebook
#
# `torch.utils.cpp_extension.load_inline` writes a C++ string to a file, compiles it with
# ninja and loads it, all from Python. Below is the naive forward in a few lines, registered as
# the operator `torch.ops.tutorial02.depthwise_naive` the same way atrous registers its own.
#
# Two choices keep the compile short (about 15 s on 2 cores): the source includes only the
# ATen and `torch/library.h` headers it needs (`no_implicit_headers=True`; the default
# `#include <torch/extension.h>` plus pybind11 bindings through `functions=[...]` take about
# 45 s), and `-O2`. The build goes to a temporary directory, outside the repository. An
# operator namespace can be defined once per process: after editing the C++, restart the
# kernel (or rename the namespace).

# %%
MY_KERNEL = r"""
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

// y[n, o, oh, ow] = sum_{i,j} w[o, 0, i, j] * x[n, o / m, oh*s - p + i*d, ow*s - p + j*d]
template <typename T>
void forward(const T* x, const T* w, T* y, int64_t n_, int64_t c, int64_t co, int64_t h, int64_t wd,
             int64_t k, int64_t ho, int64_t wo, int64_t s, int64_t p, int64_t d) {
  const int64_t m = co / c;
  for (int64_t n = 0; n < n_; ++n)
    for (int64_t o = 0; o < co; ++o)
      for (int64_t oh = 0; oh < ho; ++oh)
        for (int64_t ow = 0; ow < wo; ++ow) {
          T sum = 0;
          for (int64_t i = 0; i < k; ++i)
            for (int64_t j = 0; j < k; ++j) {
              const int64_t ih = oh * s - p + i * d, iw = ow * s - p + j * d;
              if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;  // zero padding
              sum += w[(o * k + i) * k + j] * x[((n * c + o / m) * h + ih) * wd + iw];
            }
          y[((n * co + o) * ho + oh) * wo + ow] = sum;
        }
}

at::Tensor depthwise_naive(const at::Tensor& input, const at::Tensor& weight, int64_t s, int64_t p,
                           int64_t d) {
  TORCH_CHECK(input.dim() == 4 && weight.dim() == 4 && weight.size(1) == 1 &&
              weight.size(2) == weight.size(3), "expected input (N, C, H, W) and weight (C*m, 1, k, k)");
  TORCH_CHECK(weight.size(0) % input.size(1) == 0, "expected C*m output channels");
  TORCH_CHECK(input.scalar_type() == weight.scalar_type(), "expected input and weight of one dtype");
  const at::Tensor x = input.contiguous(), w = weight.contiguous();
  const int64_t k = w.size(2), ke = d * (k - 1) + 1;
  const int64_t ho = (x.size(2) + 2 * p - ke) / s + 1, wo = (x.size(3) + 2 * p - ke) / s + 1;
  at::Tensor y = at::empty({x.size(0), w.size(0), ho, wo}, x.options());
  if (x.scalar_type() == at::kFloat) {
    forward(x.const_data_ptr<float>(), w.const_data_ptr<float>(), y.mutable_data_ptr<float>(), x.size(0),
            x.size(1), w.size(0), x.size(2), x.size(3), k, ho, wo, s, p, d);
  } else {
    TORCH_CHECK(x.scalar_type() == at::kDouble, "expected float32 or float64");
    forward(x.const_data_ptr<double>(), w.const_data_ptr<double>(), y.mutable_data_ptr<double>(), x.size(0),
            x.size(1), w.size(0), x.size(2), x.size(3), k, ho, wo, s, p, d);
  }
  return y;
}

TORCH_LIBRARY(tutorial02, m) {
  m.def("depthwise_naive(Tensor input, Tensor weight, int s, int p, int d) -> Tensor");
}
TORCH_LIBRARY_IMPL(tutorial02, CPU, m) { m.impl("depthwise_naive", &depthwise_naive); }
"""

# %%
from torch.utils.cpp_extension import load_inline  # noqa: E402

build_dir = tempfile.mkdtemp(prefix="atrous-tutorial02-")
started = time.perf_counter()
load_inline("tutorial02_depthwise", MY_KERNEL, extra_cflags=["-O2"], build_directory=build_dir,
            with_cuda=False, is_python_module=False, no_implicit_headers=True, verbose=False)
print(f"compiled and loaded in {time.perf_counter() - started:.1f} s (build directory {build_dir})")
my_depthwise = torch.ops.tutorial02.depthwise_naive

# %% [markdown]
# Loading again with the same source reuses the build: torch keeps a hash of the sources and
# flags in the build directory and recompiles only when they change.

# %%
started = time.perf_counter()
load_inline("tutorial02_depthwise", MY_KERNEL, extra_cflags=["-O2"], build_directory=build_dir,
            with_cuda=False, is_python_module=False, no_implicit_headers=True, verbose=False)
print(f"second load: {time.perf_counter() - started:.2f} s")

# %% [markdown]
# Your kernel is checked like the real ones: against `F.conv2d`, on a few geometries and the
# shape above.

# %%
for (c, m, h, wd, k, s, p, d) in [(3, 1, 9, 7, 3, 1, 1, 1), (2, 2, 13, 11, 3, 2, 3, 3),
                                  (4, 1, 8, 8, 5, 1, 0, 1), (1, 3, 5, 6, 3, 1, 6, 6)]:
    xi = torch.randn(2, c, h, wd, dtype=torch.float64)
    wi = torch.randn(c * m, 1, k, k, dtype=torch.float64)
    torch.testing.assert_close(my_depthwise(xi, wi, s, p, d), F.conv2d(xi, wi, None, s, p, d, groups=c))
torch.testing.assert_close(my_depthwise(x, w, S, P, D), expected, rtol=1e-5, atol=1e-5)
timings["yours (load_inline, -O2)"] = median_ms(lambda: my_depthwise(x, w, S, P, D), REPEATS)
print(f"yours: {timings['yours (load_inline, -O2)']:.2f} ms, naive rung: {timings['naive']:.2f} ms")

# %% [markdown]
# ## 3.9 Property tests with hypothesis
#
# A handful of hand-picked cases misses the corners: a kernel wider than the image, a stride
# that skips the last column, one channel. A *property test* states what must hold for every
# input ("equals `F.conv2d`") and lets hypothesis draw the inputs. `derandomize=True` and a
# bounded `max_examples` make the run the same every time, as in CI (`tests/conftest.py`).
#
# First, what hypothesis does with a bug. Here is `tap_output_range` written with C++'s
# truncating division, the mistake `conv_index.h` warns about. Hypothesis finds a failing case
# and *shrinks* it to a small one:

# %%
def trunc_div(a: int, b: int) -> int:  # C++ '/': rounds toward zero
    return int(a / b)


def tap_output_range_truncating(n_in, n_out, s, p, d, t):
    offset = t * d - p
    begin = min(n_out, max(0, -trunc_div(offset, s)))  # wrong: ceil(-offset/s) is not -trunc(offset/s)
    end = min(n_out, trunc_div(n_in - 1 - offset, s) + 1)
    return begin, max(begin, end)


geometry = st.tuples(st.integers(1, 12), st.integers(1, 5), st.integers(1, 3), st.integers(0, 6),
                     st.integers(1, 4))  # n_in, k, s, p, d
failures = []


def interval_property(interval):
    """The property "interval() equals the brute-force set of valid outputs", as a hypothesis test."""

    @settings(derandomize=True, max_examples=200, deadline=None, database=None)
    @given(geometry)
    def test(g):
        n_in, k, s, p, d = g
        n_out = out_size(n_in, k, s, p, d)
        assume(n_out >= 1)
        for t in range(k):
            valid = [o for o in range(n_out) if 0 <= o * s - p + t * d < n_in]
            got = interval(n_in, n_out, s, p, d, t)
            if valid != list(range(*got)):
                failures.append((g, t, got, valid))
                raise AssertionError(f"geometry {g}, tap {t}: got {got}, expected {valid}")

    return test


interval_property(tap_output_range)()  # the real one passes
try:
    interval_property(tap_output_range_truncating)()
    raise RuntimeError("expected hypothesis to find the bug")
except AssertionError:
    (n_in, k, s, p, d), t, got, valid = failures[-1]  # the last failure is the shrunk example
    print(f"shrunk counterexample: n_in={n_in} k={k} s={s} p={p} d={d}, tap {t}: got {got}, expected {valid}")
    assert s > 1  # with stride 1 both divisions are exact: the bug needs a stride

# %% [markdown]
# Now the property every rung must satisfy: for every drawn geometry, depth multiplier, bias and
# rung, the op equals `F.conv2d` in float64 (and your kernel too, when there is no bias).

# %%
EXAMPLES = 100 if SMALL else 500


@settings(derandomize=True, max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.filter_too_much])
@given(n=st.integers(0, 2), c=st.integers(1, 4), m=st.integers(1, 2), h=st.integers(1, 12),
       wd=st.integers(1, 12), k=st.integers(1, 5), s=st.integers(1, 3), p=st.integers(0, 6),
       d=st.integers(1, 4), bias=st.booleans(), algo=st.sampled_from(RUNGS), seed=st.integers(0, 2**16))
def depthwise_matches_pytorch(n, c, m, h, wd, k, s, p, d, bias, algo, seed):
    assume(out_size(h, k, s, p, d) >= 1 and out_size(wd, k, s, p, d) >= 1)
    gen = torch.Generator().manual_seed(seed)
    xi = torch.randn(n, c, h, wd, dtype=torch.float64, generator=gen)
    wi = torch.randn(c * m, 1, k, k, dtype=torch.float64, generator=gen)
    bi = torch.randn(c * m, dtype=torch.float64, generator=gen) if bias else None
    if algo == "nhwc":
        xi = xi.contiguous(memory_format=torch.channels_last)
    want = F.conv2d(xi, wi, bi, s, p, d, groups=c)
    torch.testing.assert_close(ops.depthwise_conv2d(xi, wi, bi, s, p, d, algo=algo), want)
    if not bias:
        torch.testing.assert_close(my_depthwise(xi, wi, s, p, d), want)


started = time.perf_counter()
depthwise_matches_pytorch()
print(f"{EXAMPLES} examples passed in {time.perf_counter() - started:.1f} s")

# %% [markdown]
# ## 3.10 Gradients: `gradcheck` and double backward
#
# Each rung also has backward kernels: `backward_input` (the adjoint of the forward: every
# output scatters its gradient back to the inputs it read) and `backward_weight` (for each tap,
# the sum of `grad_output` times the input it read). `torch.autograd.gradcheck` compares the
# Jacobian they define with finite differences,
#
# $$\frac{\partial y}{\partial x_k} \approx
#   \frac{y(x + \varepsilon e_k) - y(x - \varepsilon e_k)}{2\varepsilon},$$
#
# which needs float64: in float32 the rounding error of the difference swamps it.
#
# *Double backward* differentiates the backward pass itself, as gradient penalties and
# Hessian-vector products do. The convolution is linear in $x$ and in $w$, so the gradient of
# `backward_input(gy, w)` with respect to `gy` is the forward convolution, and with respect to
# `w` it is `backward_weight`: the three ops are closed under differentiation, and `atrous/ops.py`
# registers each one's autograd in terms of the others. `gradgradcheck` checks it.

# %%
geometries = [((2, 1), (2, 1), (2, 3), 1), ((1, 1), (1, 1), (1, 1), 2)]  # stride, padding, dilation, m
for algo in RUNGS:
    for stride, padding, dilation, m in geometries:
        xg = torch.randn(1, 3, 7, 6, dtype=torch.float64)
        if algo == "nhwc":
            xg = xg.contiguous(memory_format=torch.channels_last)
        xg.requires_grad_(True)
        wg = torch.randn(3 * m, 1, 3, 2, dtype=torch.float64, requires_grad=True)
        bg = torch.randn(3 * m, dtype=torch.float64, requires_grad=True)

        def f(xg, wg, bg, stride=stride, padding=padding, dilation=dilation, algo=algo):
            return ops.depthwise_conv2d(xg, wg, bg, stride, padding, dilation, algo=algo)

        assert torch.autograd.gradcheck(f, (xg, wg, bg))
        assert torch.autograd.gradgradcheck(f, (xg, wg, bg))
print("gradcheck and gradgradcheck pass for every rung")
assert hasattr(torch.ops.atrous, "depthwise_conv2d_backward_input")  # the backward kernels are ops too

# %% [markdown]
# ## Summary
# - The ladder: `naive` (the definition, a bounds check per tap) → `rows` (tap intervals: no
#   branch, taps in the padding never visited, parallel planes) → `stencil` (a padded, polyphase
#   flat buffer: every tap a constant shift, sums in registers, each output stored once) →
#   `nhwc` (channels_last: vectors across channels, no shifts at any dilation).
# - The valid outputs of a tap form one interval,
#   $[\lceil (p - jd)/s \rceil, \lfloor (W - 1 + p - jd)/s \rfloor]$, with floor/ceil
#   divisions, not C++'s truncation.
# - `setup.py` builds `atrous._C`; `load_inline` JIT-compiles a variant of your own in about
#   15 s, registered as a PyTorch operator.
# - Property tests (hypothesis, derandomized, bounded) and `gradcheck`/`gradgradcheck` in
#   float64 are how every rung is checked.
#
# ## Exercises
# 1. **Predict, then run.** By hand, the column intervals of the three taps for $W = 12$, $k =
#    3$, $s = 3$, $p = 4$, $d = 4$; then check with `tap_output_range` and brute force.
# 2. Write the `rows` idea into your kernel: replace the per-tap bounds check with the row and
#    column tap intervals, compile it with `load_inline` under a new namespace, and check it
#    with the property test.
# 3. The flat form of 3.4 computes $P_w = W + 2p$ columns per output row and keeps
#    $W_{\text{out}}$. What fraction of its outputs is thrown away at ASPP rates 6, 12 and 18 on
#    a 33x33 map? Which rungs do none of that work, and how?
# 4. Run `gradcheck` on `atrous.ops.depthwise_conv2d` in float32. What happens, and why?
# 5. **Design.** A user asks for rate 40 on a 33x33 map ('same' padding). Which rung does no
#    useless work there, and what does the layer compute? Check it against the centre tap alone.
#
# Solutions: `tutorials/solutions/03_writing_the_cpu_kernel.py`.
