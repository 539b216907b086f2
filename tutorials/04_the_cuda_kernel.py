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
# # 4. The CUDA kernel: threads, blocks and the tiled halo
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
# - how the tiled kernel reads global memory (bytes per warp load, NCHW against channels_last)
#   and how much work each thread does.
#
# Every claim below is checked by an `assert`. Nothing here needs a GPU, the CUDA toolkit or a
# compiler: the index arithmetic is the kernel's own, called through `atrous._C`. Notebook 5 (the
# emulator lab) compiles these very kernels with g++ and runs them on the CPU, and times them on
# a GPU when there is one.

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
import re

import matplotlib.pyplot as plt  # a Figure that is a cell's value displays as a picture
import torch
from matplotlib.patches import Rectangle

import atrous
from atrous import _extension

from csrc_source import show  # prints a function of csrc/ (tutorials/csrc_source.py)

torch.manual_seed(0)
CSRC = atrous.sources()  # the kernel sources: csrc/ of a checkout, or the copy an installed package ships
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
# ## 4.1 CUDA in one page
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
#   48 KiB by default). They fill it cooperatively, wait at a barrier, `__syncthreads()`, and then
#   read each other's data at a fraction of global memory's cost.
# - **Blocks are independent.** Blocks cannot wait for each other within a launch, so anything
#   that sums across blocks (a weight gradient) needs either atomics or a second pass.
#
# atrous launches every kernel through one helper, `launch` in `csrc/cuda/cuda_common.cuh`:

# %%
_ = show("cuda/cuda_common.cuh", r"^void launch\(")  # in the emulator build: the CPU emulator (notebook 5)

# %% [markdown]
# ## 4.2 Rung 0, `naive`: one thread per output
#
# The definition, as on the CPU (notebook 3): every output $y[n, o, o_h, o_w]$ sums its
# $k_h k_w$ taps, reading global memory with a bounds check per tap for the padding. The work
# is spread by flattening the outputs into one index $e$, with $o_w$ fastest:
#
# $$e = ((n \cdot C_{\text{out}} + o) H_{\text{out}} + o_h) W_{\text{out}} + o_w,$$
#
# and thread $t$ of block $b$ starts at $e = b \cdot \text{blockDim} + t$.

# %%
_ = show("cuda/depthwise_kernels.cu", r"void depthwise_naive_forward_kernel\(")  # grid-stride, 64-bit

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
# Its costs: each output loads its 9 taps from global memory (through the caches), so each input
# element is fetched 9 times by 9 different threads; the bounds comparisons run for every tap;
# each thread does one output, so the index arithmetic (divisions and remainders) is paid per
# output.
#
# ## 4.3 Rung 1, `tiled`: a block per output tile, the halo in shared memory
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
_ = show("cuda/depthwise_kernels.cu", r"^depthwise_tiled_kernel\(")  # barriers: after staging, before reuse

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
# For DeepLab's ASPP on a 33x33 map the kernel uses tiles of 17 x 33 outputs (two per plane; 4.4
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
          f"({4 * rows_in * cols_in / 1024:4.1f} KiB in float32) for {17 * 33} outputs")
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
# ## 4.4 The shared-memory budget, the tile plan and the fallback
#
# The staged tile must fit in shared memory, and a large dilation makes it large: at rate 18
# the 17 x 33 tile above needs 53 x 69 floats. The kernel's budget is 40 KiB per block (under the
# 48 KiB a block may use without opting in), less the weights. `plan_depthwise_tiles` picks the
# tile: it starts from the largest tile, at most 32 x 64 outputs, **balanced** (`balanced_tiles`:
# 33 rows become two tiles of 17, not 32 + 1), and halves it, rows first down to one row, then
# columns while wider than 8, until the input tile fits. If even that does not fit, the plan
# says so and the launcher runs the `naive` kernel instead.

# %%
_ = show("common/conv_index.h", r"plan_depthwise_tiles\(")
_ = show("cuda/depthwise_kernels.cu", r"^bool launch_tiled\(")  # returns false (-> naive) when nothing fits

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
              f"{in_tile:>10s} {pl['smem'] / 1024:6.1f}KiB {pl['threads']:7d} "
              f"{pl['per_thread']:7d}  {'tiled' if pl['fits'] else 'naive (fallback)'}")

