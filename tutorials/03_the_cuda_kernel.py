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
# # 3. The CUDA kernel
#
# **What you will learn**
# - how a CUDA kernel maps work onto a grid of blocks of threads: the `naive` rung's one thread
#   per output, its grid-stride loop and 64-bit indices, read from `csrc/cuda/depthwise_kernels.cu`;
# - the `tiled` rung: one block per output tile of one plane, the input tile staged in shared
#   memory with a zero-filled halo of $d(k-1)$ rows and columns, so the halo grows with the
#   dilation. Its extent $(t-1)s + k_{\text{eff}}$, computed by the helpers the kernel itself
#   calls (`csrc/common/conv_index.h`) and checked by brute force; drawn for $d = 1, 6, 12$;
# - the shared-memory budget: which tiles the kernel picks for DeepLab's shapes, when the halo
#   outgrows the budget and the kernel falls back to `naive`;
# - how the tiled kernel reads global memory (bytes per warp load, NCHW against channels_last),
#   how much work each thread does, and why the weight gradient is deterministic;
# - the same CUDA source compiled by g++ and run as threads on the CPU (the emulator of
#   `tests/cuda/cuda_emulation`), checked against `F.conv2d`; and the ladder on a real GPU: run live
#   when this machine has one, otherwise the results recorded in the repository, if any.
#
# Every claim below is checked by an `assert`. Nothing here needs a GPU: the kernels run in the
# emulator, which needs only g++ and the CUDA toolkit's headers (`cuda_fp16.h`); without those
# headers the emulator cells say so and skip. GPU timings are printed, never asserted, and no GPU
# number in this notebook is made up: either it is measured here, or it is read from a file that
# `scripts/gpu_check.sh` wrote (section 3.10), or it is a labelled estimate computed from the
# H200's published bandwidth (3.11). With `ATROUS_TUTORIAL_SMALL=1` (set by the test suite) the
# emulator runs fewer channels; everything else is the same.

# %%
import ctypes
import functools
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt  # headless in CI (MPLBACKEND=Agg); in Jupyter a returned figure shows
import torch
import torch.nn.functional as F
from matplotlib.patches import Rectangle

import atrous
import atrous.ops as ops
from atrous import _build_env, _extension, bench

from csrc_source import show  # prints a function of csrc/ (tutorials/csrc_source.py)

torch.manual_seed(0)
SMALL = os.environ.get("ATROUS_TUTORIAL_SMALL") == "1"
ROOT = Path(atrous.__file__).resolve().parent.parent  # the repository (an editable install)
CSRC = ROOT / "csrc"
KERNELS = CSRC / "cuda" / "depthwise_kernels.cu"
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


# %% [markdown]
# ## 3.1 CUDA in one page
#
# A kernel launch, `kernel<<<blocks, threads, smem, stream>>>(args...)`, runs the same function
# in `blocks x threads` threads. Each thread knows its block (`blockIdx.x`, of `gridDim.x`) and
# its place in the block (`threadIdx.x`, of `blockDim.x`) and picks its share of the work from
# them. What matters for a kernel's speed:
#
# - **Warps.** A block runs as warps of 32 consecutive threads that issue each instruction
#   together. When the 32 threads of a warp load 32 neighbouring addresses, the hardware fetches
#   them in as few 32-byte *sectors* as the addresses span: 4 sectors for 32 floats. That is a
#   *coalesced* load. 32 scattered addresses cost 32 sectors for the same useful bytes.
# - **Shared memory.** The threads of one block share a small on-chip memory (a block gets up to
#   48 KB by default). They fill it cooperatively, wait at a barrier, `__syncthreads()`, and then
#   read each other's data at a fraction of global memory's cost.
# - **Blocks are independent.** Blocks cannot wait for each other within a launch, so anything
#   that sums across blocks (a weight gradient) needs either atomics or a second pass.
#
# atrous launches every kernel through one helper, `launch` in `csrc/cuda/cuda_common.cuh`:

# %%
launch_src = show("cuda/cuda_common.cuh", r"^void launch\(")
assert "<<<static_cast<unsigned>(blocks), threads, smem, stream>>>" in launch_src
assert "emulation::launch" in launch_src  # ... or, in the emulator build, the CPU emulator (3.2)

# %% [markdown]
# ## 3.2 A GPU on the CPU: the emulator
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
API void t03_forward(int rung, const float* x, const int64_t* xs, const float* w, float* y,
                     const int64_t* ys, const int64_t* g) {
  ac::depthwise_forward(rung_of(rung), ac::DType::Float, x, strides4(xs), w, nullptr, y, strides4(ys),
                        geometry(g), /*relu=*/false, nullptr);
}
API void t03_backward_input(int rung, const float* gy, const int64_t* gys, const float* w, float* gx,
                            const int64_t* gxs, const int64_t* g) {
  ac::depthwise_backward_input(rung_of(rung), ac::DType::Float, gy, strides4(gys), w, gx, strides4(gxs),
                               geometry(g), nullptr);
}
API void t03_backward_weight(int rung, const float* gy, const int64_t* gys, const float* x,
                             const int64_t* xs, float* gw, const int64_t* g) {
  const atrous::ConvGeometry geo = geometry(g);
  const int64_t bytes = ac::depthwise_backward_weight_workspace(rung_of(rung), ac::DType::Float, geo);
  std::vector<unsigned char> workspace(bytes);
  ac::depthwise_backward_weight(rung_of(rung), ac::DType::Float, gy, strides4(gys), x, strides4(xs), gw,
                                workspace.data(), geo, nullptr);
}
API void t03_last_launch(int64_t* out) {  // blocks, threads per block, dynamic shared memory bytes
  namespace emu = atrous::emulation;
  out[0] = emu::grid_dim.x, out[1] = emu::block_dim.x, out[2] = int64_t(emu::dynamic_smem.size()) - 16;
}
API void t03_reduction_chunks(int64_t total, int64_t* out) {
  const ac::Chunking c = ac::reduction_chunks(total);
  out[0] = c.chunks, out[1] = c.chunk_len;
}
"""


def cuda_headers() -> Path | None:
    """The CUDA toolkit's include folder (for cuda_fp16.h), found as setup.py finds the toolkit."""
    toolkit = _build_env.find_cuda_toolkit()
    include = Path(toolkit.home) / "include" if toolkit else None
    return include if include and (include / "cuda_fp16.h").exists() else None


