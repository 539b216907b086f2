"""What is timed: a case's tensors, the contenders, their traffic and flops, and the run of one case."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from atrous._extension import ExtensionNotBuiltError

from .common import LAYOUTS, MEMORY_FORMAT, NOISY_SPREAD, first_line, ratio, within
from .config import Config
from .shapes import Case, Shape
from .timing import CpuTimer, CudaTimer, measure_interleaved

try:
    from atrous import ops as _ops

    _OPS_ERROR: ExtensionNotBuiltError | None = None
except ExtensionNotBuiltError as _exc:  # `import atrous.bench` works unbuilt; default_ops() re-raises this
    _ops, _OPS_ERROR = None, _exc

__all__ = ["Impl", "Tensors", "default_ops", "derive", "directions", "implementations", "make_call",
           "make_tensors", "norm_rel_error", "rel_error", "run_case", "work"]


def default_ops() -> Any:
    """atrous.ops, the compiled kernels; raises ExtensionNotBuiltError (an ImportError that says how to
    build them) when they are missing."""
    if _ops is None:
        raise _OPS_ERROR
    return _ops


@dataclass
class Tensors:
    """One case's tensors on one layout. Separable: w, b depthwise; w2, b2 pointwise."""

    x: torch.Tensor
    w: torch.Tensor
    b: torch.Tensor | None = None
    w2: torch.Tensor | None = None
    b2: torch.Tensor | None = None


def make_tensors(case: Case, dtype: torch.dtype, device: torch.device, layout: str,
                 seed: int = 0, bias: bool = False) -> Tensors:
    """Random inputs with fan-in-scaled weights (outputs of order 1), in `layout`.

    Drawn in float32 on the CPU with a fixed seed, so every device, dtype and layout sees the same
    numbers. Separable convs get biases; the others only with `bias` (in DeepLab batch norm follows
    them; the demo checks the bias gradient too).
    """
    s, gen = case.shape, torch.Generator().manual_seed(seed)

    def draw(*dims: int, scale: float = 1.0) -> torch.Tensor:
        t = torch.randn(*dims, generator=gen) * scale
        fmt = MEMORY_FORMAT[layout] if t.dim() == 4 else torch.contiguous_format
        return t.to(device=device, dtype=dtype).contiguous(memory_format=fmt)

    x = draw(case.batch, s.channels, s.size, s.size)
    k2 = s.kernel * s.kernel
    if s.op in ("depthwise", "pointwise", "dense"):
        fan_in = k2 if s.op == "depthwise" else s.channels * k2
        w = draw(s.out_channels, 1 if s.op == "depthwise" else s.channels, s.kernel, s.kernel,
                 scale=fan_in ** -0.5)
        return Tensors(x, w, draw(s.out_channels) if bias else None)
    return Tensors(x, draw(s.channels, 1, s.kernel, s.kernel, scale=k2 ** -0.5), draw(s.channels),
                   draw(s.out_channels, s.channels, 1, 1, scale=s.channels ** -0.5), draw(s.out_channels))


Impl = Callable[[torch.Tensor, torch.Tensor, Tensors], torch.Tensor]  # (x, w, rest) -> output


def implementations(shape: Shape, ops: Any, algo: str | None = None) -> dict[str, Impl]:
    """The contenders for one shape, PyTorch ("torch", the baseline) last.

    x and w are passed separately so the backward pass can differentiate with respect to them; the
    bias is t.b. `algo` picks one rung of our ladder (only when the build has rungs).
    """
    s, p, d = shape.stride, shape.padding, shape.dilation
    kw = {} if algo is None else {"algo": algo}
    if shape.op == "depthwise":
        return {"ours": lambda x, w, t: ops.depthwise_conv2d(x, w, t.b, s, p, d, **kw),
                "torch": lambda x, w, t: F.conv2d(x, w, t.b, s, p, d, x.shape[1])}
    if shape.op == "pointwise":
        return {"ours": lambda x, w, t: ops.pointwise_conv2d(x, w, t.b, **kw),
                "torch": lambda x, w, t: F.conv2d(x, w, t.b)}
    if shape.op == "dense":
        return {"ours": lambda x, w, t: ops.atrous_conv2d(x, w, t.b, s, p, d, **kw),
                "torch": lambda x, w, t: F.conv2d(x, w, t.b, s, p, d)}
    # separable: depthwise -> bias -> ReLU -> pointwise -> bias (batch norms folded into biases)
    return {
        "ours": lambda x, w, t: ops.separable_conv2d(x, w, t.b, t.w2, t.b2, s, p, d, activation="relu", **kw),
        "ours_unfused": lambda x, w, t: ops.pointwise_conv2d(
            ops.depthwise_conv2d(x, w, t.b, s, p, d).relu_(), t.w2, t.b2),
        "torch": lambda x, w, t: F.conv2d(F.conv2d(x, w, t.b, s, p, d, x.shape[1]).relu_(), t.w2, t.b2),
    }


