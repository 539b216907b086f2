"""Solutions to the exercises of tutorial 5 (the emulator lab); run it to check them.

Both compile the depthwise CUDA kernels with g++ for the CPU emulator (csrc/cuda/emulation.h), about
2 s a build; without g++ they say so and skip. No CUDA toolkit is needed: without one, the half-type
headers come from tutorials/cuda_standin.
"""

import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

import atrous
from atrous import _build_env

ROOT = Path(atrous.__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
STANDIN = ROOT / "tutorials" / "cuda_standin"


# 1. The second barrier. It guards the loop over source channels: only the transposed kernel
#    (backward input at stride 1) stages more than one source channel per tile, when the depth
#    multiplier m > 1 (destination channel c sums the m output channels c*m + k). Without the
#    barrier, thread 0 finishes its sums for k = 0 and goes on to stage channel k = 1 (weights and
#    tile) while the other threads have not yet read channel 0: their sums mix the two channels.
#    With m = 1 every block stages one channel and the missing barrier goes unnoticed.
GLUE = r"""
#include "@KERNELS@"
#include "cuda/reduce_kernels.cu"
namespace ac = atrous::cuda;
extern "C" __attribute__((visibility("default")))
void backward_input(const float* gy, const int64_t* gs, const float* w, float* gx, const int64_t* xs,
                    const int64_t* g) {
  const atrous::ConvGeometry geo{g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7],
                                 g[8], g[9], g[10], g[11], g[12], g[13], g[14]};
  ac::depthwise_backward_input(ac::DepthwiseRung::Tiled, ac::DType::Float, gy, {gs[0], gs[1], gs[2], gs[3]},
                               w, gx, {xs[0], xs[1], xs[2], xs[3]}, geo, nullptr);
}
"""


def build(kernel_file, build_dir):
    """The glue around kernel_file, compiled for the emulator; None without g++. The half-type headers
    come from the CUDA toolkit when there is one, otherwise from the stand-ins (as in the notebook)."""
    toolkit = None if os.environ.get("ATROUS_CUDA_STANDIN") == "1" else _build_env.find_cuda_toolkit()
    include = Path(toolkit.home) / "include" if toolkit else None
    if include is None or not (include / "cuda_fp16.h").exists():
        include = STANDIN
    cxx = shutil.which("g++")
    if cxx is None:
        return None
    source, library = build_dir / (kernel_file.stem + "_glue.cpp"), build_dir / (kernel_file.stem + ".so")
    source.write_text(GLUE.replace("@KERNELS@", str(kernel_file)))
    flags = ["-O1", "-std=c++20", "-fPIC", "-shared", "-fvisibility=hidden", "-DATROUS_CUDA_EMULATION",
             f"-I{CSRC}", f"-I{CSRC / 'cuda'}", f"-I{include}", "-Wno-unknown-pragmas", "-Wno-attributes"]
    subprocess.run([cxx, *flags, str(source), "-o", str(library)], check=True, capture_output=True)
    return ctypes.CDLL(str(library))


def backward_input(lib, gy, w, input_shape, p, d):
    n, c, h, wd = input_shape
    co, _, k, _ = w.shape
    g = [n, c, co, h, wd, gy.shape[2], gy.shape[3], k, k, 1, 1, p, p, d, d]
    gx = torch.full(input_shape, float("nan"))
    i64 = lambda v: (ctypes.c_int64 * len(v))(*v)  # noqa: E731
    lib.backward_input(ctypes.c_void_p(gy.data_ptr()), i64(gy.stride()), ctypes.c_void_p(w.data_ptr()),
                       ctypes.c_void_p(gx.data_ptr()), i64(gx.stride()), i64(g))
    return gx


build_dir = Path(tempfile.mkdtemp(prefix="atrous-tutorial05-solutions-"))
kernels = CSRC / "cuda" / "depthwise_kernels.cu"
text = kernels.read_text()
second = text.index("__syncthreads();  // the next source channel")
broken = build_dir / "depthwise_kernels_no_second_barrier.cu"
broken.write_text(text[:second] + "/* removed */" + text[second + len("__syncthreads();"):])
good_lib, broken_lib = build(kernels, build_dir), build(broken, build_dir)
if good_lib is None:
    print("exercise 1 skipped: no g++ to build the emulator")
else:
    gen = torch.Generator().manual_seed(0)
    for m, should_break in ((1, False), (2, True)):
        x = torch.randn(1, 3, 33, 33, dtype=torch.float64, requires_grad=True)
        w = torch.randn(3 * m, 1, 3, 3, dtype=torch.float64, generator=gen)
        y = F.conv2d(x, w, None, 1, 6, 6, groups=3)
        gy = torch.randn(y.shape, dtype=torch.float64, generator=gen)
        exact = torch.autograd.grad(y, x, gy)[0].float()
        good = backward_input(good_lib, gy.float(), w.float(), x.shape, 6, 6)
        bad = backward_input(broken_lib, gy.float(), w.float(), x.shape, 6, 6)
        torch.testing.assert_close(good, exact, rtol=1e-4, atol=1e-4)
        wrong = (~torch.isclose(bad, exact, rtol=1e-4, atol=1e-4)).float().mean().item()
        print(f"depth multiplier {m}: without the second barrier {wrong:.0%} of the input gradient is wrong")
        assert (wrong > 0.1) == should_break


# 2. Predict, then run: the weight gradient of batch 4 on a 65x65 map has 4 * 65 * 65 = 16900 terms per
#    weight. reduction_chunks: 16900 // 4096 = 4 chunks (at least 4096 terms each, at most 256), of
#    ceil(16900 / 4) = 4225 terms; ceil(16900 / 4225) = 4 chunks. The notebook's EMU.reduction_chunks
#    (the C++ function, run in the emulator) returns the same.
def reduction_chunks(total):  # the notebook's twin of cuda_common.cuh
    chunks = max(1, min(256, total // 4096))
    length = -(-total // chunks)
    return -(-total // length), length


assert reduction_chunks(4 * 65 * 65) == (4, 4225)

# 3. Design: the emulator runs the threads of a block one after another, each as far as it can go,
#    and the blocks of a launch one after another. It catches a missing __syncthreads() (5.3) because
#    that order is the harshest one for a barrier. It cannot catch what needs two blocks at once (a
#    block that waits for another block's global writes deadlocks on a GPU but simply works here, the
#    earlier block having finished) nor warp-synchronous code that assumes 32 threads in lockstep.
#    A second schedule would widen the net: run the threads in reverse order, or interleave them
#    at every shared-memory access, and compare the two results; a difference is a race.
print("all solutions check out")
