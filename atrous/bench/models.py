"""The model mode (`--models`): whole DeepLab networks, impl="atrous" against impl="torch", same weights.

Step 7 of the package docstring: each model is built once with a fixed seed; forward (eval, no_grad),
a training step (each impl on its own copy) and the fused eval model are timed and checked.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from atrous.models import AtrousRateWarning, list_models
from atrous.nn import fuse, set_impl

from .cases import norm_rel_error, rel_error
from .common import (
    LAYOUT_LABEL,
    LAYOUTS,
    MEMORY_FORMAT,
    MODELS_README_END,
    MODELS_README_START,
    NOISY_SPREAD,
    first_line,
    fmt_err,
    fmt_ms,
    fmt_num,
    fmt_x,
    ratio,
    within,
)
from .config import DEFAULT_MODELS, MODEL_IMPLS, MODEL_OUTPUT_STRIDE, NUM_CLASSES, Config
from .plot import plot_models
from .profile import op_profile, profile_tables
from .report import Table, geomean, header_lines, noise_summary, timing_text, update_readme, write_outputs
from .shapes import ModelCase
from .timing import CpuTimer, CudaTimer, measure_interleaved

__all__ = ["format_model_report", "format_models", "markdown_model_report", "model_table", "run_model_case",
           "run_models_mode", "summarize_models"]


def _seeded_model(factory: Callable[..., Any], cfg: Config) -> torch.nn.Module:
    """The model both implementations share: a fixed seed, so every run times the same weights."""
    torch.manual_seed(0)
    model = factory(num_classes=NUM_CLASSES, output_stride=MODEL_OUTPUT_STRIDE)
    return model.to(device=cfg.device, dtype=cfg.dtype, memory_format=MEMORY_FORMAT[cfg.layout]).eval()


def _logits(out: Any) -> torch.Tensor:
    return out["out"] if isinstance(out, dict) else out  # models built with aux=True return a dict


def _no_grad_forward(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    def forward() -> torch.Tensor:
        with torch.no_grad():
            return _logits(model(x))
    return forward


def _training_step(model: torch.nn.Module, impl: str, x: torch.Tensor,
                   labels: torch.Tensor) -> tuple[Callable[[], torch.Tensor], torch.Tensor, torch.Tensor]:
    """A training step on impl's own copy of the model; returns (step, loss, gradients) where loss
    and the flattened gradients come from a first step (the one that is checked)."""
    net = set_impl(copy.deepcopy(model).train(), impl)  # same starting weights for both impls
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(_logits(net(x)), labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    # The checked step runs without dropout: its random mask follows the memory layout of the tensor it
    # drops, which can differ between the impls (channels_last), so even a shared seed would not align it.
    dropouts = [m for m in net.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    for m in dropouts:
        m.eval()
    loss = step()
    for m in dropouts:
        m.train()
    grads = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
    return step, loss, grads


def _inference_calls(step: str, model: torch.nn.Module, fused: torch.nn.Module | None,
                     x: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """The contenders of an eval step, each impl on its own copy (so that they can alternate).

    best: the fused model of each impl on each layout (torch/nchw, torch/channels_last, atrous/...)."""
    if step == "best":
        calls = {}
        for impl in MODEL_IMPLS:
            for layout in LAYOUTS:
                fmt = MEMORY_FORMAT[layout]
                net = set_impl(copy.deepcopy(fused), impl).to(memory_format=fmt)
                calls[f"{impl}/{layout}"] = _no_grad_forward(net, x.contiguous(memory_format=fmt))
        return calls
    base = fused if step == "fused" else model
    return {impl: _no_grad_forward(set_impl(copy.deepcopy(base), impl), x) for impl in MODEL_IMPLS}


def _impl_of(contender: str) -> str:
    return contender.split("/")[0]  # "atrous/channels_last" -> "atrous"


def run_model_case(case: ModelCase, model: torch.nn.Module, fused: torch.nn.Module | None, cfg: Config,
                   timer: CpuTimer | CudaTimer, echo: Callable[[str], None] = print) -> dict:
    """Times every step of one model case, the impls interleaved (torch, atrous, torch, ...); returns the
    case's JSON record."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(case.batch, 3, case.size, case.size, generator=gen).to(
        device=cfg.device, dtype=cfg.dtype).contiguous(memory_format=MEMORY_FORMAT[cfg.layout])
    labels = torch.randint(0, NUM_CLASSES, (case.batch, case.size, case.size), generator=gen).to(cfg.device)
    record: dict[str, Any] = {"name": case.name, "model": case.model, "batch": case.batch, "size": case.size,
                              "input": case.input_dims, "layout": cfg.layout,
                              "params": sum(p.numel() for p in model.parameters()), "steps": {}}
    for step in case.steps or cfg.steps:
        started = time.perf_counter()
        rec: dict[str, Any] = {"timings_ms": {}}
        calls: dict[str, Callable[[], Any]] = {}
        firsts: dict[str, Any] = {}  # train: impl -> (loss, gradients) of its checked first step
        plan = cfg.plan
        for impl in MODEL_IMPLS:
            try:
                if step == "train":
                    calls[impl], loss, grads = _training_step(model, impl, x, labels)
                    firsts[impl] = (loss, grads)
                    plan = dataclasses.replace(cfg.plan, warmup=max(0, cfg.plan.warmup - 1))
                elif impl == MODEL_IMPLS[0]:
                    calls |= _inference_calls(step, model, fused, x)
            except Exception as exc:  # noqa: BLE001  (a failing impl is reported, the run goes on)
                rec["timings_ms"][impl] = {"error": first_line(exc)}
        outputs: dict[str, Any] = {}
        for name, got in measure_interleaved(calls, timer, plan).items():
            if got.error is not None:
                rec["timings_ms"][name] = {"error": first_line(got.error)}
            else:
                rec["timings_ms"][name] = got.measurement.to_json()
                outputs[name] = got.out
        _check_model_step(rec, step, outputs, firsts)
        _derive_model_step(rec, step, case.batch, cfg)
        if step in PROFILED_STEPS and rec["ok"]:  # one profiled run of each impl's timed configuration
            chosen = {impl: f"{impl}/{rec['best_layout'][impl]}" if step == "best" else impl
                      for impl in MODEL_IMPLS}
            rec["profile"] = {impl: op_profile(calls[name]) for impl, name in chosen.items()}
        del calls, outputs, firsts
        record["steps"][step] = rec
        layouts = (f"  best layouts torch {rec['best_layout'].get('torch')}, atrous "
                   f"{rec['best_layout'].get('atrous')}" if step == "best" else "")
        echo(f"  {case.name:<44} {step:<8} {time.perf_counter() - started:6.1f} s  ms/image atrous "
             f"{fmt_ms(rec['ms_per_image'].get('atrous'))} torch {fmt_ms(rec['ms_per_image'].get('torch'))}  "
             f"x {fmt_x(rec['speedup'])}  check {rec['check']}{layouts}")
    if fused is not None:
        blocks = [m for m in fused.modules() if hasattr(m, "fused_op")]
        record["fused_separable_blocks"] = {"fused_op": sum(bool(m.fused_op) for m in blocks),
                                            "separable": len(blocks)}
    record["ok"] = all(rec["ok"] for rec in record["steps"].values())
    return record