def directions(op: str) -> tuple[str, ...]:
    return ("forward",) if op == "separable" else ("forward", "backward")


def work(case: Case, direction: str, itemsize: int) -> dict:
    """Minimal memory traffic (bytes) and arithmetic (flop) of one call; step 4 divides by time."""
    s, n = case.shape, case.batch
    x = n * s.channels * s.size * s.size
    out_plane = s.out_size * s.out_size
    if s.op == "depthwise":
        w, y = s.out_channels * s.kernel ** 2, n * s.out_channels * out_plane
        flops = 2 * y * s.kernel ** 2
        elems = x + w + y if direction == "forward" else y + x + w + x + w  # gy, x, w -> gx, gw
    elif s.op in ("pointwise", "dense"):
        w, y = s.out_channels * s.channels * s.kernel ** 2, n * s.out_channels * out_plane
        flops = 2 * y * s.channels * s.kernel ** 2  # 2*M*N*K: M = C_out, N = batch*H*W, K = C*k*k
        elems = x + w + y if direction == "forward" else y + x + w + x + w
    else:  # fused separable: the intermediate never has to leave the cache
        mid = n * s.channels * out_plane
        w = s.channels * s.kernel ** 2 + s.channels + s.out_channels * s.channels + s.out_channels
        flops = 2 * mid * s.kernel ** 2 + 2 * n * out_plane * s.out_channels * s.channels
        elems = x + w + n * s.out_channels * out_plane
    if direction == "backward":
        flops *= 2  # grad_input and grad_weight each cost one forward
    return {"bytes": elems * itemsize, "flops": flops, "memory_bound": s.op == "depthwise"}


TensorOrTensors = torch.Tensor | Sequence[torch.Tensor]


def rel_error(got: TensorOrTensors, want: TensorOrTensors) -> float | None:
    """Largest |got - want| relative to want's largest |value| (the worst over pairs of tensors).

    None when a shape differs or the error is not a finite number (NaN, inf): always a mismatch.
    """
    if isinstance(want, torch.Tensor):
        got, want = (got,), (want,)
    worst = 0.0
    for g, r in zip(got, want):
        g, r = g.detach().double().cpu(), r.detach().double().cpu()
        if g.shape != r.shape:
            return None
        scale = r.abs().max().item() if r.numel() else 0.0
        diff = (g - r).abs().max().item() if r.numel() else 0.0
        err = diff / scale if scale > 0 else diff
        if not math.isfinite(err):  # checked here: max() would quietly drop a NaN
            return None
        worst = max(worst, err)
    return worst


def norm_rel_error(got: torch.Tensor, want: torch.Tensor) -> float | None:
    """||got - want|| / ||want|| (None when not a finite number): the error of a whole gradient."""
    diff = torch.linalg.vector_norm((got - want).double()).item()
    scale = torch.linalg.vector_norm(want.double()).item()
    err = diff / scale if scale > 0 else diff
    return err if math.isfinite(err) else None


def make_call(impl: Impl, t: Tensors, direction: str, gy: torch.Tensor | None) -> Callable[[], Any]:
    """A zero-argument callable running one direction of impl on t (graph built here, untimed)."""
    if direction == "forward":
        def forward():
            with torch.no_grad():
                return impl(t.x, t.w, t)
        return forward
    x, w = t.x.detach().requires_grad_(True), t.w.detach().requires_grad_(True)
    y = impl(x, w, t)
    grad = torch.ones_like(y) if gy is None else gy
    return lambda: torch.autograd.grad(y, (x, w), grad, retain_graph=True)


