"""The ladder mode (`--ladder OP`): every rung of one op on one shape, then "auto" and PyTorch.

What each teaching step bought. A rung's run time is first estimated on 1/16 of the channels; a rung
estimated over `--rung-budget` seconds is skipped (and reported with its estimate), the others get as
many runs as fit in that budget, alternating with PyTorch's runs (torch, rung, torch, ...): "x torch"
divides those paired PyTorch runs' median by the rung's.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from .cases import Impl, Tensors, directions, implementations, make_call, make_tensors, rel_error, work
from .common import (
    DIRECTION_LABEL,
    LAYOUT_LABEL,
    LAYOUTS,
    MEMORY_FORMAT,
    NOISY_SPREAD,
    OP_FUNCTION,
    BenchError,
    first_line,
    fmt_err,
    fmt_ms,
    fmt_num,
    fmt_x,
    ratio,
    within,
)
from .config import Config
from .plot import plot_ladder
from .report import Table, header_lines, write_outputs
from .shapes import Case, Shape
from .timing import MIN_RUNS, CpuTimer, CudaTimer, Measurement, measure, measure_interleaved

__all__ = ["PROBE_FRACTION", "check_ladder_api", "format_ladder", "ladder_rungs", "run_ladder",
           "run_ladder_mode"]

PROBE_FRACTION = 16  # a rung's cost is estimated on 1/16 of the channels before a full run


def _sliced(case: Case, t: Tensors, c: int, layout: str) -> tuple[Case, Tensors]:
    """The same problem on the first c channels (depthwise, separable) or output channels (GEMMs):
    cost scales about linearly with them, so a probe run predicts the full run."""
    s = case.shape
    fmt = MEMORY_FORMAT[layout]

    def cut(v: torch.Tensor | None, *index) -> torch.Tensor | None:
        if v is None:
            return None
        v = v[index]
        return v.contiguous(memory_format=fmt) if v.dim() == 4 else v.contiguous()

    every = slice(None)
    if s.op in ("depthwise", "separable"):
        shape = dataclasses.replace(s, channels=c, out_channels=c if s.op == "depthwise" else s.out_channels)
        return Case(shape, case.batch), Tensors(cut(t.x, every, slice(c)), cut(t.w, slice(c)),
                                                cut(t.b, slice(c)), cut(t.w2, every, slice(c)), t.b2)
    shape = dataclasses.replace(s, out_channels=c)
    return Case(shape, case.batch), Tensors(t.x, cut(t.w, slice(c)), cut(t.b, slice(c)))


def _budgeted(case: Case, t: Tensors, impl_for: Callable[[Shape], Impl], direction: str, gy, layout: str,
              cfg: Config, timer: CpuTimer | CudaTimer, torch_call: Callable[[], Any] | None = None,
              torch_ms: float = 0.0) -> tuple[Measurement | None, Any, str | None, Measurement | None]:
    """Probe on 1/PROBE_FRACTION of the channels; skip when the full run would exceed the rung
    budget, else cap the repeats so the rung fits in it. With torch_call, the rung's runs alternate
    with PyTorch's (torch, rung, torch, rung, ...); the last value is PyTorch's paired measurement."""
    full = case.shape.channels if case.shape.op in ("depthwise", "separable") else case.shape.out_channels
    c = max(1, full // PROBE_FRACTION)
    estimate = 0.0
    if c < full:
        probe_case, probe_t = _sliced(case, t, c, layout)
        call = make_call(impl_for(probe_case.shape), probe_t, direction, None)

        def probe() -> float:
            sync = torch.cuda.synchronize if t.x.is_cuda else (lambda: None)  # GPU work is asynchronous
            sync()
            started = time.perf_counter()
            call()
            sync()
            return (time.perf_counter() - started) * full / c

        estimate = probe()
        if estimate > cfg.rung_budget_s:  # the first call may have paid one-time set-up: ask again
            estimate = probe()
    if estimate > cfg.rung_budget_s:
        return None, None, (f"skipped: about {estimate:.3g} s per run (estimated on {c}/{full} channels), "
                            f"over --rung-budget {cfg.rung_budget_s:g} s"), None
    per_round = estimate + (torch_ms * 1e-3 if torch_call is not None else 0.0)
    fits = int(cfg.rung_budget_s / per_round) - cfg.plan.warmup if per_round else cfg.plan.repeats
    plan = dataclasses.replace(cfg.plan, repeats=max(1, min(cfg.plan.repeats, fits)))
    calls = {"torch": torch_call} if torch_call is not None else {}
    calls["rung"] = make_call(impl_for(case.shape), t, direction, gy)
    got = measure_interleaved(calls, timer, plan)
    if got["rung"].error is not None:
        raise got["rung"].error
    paired = got["torch"].measurement if "torch" in got else None
    return got["rung"].measurement, got["rung"].out, None, paired


def ladder_rungs(ops: Any, fname: str, device: torch.device) -> tuple:
    """The rungs of op `fname` on `device`: each device has its own ladder."""
    if device.type == "cpu":
        return tuple(ops.algorithms(fname))
    return tuple(ops.algorithms(fname, device.type))


def run_ladder(case: Case, cfg: Config, timer: CpuTimer | CudaTimer, copy_gbps: float, ops: Any) -> dict:
    """Times every rung (then "auto" and PyTorch) of the op on both layouts, both directions."""
    fname = OP_FUNCTION[case.shape.op]
    rungs = [*ladder_rungs(ops, fname, cfg.device), "auto"]
    itemsize = torch.empty((), dtype=cfg.dtype).element_size()
    rows = []
    for layout in LAYOUTS:
        t = make_tensors(case, cfg.dtype, cfg.device, layout)
        for direction in directions(case.shape.op):
            gy = None
            if direction == "backward":
                s = case.shape
                gy = torch.randn(case.batch, s.out_channels, s.out_size, s.out_size,
                                 generator=torch.Generator().manual_seed(1)).to(
                    device=cfg.device, dtype=cfg.dtype).contiguous(memory_format=MEMORY_FORMAT[layout])
            w = work(case, direction, itemsize)
            reference, torch_call, torch_ms = None, None, 0.0
            entries = [("torch", None)] + [(r, r) for r in rungs]  # PyTorch first: the reference
            for label, algo in entries:
                impl_name = "torch" if algo is None else "ours"

                def impl_for(shape: Shape, algo=algo, impl_name=impl_name) -> Impl:
                    return implementations(shape, ops, algo)[impl_name]

                row: dict[str, Any] = {"rung": label, "layout": layout, "direction": direction}
                try:
                    if label == "torch":  # the reference is never skipped
                        torch_call = make_call(impl_for(case.shape), t, direction, gy)
                        m, out = measure(torch_call, timer, cfg.plan)
                        skipped, torch_ms = None, m.median_ms
                    else:  # interleaved with PyTorch's runs: x torch compares runs under the same load
                        m, out, skipped, paired = _budgeted(case, t, impl_for, direction, gy, layout, cfg,
                                                            timer, torch_call, torch_ms)
                        if paired is not None:
                            row["torch_timing_ms"] = paired.to_json()
                except Exception as exc:  # noqa: BLE001  (a failing rung is reported, the others run)
                    m, out, skipped = None, None, None
                    row["error"] = first_line(exc)
                if skipped:
                    row["skipped"] = skipped
                if m is not None:
                    row["timing_ms"] = m.to_json()
                    row["GBps"] = w["bytes"] / (m.median_ms * 1e-3) / 1e9
                    row["GFLOPs"] = w["flops"] / (m.median_ms * 1e-3) / 1e9
                    if w["memory_bound"] and copy_gbps:
                        row["pct_copy"] = 100 * row["GBps"] / copy_gbps
                    if label == "torch":
                        reference = out
                    elif reference is not None:
                        row["max_rel_err"] = rel_error(out, reference)
                        row["ok"] = within(row["max_rel_err"], cfg.tolerance)
                rows.append(row)
    _ladder_ratios(rows)
    return {"op": fname, "case": case.name, "rungs": rungs, "rows": rows}


def _ladder_ratios(rows: list[dict]) -> None:
    """x prev (what this step bought), x first and x torch, per layout and direction, from medians."""
    for key in {(r["layout"], r["direction"]) for r in rows}:
        group = [r for r in rows if (r["layout"], r["direction"]) == key]
        med = {r["rung"]: r.get("timing_ms", {}).get("median") for r in group}
        ours = [r for r in group if r["rung"] != "torch"]
        first = next((med[r["rung"]] for r in ours if med[r["rung"]]), None)
        prev = None
        for r in ours:
            t = med[r["rung"]]
            r["x_prev"] = ratio(prev, t) if r["rung"] != "auto" else None
            r["x_first"] = ratio(first, t)
            paired = r.get("torch_timing_ms", {}).get("median")  # PyTorch's runs alternating with this rung's
            r["x_torch"] = ratio(paired or med.get("torch"), t)
            if t and r["rung"] != "auto":
                prev = t


def format_ladder(ladder: dict, report: dict) -> str:
    headers = ["rung", "layout", "dir", "ms", "x prev", "x first", "x torch", "GB/s", "%copy", "GFLOP/s",
               "max err", "note"]
    rows = []
    for r in ladder["rows"]:
        ms = r.get("timing_ms", {})
        note = r.get("skipped") or r.get("error") or ("" if r.get("ok", True) else "MISMATCH")
        if ms and len(ms["runs"]) < MIN_RUNS:
            note = (note + f" {len(ms['runs'])} run(s), capped by --rung-budget").strip()
        max_spread = report["settings"].get("max_spread", NOISY_SPREAD)
        if any(t.get("spread", 0) > max_spread for t in (ms, r.get("torch_timing_ms", {}))):
            note = (note + " noisy").strip()
        rows.append([r["rung"], LAYOUT_LABEL[r["layout"]], DIRECTION_LABEL[r["direction"]],
                     fmt_ms(ms.get("median")), fmt_x(r.get("x_prev")), fmt_x(r.get("x_first")),
                     fmt_x(r.get("x_torch")),
                     fmt_num(r.get("GBps")), fmt_num(r.get("pct_copy"), ".0f"), fmt_num(r.get("GFLOPs")),
                     fmt_err([r["max_rel_err"]]) if "max_rel_err" in r else "-", note])
    title = (f"ladder of {ladder['op']} on {ladder['case']} (x prev: what the step bought; "
             f"x torch: PyTorch on the same layout / this rung)")
    return "\n".join(header_lines(report)) + "\n\n" + Table(title, headers, rows, left=3).text()


def check_ladder_api(op: str, features: dict) -> None:
    if not features["algorithms"]:
        raise BenchError("--ladder: this build of atrous has no atrous.ops.algorithms() yet (it comes with "
                         "the kernel ladder); expected a build whose ops take algo=...")
    if not features["algo"].get(op, False):
        raise BenchError(f"--ladder {op}: expected atrous.ops.{op} to exist and take an algo= argument "
                         "in this build")


def run_ladder_mode(cfg: Config, timer: CpuTimer | CudaTimer, copy_gbps: float, ops: Any, report: dict,
                    echo: Callable[[str], None]) -> dict:
    """The ladder of cfg's one case: adds it to the report, prints it, writes the JSON and the chart."""
    (case,) = cfg.cases
    report["ladder"] = run_ladder(case, cfg, timer, copy_gbps, ops)
    report["results"], report["summary"] = [], []
    echo(format_ladder(report["ladder"], report))
    stem = f"ladder-{cfg.ladder}-{case.name}"
    write_outputs(report, cfg.out, stem, lambda r, p: plot_ladder(r["ladder"], p), echo, markdown=None)
    return report