def _check_model_step(rec: dict, step: str, outputs: dict[str, Any], firsts: dict[str, Any]) -> None:
    """Adds max_rel_err (the output, or the loss for train) and grad_rel_err (train) against PyTorch's."""
    if step == "train":
        if len(firsts) == len(MODEL_IMPLS) and len(outputs) == len(MODEL_IMPLS):
            rec["max_rel_err"] = rel_error(firsts["atrous"][0], firsts["torch"][0])
            rec["grad_rel_err"] = norm_rel_error(firsts["atrous"][1], firsts["torch"][1])
        return
    reference = next((out for name, out in outputs.items() if _impl_of(name) == "torch"), None)
    ours = [out for name, out in outputs.items() if _impl_of(name) == "atrous"]
    if reference is not None and ours and len(outputs) == len(rec["timings_ms"]):
        errors = [rel_error(out, reference) for out in ours]
        rec["max_rel_err"] = None if None in errors else max(errors)


def _derive_model_step(rec: dict, step: str, batch: int, cfg: Config) -> None:
    """Per-image times, images/s, the ratio and the check of one step record, from its medians (best:
    each impl's fastest layout)."""
    med: dict[str, float] = {}
    rec["best_layout"] = {}
    for name, v in rec["timings_ms"].items():
        impl, t = _impl_of(name), v.get("median")
        if t and (impl not in med or t < med[impl]):
            med[impl] = t
            if "/" in name:
                rec["best_layout"][impl] = name.split("/")[1]
    if step != "best":
        del rec["best_layout"]
    rec["ms_per_image"] = {impl: v / batch for impl, v in med.items()}
    rec["images_per_s"] = {impl: 1e3 * batch / v for impl, v in med.items()}
    rec["speedup"] = ratio(med.get("torch"), med.get("atrous"))
    errors = [v["error"] for v in rec["timings_ms"].values() if "error" in v]
    mismatch = not within(rec.get("max_rel_err"), cfg.tolerance) or (
        step == "train" and not within(rec.get("grad_rel_err"), cfg.grad_tolerance))
    rec["check"] = "ERROR" if errors else "MISMATCH" if mismatch else "ok"
    rec["ok"] = rec["check"] == "ok"
    rec["noisy"] = [name for name, v in rec["timings_ms"].items() if v.get("spread", 0) > cfg.plan.max_spread]


