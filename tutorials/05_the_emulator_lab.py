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
# # 5. The emulator lab: CUDA kernels run on the CPU, and on a GPU
#
# **What you will learn**
# - how the CUDA source of notebook 4 compiles with g++ against `csrc/cuda/emulation.h` and runs
#   its blocks and threads on the CPU (threads as coroutines, a real `__syncthreads()`);
# - the `naive` and `tiled` rungs run, checked against `F.conv2d`, and the launches they make
#   (blocks, threads, shared memory) compared with the plans computed in notebook 4;
# - what a missing barrier does, made deterministic by the emulator;
# - why the weight gradient is deterministic, reproduced bit for bit in Python;
# - the ladder on a real GPU when this machine has one, otherwise the results recorded in the
#   repository, and roofline estimates for an H200.
#
# **What you need.** A C++ compiler (`g++`, or `$CXX`) and nothing else: the emulator needs two
# headers of the CUDA toolkit (`cuda_fp16.h`, `cuda_bf16.h`, for the half types), and when the
# toolkit is not installed (a laptop, macOS, WSL without CUDA) this notebook uses the small
# stand-ins shipped in `tutorials/cuda_standin/`. Without a compiler the emulator cells say so and
# skip. Every claim is checked by an `assert`. GPU timings are printed, never asserted, and no GPU
# number in this notebook is made up: either it is measured here, or it is read from a file that
# `scripts/gpu_check.sh` wrote (section 5.6), or it is a labelled estimate computed from the
# H200's published bandwidth (5.7). With `ATROUS_TUTORIAL_SMALL=1` (set by the test suite) the
# emulator runs fewer channels; everything else is the same.

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
import ctypes
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt  # a Figure that is a cell's value displays as a picture
import torch
import torch.nn.functional as F

import atrous
import atrous.ops as ops
from atrous import _build_env, _extension, bench

from csrc_source import show  # prints a function of csrc/ (tutorials/csrc_source.py)

torch.manual_seed(0)
SMALL = os.environ.get("ATROUS_TUTORIAL_SMALL") == "1"
CSRC = atrous.sources()  # the kernel sources: csrc/ of a checkout, or the copy an installed package ships
KERNELS = CSRC / "cuda" / "depthwise_kernels.cu"
STANDIN = Path("cuda_standin").resolve()  # cuda_fp16.h and cuda_bf16.h for a machine without CUDA
assert KERNELS.exists(), f"expected the CUDA sources under {CSRC / 'cuda'}"
_C = _extension.load()


def ix(name: str, *args: int):
    """Calls the helper `name` of csrc/common/conv_index.h: the very code the CUDA kernels run."""
    return _C._conv_index(name, *args)


def constant(relpath: str, name: str) -> int:
    """The value of `constexpr T ..., name = <integer expression>, ...;` in csrc/<relpath>."""
    match = re.search(rf"constexpr \w+ [^;]*\b{name} = ([^,;]+)", (CSRC / relpath).read_text())
    expr = re.sub(r"int64_t\{(\d+)\}", r"\1", match.group(1))
    assert re.fullmatch(r"[\d\s*+<()-]+", expr), expr  # plain integer arithmetic only
    return int(eval(expr))  # noqa: S307 (checked just above)


# Notebook 4's twins of the launchers: the grid of the naive kernel and the tile plan of the tiled one.
MAX_BLOCKS = constant("cuda/cuda_common.cuh", "kMaxBlocks")
MAX_THREADS = constant("cuda/depthwise_kernels.cu", "kTiledMaxThreads")
MAX_H, MAX_W, MIN_W = (constant("cuda/depthwise_kernels.cu", n)
                       for n in ("kMaxTileH", "kMaxTileW", "kMinTileW"))
SMEM_BYTES = constant("cuda/depthwise_kernels.cu", "kTileSmemBytes")


