"""The stand-in half-type headers of tutorials/cuda_standin: the emulator compiles without the CUDA toolkit.

Notebook 5 (the emulator lab) compiles the CUDA kernels with g++ for the CPU. They need two headers
of the toolkit, cuda_fp16.h and cuda_bf16.h; the stand-ins replace them on a machine without CUDA.
Their conversions are checked bit for bit against PyTorch's float16 and bfloat16 (round to nearest
even, subnormals, overflow, NaN), and the kernel files compile against them with no toolkit on the
include path. The notebook itself runs on the stand-ins in the suite (ATROUS_CUDA_STANDIN=1).
"""

import shutil
import subprocess

import pytest
import torch

from helpers.paths import ROOT

STANDIN = ROOT / "tutorials" / "cuda_standin"
CXX = shutil.which("g++")
pytestmark = pytest.mark.skipif(CXX is None, reason="needs g++ to compile the stand-in headers")

PROGRAM = r"""
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdio>
#include <cstring>
int main() {
  unsigned x;
  while (std::scanf("%x", &x) == 1) {
    float f;
    std::memcpy(&f, &x, 4);
    const __half h = __float2half_rn(f);
    const __nv_bfloat16 b = __float2bfloat16_rn(f);
    float hf = __half2float(h), bf = __bfloat162float(b);
    unsigned hx, bx;
    std::memcpy(&hx, &hf, 4);
    std::memcpy(&bx, &bf, 4);
    std::printf("%04x %08x %04x %08x\n", h.bits, hx, b.bits, bx);
  }
}
"""


def _values() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    special = [0.0, -0.0, 1.0, -2.5, 65504.0, 65519.0, 65520.0, 1e6, -1e6, 6.1e-5, 6.0e-8, 2.98e-8, 3.0e-8,
               1e-10, float("inf"), float("-inf"), 1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-8, 1 + 3 * 2**-8,
               3.4e38, 1e-39]
    ties = torch.tensor([1 + k * 2**-11 for k in range(1, 64, 2)] + [2**-24 * k / 2 for k in range(1, 64)])
    random = torch.randn(2000, generator=gen) * torch.exp2(torch.randint(-30, 20, (2000,), generator=gen))
    return torch.cat([torch.tensor(special), ties, random]).float()


def _bits(t: torch.Tensor) -> list[int]:
    return [v & 0xFFFFFFFF for v in t.view(torch.int32).tolist()]


def test_conversions_match_pytorch_bit_for_bit(tmp_path):
    source, binary = tmp_path / "convert.cpp", tmp_path / "convert"
    source.write_text(PROGRAM)
    subprocess.run([CXX, "-std=c++17", "-O1", f"-I{STANDIN}", str(source), "-o", str(binary)], check=True)
    values = _values()
    run = subprocess.run([str(binary)], input="\n".join(f"{b:08x}" for b in _bits(values)),
                         capture_output=True, text=True, check=True)
    rows = [line.split() for line in run.stdout.splitlines()]
    assert len(rows) == len(values)
    half, bf16 = values.half(), values.bfloat16()
    assert [int(r[0], 16) for r in rows] == [v & 0xFFFF for v in half.view(torch.int16).tolist()]
    assert [int(r[1], 16) for r in rows] == _bits(half.float())
    assert [int(r[2], 16) for r in rows] == [v & 0xFFFF for v in bf16.view(torch.int16).tolist()]
    assert [int(r[3], 16) for r in rows] == _bits(bf16.float())


def test_nan_stays_nan(tmp_path):
    source, binary = tmp_path / "convert.cpp", tmp_path / "convert"
    source.write_text(PROGRAM)
    subprocess.run([CXX, "-std=c++17", f"-I{STANDIN}", str(source), "-o", str(binary)], check=True)
    run = subprocess.run([str(binary)], input="7fc00000\nffa00001\n", capture_output=True, text=True,
                         check=True)
    for line in run.stdout.splitlines():
        h, hf, b, bf = (int(v, 16) for v in line.split())
        assert h & 0x7C00 == 0x7C00 and h & 0x3FF and b & 0x7F80 == 0x7F80 and b & 0x7F
        assert hf & 0x7F800000 == 0x7F800000 and hf & 0x7FFFFF and bf & 0x7FFFFF


def test_the_depthwise_kernels_compile_without_the_toolkit(tmp_path):
    source = tmp_path / "kernels.cpp"
    source.write_text('#include "cuda/depthwise_kernels.cu"\n#include "cuda/reduce_kernels.cu"\n')
    csrc = ROOT / "csrc"
    # Only the stand-ins on the include path: a missing declaration fails here, not in the notebook.
    subprocess.run([CXX, "-std=c++20", "-fsyntax-only", "-DATROUS_CUDA_EMULATION", f"-I{csrc}",
                    f"-I{csrc / 'cuda'}", f"-I{STANDIN}", "-Wno-unknown-pragmas", "-Wno-attributes",
                    str(source)], check=True)