# The CUDA ladder has a third rung, nhwc (channels_last, 16-byte channel vectors, in its own file
# depthwise_nhwc_kernels.cu); this tutorial builds the first two.
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
        self.lib.t03_forward(CUDA_RUNGS.index(rung), self._p(x), self._i64(x.stride()),
                             self._p(w.contiguous()), self._p(y), self._i64(y.stride()), self._i64(g))
        return y

    def backward_input(self, rung: str, gy, w, input_shape, s=1, p=0, d=1) -> torch.Tensor:
        g = self._geometry(input_shape, w, s, p, d)
        gx = torch.full(tuple(input_shape), float("nan"))
        self.lib.t03_backward_input(CUDA_RUNGS.index(rung), self._p(gy), self._i64(gy.stride()),
                                    self._p(w.contiguous()), self._p(gx), self._i64(gx.stride()),
                                    self._i64(g))
        return gx

    def backward_weight(self, rung: str, gy, x, w_shape, s=1, p=0, d=1) -> torch.Tensor:
        g = self._geometry(x.shape, torch.empty(w_shape), s, p, d)
        gw = torch.full(tuple(w_shape), float("nan"))
        self.lib.t03_backward_weight(CUDA_RUNGS.index(rung), self._p(gy), self._i64(gy.stride()), self._p(x),
                                     self._i64(x.stride()), self._p(gw), self._i64(g))
        return gw

    def last_launch(self) -> tuple[int, int, int]:
        out = self._i64([0, 0, 0])
        self.lib.t03_last_launch(out)
        return tuple(out)

    def reduction_chunks(self, total: int) -> tuple[int, int]:
        out = self._i64([0, 0])
        self.lib.t03_reduction_chunks(total, out)
        return tuple(out)


BUILD_DIR = Path(tempfile.mkdtemp(prefix="atrous-tutorial03-"))  # outside the repository


def build_emulator(kernel_file: Path, name: str) -> Emulator | None:
    """Compiles GLUE around kernel_file with g++ -DATROUS_CUDA_EMULATION; None without a toolkit."""
    include, cxx = cuda_headers(), shutil.which(os.environ.get("CXX", "g++"))
    if include is None or cxx is None:
        print("No CUDA toolkit headers (cuda_fp16.h) or no C++ compiler here: the emulator cells skip.")
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
    print(f"g++ built {library.name} in {time.perf_counter() - started:.1f} s")
    return Emulator(library)


EMU = build_emulator(KERNELS, "depthwise_emulated")

# %% [markdown]
# ## 3.3 Rung 0, `naive`: one thread per output
#
# The definition, as on the CPU (notebook 2): every output $y[n, o, o_h, o_w]$ sums its
# $k_h k_w$ taps, reading global memory with a bounds check per tap for the padding. The work
# is spread by flattening the outputs into one index $e$, with $o_w$ fastest:
#
# $$e = ((n \cdot C_{\text{out}} + o) H_{\text{out}} + o_h) W_{\text{out}} + o_w,$$
#
# and thread $t$ of block $b$ starts at $e = b \cdot \text{blockDim} + t$.

# %%
naive_src = show("cuda/depthwise_kernels.cu", r"void depthwise_naive_forward_kernel\(")
# A grid-stride loop with 64-bit indices; a bounds check per tap.
assert "for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; " \
       "e += int64_t{gridDim.x} * blockDim.x)" in naive_src
assert re.search(r"if \(ih < 0 \|\| ih >= g.in_h .*continue;", naive_src)

# %% [markdown]
# **The grid-stride loop.** The launcher asks for
# $\min(\lceil \text{total} / 256 \rceil, 2^{20})$ blocks of 256 threads (`blocks_for` in
# `cuda_common.cuh`). When there are more outputs than threads, each thread steps by the whole
# grid, `e += gridDim.x * blockDim.x`, so any number of outputs fits in a one-dimensional grid.
# Consecutive threads of a warp take consecutive $e$, hence consecutive $o_w$ of one output row:
# for tap $(i, j)$ they read consecutive columns of one input row (at stride 1), a coalesced load.
#
# Here is the mapping in Python, checked by brute force: with a deliberately tiny grid every
# thread loops, and every output is still computed exactly once.

# %%
MAX_BLOCKS = constant("cuda/cuda_common.cuh", "kMaxBlocks")
assert MAX_BLOCKS == 2**20


