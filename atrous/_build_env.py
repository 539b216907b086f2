"""Build-environment detection shared by setup.py and the tests: CUDA toolkit, arch list, CPU flags.

Standard library only: setup.py loads this file by path before the package is built.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field


@dataclass
class CudaToolkit:
    home: str  # prefix holding bin/nvcc and include/cuda_runtime.h
    version: str  # "13.0"
    found_by: str  # how it was found, printed by the build


def _toolkit_at(prefix: str | None) -> bool:
    if not prefix:
        return False
    return os.path.isfile(os.path.join(prefix, "bin", "nvcc")) and os.path.isfile(
        os.path.join(prefix, "include", "cuda_runtime.h")
    )


def _nvcc_version(prefix: str) -> str | None:
    try:
        out = subprocess.run(
            [os.path.join(prefix, "bin", "nvcc"), "--version"],
            capture_output=True, text=True, timeout=60, check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+\.\d+)", out)
    return match.group(1) if match else None


def _prefix_from_nvcc_on_path() -> str | None:
    """The toolkit behind `nvcc` on PATH, even when that nvcc is a wrapper script.

    torch guesses dirname(dirname(which nvcc)), which is wrong for a wrapper such as
    /usr/local/bin/nvcc (it gives /usr/local). `nvcc -dryrun` prints the real TOP directory.
    """
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    real = os.path.realpath(nvcc)
    guess = os.path.dirname(os.path.dirname(real))
    if _toolkit_at(guess):
        return guess
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.cu")
        with open(src, "w") as f:
            f.write("int main() { return 0; }\n")
        try:
            out = subprocess.run(
                [nvcc, "-dryrun", "-c", src, "-o", os.path.join(tmp, "probe.o")],
                capture_output=True, text=True, timeout=60, check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
    match = re.search(r"TOP=(\S+)", out.stdout + out.stderr)
    if match:
        top = os.path.normpath(match.group(1).strip("\"'"))
        # TOP is <prefix>/bin/.. on Linux; normpath resolves it to <prefix>.
        if _toolkit_at(top):
            return top
    return None


def find_cuda_toolkit() -> CudaToolkit | None:
    """Locate the CUDA toolkit: $CUDA_HOME, $CUDA_PATH, nvcc on PATH, then the usual prefixes."""
    candidates: list[tuple[str | None, str]] = [
        (os.environ.get("CUDA_HOME"), "$CUDA_HOME"),
        (os.environ.get("CUDA_PATH"), "$CUDA_PATH"),
    ]
    for value, how in candidates:
        if value and _toolkit_at(value):
            return CudaToolkit(value, _nvcc_version(value) or "?", how)
    prefix = _prefix_from_nvcc_on_path()
    if prefix:
        return CudaToolkit(prefix, _nvcc_version(prefix) or "?", "nvcc on PATH")
    for prefix in ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True),
                   "/opt/cuda"]:
        if _toolkit_at(prefix):
            return CudaToolkit(os.path.realpath(prefix), _nvcc_version(prefix) or "?", "default prefix")
    return None


# The architectures compiled when no GPU is visible (CI, a build machine): the GPUs a course
# meets (T4 7.5, A100 8.0, A10/RTX 30xx 8.6, L4/RTX 40xx 8.9, H100/H200 9.0), plus PTX for 9.0
# that the driver JIT-compiles on newer GPUs (Blackwell), which would otherwise find no kernel
# image. CUDA 13 compiles nothing older than 7.5.
DEFAULT_CUDA_ARCH_LIST = "7.5;8.0;8.6;8.9;9.0+PTX"


def nvcc_arch_flags(arch_list: str) -> list[str]:
    """nvcc's -gencode flags for a TORCH_CUDA_ARCH_LIST value ("8.0;9.0+PTX"): machine code
    (SASS) for each entry, plus PTX for an entry ending in +PTX (what torch's build does)."""
    flags = []
    for entry in re.split(r"[;\s,]+", arch_list.strip()):
        if not entry:
            continue
        match = re.fullmatch(r"(\d+)\.(\d+)([a-z]?)(\+PTX)?", entry)
        if match is None:
            raise ValueError(f"TORCH_CUDA_ARCH_LIST: expected entries like 8.0 or 9.0+PTX, got {entry!r}")
        num = match.group(1) + match.group(2) + match.group(3)
        flags.append(f"-gencode=arch=compute_{num},code=sm_{num}")
        if match.group(4):
            flags.append(f"-gencode=arch=compute_{num},code=compute_{num}")
    if not flags:
        raise ValueError("TORCH_CUDA_ARCH_LIST: expected at least one architecture, got none")
    return flags


@dataclass
class BuildPlan:
    with_cuda: bool
    reason: str
    toolkit: CudaToolkit | None = None
    cuda_arch_list: str = ""
    cpu_arch_flags: list[str] = field(default_factory=list)
    openmp_flags: list[str] = field(default_factory=list)


def _env_switch(name: str) -> str:
    value = os.environ.get(name, "auto").strip().lower()
    if value in ("1", "true", "yes", "on", "force"):
        return "on"
    if value in ("0", "false", "no", "off"):
        return "off"
    return "auto"


def plan_cuda(torch_cuda_version: str | None, gpu_count: int) -> BuildPlan:
    """Decide whether CUDA sources are compiled. ATROUS_WITH_CUDA=0/1 overrides the detection.

    The default compiles them whenever torch is a CUDA build and a toolkit is found, even with
    no GPU visible (CI compiles them on every run).
    """
    switch = _env_switch("ATROUS_WITH_CUDA")
    if switch == "off":
        return BuildPlan(False, "ATROUS_WITH_CUDA=0")
    toolkit = find_cuda_toolkit()
    problems = []
    if torch_cuda_version is None:
        problems.append("torch is a CPU-only build")
    if toolkit is None:
        problems.append("no CUDA toolkit found ($CUDA_HOME, nvcc on PATH, /usr/local/cuda*)")
    elif torch_cuda_version and toolkit.version.split(".")[0] != torch_cuda_version.split(".")[0]:
        problems.append(
            f"toolkit {toolkit.version} at {toolkit.home} does not match torch's CUDA "
            f"{torch_cuda_version} (major versions differ)"
        )
    if problems:
        if switch == "on":
            raise RuntimeError("ATROUS_WITH_CUDA=1 but CUDA cannot be built: " + "; ".join(problems))
        return BuildPlan(False, "; ".join(problems), toolkit)
    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if not arch_list and gpu_count == 0:
        # torch derives the list from visible GPUs and has nothing to go on without one.
        arch_list = DEFAULT_CUDA_ARCH_LIST
    reason = "ATROUS_WITH_CUDA=1" if switch == "on" else "torch CUDA build + toolkit found"
    return BuildPlan(True, reason, toolkit, arch_list or "(visible GPUs)")


def _compiler_accepts(flags: list[str]) -> bool:
    cxx = os.environ.get("CXX", "c++")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.cpp")
        with open(src, "w") as f:
            f.write("int main() { return 0; }\n")
        try:
            result = subprocess.run(
                [cxx, *flags, src, "-o", os.path.join(tmp, "probe")],
                capture_output=True, timeout=60, check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return False
    return result.returncode == 0


def cpu_arch_flags() -> list[str]:
    """The baseline of the architecture (no flags) unless ATROUS_CPU_ARCH says otherwise.

    The default build runs on any x86-64 or ARM64 machine: the kernel cores are compiled once per
    instruction set inside csrc/cpu/isa_*.cpp and the best one is chosen at run time (csrc/cpu/isa.h),
    so nothing needs -march=native, which would make a wheel, a pip cache or a shared course
    environment die with an illegal instruction on an older CPU. ATROUS_CPU_ARCH=native (or any
    -march value) still compiles everything for one machine, at the cost of that portability.
    """
    choice = os.environ.get("ATROUS_CPU_ARCH", "generic").strip()
    if choice in ("generic", "none", "baseline", ""):
        return []
    machine = platform.machine().lower()
    if choice == "native":
        flags = ["-mcpu=native"] if machine in ("arm64", "aarch64") else ["-march=native"]
    else:
        flags = [f"-march={choice}"]
    return flags if _compiler_accepts(flags) else []


ISA_KERNEL_LIST = os.path.join("csrc", "cpu", "isa_kernels.inc")


def isa_kernel_sources(root: str) -> list[str]:
    """The kernel files compiled once per instruction set through csrc/cpu/isa_*.cpp (the
    `#include "..."` lines of csrc/cpu/isa_kernels.inc), relative to root: setup.py leaves them out
    of the plain source list."""
    with open(os.path.join(root, ISA_KERNEL_LIST)) as f:
        names = re.findall(r'^#include "([^"]+)"', f.read(), flags=re.MULTILINE)
    return [os.path.join("csrc", "cpu", name) for name in names]


def codegen_flags() -> list[str]:
    """Flags for the kernels' code generation, where the compiler accepts them.

    -fno-tree-loop-distribute-patterns: GCC otherwise turns the vector copy loops of short
    rows (a few dozen elements, csrc/cpu/simd.h) into calls to memmove, which cost more than
    the copy itself (14% of the stencil depthwise kernel's time at 33x33).
    """
    flags = ["-fno-tree-loop-distribute-patterns"]
    return flags if _compiler_accepts(flags) else []


def openmp_flags() -> list[str]:
    """-fopenmp where the compiler supports it: at::parallel_for's OpenMP loop is in a header,
    so without it our kernels would run on one thread."""
    if platform.system() == "Darwin":
        return []  # Apple clang has no OpenMP; kernels run single-threaded there
    return ["-fopenmp"] if _compiler_accepts(["-fopenmp"]) else []
