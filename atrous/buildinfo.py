"""What was built and what this machine offers: the report of `python -m atrous info`, as data and text."""

from __future__ import annotations

import json
import os
import platform
import re

import torch

from . import __version__
from ._extension import BUILD_HELP, load, mode, sources, try_load

__all__ = [
    "build_config", "collect", "compiled_archs", "cpu_isa", "format_report", "kernel_table", "operator_names",
]


def build_config() -> dict:
    """The configuration setup.py chose (atrous/_build_config.json), or {} if never built."""
    path = os.path.join(os.path.dirname(__file__), "_build_config.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def operator_names(ext) -> tuple[str, ...]:
    """The operators the extension defines (atrous._C.operators, taken from the schemas in
    csrc/ops.cpp), in their order there."""
    names = getattr(ext, "operators", None)
    if names is None:
        raise RuntimeError(
            f"atrous._C was built from older sources (it lists no operators). {BUILD_HELP}")
    return tuple(names)


def kernel_table(names=None) -> dict[str, dict[str, bool]]:
    """For each operator in `names` (default: all of the extension's), whether a CPU and a CUDA
    kernel are registered."""
    table = {}
    for name in operator_names(load()) if names is None else names:
        qualname = f"atrous::{name}"
        row = {}
        for key in ("CPU", "CUDA"):
            try:
                row[key] = torch._C._dispatch_has_kernel_for_dispatch_key(qualname, key)
            except RuntimeError:  # operator not registered at all
                row[key] = False
        table[name] = row
    return table


def cpu_isa() -> dict:
    """The CPU instruction sets of the kernels: {"compiled": [...], "supported": [...], "active": "avx2",
    "reason": "ATROUS_CPU_ISA=avx2" or "best this CPU supports"}.

    Every build compiles the kernel cores once per set (csrc/cpu/isa_*.cpp) and picks the best one
    this CPU runs when the extension loads; the environment variable ATROUS_CPU_ISA forces one.
    """
    ext = load()
    if not hasattr(ext, "cpu_isa"):
        raise RuntimeError(f"atrous._C was built from older sources (it has no cpu_isa()). {BUILD_HELP}")
    return dict(ext.cpu_isa())


def compiled_archs(cuda_build_info: str) -> list[str]:
    """The GPU architectures nvcc compiled the kernels for, e.g. ["sm_90"], from the build string
    "cudart 13000, archs 900" (nvcc's __CUDA_ARCH_LIST__)."""
    match = re.search(r"archs ([0-9a-z,]+)", cuda_build_info or "")
    if not match:
        return []
    # "900" -> "sm_90"
    return [f"sm_{int(a) // 10}" if a.isdigit() else a for a in match.group(1).split(",") if a]


def collect() -> dict:
    """The build and runtime configuration as a JSON-ready dict; loads the extension if it can."""
    ext, error = try_load()
    info = {
        "atrous": __version__,
        "python": f"{platform.python_version()} ({platform.system()} {platform.machine()})",
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "gpu_visible": torch.cuda.is_available(),
        "gpus": (
            [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available() else []
        ),
        "mode": mode(),
        "sources": None if sources() is None else str(sources()),
        "extension": None if ext is None else ext.__file__,
        "extension_error": error,
        "build": build_config(),
    }
    if ext is not None:
        info["built_against_torch"] = getattr(ext, "build_torch_version", "?")
        info["cpu_kernels"] = True
        info["cpu_arch_flags"] = getattr(ext, "cpu_arch_flags", "") or "baseline flags"
        info["cpu_isa"] = dict(ext.cpu_isa()) if hasattr(ext, "cpu_isa") else None
        info["openmp"] = bool(getattr(ext, "with_openmp", 0))
        info["cuda_compiled"] = bool(getattr(ext, "with_cuda", 0))
        info["cuda_build_info"] = getattr(ext, "cuda_build_info", "")
        info["cuda_archs"] = compiled_archs(info["cuda_build_info"])
        try:
            info["kernels"] = kernel_table(operator_names(ext))
        except RuntimeError as exc:  # a stale build: report the rest, say what to do
            info["kernels"], info["extension_error"] = {}, str(exc)
    return info


def format_report(info: dict) -> str:
    """The text `python -m atrous info` prints for a dict from collect()."""
    lines = [
        f"atrous       {info['atrous']}",
        f"python       {info['python']}",
        f"torch        {info['torch']} (CUDA {info['torch_cuda'] or 'none: CPU build'}), "
        + f"{info['threads']} threads",
        f"GPU visible  {'yes: ' + ', '.join(info['gpus']) if info['gpu_visible'] else 'no'}",
    ]
    if info.get("mode") == "no-extension":
        lines.append("mode         no-extension: installed without compiled kernels; models, receptive "
                     "fields, pictures and training run with impl='torch' (F.conv2d)")
    elif info["extension"] is None:
        lines.append("mode         extension (compiled kernels), but they do not load:")
        lines.append(f"extension    NOT LOADED: {info['extension_error']}")
    else:
        lines += [
            "mode         extension (compiled kernels)",
            f"extension    {info['extension']}",
            f"  built against torch {info['built_against_torch']}",
            f"  CPU kernels  yes ({info['cpu_arch_flags']}, OpenMP {'yes' if info['openmp'] else 'no'})",
        ]
        isa = info.get("cpu_isa")
        if isa:
            lines += [
                f"  CPU ISA      compiled: {', '.join(isa['compiled'])}; "
                + f"this CPU runs: {', '.join(isa['supported'])}",
                f"  CPU ISA used {isa['active']} ({isa['reason']}; ATROUS_CPU_ISA=... chooses another)",
            ]
        if info["cuda_compiled"]:
            with_cuda = sum(row["CUDA"] for row in info["kernels"].values())
            lines.append(f"  CUDA         compiled ({info['cuda_build_info']}); "
                         f"{with_cuda}/{len(info['kernels'])} operators have CUDA kernels")
            lines.append(f"  CUDA archs   {', '.join(info['cuda_archs']) or 'unknown'}")
        else:
            reason = info["build"].get("cuda_reason", "unknown")
            lines.append(f"  CUDA         not compiled ({reason})")
        if info["extension_error"]:
            lines.append(f"  operators    UNKNOWN: {info['extension_error']}")
        else:
            lines.append("  operators    CPU  CUDA")
        for name, row in info["kernels"].items():
            marks = "  ".join(("yes" if row[k] else "no ").ljust(len(k)) for k in ("CPU", "CUDA"))
            lines.append(f"    {name:34s} {marks}")
    lines.append(f"sources      {info.get('sources') or 'not shipped'} (the C++/CUDA the tutorials show)")
    build = info["build"]
    if build and build.get("extension") is not False:
        lines.append("build configuration (setup.py)")
        for key in ("cuda_home", "cuda_home_found_by", "cuda_toolkit_version", "cuda_arch_list", "cxx_flags"):
            lines.append(f"  {key:21s}{build.get(key)}")
    return "\n".join(lines)