def blocks_for(work: int, per_block: int) -> int:  # the twin of cuda_common.cuh
    return min(-(-work // per_block), MAX_BLOCKS)


def naive_outputs(block: int, thread: int, grid: int, threads: int, dims) -> list[tuple]:
    """The outputs (n, o, oh, ow) thread `thread` of block `block` computes."""
    n_, co, ho, wo = dims
    total, out = n_ * co * ho * wo, []
    e = block * threads + thread
    while e < total:
        out.append((e // (wo * ho * co), (e // (wo * ho)) % co, (e // wo) % ho, e % wo))
        e += grid * threads
    return out


dims = (2, 3, 5, 7)  # 210 outputs
for grid, threads in [(blocks_for(210, 256), 256), (3, 32)]:  # the real launch; a tiny grid: 2-3 loops each
    done = [o for b in range(grid) for t in range(threads) for o in naive_outputs(b, t, grid, threads, dims)]
    everything = [(n, o, h, w) for n in range(2) for o in range(3) for h in range(5) for w in range(7)]
    assert sorted(done) == everything
# A warp (32 consecutive threads) gets 32 consecutive output columns of one row, except where a row ends.
warp = [naive_outputs(0, t, 1, 256, (1, 1, 33, 33))[0] for t in range(32)]
assert [o[3] for o in warp] == list(range(32)) and {o[2] for o in warp} == {0}

# %% [markdown]
# **Why 64-bit indices.** A batch of 256 entry-flow feature maps of Xception at a 513x513 input
# (128 x 257 x 257 each) holds 2.16e9 elements: the last image starts past $2^{31} - 1$, and a
# 32-bit offset `n * (C*H*W)` wraps to a negative number. The kernel computes every index in
# `int64_t`, promoting *before* it multiplies (`blockIdx.x * int64_t{blockDim.x}`: the product
# of two 32-bit unsigned ints would wrap too).

# %%
per_image = 128 * 257 * 257
offset = 255 * per_image
print(f"image 255 starts at element {offset:,}; in int32 that is "
      f"{(torch.tensor(255, dtype=torch.int32) * per_image).item():,}")
assert offset > 2**31 - 1 and (torch.tensor(255, dtype=torch.int32) * per_image).item() < 0

# %% [markdown]
# **Run it.** The naive rung in the emulator, on a few planes of the ASPP rate-6 shape
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
# Its costs: each output loads its 9 taps from global memory (through the caches), so each input
# element is fetched 9 times by 9 different threads; the bounds comparisons run for every tap;
# each thread does one output, so the index arithmetic (divisions and remainders) is paid per
# output.
#
# ## 3.4 Rung 1, `tiled`: a block per output tile, the halo in shared memory
#
# The tiled kernel gives each block a rectangle of outputs, an **output tile** of $t_h \times
# t_w$ positions of one $(n, c)$ plane. The outputs of a tile read an input rectangle: along
# one axis, outputs $o_0 \ldots o_0 + t - 1$ with taps $0 \ldots k-1$ read
# $o s - p + j d$, from $o_0 s - p$ to $(o_0 + t - 1)s - p + (k-1)d$, so the **input tile
# extent** is
#
# $$t_{\text{in}} = (t - 1)s + k_{\text{eff}} = \underbrace{(t-1)s + 1}_{\text{the outputs' own footprint}}
#   + \underbrace{d(k-1)}_{\text{halo}}, \qquad k_{\text{eff}} = d(k-1) + 1.$$
#
# The block copies that rectangle into shared memory once, writing zeros where it falls in the
# padding, waits at a barrier, and then every tap of every output is a read at a constant
# offset $i\,d\,t_{\text{in},w} + j\,d$ from the output's corner: no bounds checks, and each
# input element comes from global memory once per tile instead of once per tap. The halo, the
# part beyond the outputs' own footprint, is $d(k-1)$: **sized by the dilation**.

# %%
tiled_src = show("cuda/depthwise_kernels.cu", r"^depthwise_tiled_kernel\(")
assert "for (int64_t block = blockIdx.x; block < p.batch * p.dst_channels * tiles; " \
       "block += gridDim.x)" in tiled_src
assert "input_tile_extent(th, kh, sh, dh)" in tiled_src and "input_tile_extent(tw, kw, sw, dw)" in tiled_src
assert tiled_src.count("__syncthreads();") == 2  # after staging; before the tile is overwritten

# %% [markdown]
# The mapping, read off the code:
# - block $b$ (block-stride loop) → plane $b / T$ = $(n, c)$ and tile $b \bmod T$ of the
#   $T$ = `rows.count x cols.count` tiles of that plane, the tile's rows and columns from
#   `tile_range`;
# - thread `tid` → outputs $q = \text{tid} + r \cdot \text{threads}$ for $r = 0 \ldots 7$, at
#   $(q / t_w, q \bmod t_w)$ in the tile: several outputs per thread, and consecutive threads on
#   consecutive columns;
# - while staging, thread `tid` loads tile elements $q = \text{tid}, \text{tid} + \text{threads},
#   \ldots$, again consecutive threads on consecutive columns.
#
# The Python twin below enumerates every (block, thread, $r$) of a launch and checks, by brute
# force, that every output is computed exactly once and that every tap it reads lies inside the
# staged tile: the extent formula is exactly what the outputs need, no more (the largest offset
# read is $t_{\text{in}} - 1$) and no less. The helpers `balanced_tiles`, `tile_range` and
# `input_tile_extent` are the C++ ones, called through `atrous._C._conv_index`.

# %%
def tiled_launch(out_h, out_w, k, s, d, tile_h, tile_w, threads, planes=2):
    """Checks one launch of the tiled kernel by brute force; returns (outputs, staged elements)."""
    rows, cols = ix("balanced_tiles", out_h, tile_h), ix("balanced_tiles", out_w, tile_w)
    tiles = rows[1] * cols[1]
    seen, staged = [], 0
    for block in range(planes * tiles):
        plane, t = divmod(block, tiles)
        r0, r1 = ix("tile_range", t // cols[1], rows[0], out_h)
        c0, c1 = ix("tile_range", t % cols[1], cols[0], out_w)
        th, tw = r1 - r0, c1 - c0
        in_h, in_w = ix("input_tile_extent", th, k, s, d), ix("input_tile_extent", tw, k, s, d)
        assert in_h == (th - 1) * s + d * (k - 1) + 1 and in_w == (tw - 1) * s + d * (k - 1) + 1
        staged += in_h * in_w
        reach_h = reach_w = 0
        for tid in range(threads):
            for r in range(8):  # kOutputsPerThread
                q = tid + r * threads
                if q >= th * tw:
                    continue
                orow, ocol = divmod(q, tw)
                seen.append((plane, r0 + orow, c0 + ocol))
                for i in range(k):  # tap (i, j) reads the tile at (orow*s + i*d, ocol*s + j*d)
                    for j in range(k):
                        assert orow * s + i * d < in_h and ocol * s + j * d < in_w
                        reach_h, reach_w = max(reach_h, orow * s + i * d), max(reach_w, ocol * s + j * d)
        assert (reach_h + 1, reach_w + 1) == (in_h, in_w)  # the staged tile is exactly what is read
    assert sorted(seen) == [(p, h, w) for p in range(planes) for h in range(out_h) for w in range(out_w)]
    return len(seen), staged


LAUNCHES = [  # out_h, out_w, k, s, d, max tile_h, max tile_w, threads
    (33, 33, 3, 1, 6, 32, 64, 160), (17, 29, 3, 2, 2, 8, 16, 64), (9, 9, 5, 1, 3, 4, 4, 64),
    (33, 33, 3, 1, 18, 16, 8, 64)]
for launch_args in LAUNCHES:
    tiled_launch(*launch_args)

# %% [markdown]
# For DeepLab's ASPP on a 33x33 map the kernel uses tiles of 17 x 33 outputs (two per plane; 3.5
# shows why). The extent by the formula, by the helper, and by brute force (the lowest and the
# highest input row that the tile's outputs read) agree, and the halo is $2d$:

# %%
def extent_brute_force(tile: int, k: int, s: int, d: int) -> int:
    reads = [o * s + j * d for o in range(tile) for j in range(k)]
    return max(reads) - min(reads) + 1


for d in (1, 6, 12, 18):
    rows_in, cols_in = ix("input_tile_extent", 17, 3, 1, d), ix("input_tile_extent", 33, 3, 1, d)
    assert (rows_in, cols_in) == ((17 - 1) + 2 * d + 1, (33 - 1) + 2 * d + 1)
    assert (rows_in, cols_in) == (extent_brute_force(17, 3, 1, d), extent_brute_force(33, 3, 1, d))
    assert ix("halo_extent", 3, d) == 2 * d == rows_in - 17
    print(f"d={d:2d}: a 17x33 output tile stages {rows_in}x{cols_in} = {rows_in * cols_in:5d} elements "
          f"({4 * rows_in * cols_in / 1024:4.1f} KB in float32) for {17 * 33} outputs")
staged = [ix("input_tile_extent", 17, 3, 1, d) * ix("input_tile_extent", 33, 3, 1, d) for d in (1, 6, 12, 18)]
assert staged == [19 * 35, 29 * 45, 41 * 57, 53 * 69]

# %% [markdown]
# The picture: the first tile of a 33x33 plane at rates 1, 6 and 12 ('same' padding, $p = d$).
# Blue: the tile's 17 x 33 outputs (drawn where their centre tap reads). Orange frame: the
# staged input tile, its halo $d$ wide on each side; hatched: the part of it in the padding,
# written as zeros, never read from memory. Dots: the 9 taps of two outputs of the tile, its
# first and its last. The dashed line is the second tile, whose halo overlaps the first's: those
# rows are staged twice.

# %%
def plot_tiles(rates=(1, 6, 12), size=33, tile=(17, 33)):
    reach = max(rates)
    fig, axes = plt.subplots(1, len(rates), figsize=(4.2 * len(rates), 4.4))
    for ax, d in zip(axes, rates):
        th, tw = tile
        in_h, in_w = ix("input_tile_extent", th, 3, 1, d), ix("input_tile_extent", tw, 3, 1, d)
        r0 = c0 = ix("input_index", 0, 0, 1, d, d)  # the tile's top-left input: -d
        ax.add_patch(Rectangle((0, 0), size, size, facecolor="0.9", edgecolor="0.4", label="input plane"))
        ax.add_patch(Rectangle((c0, r0), in_w, in_h, fill=False, hatch="///", edgecolor="tab:orange", lw=0,
                               alpha=0.5, label="padding: zeros"))
        ax.add_patch(Rectangle((0, 0), min(size, c0 + in_w), min(size, r0 + in_h), facecolor="0.9",
                               edgecolor="none"))  # un-hatch the part inside the plane
        ax.add_patch(Rectangle((0, 0), tw, th, facecolor="tab:blue", alpha=0.35, label="output tile"))
        ax.add_patch(Rectangle((c0, r0), in_w, in_h, fill=False, edgecolor="tab:orange", lw=2,
                               label=f"staged tile {in_h}x{in_w}"))
        ax.add_patch(Rectangle((0, th), size, size - th, fill=False, edgecolor="tab:blue", ls="--", lw=1))
        for (oh, ow), color in (((0, 0), "tab:red"), ((th - 1, tw - 1), "tab:green")):
            taps = [(oh - d + i * d, ow - d + j * d) for i in range(3) for j in range(3)]
            ax.plot([c + 0.5 for _, c in taps], [r + 0.5 for r, _ in taps], "o", color=color, ms=4)
        ax.set_xlim(-reach - 2, size + reach + 2)
        ax.set_ylim(size + reach + 2, -reach - 2)
        ax.set_aspect("equal")
        ax.set_title(f"d={d}: halo d(k-1) = {ix('halo_extent', 3, d)}, "
                     f"{in_h * in_w} staged for {th * tw} outputs", fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].legend(loc="lower left", fontsize=7)
    fig.suptitle("The first tile of a 33x33 plane: outputs, staged input tile and halo, taps", fontsize=10)
    fig.tight_layout()
    plt.close(fig)  # shown once: by the cell that returns it
    return fig


plot_tiles()

# %% [markdown]
# **Run it**, and ask the emulator what the launcher launched: one block per tile
# ($N \cdot C \cdot 2$ blocks), `(taps + in_h * in_w) * 4` bytes of shared memory (the 9
# weights, then the tile), and a thread count we will derive in 3.5.

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
# ## 3.5 The shared-memory budget, the tile plan and the fallback
#
# The staged tile must fit in shared memory, and a large dilation makes it large: at rate 18
# the 17 x 33 tile above needs 53 x 69 floats. The kernel's budget is 40 KB per block (under the
# 48 KB a block may use without opting in), less the weights. `plan_depthwise_tiles` picks the
# tile: it starts from the largest tile, at most 32 x 64 outputs, **balanced** (`balanced_tiles`:
# 33 rows become two tiles of 17, not 32 + 1), and halves it, rows first down to one row, then
# columns while wider than 8, until the input tile fits. If even that does not fit, the plan
# says so and the launcher runs the `naive` kernel instead.

# %%
_ = show("common/conv_index.h", r"plan_depthwise_tiles\(")
launch_src = show("cuda/depthwise_kernels.cu", r"^bool launch_tiled\(")
assert "if (!plan.fits) return false;" in launch_src

# %%
MAX_THREADS = constant("cuda/depthwise_kernels.cu", "kTiledMaxThreads")
PER_THREAD = constant("cuda/depthwise_kernels.cu", "kOutputsPerThread")
MAX_H, MAX_W, MIN_W = (constant("cuda/depthwise_kernels.cu", n)
                       for n in ("kMaxTileH", "kMaxTileW", "kMinTileW"))
SMEM_BYTES = constant("cuda/depthwise_kernels.cu", "kTileSmemBytes")
assert (MAX_THREADS, PER_THREAD, MAX_H, MAX_W, MIN_W, SMEM_BYTES) == (256, 8, 32, 64, 8, 40 * 1024)


def plan(out_h, out_w, k=3, s=1, d=1, acc_bytes=4):
    """What launch_tiled decides, via the same helper: tiles, input tile, shared bytes, threads."""
    taps = k * k
    budget = SMEM_BYTES // acc_bytes - taps  # elements left for the input tile
    rs, rc, cs, cc, in_h, in_w, fits = ix("plan_depthwise_tiles", out_h, out_w, k, k, s, s, d, d,
                                          MAX_H, MAX_W, MIN_W, budget)
    outputs = rs * cs
    threads = min(MAX_THREADS, max(64, (outputs // 4 + 31) // 32 * 32))  # "about 4 outputs per thread"
    return {"tile": (rs, cs), "tiles": rc * cc, "in": (in_h, in_w), "smem": (taps + in_h * in_w) * acc_bytes,
            "threads": threads, "per_thread": -(-outputs // threads), "fits": bool(fits)}


# DeepLabV3+ Xception-65 depthwise layers (513x513 input): (where, plane size, dilation)
DEEPLAB = [("middle flow, OS16", 33, 1), ("ASPP rate 6, OS16", 33, 6), ("ASPP rate 12, OS16", 33, 12),
           ("ASPP rate 18, OS16", 33, 18), ("middle flow, OS8", 65, 2), ("ASPP rate 12, OS8", 65, 12),
           ("ASPP rate 24, OS8", 65, 24), ("ASPP rate 36, OS8", 65, 36), ("decoder", 129, 1)]
print(f"{'layer':20s} {'size':>4s} {'d':>3s} {'dtype':7s} {'tile':>7s} {'tiles':>5s} {'input tile':>10s} "
      f"{'shared':>8s} {'threads':>7s} {'out/thr':>7s}  rung")
plans = {}
for where, size, d in DEEPLAB:
    for dtype, acc in (("float32", 4), ("float64", 8)):
        pl = plans[where, dtype] = plan(size, size, d=d, acc_bytes=acc)
        tile, in_tile = "{}x{}".format(*pl["tile"]), "{}x{}".format(*pl["in"])
        print(f"{where:20s} {size:4d} {d:3d} {dtype:7s} {tile:>7s} {pl['tiles']:5d} "
              f"{in_tile:>10s} {pl['smem'] / 1024:6.1f}KB {pl['threads']:7d} "
              f"{pl['per_thread']:7d}  {'tiled' if pl['fits'] else 'naive (fallback)'}")

# %% [markdown]
# What the table says, asserted:
# - At output stride 16 every layer is a 33x33 plane: two tiles of 17 x 33 per plane at any
#   rate up to 18; only the input tile grows, from 19 x 35 to 53 x 69 (14.3 KB).
# - The decoder's 129x129 plane is cut into 5 x 3 tiles of 26 x 43; 256 threads, 5 outputs each.
# - OS8's rate 36 in float32 needs 94 x 105 floats, 38.6 KB: just under the budget. In float64
#   (twice the bytes) no tile fits, even shrunk to one row, and the kernel runs `naive`.

# %%
for where, size, _ in DEEPLAB:
    if size == 33:
        assert plans[where, "float32"]["tile"] == (17, 33) and plans[where, "float32"]["tiles"] == 2
assert plans["ASPP rate 18, OS16", "float32"]["in"] == (53, 69)
decoder = {"tile": (26, 43), "tiles": 15, "in": (28, 45), "smem": 4 * (9 + 28 * 45), "threads": 256,
           "per_thread": 5, "fits": True}
assert plans["decoder", "float32"] == decoder
assert plans["ASPP rate 36, OS8", "float32"]["fits"]
assert plans["ASPP rate 36, OS8", "float32"]["in"] == (94, 105)
assert not plans["ASPP rate 36, OS8", "float64"]["fits"]
assert all(p["smem"] <= SMEM_BYTES for p in plans.values() if p["fits"])

# %% [markdown]
# **When does it fall back?** Once rows are down to one and columns to the minimum, the input
# tile is $(1 + 2d)(t_w - 1 + 1 + 2d)$ elements, so for a 3x3 kernel in float32 the fallback
# comes at a dilation near 50, whatever the plane size. By then a 'same' convolution on a 33x33
# map reads nothing but padding through its 8 outer taps: it has become a 1x1 convolution, and
# the naive kernel, whose bounds checks skip those taps, is the right tool. The search below
# finds, for each plane size, the first dilation at which the tiles shrink and the first at
# which the kernel falls back.

# %%
def first_dilation(size, acc_bytes, condition):
    return next(d for d in range(1, 500) if condition(plan(size, size, d=d, acc_bytes=acc_bytes), size))


thresholds = {}
for size in (33, 65, 129):
    for dtype, acc in (("float32", 4), ("float64", 8)):
        shrink = first_dilation(size, acc, lambda p, n: p["tile"][0] != ix("balanced_tiles", n, MAX_H)[0])
        fallback = first_dilation(size, acc, lambda p, n: not p["fits"])
        thresholds[size, dtype] = shrink, fallback
        print(f"{size:3d}x{size:<3d} {dtype}: tiles shrink from d={shrink}, naive from d={fallback}")
# 33x33, float32: columns end at 5 (33 -> 17 -> 9 -> 5), so it fits while (2d+1)(2d+5) <= 10240 - 9.
budget32 = SMEM_BYTES // 4 - 9
assert (2 * 49 + 1) * (2 * 49 + 5) <= budget32 < (2 * 50 + 1) * (2 * 50 + 5)
assert thresholds[33, "float32"] == (39, 50) and thresholds[65, "float64"][1] == 35

# %% [markdown]
# The same story as a picture: the shared memory a block uses as the dilation grows, for the
# three plane sizes, against the 40 KB budget. Each drop is the plan halving its tile; the line
# ends where the kernel falls back to `naive`.

# %%
def plot_budget(sizes=(33, 65, 129), max_d=60):
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for size, color in zip(sizes, ("tab:blue", "tab:orange", "tab:green")):
        ds = list(range(1, max_d + 1))
        ps = [plan(size, size, d=d) for d in ds]
        ax.plot(ds, [p["smem"] / 1024 if p["fits"] else float("nan") for p in ps], color=color,
                label=f"{size}x{size}")
        ax2.plot(ds, [p["tile"][0] * p["tile"][1] if p["fits"] else float("nan") for p in ps], color=color,
                 label=f"{size}x{size}")
        fallback = next((d for d, p in zip(ds, ps) if not p["fits"]), None)
        if fallback:
            ax.axvline(fallback, color=color, ls=":", lw=1)
    ax.axhline(SMEM_BYTES / 1024, color="k", lw=1, ls="--")
    ax.text(1, SMEM_BYTES / 1024 + 0.5, "budget: 40 KB per block", fontsize=8)
    ax.set_xlabel("dilation d (3x3 kernel, float32, 'same' padding)")
    ax.set_ylabel("shared memory per block, KB")
    ax.set_title("Staged tile + weights; dotted: falls back to naive", fontsize=9)
    ax2.set_yscale("log")
    ax2.set_xlabel("dilation d")
    ax2.set_ylabel("outputs per tile (log)")
    ax2.set_title("The tile the plan picks", fontsize=9)
    for a in (ax, ax2):
        a.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


plot_budget()

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
# ## 3.6 Two barriers, and what the emulator does without one
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
# ## 3.7 Reading global memory, and the work per thread
#
# **Coalescing.** While staging, consecutive threads load consecutive tile elements, that is
# consecutive columns of one input row. In NCHW a row is contiguous, so a warp's 32 loads of 4
# bytes hit 128 contiguous bytes: 4 sectors of 32 bytes when aligned, one or two more when the
# warp straddles the end of a row or a sector boundary. In channels_last, neighbouring columns
# of one channel are $C$ elements apart: each of the 32 loads needs its own sector, 1024 bytes
# moved for 128 used. (The kernel is correct on every layout, since it reads through strides;
# only NCHW is coalesced, as the file's header says.)
#
# Below, the staging loads of the first tile of a 33x33 plane are enumerated warp by warp, the
# 32-byte sectors they touch counted and averaged over 32 consecutive channels (whose planes
# start at different alignments: $33 \cdot 33 \cdot 4 = 4356$ bytes is not a multiple of 128).
# Elements in the padding are written as zeros and cost no load.

# %%
SECTOR, WARP = 32, 32


def staging_traffic(size, d, layout, channel, channels=2048, elem=4):
    """(useful bytes, bytes moved in sectors, warp loads) of the staging loop of tile 0."""
    pl = plan(size, size, d=d)
    (th, tw), threads = pl["tile"], pl["threads"]
    in_h, in_w = ix("input_tile_extent", th, 3, 1, d), ix("input_tile_extent", tw, 3, 1, d)
    ih0 = iw0 = ix("input_index", 0, 0, 1, d, d)
    useful = sectors = warps = 0
    for start in range(0, in_h * in_w, threads):  # one pass of the loop q = tid; q += threads
        for w0 in range(start, min(start + threads, in_h * in_w), WARP):
            hit = set()
            for q in range(w0, min(w0 + WARP, start + threads, in_h * in_w)):
                ih, iw = ih0 + q // in_w, iw0 + q % in_w
                if 0 <= ih < size and 0 <= iw < size:
                    if layout == "NCHW":
                        address = ((channel * size + ih) * size + iw) * elem
                    else:  # channels_last: element (ih, iw, c)
                        address = ((ih * size + iw) * channels + channel) * elem
                    hit.add(address // SECTOR)
                    useful += elem
            sectors += len(hit)
            warps += bool(hit)
    return useful, sectors * SECTOR, warps


coalescing = {}
for d in (1, 6, 18):
    for layout in ("NCHW", "channels_last"):
        runs = [staging_traffic(33, d, layout, c) for c in range(32)]
        useful, moved, warps = (sum(r[i] for r in runs) for i in range(3))
        coalescing[d, layout] = useful / moved
        print(f"d={d:2d} {layout:13s}: {moved / warps:6.1f} bytes moved per warp load for "
              f"{useful / warps:5.1f} used: {useful / moved:4.0%} of the traffic is useful")
assert all(coalescing[d, "channels_last"] == 4 / SECTOR for d in (1, 6, 18))  # 1 useful float per sector
assert all(coalescing[d, "NCHW"] > 0.65 for d in (1, 6, 18))

# %% [markdown]
# **How often is each input element read from global memory?** The naive kernel loads every
# valid tap: about 9 loads per output at rate 1, fewer at large rates where taps fall in the
# padding. The tiled kernel loads the part of each staged tile inside the image, once; the rows
# of the halo shared by two tiles are loaded by both. Per output, over a whole plane ('same'
# padding, 3x3):

# %%
def loads_per_output(size, d, k=3):
    pl, p = plan(size, size, k=k, d=d), d * (k - 1) // 2
    (rs, cs), loads = pl["tile"], 0
    rows, cols = ix("balanced_tiles", size, rs), ix("balanced_tiles", size, cs)
    for tr in range(rows[1]):
        r0, r1 = ix("tile_range", tr, rs, size)
        for tc in range(cols[1]):
            c0, c1 = ix("tile_range", tc, cs, size)
            h0, w0 = ix("input_index", r0, 0, 1, p, d), ix("input_index", c0, 0, 1, p, d)
            in_h, in_w = ix("input_tile_extent", r1 - r0, k, 1, d), ix("input_tile_extent", c1 - c0, k, 1, d)
            inside_h = len(range(max(0, h0), min(size, h0 + in_h)))
            inside_w = len(range(max(0, w0), min(size, w0 + in_w)))
            loads += inside_h * inside_w
    intervals = [ix("tap_output_range", size, size, 1, p, d, t) for t in range(k)]
    valid = sum(end - begin for begin, end in intervals)
    return valid**2 / size**2, loads / size**2  # naive: valid taps per output; tiled: staged loads per output


reads = {}
for where, size, d in DEEPLAB:
    reads[size, d] = loads_per_output(size, d)
    print(f"{where:20s}: naive {reads[size, d][0]:4.1f} loads per output, tiled {reads[size, d][1]:4.2f}")
assert reads[33, 1][1] < 1.1 and reads[129, 1][1] < 1.1  # rate 1: each input loaded about once
assert reads[33, 18][1] == 2.0  # both tiles of the plane stage all 33 rows
assert reads[65, 36][1] > reads[65, 36][0]  # OS8 rate 36: the halos outweigh the tiles

# %% [markdown]
# At rate 1 the tiled kernel loads each input about once (the naive one 9 times, mostly from
# cache). The saving shrinks as the halo grows: at OS8's rate 36 the 22 x 33 tiles stage 94 x 105
# elements, neighbouring tiles stage each other's rows again and again, and the tiled kernel
# issues *more* global loads than the naive one (many of them hit in the 50 MB L2, so the cost
# is smaller than the count). Taller tiles, or a block that slides down the plane keeping the
# rows it has already staged, would be the next rung of this ladder.
#
# **Work per thread.** `launch_tiled` picks about 4 outputs per thread, in whole warps, between
# 64 and 256 threads:
#
# $$\text{threads} = \min\Big(256,\ \max\big(64,\ 32 \big\lceil \lfloor \text{outputs}/4 \rfloor / 32
#   \big\rceil\big)\Big).$$
#
# A 17 x 33 tile (561 outputs) gets 160 threads, 3 or 4 outputs each; a full 32 x 64 tile 256
# threads, 8 each, the limit (`kOutputsPerThread`). Every thread keeps its sums in registers
# (`Acc acc[8]`), and for 3x3 and 5x5 kernels the loop over taps is unrolled at compile time
# with the 9 or 25 weights in registers too. Consecutive threads own consecutive outputs, so
# the final stores of a warp are coalesced like the loads.

# %%
assert plan(33, 33, d=6)["threads"] == 160 and plan(33, 33, d=6)["per_thread"] == 4
assert plan(256, 256)["tile"] == (32, 64)
assert plan(256, 256)["threads"] == 256 and plan(256, 256)["per_thread"] == 8
assert re.search(r"if \(p.kernel_h == 3 && p.kernel_w == 3\) \{\s*launch\(depthwise_tiled_kernel<T, 3, 3>",
                 KERNELS.read_text())

# %% [markdown]
# ## 3.8 The weight gradient, deterministic
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
# ## 3.9 The ladder, run
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
# ## 3.10 GPU results recorded in the repository
#
# **Convention.** On a machine with a GPU, run
#
# ```bash
# scripts/gpu_check.sh tutorials/assets/03_gpu_results
# ```
#
# and commit what it writes there that is small and useful: `summary.txt`, `info.txt`,
# `bench/bench.json` (the quick CUDA benchmark) and `ladder/*.json` (the depthwise ladder at
# batch 8), with their `.png` charts. This cell reads whatever of that it finds: the benchmark
# reports (schema `atrous-bench/1`) of a CUDA device, printed with the benchmark's own
# formatter. Files from a CPU run are ignored. When nothing has been recorded, it says so.

# %%
RESULTS = ROOT / "tutorials" / "assets" / "03_gpu_results"


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
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


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
# ## 3.11 What an H200 should do: roofline estimates
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
assert math.isclose(18 / 8, 2.25)  # flops per byte
assert all(mem > 5 * arith for mem, arith in estimates.values())  # memory-bound
assert [round(estimates[k][0], 1) for k in ("middle flow", "decoder")] == [10.6, 67.5]
assert 29.7 <= estimates["ASPP, per rate"][0] < 29.8
for r in gpu_rows:  # only with a GPU here: what the measured times reach of that estimate
    roof = {"middle flow": "middle flow", "decoder": "decoder"}.get(r["layer"], "ASPP, per rate")
    reached = estimates[roof][0] / (1e3 * r["ms"])
    print(f"{r['layer']:14s} {r['rung']:8s}: {reached:4.0%} of the H200 roofline")

# %% [markdown]
# ## Summary
# - **Mapping.** `naive`: one thread per output, a flat 64-bit index $e$ with $o_w$ fastest, a
#   grid of at most $2^{20}$ blocks of 256 threads and a grid-stride loop for the rest; each tap
#   a global load with a bounds check. `tiled`: one block per output tile of one plane (a
#   block-stride loop over planes x tiles), about 4 outputs per thread, consecutive threads on
#   consecutive columns.
# - **The halo.** A tile of $t$ outputs reads $(t-1)s + k_{\text{eff}}$ inputs per axis, a halo of
#   $d(k-1)$ beyond its own footprint. The block stages it once in shared memory, zeros in the
#   padding, then every tap is a constant offset: no bounds checks. The helpers that compute it
#   (`conv_index.h`) are the kernel's own, checked here against the formula and brute force.
# - **The budget.** 40 KB per block. DeepLab's 33x33 layers use two 17 x 33 tiles per plane at
#   every rate up to 18 (input tiles 19 x 35 to 53 x 69), the decoder 26 x 43 tiles. Tiles
#   shrink, rows first, from $d \approx 34$-$39$ in float32 ($19$-$24$ in float64), and the
#   kernel falls back to `naive` near $d = 50$ (float32) or $35$ (float64), where a 'same' 3x3
#   conv on these maps reads mostly padding anyway. Only OS8's rate 36 in float64 gets there.
# - **Memory.** Staging is coalesced in NCHW (about 70-85% of the bytes moved are used), not in
#   channels_last (1 float per 32-byte sector). Each input is loaded about once per tile at rate 1;
#   at large rates the halos overlap and the saving disappears.
# - **Determinism.** No float atomics: fixed chunks, a fixed shared-memory tree and an in-order
#   second pass, reproduced here bit for bit in Python.
# - **Running it.** The same CUDA source, compiled by g++ against `emulation.h`, runs its blocks
#   as coroutines on the CPU, equals `F.conv2d`, and catches a missing `__syncthreads()`. On a
#   GPU, 3.9 times the ladder live; `tutorials/assets/03_gpu_results/` holds recorded runs
#   (`scripts/gpu_check.sh`), if any. The H200 roofline estimates: about 10.6 us (middle flow),
#   29.8 us (ASPP, per rate), 67.5 us (decoder) at batch 8.
#
# ## Exercises
# 1. By hand: the tile plan of the strided entry-flow layer, a 3x3 depthwise with stride 2 and
#    padding 1 on a 257x257 map (129x129 outputs), in float32: the tile, the input tile extent
#    and the shared memory. Check with `plan` and `ix("input_tile_extent", ...)`.
# 2. At which dilation does a 5x5 depthwise kernel on a 65x65 map fall back to `naive` in
#    float32? Derive it from the last tile the plan tries, then check with `plan`.
# 3. Shared memory is split into 32 banks of 4 bytes; the 32 threads of a warp reading 32
#    different words of one bank take 32 turns. For the compute loop of the 17 x 33 tile at
#    $d = 6$, count for each warp and tap the largest number of distinct words a bank serves
#    (the conflict degree). Then do it for stride 2, same tile (its input tile is 77 wide).
#    What changes, and why?
# 4. Delete the *second* `__syncthreads()` of the tiled kernel instead of the first, and find a
#    call that the emulator shows to be wrong. (Hint: when does a block stage more than one
#    source channel into the same shared memory?)
#
# Solutions: `tutorials/solutions/03_the_cuda_kernel.py`.
