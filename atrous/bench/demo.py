"""The demo mode (`python -m atrous demo`): each op checked against F.conv2d on DeepLabV3+ layers, timed.

The layers are the harness's DEMO_SHAPES (Xception-65 at 513x513, output stride 16: middle flow, ASPP,
decoder). For each the table shows the largest error of our forward and of our input, weight and bias
gradients against F.conv2d (`rel_error`: relative to the tensor's largest value), and median times
(`median_ms`, the harness's timer) of ours and of F.conv2d on the same NCHW input. Careful speed
comparisons are the benchmark's (`python -m atrous bench`); these times are a first look.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from .cases import Impl, Tensors, default_ops, implementations, make_call, make_tensors, rel_error
from .common import TOLERANCE, BenchError, first_line, within
from .shapes import DEMO_SHAPES, Case, Shape
from .timing import median_ms

__all__ = ["DEMO_DTYPES", "check_layer", "demo_shapes", "run_demo"]

DEMO_DTYPES = ("float32", "float64")


def demo_shapes(quick: bool = False) -> list[Shape]:
    """DEMO_SHAPES; quick: channels / 8 and planes of at most 17x17 (seconds instead of a minute)."""
    if not quick:
        return list(DEMO_SHAPES)
    return [dataclasses.replace(s, channels=max(1, s.channels // 8), out_channels=max(1, s.out_channels // 8),
                                size=min(s.size, 17)) for s in DEMO_SHAPES]


def _forward_backward(impl: Impl, t: Tensors, gy: torch.Tensor):
    """The output and the gradients of input, weight and bias, on fresh leaves."""
    x, w, b = (v.detach().requires_grad_(True) for v in (t.x, t.w, t.b))
    y = impl(x, w, dataclasses.replace(t, b=b))
    return y.detach(), torch.autograd.grad(y, (x, w, b), gy)


def check_layer(shape: Shape, batch: int, dtype: torch.dtype, repeats: int, ops: Any) -> dict:
    """Errors of ours against F.conv2d (forward; input, weight and bias gradients) and median times."""
    case = Case(shape, batch)
    t = make_tensors(case, dtype, torch.device("cpu"), "nchw", bias=True)
    impls = implementations(shape, ops)
    ours, theirs = impls["ours"], impls["torch"]
    gy = torch.randn(batch, shape.out_channels, shape.out_size, shape.out_size,
                     generator=torch.Generator().manual_seed(1)).to(dtype)
    y, grads = _forward_backward(ours, t, gy)
    y_t, grads_t = _forward_backward(theirs, t, gy)
    return {
        "forward_abs_err": (y - y_t).abs().max().item(),
        "forward_rel_err": rel_error(y, y_t),
        "grad_rel_err": rel_error(grads, grads_t),
        "ours_fwd_ms": median_ms(make_call(ours, t, "forward", None), repeats),
        "torch_fwd_ms": median_ms(make_call(theirs, t, "forward", None), repeats),
        "ours_fwdbwd_ms": median_ms(lambda: _forward_backward(ours, t, gy), repeats),
        "torch_fwdbwd_ms": median_ms(lambda: _forward_backward(theirs, t, gy), repeats),
    }


def _describe(case: Case) -> str:
    s = case.shape
    extra = "".join(f" {k}={v}" for k, v in (("s", s.stride), ("d", s.dilation)) if v > 1)
    return f"{case.input_dims} -> {s.out_channels}, {s.kernel}x{s.kernel}{extra}"


def run_demo(batch: int = 1, dtype: str = "float32", repeats: int = 5, quick: bool = False,
             tolerance: float | None = None, ops: Any = None,
             echo: Callable[[str], None] = print) -> list[dict]:
    """Checks every demo layer, printing a row as each finishes and a verdict; returns the rows
    (each with its "layer", "op", errors, times and "ok"). Raises BenchError on a bad argument."""
    if dtype not in DEMO_DTYPES:
        raise BenchError(f"--dtype: expected one of {', '.join(DEMO_DTYPES)}, got {dtype!r}")
    for option, value in (("--batch", batch), ("--repeats", repeats)):
        if value < 1:
            raise BenchError(f"{option}: expected a positive integer, got {value}")
    if tolerance is not None and not tolerance > 0:
        raise BenchError(f"--tolerance: expected a positive number, got {tolerance}")
    ops = default_ops() if ops is None else ops
    tolerance = tolerance or TOLERANCE[dtype]
    shapes = demo_shapes(quick)
    width = max(len("layer"), *(len(s.where) for s in shapes))
    echo(f"atrous demo: ours vs F.conv2d, {dtype}, batch {batch}, torch {torch.__version__}, "
         f"{torch.get_num_threads()} threads; times are medians of {repeats} runs in ms (atrous.bench's "
         "timer, after a warm-up), PyTorch on the same NCHW input")
    header = (f"{'layer':<{width}} {'op':<9} {'shape (N x C x H x W -> C_out, kernel)':<38} "
              f"{'max abs err':>11} {'grad rel err':>12} {'ours fwd':>9} {'torch fwd':>9} "
              f"{'ours f+b':>9} {'torch f+b':>9}  check")
    echo(header)
    echo("-" * len(header))
    rows = []
    for shape in shapes:
        case = Case(shape, batch)
        row: dict[str, Any] = {"layer": shape.where, "op": shape.op, "shape": _describe(case)}
        try:
            row |= check_layer(shape, batch, getattr(torch, dtype), repeats, ops)
            row["ok"] = within(row["forward_rel_err"], tolerance) and within(row["grad_rel_err"], tolerance)
            grad = "not finite" if row["grad_rel_err"] is None else f"{row['grad_rel_err']:.2e}"
            numbers = (f"{row['forward_abs_err']:>11.2e} {grad:>12} "
                       f"{row['ours_fwd_ms']:>9.2f} {row['torch_fwd_ms']:>9.2f} "
                       f"{row['ours_fwdbwd_ms']:>9.2f} {row['torch_fwdbwd_ms']:>9.2f}  "
                       f"{'ok' if row['ok'] else 'MISMATCH'}")
        except Exception as exc:  # noqa: BLE001  (a failing op is reported, the other layers still run)
            row |= {"ok": False, "error": first_line(exc)}
            numbers = f"ERROR {row['error']}"
        rows.append(row)
        echo(f"{row['layer']:<{width}} {row['op']:<9} {row['shape']:<38} {numbers}")
    failures = sum(not r["ok"] for r in rows)
    if failures:
        echo(f"{failures} layer(s) differ from F.conv2d by more than {tolerance:g} (relative) or failed")
    else:
        echo(f"all layers match F.conv2d within {tolerance:g} (relative to each tensor's largest value)")
    return rows
