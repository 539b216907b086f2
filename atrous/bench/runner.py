"""Running the harness: `run(config)` times what the config selects, prints the tables, writes the files."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .cases import default_ops, run_case
from .common import EXIT_MISMATCH, EXIT_OK, fmt_x
from .config import Config, as_options
from .ladder import check_ladder_api, run_ladder_mode
from .machine import build_info, exact_fp32, features, machine_info
from .models import format_models, run_models_mode
from .plot import plot_results
from .report import (
    format_report,
    format_shapes,
    header_lines,
    markdown_report,
    summarize,
    update_readme,
    write_outputs,
)
from .shapes import SHAPES, TINY_SHAPES, Shape
from .timing import MIN_RUNS, CpuTimer, CudaTimer, copy_bandwidth, make_timer

__all__ = ["exit_status", "listing", "report_ok", "run"]


def _report_base(cfg: Config, timer: CpuTimer | CudaTimer, ops: Any) -> dict:
    """The report's head: the command, the machine (with its copy bandwidth), the build and the settings."""
    copy = copy_bandwidth(cfg.device, timer, cfg.copy_bytes)
    return {
        "schema": "atrous-bench/1",
        "command": cfg.command,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(cfg.device, timer, copy),
        "atrous": build_info(),
        "features": features(ops),
        "settings": {"dtype": str(cfg.dtype).removeprefix("torch."), "warmup": cfg.plan.warmup,
                     "repeats": cfg.plan.repeats, "min_runs": MIN_RUNS, "budget_s": cfg.plan.budget_s,
                     "max_spread": cfg.plan.max_spread, "retries": cfg.plan.retries,
                     "interleaved": "one run of each contender in turn (torch, ours, torch, ours, ...)",
                     "tolerance": cfg.tolerance, "out": str(cfg.out), "ops": list(cfg.ops),
                     "timer": "CUDA events, L2 flushed before each run" if timer.flushes else "perf_counter",
                     "backward": "autograd.grad(retain_graph=True) on a graph built once, untimed; "
                                 "input and weight gradients"},
    }


def run(cfg: Config, ops: Any = None, echo: Callable[[str], None] = print) -> dict:
    """Runs the benchmark (the layers, the ladder or the models) described by cfg, prints its tables and
    writes its files; returns the report (the JSON as a dict). ops: another ops module (default
    atrous.ops)."""
    ops = default_ops() if ops is None else ops
    if cfg.ladder:
        check_ladder_api(cfg.ladder, features(ops))  # before spending time on the copy bandwidth
    timer = make_timer(cfg.device)
    with exact_fp32():
        report = _report_base(cfg, timer, ops)
        copy_gbps = report["machine"]["copy_bandwidth"]["GBps"]
        if cfg.ladder:
            return run_ladder_mode(cfg, timer, copy_gbps, ops, report, echo)
        if cfg.model_cases:
            return run_models_mode(cfg, timer, report, echo)
        echo(header_lines(report)[0])
        echo(f"{len(cfg.cases)} cases; a line per case as it finishes, then the tables")
        results = []
        for case in cfg.cases:
            geometry = f"{case.input_dims} -> {case.shape.describe().split(' -> ')[1]}"
            if case.shape.op == "separable" and not report["features"]["separable_conv2d"]:
                results.append({"name": case.name, "shape": case.shape.name, "op": case.shape.op,
                                "batch": case.batch, "geometry_text": geometry, "ok": True, "directions": {},
                                "skipped": "atrous.ops.separable_conv2d is not in this build yet"})
                continue
            started = time.perf_counter()
            record = run_case(case, cfg, timer, copy_gbps, ops)
            record["geometry_text"] = geometry
            results.append(record)
            x = record["directions"]["forward"]["speedup"]["ours"]
            checks = "/".join(rec["check"] for rec in record["directions"].values())
            echo(f"  {case.name:<30} {time.perf_counter() - started:6.1f} s  forward x NCHW "
                 f"{fmt_x(x.get('nchw'))}, x CL {fmt_x(x.get('channels_last'))}  check {checks}")
    report["results"] = results
    report["summary"] = summarize(results)
    echo("")
    echo(format_report(report))
    write_outputs(report, cfg.out, "bench", plot_results, echo)
    if cfg.update_readme:
        update_readme(cfg.update_readme, markdown_report(report))
        echo(f"updated the bench block of {cfg.update_readme}")
    return report


def report_ok(report: dict) -> bool:
    """Whether every row of the report matched PyTorch (and no contender failed)."""
    if report.get("models") is not None:
        return all(r["ok"] for r in report["models"])
    if report.get("ladder"):
        return all(r.get("ok", True) and "error" not in r for r in report["ladder"]["rows"])
    return all(r["ok"] for r in report["results"])


def exit_status(report: dict) -> int:
    """EXIT_OK when every row matched PyTorch, else EXIT_MISMATCH (bad options never get this far)."""
    return EXIT_OK if report_ok(report) else EXIT_MISMATCH


def listing(options: Any = None, shapes: Sequence[Shape] | None = None,
            registry: Mapping[str, Callable[..., Any]] | None = None) -> str:
    """What `--list` prints: the shapes (`--tiny`: the tiny ones), or with `--models` the models."""
    o = as_options(options)
    if o.models is not None:
        return format_models(registry)
    return format_shapes(TINY_SHAPES if o.tiny else SHAPES if shapes is None else shapes)
