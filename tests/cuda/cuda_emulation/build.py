"""Builds the CPU emulation of the CUDA operators: csrc/cuda compiled by g++ against emulation.h.

The host files (csrc/cuda/<op>.cpp, one per operator) and kernel files (csrc/cuda/*_kernels.cu, compiled
as C++) are built with -DATROUS_CUDA_EMULATION into a library that registers the operators again, under
torch.ops.atrous_emu with CPU kernels: the real CUDA code, line for line, on CPU tensors. Each
CUDA block runs as real threads (csrc/cuda/emulation.h), so __syncthreads and shared memory
behave as on a GPU. It needs the CUDA toolkit's headers (cuda_fp16.h, cuda_bf16.h), not a GPU.
"""

from __future__ import annotations

import glob
import os
import sys

from helpers import paths

ROOT = str(paths.ROOT)
NAME = "atrous_cuda_emulation"


def toolkit_include() -> str | None:
    sys.path.insert(0, ROOT)
    from atrous import _build_env

    toolkit = _build_env.find_cuda_toolkit()
    return os.path.join(toolkit.home, "include") if toolkit else None


def sources(build_dir: str) -> list[str]:
    """ops.cpp (the schemas only: the Python module init, csrc/module.cpp, stays out), the shared
    checks, the CUDA host files, and one C++ wrapper per kernel file (torch would hand a .cu file
    to nvcc)."""
    out = [os.path.join(ROOT, "csrc", "ops.cpp"), os.path.join(ROOT, "csrc", "common", "checks.cpp")]
    out += sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cpp")))
    for cu in sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*_kernels.cu"))):
        wrapper = os.path.join(build_dir, os.path.basename(cu).replace(".cu", "_emu.cpp"))
        text = f'// Generated: {cu} compiled as C++ for the CPU emulation.\n#include "{cu}"\n'
        if not os.path.exists(wrapper) or open(wrapper).read() != text:
            with open(wrapper, "w") as f:
                f.write(text)
        out.append(wrapper)
    # The warp-feature probes (test code, not part of atrous): torch.ops.atrous_emu_probes.
    out.append(os.path.join(ROOT, "tests", "cuda", "cuda_emulation", "probes.cpp"))
    return out


def load(verbose: bool = False) -> None:
    """Compiles (cached by torch's JIT build, so only changed files rebuild) and loads the library;
    afterwards torch.ops.atrous_emu.* run the CUDA code on CPU tensors."""
    import torch
    from torch.utils import cpp_extension

    # torch's JIT build runs `ninja`; the one installed beside this Python may not be on PATH.
    bindir = os.path.dirname(sys.executable)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    include = toolkit_include()
    if include is None or not os.path.exists(os.path.join(include, "cuda_fp16.h")):
        raise RuntimeError("the CUDA emulation needs the CUDA toolkit's headers (cuda_fp16.h); none found")
    build_dir = os.path.join(ROOT, "build", "cuda_emulation")
    os.makedirs(build_dir, exist_ok=True)
    flags = ["-O1", "-std=c++20", "-pthread", "-fvisibility=hidden", "-DATROUS_CUDA_EMULATION",
             "-DATROUS_LIBRARY=atrous_emu", f"-I{include}", f"-I{ROOT}", "-Wno-unknown-pragmas",
             "-Wno-attributes"]
    cpp_extension.load(NAME, sources(build_dir), extra_cflags=flags, extra_ldflags=["-pthread"],
                       build_directory=build_dir, is_python_module=False, verbose=verbose)
    assert hasattr(torch.ops, "atrous_emu")


if __name__ == "__main__":
    load(verbose=True)
    print("loaded torch.ops.atrous_emu")