def blocks_for(work: int, per_block: int) -> int:
    return min(-(-work // per_block), MAX_BLOCKS)


def plan(out_h, out_w, k=3, s=1, d=1, acc_bytes=4):
    """What launch_tiled decides (notebook 4, section 4.4): tiles, input tile, shared bytes, threads."""
    taps = k * k
    budget = SMEM_BYTES // acc_bytes - taps
    rs, rc, cs, cc, in_h, in_w, fits = ix("plan_depthwise_tiles", out_h, out_w, k, k, s, s, d, d,
                                          MAX_H, MAX_W, MIN_W, budget)
    threads = min(MAX_THREADS, max(64, (rs * cs // 4 + 31) // 32 * 32))
    return {"tile": (rs, cs), "tiles": rc * cc, "in": (in_h, in_w), "smem": (taps + in_h * in_w) * acc_bytes,
            "threads": threads, "per_thread": -(-rs * cs // threads), "fits": bool(fits)}


# %% [markdown]
# ## 5.1 A GPU on the CPU: the emulator
#
# This machine may have no GPU; the CI machine certainly has none. Yet we can run the CUDA
# kernels: the kernel files (`csrc/cuda/*_kernels.cu`) include no ATen header, only
# `cuda_common.cuh`, `kernels.h` and `conv_index.h`, and with `-DATROUS_CUDA_EMULATION` they
# compile as plain C++ against `csrc/cuda/emulation.h`. There, `__global__` and `__device__`
# mean nothing, `threadIdx`/`blockIdx` are variables, a launch runs the blocks one after another,
# and the threads of a block are coroutines: each runs until it reaches `__syncthreads()` (or
# ends), then the next one runs. A barrier is a real barrier, and shared memory is really shared.
# `tests/cuda/cuda_emulation/build.py` builds all the CUDA operators this way for the test suite.
#
# Here we build less: the depthwise kernel file and the reductions, plus a few lines of
# `extern "C"` glue that call the launchers of `csrc/cuda/kernels.h` on raw pointers, loaded
# with `ctypes`. No torch header is parsed, so g++ takes about 2 seconds. The glue also reports
# the last launch's grid, block size and dynamic shared memory, straight from the emulator's
# state: we will compare them with the tile plans computed in Python.

# %%
GLUE = r"""
// The depthwise CUDA kernels and launchers, compiled as plain C++ for the CPU emulator.
#include "@KERNELS@"
#include "cuda/reduce_kernels.cu"

#include <vector>

namespace ac = atrous::cuda;
namespace {
ac::Strides4 strides4(const int64_t* s) { return {s[0], s[1], s[2], s[3]}; }
atrous::ConvGeometry geometry(const int64_t* g) {
  return {g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14]};
}
ac::DepthwiseRung rung_of(int r) { return r == 0 ? ac::DepthwiseRung::Naive : ac::DepthwiseRung::Tiled; }
}  // namespace

#define API extern "C" __attribute__((visibility("default")))
API void t05_forward(int rung, const float* x, const int64_t* xs, const float* w, float* y,
                     const int64_t* ys, const int64_t* g) {
  ac::depthwise_forward(rung_of(rung), ac::DType::Float, x, strides4(xs), w, nullptr, y, strides4(ys),
                        geometry(g), /*relu=*/false, nullptr);
}
API void t05_backward_input(int rung, const float* gy, const int64_t* gys, const float* w, float* gx,
                            const int64_t* gxs, const int64_t* g) {
  ac::depthwise_backward_input(rung_of(rung), ac::DType::Float, gy, strides4(gys), w, gx, strides4(gxs),
                               geometry(g), nullptr);
}
API void t05_backward_weight(int rung, const float* gy, const int64_t* gys, const float* x,
                             const int64_t* xs, float* gw, const int64_t* g) {
  const atrous::ConvGeometry geo = geometry(g);
  const int64_t bytes = ac::depthwise_backward_weight_workspace(rung_of(rung), ac::DType::Float, geo);
  std::vector<unsigned char> workspace(bytes);
  ac::depthwise_backward_weight(rung_of(rung), ac::DType::Float, gy, strides4(gys), x, strides4(xs), gw,
                                workspace.data(), geo, nullptr);
}
API void t05_last_launch(int64_t* out) {  // blocks, threads per block, dynamic shared memory bytes
  namespace emu = atrous::emulation;
  out[0] = emu::grid_dim.x, out[1] = emu::block_dim.x, out[2] = int64_t(emu::dynamic_smem.size()) - 16;
}
API void t05_reduction_chunks(int64_t total, int64_t* out) {
  const ac::Chunking c = ac::reduction_chunks(total);
  out[0] = c.chunks, out[1] = c.chunk_len;
}
"""


def cuda_headers() -> tuple[Path, str]:
    """Where cuda_fp16.h and cuda_bf16.h come from: the CUDA toolkit's include folder (found as setup.py
    finds the toolkit), or the stand-ins of tutorials/cuda_standin when there is no toolkit or when
    ATROUS_CUDA_STANDIN=1 asks for them (the suite tests the notebook that way too)."""
    toolkit = None if os.environ.get("ATROUS_CUDA_STANDIN") == "1" else _build_env.find_cuda_toolkit()
    include = Path(toolkit.home) / "include" if toolkit else None
    if include and (include / "cuda_fp16.h").exists():
        return include, "the CUDA toolkit"
    return STANDIN, "the stand-in headers of tutorials/cuda_standin (no CUDA toolkit needed)"


# The CUDA ladder has a third rung, nhwc (channels_last, 16-byte channel vectors, in its own file
# depthwise_nhwc_kernels.cu); this lab builds the first two.
assert ops.algorithms("depthwise_conv2d", "cuda") == ("naive", "tiled", "nhwc")
CUDA_RUNGS = ops.algorithms("depthwise_conv2d", "cuda")[:2]
KERNELS_H = (CSRC / "cuda" / "kernels.h").read_text()
assert "enum class DepthwiseRung { Naive = 0, Tiled = 1, Nhwc = 2 };" in KERNELS_H


class Emulator:
    """The depthwise CUDA launchers, run by the CPU emulator (float32 tensors; int geometry)."""

    def __init__(self, library: Path):
        self.lib = ctypes.CDLL(str(library))

    @staticmethod
    def _i64(values) -> ctypes.Array:
        return (ctypes.c_int64 * len(values))(*values)

    @staticmethod
    def _p(t: torch.Tensor) -> ctypes.c_void_p:
        assert t.dtype == torch.float32 and t.device.type == "cpu"
        return ctypes.c_void_p(t.data_ptr())

    def _geometry(self, shape, weight, s, p, d) -> list[int]:
        n, c, h, w = shape
        co, _, kh, kw = weight.shape
        ho, wo = ix("conv_output_size", h, kh, s, p, d), ix("conv_output_size", w, kw, s, p, d)
        return [n, c, co, h, w, ho, wo, kh, kw, s, s, p, p, d, d]

    def forward(self, rung: str, x, w, s=1, p=0, d=1) -> torch.Tensor:
        g = self._geometry(x.shape, w, s, p, d)
        y = torch.full((g[0], g[2], g[5], g[6]), float("nan"))  # NaN: an output never written shows
        self.lib.t05_forward(CUDA_RUNGS.index(rung), self._p(x), self._i64(x.stride()),
                             self._p(w.contiguous()), self._p(y), self._i64(y.stride()), self._i64(g))
        return y

    def backward_input(self, rung: str, gy, w, input_shape, s=1, p=0, d=1) -> torch.Tensor:
        g = self._geometry(input_shape, w, s, p, d)
        gx = torch.full(tuple(input_shape), float("nan"))
        self.lib.t05_backward_input(CUDA_RUNGS.index(rung), self._p(gy), self._i64(gy.stride()),
                                    self._p(w.contiguous()), self._p(gx), self._i64(gx.stride()),
                                    self._i64(g))
        return gx

    def backward_weight(self, rung: str, gy, x, w_shape, s=1, p=0, d=1) -> torch.Tensor:
        g = self._geometry(x.shape, torch.empty(w_shape), s, p, d)
        gw = torch.full(tuple(w_shape), float("nan"))
        self.lib.t05_backward_weight(CUDA_RUNGS.index(rung), self._p(gy), self._i64(gy.stride()), self._p(x),
                                     self._i64(x.stride()), self._p(gw), self._i64(g))
        return gw

    def last_launch(self) -> tuple[int, int, int]:
        out = self._i64([0, 0, 0])
        self.lib.t05_last_launch(out)
        return tuple(out)

    def reduction_chunks(self, total: int) -> tuple[int, int]:
        out = self._i64([0, 0])
        self.lib.t05_reduction_chunks(total, out)
        return tuple(out)


BUILD_DIR = Path(tempfile.mkdtemp(prefix="atrous-tutorial05-"))  # outside the repository


def build_emulator(kernel_file: Path, name: str) -> Emulator | None:
    """Compiles GLUE around kernel_file with g++ -DATROUS_CUDA_EMULATION; None without a C++ compiler."""
    (include, origin), cxx = cuda_headers(), shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        print("No C++ compiler here (g++, or $CXX): the emulator cells skip.")
        return None
    source = BUILD_DIR / f"{name}.cpp"
    source.write_text(GLUE.replace("@KERNELS@", str(kernel_file)))
    library = BUILD_DIR / f"{name}.so"
    command = [cxx, "-O1", "-std=c++20", "-fPIC", "-shared", "-fvisibility=hidden", "-ffp-contract=off",
               "-DATROUS_CUDA_EMULATION",
               f"-I{CSRC}", f"-I{CSRC / 'cuda'}", f"-I{include}", "-Wno-unknown-pragmas", "-Wno-attributes",
               str(source), "-o", str(library)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"g++ failed:\n{' '.join(command)}\n{result.stderr[-4000:]}")
    print(f"g++ built {library.name} in {time.perf_counter() - started:.1f} s, half types from {origin}")
    return Emulator(library)


EMU = build_emulator(KERNELS, "depthwise_emulated")

# %% [markdown]
# ## 5.2 The rungs, run
#
# **The naive rung**, in the emulator, on a few planes of the ASPP rate-6 shape
# (33x33, $p = d = 6$), against `F.conv2d`. The launch it made is the one `blocks_for` predicts:
# $\lceil N C H W / 256 \rceil$ blocks of 256 threads, no shared memory.

# %%
C_EMU = 4 if SMALL else 16  # channels in the emulator (the real layers have 728 to 2048)
if EMU:
    x = torch.randn(1, C_EMU, 33, 33)
    w = torch.randn(C_EMU, 1, 3, 3) / 3
    expected = F.conv2d(x, w, None, 1, 6, 6, groups=C_EMU)
    y = EMU.forward("naive", x, w, 1, 6, 6)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    print("last launch (blocks, threads, shared bytes):", EMU.last_launch())
    assert EMU.last_launch() == (blocks_for(C_EMU * 33 * 33, 256), 256, 0)

# %% [markdown]
# **The tiled rung**, at the rates of ASPP, and what the emulator says the launcher launched:
# one block per tile ($N \cdot C \cdot 2$ blocks), `(taps + in_h * in_w) * 4` bytes of shared memory (the 9
# weights, then the tile), and a thread count notebook 4 derived (section 4.4).

# %%
if EMU:
    for d in (1, 6, 12, 18):
        expected = F.conv2d(x, w, None, 1, d, d, groups=C_EMU)
        for rung in CUDA_RUNGS:
            torch.testing.assert_close(EMU.forward(rung, x, w, 1, d, d), expected, rtol=1e-5, atol=1e-5)
        blocks, threads, smem = EMU.last_launch()  # the tiled launch
        in_elems = ix("input_tile_extent", 17, 3, 1, d) * ix("input_tile_extent", 33, 3, 1, d)
        print(f"d={d:2d}: tiled launch of {blocks} blocks x {threads} threads, {smem} bytes of shared memory")
        assert (blocks, threads, smem) == (C_EMU * 2, 160, (9 + in_elems) * 4)

# %% [markdown]
# **The fallback, run.** A rate far beyond any DeepLab layer, $d = 60$ on a 33x33 map: the
# tiled rung's launcher finds no tile that fits, launches the naive kernel (256 threads, no
# shared memory) and the result is still right.

# %%
assert not plan(33, 33, d=60)["fits"]
if EMU:
    torch.testing.assert_close(EMU.forward("tiled", x, w, 1, 60, 60),
                               F.conv2d(x, w, None, 1, 60, 60, groups=C_EMU), rtol=1e-5, atol=1e-5)
    print("tiled at d=60 launched (blocks, threads, shared bytes):", EMU.last_launch())
    assert EMU.last_launch() == (blocks_for(C_EMU * 33 * 33, 256), 256, 0)  # the naive kernel

# %% [markdown]
# ## 5.3 Two barriers, and what the emulator does without one
#
# The tiled kernel waits at `__syncthreads()` twice per tile: after staging (no thread may read
# the tile before every thread has written its part) and after the sums (no thread may start
# overwriting the tile for the next source channel while others still read it). On a GPU a
# missing barrier is a race: wrong results now and then, depending on which warps run first.
# The emulator makes it deterministic and harsh: each thread runs as far as it can before the
# next one starts, and shared memory starts each launch filled with 0xFF bytes, a NaN in
# float32. Let us delete the first barrier from a copy of the kernel file and rebuild (2 s).
# Without it, thread 0 stages its share of the tile and goes straight on to its sums, reading
# elements that the other threads have not written yet: the NaN fill in the first block, and
# in the later blocks whatever tile the previous block left behind (wrong, but finite).

# %%
source = KERNELS.read_text()
staging = source.index("// Stage the tile")
barrier = source.index("__syncthreads();", staging)
broken = BUILD_DIR / "depthwise_kernels_no_barrier.cu"
after = barrier + len("__syncthreads();")
broken.write_text(source[:barrier] + "/* __syncthreads(); removed */" + source[after:])
print(source[staging - 6:after])
NO_BARRIER = build_emulator(broken, "depthwise_no_barrier")

# %%
if NO_BARRIER:
    y = NO_BARRIER.forward("tiled", x, w, 1, 6, 6)
    expected = F.conv2d(x, w, None, 1, 6, 6, groups=C_EMU)
    wrong = (~torch.isclose(y, expected, rtol=1e-5, atol=1e-5)).float().mean()
    print(f"without the barrier: {wrong:.0%} of the outputs are wrong, "
          f"{torch.isnan(y).float().mean():.0%} NaN")
    assert wrong > 0.5 and torch.isnan(y).any()  # NaN: the fill; finite but wrong: the previous block's tile
    # The naive rung has no shared memory and no barrier, so the same build is still right.
    torch.testing.assert_close(NO_BARRIER.forward("naive", x, w, 1, 6, 6), expected, rtol=1e-5, atol=1e-5)

# %% [markdown]
# ## 5.4 The weight gradient, deterministic
#
# $\partial L / \partial w[c, i, j] = \sum_{n, o_h, o_w} g_y[n, c, o_h, o_w]\, x[n, c, o_h s - p
# + i d, o_w s - p + j d]$ is a sum of $N H_{\text{out}} W_{\text{out}}$ terms per weight:
# 8712 at batch 8 on 33x33, 133128 on the decoder's 129x129. Many threads must share it. The
# quick way is `atomicAdd` into the weight, but float addition is not associative, and atomics
# add in whatever order the threads arrive, so the result changes from run to run in its last
# bits. Here is the effect of the order alone, in float32:

# %%
terms = torch.randn(4096, generator=torch.Generator().manual_seed(3))


def sum_in_order(values: torch.Tensor) -> torch.Tensor:
    total = torch.zeros((), dtype=torch.float32)
    for v in values:
        total = total + v  # one float32 rounding per addition
    return total


order = torch.randperm(4096, generator=torch.Generator().manual_seed(4))  # as atomics might arrive
in_order, shuffled = sum_in_order(terms), sum_in_order(terms[order])
print(f"in order {in_order.item():.9g}, in another order {shuffled.item():.9g}")
assert in_order != shuffled  # same terms, different bits

# %% [markdown]
# atrous uses no float atomics. The tiled weight gradient runs two passes:
#
# 1. the $N H_{\text{out}} W_{\text{out}}$ terms are cut into chunks by `reduction_chunks`: at
#    least 4096 terms each, at most 256 chunks, **a function of the sizes only**. One block per
#    (channel, chunk) of 256 threads: thread `tid` sums terms `tid, tid + 256, ...` of the chunk
#    for all 9 taps at once (9 registers), then `block_sum` adds the 256 partial sums in a fixed
#    tree through shared memory, and thread 0 writes one partial per (channel, tap, chunk);
# 2. `sum_partials`: one thread per weight adds its chunks' partials in order.
#
# Every addition happens in an order fixed by the shapes, never by timing. So the result is
# bit-identical from run to run, and we can even reproduce it exactly, bit for bit, in Python.

# %%
_ = show("cuda/cuda_common.cuh", r"inline Chunking reduction_chunks\(")
_ = show("cuda/cuda_common.cuh", r"__device__ Acc block_sum\(")
_ = show("cuda/depthwise_kernels.cu", r"^depthwise_weight_partials_kernel\(")
REDUCE_THREADS = constant("cuda/depthwise_kernels.cu", "kReduceThreads")


def reduction_chunks(total: int) -> tuple[int, int]:  # the twin of cuda_common.cuh
    chunks = max(1, min(256, total // 4096))
    length = -(-total // chunks)
    return -(-total // length), length


for where, batch, size in [("ASPP, batch 1", 1, 33), ("ASPP, batch 8", 8, 33), ("OS8, batch 8", 8, 65),
                           ("decoder, batch 8", 8, 129), ("decoder, batch 16", 16, 129)]:
    total = batch * size * size
    print(f"{where:17s}: {total:6d} terms -> {reduction_chunks(total)} (chunks, length)")
    if EMU:
        assert EMU.reduction_chunks(total) == reduction_chunks(total)
assert reduction_chunks(8 * 33 * 33) == (2, 4356) and reduction_chunks(8 * 129 * 129) == (32, 4161)

# %% [markdown]
# The same two passes in Python, on float32 tensors, one rounding per operation in the kernel's
# order; compared with the emulated kernel with `torch.equal`, not a tolerance. (We built the
# emulator with `-ffp-contract=off`, so `acc += g * x` rounds twice, as in Python. On a GPU nvcc
# contracts it into one fused multiply-add, so the GPU's bits differ from these, but they are
# the same from run to run there too.)

# %%
def weight_grad_two_passes(gy: torch.Tensor, x: torch.Tensor, k: int, d: int, p: int) -> torch.Tensor:
    n, c, ho, wo = gy.shape
    chunks, length = reduction_chunks(n * ho * wo)
    xp = F.pad(x, (p, p, p, p))  # zeros: the kernel skips those terms, adding a zero changes nothing
    gw = torch.empty(c, 1, k, k)
    for ch in range(c):
        for i in range(k):
            for j in range(k):
                window = xp[:, ch, i * d:i * d + ho, j * d:j * d + wo]
                terms = (gy[:, ch] * window).reshape(-1)  # in the order of e = (n, oh, ow)
                partials = []
                for chunk in range(chunks):  # pass 1: one block per chunk
                    part = terms[chunk * length:(chunk + 1) * length]
                    part = torch.cat([part, part.new_zeros(-len(part) % REDUCE_THREADS)])
                    part = part.view(-1, REDUCE_THREADS)
                    acc = torch.zeros(REDUCE_THREADS)
                    for row in part:  # thread tid adds terms tid, tid + 256, ... in order
                        acc = acc + row
                    half = REDUCE_THREADS // 2
                    while half:  # block_sum: the fixed shared-memory tree
                        acc[:half] = acc[:half] + acc[half:2 * half]
                        half //= 2
                    partials.append(acc[0])
                gw[ch, 0, i, j] = sum_in_order(torch.stack(partials))  # pass 2: in chunk order
    return gw


if EMU:
    xb, gyb = torch.randn(8, 2, 33, 33), torch.randn(8, 2, 33, 33)  # batch 8: two chunks of 4356 terms
    gw = EMU.backward_weight("tiled", gyb, xb, (2, 1, 3, 3), 1, 6, 6)
    assert torch.equal(gw, EMU.backward_weight("tiled", gyb, xb, (2, 1, 3, 3), 1, 6, 6))
    assert torch.equal(gw, weight_grad_two_passes(gyb, xb, 3, 6, 6))  # bit for bit
    xd, wd = xb.double().requires_grad_(), torch.zeros(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    exact = torch.autograd.grad(F.conv2d(xd, wd, None, 1, 6, 6, groups=2), wd, gyb.double())[0]
    print(f"largest error against float64 autograd: {(gw.double() - exact).abs().max():.2e} "
          f"(gradient scale {exact.abs().max():.0f})")
    torch.testing.assert_close(gw.double(), exact, rtol=1e-5, atol=1e-3)

# %% [markdown]
# The input gradient needs no reduction across threads at all: it is a *gather*, one thread per
# input element summing the outputs that read it, and at stride 1 it is itself a depthwise
# convolution of $g_y$ with the flipped kernel and padding $d(k-1) - p$, which the tiled kernel
# runs. Both rungs, at stride 1 (tiled) and stride 2 (the gather):

# %%
if EMU:
    for s, p, d in [(1, 6, 6), (2, 2, 2)]:
        xi = torch.randn(2, 3, 17, 15, dtype=torch.float64, requires_grad=True)
        wi = torch.randn(3, 1, 3, 3, dtype=torch.float64)
        yi = F.conv2d(xi, wi, None, s, p, d, groups=3)
        gyi = torch.randn_like(yi)
        exact = torch.autograd.grad(yi, xi, gyi)[0]
        for rung in CUDA_RUNGS:
            gx = EMU.backward_input(rung, gyi.float(), wi.float(), xi.shape, s, p, d)
            torch.testing.assert_close(gx.double(), exact, rtol=1e-4, atol=1e-4)
    print("input gradients of both rungs match autograd")

# %% [markdown]
# ## 5.5 The ladder, run
#
# **In the emulator.** Both rungs on DeepLab's depthwise layers, with the batch and channels cut
# down (the emulator runs every thread of every block on one CPU core, about a million times
# slower than a GPU, so its times say nothing about a GPU), NCHW and channels_last, and a strided
# entry-flow layer; every result checked against `F.conv2d`.

# %%
EMU_LAYERS = [  # (where, input size, stride, padding, dilation)
    ("middle flow", 33, 1, 1, 1), ("ASPP rate 6", 33, 1, 6, 6), ("ASPP rate 12", 33, 1, 12, 12),
    ("ASPP rate 18", 33, 1, 18, 18), ("entry flow, strided", 65, 2, 1, 1), ("decoder", 129, 1, 1, 1)]
if EMU:
    print(f"{'layer':20s} {'input':>14s}  rung    emulated ms  max error")
    for where, size, s, p, d in EMU_LAYERS:
        channels = 2 if size == 129 else C_EMU
        for layout in ("NCHW", "channels_last"):
            xl = torch.randn(1, channels, size, size)
            if layout == "channels_last":
                xl = xl.contiguous(memory_format=torch.channels_last)
            wl = torch.randn(channels, 1, 3, 3) / 3
            expected = F.conv2d(xl, wl, None, s, p, d, groups=channels)
            for rung in CUDA_RUNGS:
                ms, yl = bench.CpuTimer().time_ms(functools.partial(EMU.forward, rung, xl, wl, s, p, d))
                err = (yl - expected).abs().max().item()
                if layout == "NCHW":
                    dims = f"1x{channels}x{size}x{size}"
                    print(f"{where:20s} {dims:>14s}  {rung:6s} {ms:11.1f}  {err:.1e}")
                torch.testing.assert_close(yl, expected, rtol=1e-5, atol=1e-5)
    print("every layer, both rungs, NCHW and channels_last: equal to F.conv2d")

# %% [markdown]
# **On a GPU, if this machine has one.** The same two rungs through `atrous.ops` at training
# batch 8, on the DeepLabV3+ Xception-65 layers (513x513 input, output stride 16), checked
# against `F.conv2d` and timed with CUDA events after flushing the L2 cache (the benchmark's own
# timer, `atrous.bench.CudaTimer`; TF32 off). GB/s counts the minimal traffic: read the input
# and the weights, write the output.

# %%
GPU_LAYERS = [("middle flow", 728, 33, 1), ("ASPP rate 6", 2048, 33, 6), ("ASPP rate 12", 2048, 33, 12),
              ("ASPP rate 18", 2048, 33, 18), ("decoder", 304, 129, 1)]


def run_ladder(device: torch.device, timer, batch: int, layers, runs: int = 20) -> list[dict]:
    """Times PyTorch and every rung of the device's ladder on each layer; checks each result."""
    rows, gen = [], torch.Generator().manual_seed(0)
    with bench.exact_fp32():
        for where, c, size, d in layers:
            xg = torch.randn(batch, c, size, size, generator=gen).to(device)
            wg = (torch.randn(c, 1, 3, 3, generator=gen) / 3).to(device)
            want = F.conv2d(xg.double(), wg.double(), None, 1, d, d, groups=c)
            moved = (2 * xg.numel() + wg.numel()) * xg.element_size()
            # Each candidate is called with no arguments: partial binds this layer's tensors and rate.
            candidates = {"PyTorch": functools.partial(F.conv2d, xg, wg, None, 1, d, d, groups=c)}
            for rung in ops.algorithms("depthwise_conv2d", device):
                candidates[rung] = functools.partial(ops.depthwise_conv2d, xg, wg, None, 1, d, d, algo=rung)
            for name, fn in candidates.items():
                m, out = bench.measure(fn, timer, bench.TimingPlan(warmup=3, repeats=runs, budget_s=1.0))
                err = ((out.double() - want).abs().max() / want.abs().max()).item()
                assert err < 1e-4, (where, name, err)
                rows.append({"layer": where, "rung": name, "ms": m.median_ms,
                             "GBps": moved / (m.median_ms * 1e-3) / 1e9, "error": err})
    return rows


def plot_ladder(rows: list[dict], title: str):
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    names = list(dict.fromkeys(r["rung"] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        gbps = {r["layer"]: r["GBps"] for r in rows if r["rung"] == name}
        values = [gbps[layer] for layer in layers]
        ax.bar([i + k * width for i in range(len(layers))], values, width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(layers))], layers, fontsize=8)
    ax.set_ylabel("GB/s (minimal traffic / median time)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


ON_GPU = torch.cuda.is_available() and bool(getattr(_C, "with_cuda", 0))
gpu_rows = []
if ON_GPU:
    device = torch.device("cuda")
    timer = bench.CudaTimer(device)
    copy = bench.copy_bandwidth(device, timer, 1 << 30)
    gpu_rows = run_ladder(device, timer, 8, GPU_LAYERS)
    print(f"{torch.cuda.get_device_name()}: copy bandwidth {copy['GBps']:.0f} GB/s")
    for r in gpu_rows:
        print(f"{r['layer']:14s} {r['rung']:8s} {1e3 * r['ms']:9.1f} us {r['GBps']:7.0f} GB/s "
              f"({r['GBps'] / copy['GBps']:4.0%} of copy)  error {r['error']:.1e}")
elif torch.cuda.is_available():
    print("A GPU is visible, but this build of atrous has no CUDA kernels (python -m atrous.info says why).")
else:
    print("No GPU here (torch.cuda.is_available() is False): the live GPU ladder is skipped. "
          + ("The kernels ran above in the emulator; " if EMU else "")
          + "recorded GPU results, if any, follow.")

# %%
if gpu_rows:
    ladder_fig = plot_ladder(gpu_rows, f"depthwise 3x3, batch 8, float32, {torch.cuda.get_device_name()}")
ladder_fig if gpu_rows else None

# %% [markdown]
# ## 5.6 GPU results recorded in the repository
#
# **Convention.** On a machine with a GPU, run
#
# ```bash
# scripts/gpu_check.sh gpu-out
# ```
#
# It copies what is small and useful to `tutorials/assets/gpu_check/`, to be committed:
# `summary.txt` (the sanitizer, the CUDA tests), `machine.txt` and the quick CUDA benchmark
# (`bench.json`, `bench.md`). This cell reads whatever of that it finds: the benchmark
# reports (schema `atrous-bench/1`) of a CUDA device, printed with the benchmark's own
# formatter. Files from a CPU run are ignored. When nothing has been recorded, it says so.

# %%
RESULTS = Path("assets") / "gpu_check"  # where scripts/gpu_check.sh copies its results


def recorded_gpu_reports(folder: Path) -> list[tuple[Path, dict]]:
    """The benchmark reports of a CUDA device under `folder` (as scripts/gpu_check.sh lays them out)."""
    found = []
    for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(report, dict) and report.get("schema") == "atrous-bench/1" and \
                str(report.get("machine", {}).get("device", "")).startswith("cuda"):
            found.append((path, report))
    return found


def shown(path: Path) -> str:
    return str(path)


def show_recorded(folder: Path) -> list[tuple[Path, dict]]:
    reports = recorded_gpu_reports(folder)
    if not reports:
        print(f"No GPU run has been recorded yet: {shown(folder)} holds no benchmark report of a CUDA "
              "device. The CUDA kernels have been checked by the emulator and by the tests, not yet "
              "timed on a GPU.")
        return reports
    summary = folder / "summary.txt"
    if summary.exists():
        print(f"== {shown(summary)}\n{summary.read_text()}")
    for path, report in reports:
        print(f"== {shown(path)} ({report.get('created', 'undated')}, {report.get('command', '')})")
        if report.get("ladder"):
            print(bench.format_ladder(report["ladder"], report))
        else:
            print(bench.format_report(report))
    return reports


recorded = show_recorded(RESULTS)

# %% [markdown]
# ## 5.7 What an H200 should do: roofline estimates
#
# These are **estimates, computed, not measured.** A depthwise 3x3 convolution does 9
# multiply-adds (18 flops) per output and must at least read its input and write its output:
# 8 bytes per output in float32, so about 2.25 flops per byte. An H200 moves about 4.8 TB/s
# from HBM and computes about 67 TFLOP/s in float32 (NVIDIA's figures), so the kernel is
# memory-bound by a wide margin, and the best possible time is bytes / 4.8 TB/s. At batch 8
# input and output together are as large as the 50 MB L2 or larger (51 MB for the middle flow,
# 143 MB for an ASPP branch), so HBM is the roof that matters; at batch 1 they fit in L2 and a
# kernel can beat it.

# %%
HBM_BYTES_PER_S, FP32_FLOPS_PER_S = 4.8e12, 67e12  # H200 (SXM), published figures
estimates = {}
for where, c, size, _ in [("middle flow", 728, 33, 1), ("ASPP, per rate", 2048, 33, 6),
                          ("decoder", 304, 129, 1)]:
    outputs = 8 * c * size * size
    moved = (2 * outputs + c * 9) * 4  # read x, write y (same size at stride 1, 'same'), the weights
    flops = 18 * outputs
    estimates[where] = moved / HBM_BYTES_PER_S * 1e6, flops / FP32_FLOPS_PER_S * 1e6
    print(f"{where:15s} batch 8: {moved / 1e6:6.1f} MB, {flops / 1e9:5.2f} GFLOP -> memory "
          f"{estimates[where][0]:5.1f} us, arithmetic {estimates[where][1]:4.1f} us  (estimates)")
assert all(mem > 5 * arith for mem, arith in estimates.values())  # memory-bound
assert [round(estimates[k][0], 1) for k in ("middle flow", "decoder")] == [10.6, 67.5]
assert 29.7 <= estimates["ASPP, per rate"][0] < 29.8
for r in gpu_rows:  # only with a GPU here: what the measured times reach of that estimate
    roof = {"middle flow": "middle flow", "decoder": "decoder"}.get(r["layer"], "ASPP, per rate")
    reached = estimates[roof][0] / (1e3 * r["ms"])
    print(f"{r['layer']:14s} {r['rung']:8s}: {reached:4.0%} of the H200 roofline")

# %% [markdown]
# ## Summary
# - **The emulator.** The CUDA source of notebook 4, compiled by g++ against `emulation.h`, runs
#   its blocks one after another and the threads of a block as coroutines on the CPU; it equals
#   `F.conv2d`, and its launches (blocks, threads, shared bytes) are the plans of notebook 4. It
#   needs a C++ compiler and, for the half types, either the CUDA toolkit's headers or the
#   stand-ins in `tutorials/cuda_standin/`.
# - **Barriers.** Without the first `__syncthreads()` most outputs are wrong (NaN from the fill,
#   or the previous block's tile): the emulator makes a race deterministic.
# - **Determinism.** No float atomics: fixed chunks, a fixed shared-memory tree and an in-order
#   second pass, reproduced here bit for bit in Python.
# - **On a GPU**, 5.5 times the ladder live; `tutorials/assets/gpu_check/` holds recorded
#   runs (`scripts/gpu_check.sh`), if any. The H200 roofline estimates: about 10.6 us (middle
#   flow), 29.8 us (ASPP, per rate), 67.5 us (decoder) at batch 8.
#
# ## Exercises
# 1. Delete the *second* `__syncthreads()` of the tiled kernel instead of the first, and find a
#    call that the emulator shows to be wrong. (Hint: when does a block stage more than one
#    source channel into the same shared memory?)
# 2. **Predict, then run.** How many chunks, of how many terms, does the weight gradient of a
#    batch of 4 on a 65x65 map use? Predict from the rules of `reduction_chunks`, then ask
#    `EMU.reduction_chunks`.
# 3. **Design.** The emulator runs each thread as far as it can before the next starts. Which
#    bugs can such a schedule never show, and what second schedule would you add to catch more?
#
# Solutions: `tutorials/solutions/05_the_emulator_lab.py`.