MODEL_STEP_LABEL = {"forward": "forward (eval, no_grad)",
                    "train": "training step (forward + loss + backward + SGD)",
                    "fused": "fused eval model (atrous.nn.fuse), forward",
                    "best": "best vs best: fused, each impl's faster layout"}
PROFILED_STEPS = ("train", "best")


def summarize_models(records: list[dict], steps: Sequence[str]) -> list[dict]:
    """Per step: the geometric mean of x over the ok cases, and the smallest x."""
    lines = []
    for step in steps:
        pairs = [(r["steps"][step]["speedup"], r["name"]) for r in records
                 if step in r["steps"] and r["steps"][step]["ok"] and r["steps"][step]["speedup"]]
        entry: dict[str, Any] = {"key": f"model_{step}", "label": MODEL_STEP_LABEL[step], "step": step,
                                 "count": len(pairs), "x": geomean(v for v, _ in pairs)}
        if pairs:
            v, name = min(pairs)
            entry["min"] = {"value": v, "case": name}
        lines.append(entry)
    return lines


def _model_header_lines(report: dict) -> list[str]:
    s = report["settings"]
    return [
        header_lines(report)[0],
        (f"times: {timing_text(s)}; "
         f"{s['layout']} input; per image = median / batch; x = impl='torch' time / impl='atrous' time "
         f"(> 1x: atrous faster)"),
    ]


def format_model_summary(report: dict) -> list[str]:
    out = []
    for entry in report["models_summary"]:
        if not entry["count"]:
            out.append(f"  {entry['label']:<50} n/a (no case measured and correct)")
            continue
        m = entry.get("min", {})
        count = f"{entry['count']} case{'s' if entry['count'] > 1 else ''}"
        out.append(f"  {entry['label']:<50} {fmt_x(entry['x'])}  min {fmt_x(m.get('value'))} "
                   f"({m.get('case')})"
                   f"  [{count}]")
    return out


def model_table(report: dict) -> Table:
    headers = ["case", "input", "step", "atrous ms/img", "torch ms/img", "atrous img/s", "torch img/s", "x",
               "max err", "grad err", "check"]
    rows = []
    for r in report["models"]:
        for step, rec in r["steps"].items():
            per_image, per_s = rec["ms_per_image"], rec["images_per_s"]
            grad = fmt_err([rec["grad_rel_err"]]) if "grad_rel_err" in rec else "-"
            errors = [f"{impl}: {v['error']}" for impl, v in rec["timings_ms"].items() if "error" in v]
            check = rec["check"] + (" noisy" if rec["noisy"] else "") + "".join(f"; {e}" for e in errors)
            err = fmt_err([rec["max_rel_err"]]) if "max_rel_err" in rec else "-"
            label = step
            if rec.get("best_layout", {}).keys() >= {"atrous", "torch"}:
                label = (f"best (atrous {LAYOUT_LABEL[rec['best_layout']['atrous']]}, "
                         f"torch {LAYOUT_LABEL[rec['best_layout']['torch']]})")
            rows.append([r["name"], r["input"], label,
                         fmt_ms(per_image.get("atrous")), fmt_ms(per_image.get("torch")),
                         fmt_num(per_s.get("atrous"), ".2f"), fmt_num(per_s.get("torch"), ".2f"),
                         fmt_x(rec["speedup"]), err, grad, check])
    title = ("models: impl='atrous' against impl='torch', same weights and input (max err: output, or the "
             "loss for train; grad err: ||g_atrous - g_torch|| / ||g_torch||)")
    return Table(title, headers, rows, left=3)