def run_case(case: Case, cfg: Config, timer: CpuTimer | CudaTimer, copy_gbps: float, ops: Any) -> dict:
    """Times every contender on both layouts, both directions; returns the case's JSON record."""
    s = case.shape
    impls = implementations(s, ops)
    record: dict[str, Any] = {
        "name": case.name, "shape": s.name, "op": s.op, "where": s.where, "batch": case.batch,
        "output_strides": list(s.output_strides),
        "geometry": {"N": case.batch, "C": s.channels, "H": s.size, "W": s.size, "C_out": s.out_channels,
                     "H_out": s.out_size, "W_out": s.out_size, "kernel": s.kernel, "stride": s.stride,
                     "padding": s.padding, "dilation": s.dilation},
        "directions": {},
    }
    itemsize = torch.empty((), dtype=cfg.dtype).element_size()
    for direction in directions(s.op):
        rec = work(case, direction, itemsize)
        rec |= {"timings_ms": {i: {} for i in impls}, "max_rel_err": {i: {} for i in impls if i != "torch"}}
        record["directions"][direction] = rec
    for layout in LAYOUTS:
        t = make_tensors(case, cfg.dtype, cfg.device, layout)
        for direction in directions(s.op):
            rec = record["directions"][direction]
            gy = None
            if direction == "backward":
                gy_shape = (case.batch, s.out_channels, s.out_size, s.out_size)
                gy = torch.randn(gy_shape, generator=torch.Generator().manual_seed(1)).to(
                    device=cfg.device, dtype=cfg.dtype).contiguous(memory_format=MEMORY_FORMAT[layout])
            results, calls = {}, {}
            # PyTorch first: its result is the reference the others are checked against.
            for name in ["torch"] + [i for i in impls if i != "torch"]:
                try:
                    calls[name] = make_call(impls[name], t, direction, gy)  # backward: builds the graph
                except Exception as exc:  # noqa: BLE001  (a failing contender is reported, the run goes on)
                    rec["timings_ms"][name][layout] = {"error": first_line(exc)}
            # Interleaved (torch, ours, torch, ours, ...): load from other processes hits both alike.
            for name, got in measure_interleaved(calls, timer, cfg.plan).items():
                if got.error is not None:
                    rec["timings_ms"][name][layout] = {"error": first_line(got.error)}
                else:
                    rec["timings_ms"][name][layout] = got.measurement.to_json()
                    results[name] = got.out
            del calls
            for name in rec["max_rel_err"]:
                if name in results and "torch" in results:
                    rec["max_rel_err"][name][layout] = rel_error(results[name], results["torch"])
            del results
    for rec in record["directions"].values():
        derive(rec, copy_gbps, cfg.tolerance, cfg.plan.max_spread)
    record["ok"] = all(rec["ok"] for rec in record["directions"].values())
    return record


def derive(rec: dict, copy_gbps: float, tolerance: float, max_spread: float = NOISY_SPREAD) -> None:
    """Adds ratios (step 5) and throughputs (step 4) to a direction record, from its medians."""
    med = {i: {lay: v.get("median") for lay, v in by_layout.items()}
           for i, by_layout in rec["timings_ms"].items()}
    torch_ms = {lay: v for lay, v in med["torch"].items() if v}
    best_layout = min(torch_ms, key=torch_ms.get) if torch_ms else None
    torch_best = torch_ms.get(best_layout)
    rec["torch_best_layout"] = best_layout
    rec["speedup"], rec["speedup_vs_torch_best"] = {}, {}
    for name in (i for i in med if i != "torch"):
        ours = {lay: v for lay, v in med[name].items() if v}
        rec["speedup"][name] = {lay: ratio(med["torch"].get(lay), v) for lay, v in ours.items()}
        vs_best = {lay: ratio(torch_best, v) for lay, v in ours.items()}
        vs_best["best"] = ratio(torch_best, min(ours.values())) if ours else None
        rec["speedup_vs_torch_best"][name] = vs_best
    if "ours_unfused" in med:  # what fusing bought, on the same layout
        rec["speedup_vs_unfused"] = {lay: ratio(med["ours_unfused"].get(lay), v)
                                     for lay, v in med["ours"].items() if v}
    for key, amount in (("GBps", rec["bytes"]), ("GFLOPs", rec["flops"])):  # per second, in units of 1e9
        rec[key] = {i: {lay: amount / (v * 1e-3) / 1e9 for lay, v in m.items() if v} for i, m in med.items()}
    if rec["memory_bound"] and copy_gbps:
        rec["pct_copy"] = {i: {lay: 100 * g / copy_gbps for lay, g in m.items()}
                           for i, m in rec["GBps"].items()}
    if not rec["memory_bound"]:  # GEMMs: our throughput as a % of PyTorch's on the same layout
        rec["pct_torch"] = {i: {lay: 100 * g / rec["GFLOPs"]["torch"][lay] for lay, g in m.items()
                                if rec["GFLOPs"]["torch"].get(lay)}
                            for i, m in rec["GFLOPs"].items() if i != "torch"}
    errors = [v["error"] for m in rec["timings_ms"].values() for v in m.values() if "error" in v]
    mismatches = [e for m in rec["max_rel_err"].values() for e in m.values() if not within(e, tolerance)]
    rec["check"] = "ERROR" if errors else "MISMATCH" if mismatches else "ok"
    rec["ok"] = rec["check"] == "ok"
    rec["noisy"] = [f"{i}/{lay}" for i, m in rec["timings_ms"].items() for lay, v in m.items()
                    if v.get("spread", 0) > max_spread]
