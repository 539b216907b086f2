"""Where a model's time goes per op type (GEMM, depthwise, dense, ...): one run under torch.profiler.

Every operator event's self time (its own time, without the operators it called) is put in one
category, so the categories add up to the run's operator time. Convolutions are classified by their
weight: 1x1 is a GEMM, one input channel per group of a multi-channel input is depthwise, the rest
dense; atrous's own ops by their names. Copies and `contiguous` are the layout conversions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch.profiler import ProfilerActivity, profile

from .common import fmt_ms, fmt_num, fmt_x, ratio
from .report import Table

__all__ = ["CATEGORIES", "classify", "is_autograd_node", "op_profile", "profile_shares", "profile_tables"]

GEMM, DEPTHWISE, DENSE, SEPARABLE = "GEMM (1x1 conv, matmul)", "depthwise", "dense conv", "fused separable"
ELEMENTWISE, LAYOUT, OTHER = "pool/upsample/BN/ReLU/add", "layout conversions, copies", "other"
CATEGORIES = (GEMM, DEPTHWISE, DENSE, SEPARABLE, ELEMENTWISE, LAYOUT, OTHER)

_ATROUS = {"pointwise": GEMM, "depthwise": DEPTHWISE, "atrous_conv2d": DENSE, "separable": SEPARABLE,
           "conv2d_backward_bias": ELEMENTWISE}
_MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm")
_LAYOUT = ("aten::copy_", "aten::contiguous", "aten::clone", "aten::to", "aten::_to_copy")
_ELEMENTWISE_WORDS = ("relu", "hardswish", "hardsigmoid", "sigmoid", "batch_norm", "pool", "upsample",
                      "interpolate", "add", "mul", "div", "sub", "cat", "mean", "sum", "dropout", "threshold",
                      "softmax", "cross_entropy", "nll_loss", "fill_", "zero_", "bernoulli", "clamp", "where")


def _conv_kind(shapes: Sequence[Sequence[int]], backward: bool) -> str:
    """GEMM, depthwise or dense from an aten convolution's input shapes ((x, w, ...) forward;
    convolution_backward's are (grad_output, x, w, ...))."""
    x, w = (shapes[1], shapes[2]) if backward else (shapes[0], shapes[1])
    if len(w) != 4 or len(x) != 4:
        return DENSE
    if w[2] * w[3] == 1:
        return GEMM
    if w[1] == 1 and x[1] > 1:  # one input channel per group: depthwise (any multiplier)
        return DEPTHWISE
    return DENSE


def is_autograd_node(name: str) -> bool:
    """Autograd's wrapper events (ConvolutionBackward0, GeneratedBackwardFor_atrous_..., the engine's):
    the profiler does not always link the operators they run as their children, so their "self" time
    can repeat those operators' time; they are left out."""
    return (name.startswith(("autograd::", "GeneratedBackwardFor", "torch::autograd"))
            or ("::" not in name and "Backward" in name))


def classify(name: str, shapes: Sequence[Sequence[int]] | None = None) -> str:
    """The category of one operator event, from its name and (for aten convolutions) its input shapes."""
    if name.startswith("atrous::"):
        return next((cat for key, cat in _ATROUS.items() if key in name), OTHER)
    if "conv" in name and name.startswith("aten::"):
        backward = "backward" in name
        usable = shapes and len(shapes) > (2 if backward else 1)
        return _conv_kind(shapes, backward) if usable else DENSE
    if name in _MATMUL:
        return GEMM
    if name in _LAYOUT:
        return LAYOUT
    base = name.split("::")[-1]
    if any(word in base for word in _ELEMENTWISE_WORDS):
        return ELEMENTWISE
    return OTHER


def op_profile(fn: Callable[[], Any], runs: int = 1) -> dict:
    """Profiles `runs` calls of fn; returns {"ms": {category: ms per call}, "total_ms": ..., "top": the five
    operators with the most self time}. Profiling slows small ops, so the times are for proportions only."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(runs):
            fn()
    ms = dict.fromkeys(CATEGORIES, 0.0)
    by_name: dict[str, float] = {}
    for event in prof.events():
        self_ms = event.self_cpu_time_total / 1e3 / runs
        if self_ms <= 0 or is_autograd_node(event.name):
            continue
        ms[classify(event.name, event.input_shapes)] += self_ms
        by_name[event.name] = by_name.get(event.name, 0.0) + self_ms
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:5]
    return {"ms": ms, "total_ms": sum(ms.values()), "top": [{"op": n, "ms": v} for n, v in top]}


def profile_shares(prof: dict) -> dict[str, float]:
    """Each category's share of the profiled operator time (0..1)."""
    total = prof["total_ms"] or 1.0
    return {cat: v / total for cat, v in prof["ms"].items()}


def profile_tables(records: Sequence[dict]) -> list[Table]:
    """One table per profiled (case, step): ms per op type for each impl, its share, and the ratio."""
    tables = []
    for r in records:
        for step, rec in r["steps"].items():
            prof = rec.get("profile")
            if not prof or set(prof) != {"atrous", "torch"}:
                continue
            share = {impl: profile_shares(p) for impl, p in prof.items()}
            rows = []
            for cat in CATEGORIES:
                ours, theirs = prof["atrous"]["ms"][cat], prof["torch"]["ms"][cat]
                if ours < 0.0005 and theirs < 0.0005:
                    continue
                rows.append([cat, fmt_ms(ours), fmt_ms(theirs), fmt_num(100 * share["atrous"][cat], ".0f"),
                             fmt_num(100 * share["torch"][cat], ".0f"), fmt_x(ratio(theirs, ours)), ""])
            total = {impl: p["total_ms"] for impl, p in prof.items()}
            top = prof["atrous"]["top"][0]["op"] if prof["atrous"]["top"] else "-"
            rows.append(["total", fmt_ms(total["atrous"]), fmt_ms(total["torch"]), "100", "100",
                         fmt_x(ratio(total["torch"], total["atrous"])), f"top atrous op: {top}"])
            where = (f", layouts atrous {rec['best_layout']['atrous']}, torch {rec['best_layout']['torch']}"
                     if "best_layout" in rec else "")
            title = (f"profile of {r['name']} {step}{where} (one profiled run each; operator self time "
                     "per op type, ms; the profiler slows small ops, read the shares)")
            headers = ["op type", "atrous ms", "torch ms", "atrous %", "torch %", "x", "note"]
            tables.append(Table(title, headers, rows))
    return tables
