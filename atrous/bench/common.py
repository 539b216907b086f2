"""What every part of the harness shares: the error type, the option vocabularies and number formats."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "DIRECTION_LABEL", "DTYPES", "EXIT_ERROR", "EXIT_MISMATCH", "EXIT_OK", "LAYOUTS", "LAYOUT_LABEL",
    "MEMORY_FORMAT", "MODELS_README_END", "MODELS_README_START", "NOISY_SPREAD", "OPS", "OP_FUNCTION",
    "README_END", "README_START", "SAME_ISA_MODELS_README_END", "SAME_ISA_MODELS_README_START",
    "SAME_ISA_README_END", "SAME_ISA_README_START", "TOLERANCE", "BenchError",
]

OPS = ("depthwise", "pointwise", "dense", "separable")
ALL_OPS = ",".join(OPS)  # the --ops default
OP_FUNCTION = {"depthwise": "depthwise_conv2d", "pointwise": "pointwise_conv2d",
               "dense": "atrous_conv2d", "separable": "separable_conv2d"}
LAYOUTS = ("nchw", "channels_last")
LAYOUT_LABEL = {"nchw": "NCHW", "channels_last": "CL"}
DIRECTION_LABEL = {"forward": "fwd", "backward": "bwd"}
MEMORY_FORMAT = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
DTYPES = ("float32", "float64", "float16", "bfloat16")
TOLERANCE = {"float64": 1e-10, "float32": 1e-4, "float16": 1e-2, "bfloat16": 1e-2}
NOISY_SPREAD = 0.25  # runs' interquartile range above 25% of the median: flag the row as noisy
EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2
# The README blocks that --update-readme rewrites: the layer benchmark's, and the model mode's.
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"
MODELS_README_START, MODELS_README_END = "<!-- bench-models:start -->", "<!-- bench-models:end -->"
# --same-isa writes its tables beside those, between markers of its own.
SAME_ISA_README_START, SAME_ISA_README_END = "<!-- bench-same-isa:start -->", "<!-- bench-same-isa:end -->"
SAME_ISA_MODELS_README_START = "<!-- bench-models-same-isa:start -->"
SAME_ISA_MODELS_README_END = "<!-- bench-models-same-isa:end -->"


class BenchError(ValueError):
    """A bad option or an impossible request; the message names the option and what it expects."""


def first_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num and den else None


def within(err: float | None, tolerance: float) -> bool:
    """A relative error (None: not finite or a shape mismatch) within the tolerance."""
    return err is not None and err <= tolerance


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def fmt_x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def fmt_num(v: float | None, fmt: str = ".1f") -> str:
    return "-" if v is None else format(v, fmt)


def fmt_err(errs: Sequence[float | None]) -> str:
    if not errs:
        return "-"
    return "not finite" if None in errs else f"{max(errs):.1e}"
