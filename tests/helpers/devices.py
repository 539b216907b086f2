"""The devices the tests run on: "cpu" always, "cuda" where a GPU is visible (else skipped, with the reason).

Tests take a `device` parameter from DEVICES (or a (device, algo) pair from device_algos, since
each device has its own kernel ladder). CUDA cases carry the `cuda` mark, so `pytest -m cuda`
runs exactly them (scripts/gpu_check.sh does).
"""

from __future__ import annotations

import pytest
import torch

import atrous.ops as ops
from atrous import _extension


def cuda_skip_reason() -> str | None:
    """Why CUDA cases cannot run here, or None when they can."""
    if not torch.cuda.is_available():
        return (f"no CUDA GPU visible (torch {torch.__version__}, "
                f"CUDA {torch.version.cuda or 'none: a CPU build'}, torch.cuda.is_available() is False)")
    if not _extension.load().with_cuda:
        return "a GPU is visible but this build of atrous has no CUDA kernels (see python -m atrous.info)"
    return None


CUDA_SKIP = cuda_skip_reason()
requires_cuda = pytest.mark.skipif(CUDA_SKIP is not None, reason=CUDA_SKIP or "")


def _marks(device: str) -> list:
    return [pytest.mark.cuda, requires_cuda] if device == "cuda" else []


def device_param(device: str, *values, id: str | None = None):
    """pytest.param(device, *values) with the CUDA marks when device is "cuda"."""
    return pytest.param(device, *values, marks=_marks(device), id=id or "-".join([device, *map(str, values)]))


DEVICES = [device_param("cpu"), device_param("cuda")]


def ladder(op_name: str, device: str = "cpu") -> list:
    """'auto' and every rung of an op's kernel ladder on `device`, for parametrizing tests."""
    return ["auto", *ops.algorithms(op_name, device)]


def device_algos(op_name: str) -> list:
    """(device, algo) parameters: every rung of the op's ladder on each device."""
    return [device_param(d, a) for d in ("cpu", "cuda") for a in ladder(op_name, d)]