def _model_notes(report: dict) -> list[str]:
    notes = []
    for r in report["models"]:
        blocks = r.get("fused_separable_blocks")
        if blocks and blocks["separable"]:
            notes.append(f"  {r['model']}: fused step runs {blocks['fused_op']} of {blocks['separable']} "
                         "separable blocks on atrous.ops.separable_conv2d")
    return sorted(set(notes))


def _model_noise(report: dict) -> list[str]:
    timings = [v for r in report["models"] for rec in r["steps"].values() for v in rec["timings_ms"].values()
               if "spread" in v]
    return noise_summary(timings, report["settings"].get("max_spread", NOISY_SPREAD))


def format_model_report(report: dict) -> str:
    parts = ["\n".join(_model_header_lines(report)), model_table(report).text()]
    parts += [t.text() for t in profile_tables(report["models"])]
    notes = _model_notes(report)
    if notes:
        parts.append("notes\n" + "\n".join(notes))
    parts.append("summary (geometric means over cases; x = torch time / atrous time)\n"
                 + "\n".join(format_model_summary(report) + _model_noise(report)))
    return "\n\n".join(parts)


def markdown_model_report(report: dict) -> str:
    lines = [(f"Regenerate with `{report['command']}` "
              f"(the JSON and chart go to `{report['settings']['out']}/`)."), ""]
    lines += [f"{line}  " for line in _model_header_lines(report)]
    lines += ["", "```", "summary (geometric means over cases; x = torch time / atrous time)"]
    lines += format_model_summary(report) + _model_notes(report) + _model_noise(report)
    lines += ["```", "", model_table(report).markdown()]
    profiles = profile_tables(report["models"])
    if profiles:
        lines += ["", "<details><summary>where the time goes, per op type</summary>", ""]
        lines += [line for t in profiles for line in (t.markdown(), "")] + ["</details>"]
    return "\n".join(lines)


def run_models_mode(cfg: Config, timer: CpuTimer | CudaTimer, report: dict,
                    echo: Callable[[str], None]) -> dict:
    """Every model case of cfg: adds them to the report, prints the table, writes the files (and the
    README block)."""
    names = list(dict.fromkeys(c.model for c in cfg.model_cases))
    report["settings"] |= {
        "models": names, "sizes": sorted({c.size for c in cfg.model_cases}),
        "batches": sorted({c.batch for c in cfg.model_cases}), "steps": list(cfg.steps), "layout": cfg.layout,
        "num_classes": NUM_CLASSES, "output_stride": MODEL_OUTPUT_STRIDE,
        "grad_tolerance": cfg.grad_tolerance,
        "train": "train mode; cross-entropy on random labels, backward, SGD(lr=1e-3, momentum=0.9) on each "
                 "impl's own copy; the first step (dropout off) is checked and counts as a warm-up",
        "fused": "atrous.nn.fuse(model): batch norms folded, separable blocks on the fused op; eval forward",
    }
    echo(_model_header_lines(report)[0])
    echo(f"{len(cfg.model_cases)} model cases x {len(cfg.steps)} steps ({', '.join(cfg.steps)}); "
         "a line per step as it finishes, then the table")
    records = []
    with warnings.catch_warnings():
        # Small inputs (--quick, tests) leave maps smaller than the ASPP rates; the timing is still valid.
        warnings.simplefilter("ignore", AtrousRateWarning)
        for name in names:
            model = _seeded_model(cfg.factories[name], cfg)
            fused = fuse(model) if {"fused", "best"} & set(cfg.steps) else None
            for case in (c for c in cfg.model_cases if c.model == name):
                records.append(run_model_case(case, model, fused, cfg, timer, echo))
            del model, fused
    report["models"] = records
    report["models_summary"] = summarize_models(records, cfg.steps)
    report["results"], report["summary"] = [], []
    echo("")
    echo(format_model_report(report))
    write_outputs(report, cfg.out, "models", plot_models, echo, markdown=markdown_model_report)
    if cfg.update_readme:
        update_readme(cfg.update_readme, markdown_model_report(report),
                      MODELS_README_START, MODELS_README_END)
        echo(f"updated the models block of {cfg.update_readme}")
    return report


def format_models(registry: Mapping[str, Callable[..., Any]] | None = None) -> str:
    """The table `--models --list` prints: the names of `registry` (default atrous.models.MODELS), the
    default ones marked."""
    names = list_models() if registry is None else list(registry)
    rows = [[name, "default" if name in DEFAULT_MODELS else ""] for name in names]
    return Table("models (--models NAMES or globs; built with num_classes=21, output_stride=16)",
                 ["name", "note"], rows).text()