# %% [markdown]
# What the table says, asserted:
# - At output stride 16 every layer is a 33x33 plane: two tiles of 17 x 33 per plane at any
#   rate up to 18; only the input tile grows, from 19 x 35 to 53 x 69 (14.3 KiB).
# - The decoder's 129x129 plane is cut into 5 x 3 tiles of 26 x 43; 256 threads, 5 outputs each.
# - OS8's rate 36 in float32 needs 94 x 105 floats, 38.6 KiB: just under the budget. In float64
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
# three plane sizes, against the 40 KiB budget. Each drop is the plan halving its tile; the line
# ends where the kernel falls back to `naive`.

# %%
def plot_budget(sizes=(33, 65, 129), max_d=60):
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for size, color in zip(sizes, ("tab:blue", "tab:orange", "tab:green")):
        ds = list(range(1, max_d + 1))
        ps = [plan(size, size, d=d) for d in ds]
        # the plan changes in steps (it halves the tile), so draw steps, not slopes
        ax.plot(ds, [p["smem"] / 1024 if p["fits"] else float("nan") for p in ps], color=color,
                label=f"{size}x{size}", drawstyle="steps-post")
        ax2.plot(ds, [p["tile"][0] * p["tile"][1] if p["fits"] else float("nan") for p in ps], color=color,
                 label=f"{size}x{size}", drawstyle="steps-post")
        fallback = next((d for d, p in zip(ds, ps) if not p["fits"]), None)
        if fallback:
            ax.axvline(fallback, color=color, ls=":", lw=1)
    ax.axhline(SMEM_BYTES / 1024, color="k", lw=1, ls="--")
    ax.text(1, SMEM_BYTES / 1024 + 0.5, "budget: 40 KiB per block", fontsize=8)
    ax.set_xlabel("dilation d (3x3 kernel, float32, 'same' padding)")
    ax.set_ylabel("shared memory per block, KiB")
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
# The fallback happens in practice only far beyond any DeepLab layer: at $d = 60$ on a 33x33
# map no tile fits, and the tiled rung's launcher runs the naive kernel instead (notebook 5 runs
# it in the emulator and reads back the launch).

# %%
assert not plan(33, 33, d=60)["fits"]
assert plan(33, 33, d=49)["fits"]

# %% [markdown]
# ## 4.5 Reading global memory, and the work per thread
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
# - **The budget.** 40 KiB per block. DeepLab's 33x33 layers use two 17 x 33 tiles per plane at
#   every rate up to 18 (input tiles 19 x 35 to 53 x 69), the decoder 26 x 43 tiles. Tiles
#   shrink, rows first, from $d \approx 34$-$39$ in float32 ($19$-$24$ in float64), and the
#   kernel falls back to `naive` near $d = 50$ (float32) or $35$ (float64), where a 'same' 3x3
#   conv on these maps reads mostly padding anyway. Only OS8's rate 36 in float64 gets there.
# - **Memory.** Staging is coalesced in NCHW (about 70-85% of the bytes moved are used), not in
#   channels_last (1 float per 32-byte sector). Each input is loaded about once per tile at rate 1;
#   at large rates the halos overlap and the saving disappears.
#
# Notebook 5 runs these kernels: compiled by g++ for the CPU, and on a GPU when there is one.
#
# ## Exercises
# 1. **Predict, then run.** By hand: the tile plan of the strided entry-flow layer, a 3x3
#    depthwise with stride 2 and padding 1 on a 257x257 map (129x129 outputs), in float32: the
#    tile, the input tile extent and the shared memory. Then check with `plan` and
#    `ix("input_tile_extent", ...)`.
# 2. At which dilation does a 5x5 depthwise kernel on a 65x65 map fall back to `naive` in
#    float32? Derive it from the last tile the plan tries, then check with `plan`.
# 3. **Design.** Shared memory is split into 32 banks of 4 bytes; the 32 threads of a warp
#    reading 32 different words of one bank take 32 turns. For the compute loop of the 17 x 33
#    tile at $d = 6$, count for each warp and tap the largest number of distinct words a bank
#    serves (the conflict degree). Then do it for stride 2, same tile (its input tile is 77
#    wide). What changes, and how would you lay out the tile to avoid the conflicts?
#
# Solutions: `tutorials/solutions/04_the_cuda_kernel.py`.
