"""What the numbers were measured on: the CPU or GPU, torch, the atrous build, what the ops module offers."""

from __future__ import annotations

import contextlib
import inspect
import os
import platform
from typing import Any

import torch

from .. import buildinfo as atrous_info
from .common import OP_FUNCTION, first_line
from .timing import CpuTimer, CudaTimer

__all__ = ["ISA_ENV_VARS", "build_info", "cpu_isa", "cpu_model", "exact_fp32", "features", "machine_info"]

# What --same-isa sets (atrous/bench/same_isa.py); recorded in every report when set.
ISA_ENV_VARS = ("ATROUS_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")


def cpu_model() -> str:
    """The CPU's model name and its widest SIMD extension, e.g. "AMD EPYC 7B13 (avx2)"."""
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        name = fields.get("model name\t", "").strip() or platform.processor()
        flags = fields.get("flags\t\t", "").split()
        simd = [f for f in ("avx512f", "avx2", "neon") if f in flags][:1]
        return f"{name}{' (' + simd[0] + ')' if simd else ''}"
    except OSError:
        return platform.processor() or platform.machine()


def cpu_isa() -> dict:
    """The instruction sets in use: ATen's CPU capability, atrous's runtime-dispatched path
    (`atrous.buildinfo.cpu_isa()`, "unknown" in a build without dispatch) and the ISA variables set."""
    try:
        aten = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        aten = "unknown"
    dispatch = getattr(atrous_info, "cpu_isa", None)
    if dispatch is None:
        ours = {"active": "unknown", "reason": "this build has one CPU path (no runtime ISA dispatch)"}
    else:
        try:
            ours = dict(dispatch())
        except Exception as exc:  # noqa: BLE001  (the report is still useful without it)
            ours = {"active": "unknown", "reason": first_line(exc)}
    env = {k: os.environ[k] for k in ISA_ENV_VARS if k in os.environ}
    return {"aten": aten, "atrous": ours, "env": env}


def machine_info(device: torch.device, timer: CpuTimer | CudaTimer, copy: dict) -> dict:
    """The report's "machine": device, CPU, threads, platform, torch, the copy bandwidth measured."""
    info = {
        "device": str(device), "cpu": cpu_model(), "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),  # left at torch's default
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "copy_bandwidth": copy, "isa": cpu_isa(),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["l2_bytes"] = timer.l2_bytes
        info["tf32"] = False
    else:
        info["device_name"] = f"{info['cpu']}, {info['cores']} cores"
    return info


def build_info() -> dict:
    """How atrous was built (`python -m atrous.info`), or the error that kept it from saying."""
    try:
        return atrous_info.collect()
    except Exception as exc:  # noqa: BLE001  (the report is still useful without it)
        return {"error": first_line(exc)}


@contextlib.contextmanager
def exact_fp32():
    """No TF32 on CUDA: an fp32 kernel is compared with fp32 cuDNN/cuBLAS, not with TF32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def features(ops: Any) -> dict:
    """Which parts of the op API this ops module has (the ladder, the fused separable op, algo=)."""

    def takes_algo(name: str) -> bool:
        fn = getattr(ops, name, None)
        try:
            return fn is not None and "algo" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return False

    return {"algorithms": hasattr(ops, "algorithms"), "separable_conv2d": hasattr(ops, "separable_conv2d"),
            "algo": {name: takes_algo(name) for name in OP_FUNCTION.values()}}
