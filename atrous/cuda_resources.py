"""Registers and spills of every CUDA kernel, read from ptxas (`nvcc -Xptxas -v`); needs nvcc, not a GPU.

A kernel that spills keeps part of its state in local memory (off-chip, cached): usually a sign
that a register tile is too big for the architecture. `python -m atrous.info --cuda-resources`
prints the table; tests/cuda/test_cuda_build.py fails when any kernel spills. Results are cached
in build/cuda_resources/, keyed by a hash of the sources and the command, so only a change pays.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from . import _build_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")


@dataclass
class KernelResources:
    file: str  # csrc/cuda/<name>.cu
    arch: str  # sm_90
    name: str  # demangled where c++filt is available
    registers: int | None  # None for a device function that is not a kernel
    stack_bytes: int
    spill_store_bytes: int
    spill_load_bytes: int
    shared_bytes: int

    @property
    def spills(self) -> bool:
        return self.spill_store_bytes > 0 or self.spill_load_bytes > 0


def kernel_files() -> list[str]:
    """The CUDA source files of the extension (csrc/cuda/*.cu) in a source checkout."""
    files = sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
    if not files:
        raise FileNotFoundError(f"no CUDA sources under {os.path.join(CSRC, 'cuda')}: "
                                "the resource report needs a source checkout of atrous")
    return files


def nvcc_command(source: str, arch: str, toolkit: _build_env.CudaToolkit, output: str) -> list[str]:
    """The extension build's nvcc command for one file (its flags and include paths), compiled
    for one architecture with ptxas reporting each function's resources."""
    # Imported here: only for torch's headers (c10/cuda); reading the report needs no torch.
    import torch

    torch_include = os.path.join(os.path.dirname(torch.__file__), "include")
    includes = [f"-I{torch_include}", f"-I{os.path.join(torch_include, 'torch', 'csrc', 'api', 'include')}"]
    return [os.path.join(toolkit.home, "bin", "nvcc"), "-c", source, "-o", output, "-O3", "-std=c++20",
            "-DATROUS_WITH_CUDA", "--expt-relaxed-constexpr", "-Xptxas", "-v",
            *_build_env.nvcc_arch_flags(arch), *includes]


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
_PROPS = re.compile(r"Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")


def parse_ptxas(text: str, file: str = "?") -> list[KernelResources]:
    """Each function's figures from `ptxas -v` output (the lines ptxas prints per function:
    'Compiling entry function', 'Function properties', its stack/spill line, 'Used N registers')."""
    rows: dict[str, KernelResources] = {}
    entry_arch: dict[str, str] = {}
    current = None
    props_of = None
    for line in text.splitlines():
        if m := _ENTRY.search(line):
            current, entry_arch[m.group(1)] = m.group(1), m.group(2)
            rows.setdefault(current, KernelResources(file, m.group(2), current, None, 0, 0, 0, 0))
        elif m := _PROPS.search(line):
            props_of = m.group(1)
            arch = entry_arch.get(props_of, "?")
            rows.setdefault(props_of, KernelResources(file, arch, props_of, None, 0, 0, 0, 0))
        elif (m := _FRAME.search(line)) and props_of is not None:
            row = rows[props_of]
            row.stack_bytes, row.spill_store_bytes, row.spill_load_bytes = map(int, m.groups())
            props_of = None
        elif (m := _USED.search(line)) and current is not None:
            rows[current].registers = int(m.group(1))
            rows[current].shared_bytes = int(m.group(2) or 0)
            current = None
    return list(rows.values())


def _demangle(names: list[str]) -> list[str]:
    tool = shutil.which("c++filt")
    if tool is None or not names:
        return names
    try:
        out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True, timeout=60,
                             check=True).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return names
    return out if len(out) == len(names) else names


def _cache_key(files: list[str], arch: str, toolkit: _build_env.CudaToolkit) -> str:
    digest = hashlib.sha256(f"{arch} {toolkit.home} {toolkit.version}".encode())
    headers = sorted(glob.glob(os.path.join(CSRC, "cuda", "*.h*")) +
                     glob.glob(os.path.join(CSRC, "common", "*.h")))
    for path in files + headers:
        digest.update(path.encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def _compile(source: str, arch: str, toolkit: _build_env.CudaToolkit) -> list[KernelResources]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = nvcc_command(source, arch, toolkit, os.path.join(tmp, "out.o"))
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        where = os.path.relpath(source, ROOT)
        raise RuntimeError(f"nvcc failed on {where} (exit {result.returncode}):\n{tail}")
    return parse_ptxas(result.stdout + result.stderr, os.path.relpath(source, ROOT))


def collect(arch: str = "9.0", files: list[str] | None = None, jobs: int = 2,
            cache_dir: str | None = None) -> list[KernelResources]:
    """Compiles `files` (default: every csrc/cuda/*.cu) for `arch` with ptxas reporting, and
    returns every function's registers and spills. Raises RuntimeError with nvcc's message when
    a file does not compile or there is no toolkit."""
    _build_env.nvcc_arch_flags(arch)  # a bad ARCH fails here, before any compiling
    toolkit = _build_env.find_cuda_toolkit()
    if toolkit is None:
        raise RuntimeError("no CUDA toolkit found ($CUDA_HOME, nvcc on PATH, /usr/local/cuda*): "
                           "the resource report runs nvcc")
    files = kernel_files() if files is None else files
    cache_dir = cache_dir or os.path.join(ROOT, "build", "cuda_resources")
    cache = os.path.join(cache_dir, f"{_cache_key(files, arch, toolkit)}.json")
    if os.path.exists(cache):
        with open(cache) as f:
            return [KernelResources(**row) for row in json.load(f)]
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        rows = [row for part in pool.map(lambda f: _compile(f, arch, toolkit), files) for row in part]
    for row, name in zip(rows, _demangle([r.name for r in rows])):
        row.name = name
    os.makedirs(cache_dir, exist_ok=True)
    with open(cache, "w") as f:
        json.dump([asdict(r) for r in rows], f, indent=1)
    return rows


def short_name(name: str) -> str:
    """A demangled kernel name without its namespaces, return type and parameter list:
    "gemm_tiled_kernel<float, float, 64, 64, 16, 4, 4, 2>"."""
    name = name.replace("(anonymous namespace)::", "").replace("atrous::cuda::", "")
    name = re.sub(r"^void ", "", name)
    depth = 0
    for i, ch in enumerate(name):  # cut at the parameter list's "(" (outside template brackets)
        depth += (ch == "<") - (ch == ">")
        if ch == "(" and depth == 0 and i > 0:
            return name[:i]
    return name


def format_table(rows: list[KernelResources]) -> str:
    """One line per kernel: registers, spill bytes, stack, static shared memory, file: name."""
    kernels = [r for r in rows if r.registers is not None]
    lines = [f"{'regs':>5} {'spill st/ld':>12} {'stack':>6} {'smem':>6}  kernel ({len(kernels)}, "
             f"arch {kernels[0].arch if kernels else '?'})"]
    for r in sorted(kernels, key=lambda r: (r.file, r.name)):
        lines.append(f"{r.registers:>5} {r.spill_store_bytes:>5}/{r.spill_load_bytes:<6} {r.stack_bytes:>6} "
                     f"{r.shared_bytes:>6}  {os.path.basename(r.file)}: {short_name(r.name)}")
    spilled = [short_name(r.name) for r in rows if r.spills]
    lines.append(f"{len(spilled)} function(s) spill" + (": " + ", ".join(spilled) if spilled else ""))
    return "\n".join(lines)
