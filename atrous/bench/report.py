"""The report: summaries (geometric means), text and markdown tables, the README block, the files written."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atrous.readme import ReadmeBlockError, replace_block

from .common import (
    DIRECTION_LABEL,
    LAYOUT_LABEL,
    LAYOUTS,
    NOISY_SPREAD,
    OPS,
    README_END,
    README_START,
    BenchError,
    fmt_err,
    fmt_ms,
    fmt_num,
    fmt_x,
    ratio,
)
from .shapes import Shape

__all__ = ["Table", "format_report", "format_shapes", "format_summary", "geomean", "header_lines",
           "markdown_report", "noise_lines", "noise_summary", "result_tables", "summarize", "timing_text",
           "update_readme", "write_outputs"]


@dataclass
class Table:
    """Rows of strings; numbers right-aligned, the first `left` columns and the last (check or note)
    left-aligned; as fixed-width text or a markdown table."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    left: int = 1  # how many leading columns are left-aligned

    def _left(self, column: int) -> bool:
        return column < self.left or column == len(self.headers) - 1

    def text(self) -> str:
        widths = [max(len(c) for c in col) for col in zip(self.headers, *self.rows)]

        def fmt(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) if self._left(i) else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        head = fmt(self.headers)
        return "\n".join([self.title, head, "-" * len(head)] + [fmt(r) for r in self.rows])

    def markdown(self) -> str:
        align = ["---" if self._left(i) else "---:" for i in range(len(self.headers))]
        rows = [self.headers, align] + self.rows
        return f"**{self.title}**\n\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows)


def _best(values: dict[str, float] | None) -> float | None:
    values = {k: v for k, v in (values or {}).items() if v}
    return max(values.values()) if values else None


def geomean(values: Iterable[float]) -> float | None:
    values = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def _pairs(results: list[dict], op: str, direction: str, key: str, impl: str | None = "ours",
           layouts: Sequence[str] = LAYOUTS) -> list[tuple[float, str, str]]:
    """(ratio, case, layout) from ok records of op, for rec[key][impl][layout] (rec[key][layout] when
    impl is None: ratios of ours against ours, such as speedup_vs_unfused)."""
    out = []
    for r in results:
        rec = r.get("directions", {}).get(direction)
        if r["op"] != op or not rec or not rec["ok"]:
            continue
        for lay in layouts:
            by_layout = rec.get(key, {}) if impl is None else rec.get(key, {}).get(impl, {})
            v = by_layout.get(lay)
            if v:
                out.append((v, r["name"], lay))
    return out


def summarize(results: list[dict]) -> list[dict]:
    """The summary lines, each {key, label, values: {name: geomean}, count, min?}; from records only,
    so a saved bench.json can be re-summarized."""
    lines = []

    def line(key: str, label: str, op: str, direction: str, ratio_key: str, columns: dict[str, Sequence[str]],
             impl: str | None = "ours", with_min: bool = False) -> None:
        layouts = sorted({lay for lays in columns.values() for lay in lays})
        all_pairs = _pairs(results, op, direction, ratio_key, impl, layouts)
        entry: dict[str, Any] = {
            "key": key, "label": label, "op": op, "count": len({case for _, case, _ in all_pairs}),
            "values": {name: geomean(v for v, _, lay in all_pairs if lay in lays)
                       for name, lays in columns.items()},
        }
        if with_min and all_pairs:
            v, case, lay = min(all_pairs)
            entry["min"] = {"value": v, "case": case, "layout": lay}
        lines.append(entry)

    same = {"NCHW": ("nchw",), "CL": ("channels_last",), "all": LAYOUTS}
    line("depthwise_forward_same_layout", "depthwise forward vs PyTorch, same layout", "depthwise", "forward",
         "speedup", same, with_min=True)
    vs_best = {"ours NCHW": ("nchw",), "ours CL": ("channels_last",), "ours best": ("best",)}
    line("depthwise_forward_vs_torch_best", "depthwise forward vs PyTorch's best layout", "depthwise",
         "forward", "speedup_vs_torch_best", vs_best)
    line("depthwise_backward_same_layout", "depthwise backward (input+weight) vs PyTorch, same layout",
         "depthwise", "backward", "speedup", same, with_min=True)
    for op, label in (("pointwise", "pointwise GEMM"), ("dense", "dense atrous GEMM")):
        for direction in ("forward", "backward"):
            line(f"{op}_{direction}_throughput", f"{label} {direction} GFLOP/s, ours / PyTorch, same layout",
                 op, direction, "speedup", same)
    line("separable_forward_vs_torch_best", "fused separable forward vs PyTorch's two convs, its best layout",
         "separable", "forward", "speedup_vs_torch_best", vs_best)
    line("separable_forward_vs_unfused", "fused separable forward vs our two unfused ops, same layout",
         "separable", "forward", "speedup_vs_unfused", same, impl=None)
    return lines


def noise_lines(report: dict) -> list[str]:
    """How many measurement sets were rerun for noise, and a warning when some stayed noisy: then only
    ratios far from 1x mean anything."""
    timings = [v for r in report["results"] for rec in r.get("directions", {}).values()
               for m in rec["timings_ms"].values() for v in m.values() if "spread" in v]
    return noise_summary(timings, report.get("settings", {}).get("max_spread", NOISY_SPREAD))


def noise_summary(timings: Sequence[dict], max_spread: float) -> list[str]:
    """The noise lines from timing records ({"spread", "attempts"?}), for the layer and model reports."""
    lines = []
    rerun = sum(v.get("attempts", 1) > 1 for v in timings)
    if rerun:
        lines.append(f"  reruns: {rerun} of {len(timings)} measurements come from a rerun (their set spread "
                     f"by more than {max_spread:.0%} of its median first)")
    noisy = sum(v["spread"] > max_spread for v in timings)
    if noisy:
        lines.append(f"  noise: {noisy} of {len(timings)} measurements had runs spread by more than "
                     f"{max_spread:.0%} of their median (rows marked 'noisy'); was the machine busy?")
    return lines


def format_summary(report: dict) -> list[str]:
    """The summary as text, for the ops that were run (an op with no usable rows shows n/a)."""
    out = []
    skipped = {r["op"]: r["skipped"] for r in report["results"] if r.get("skipped")}
    for entry in (e for e in report["summary"] if e["op"] in report["settings"]["ops"]):
        if not entry["count"]:
            reason = skipped.get(entry["op"], "no rows measured and correct")
            out.append(f"  {entry['label']:<66} n/a ({reason})")
            continue
        values = "  ".join(f"{k} {fmt_x(v)}" for k, v in entry["values"].items() if v)
        if "min" in entry:
            m = entry["min"]
            values += f"  min {fmt_x(m['value'])} ({m['case']}, {LAYOUT_LABEL[m['layout']]})"
        count = f"{entry['count']} case{'s' if entry['count'] > 1 else ''}"
        out.append(f"  {entry['label']:<66} {values}  [{count}]")
    return out


def result_tables(report: dict) -> list[Table]:
    """One table per op (columns differ: GB/s for depthwise, GFLOP/s for GEMMs, unfused for separable)."""
    cuda = report["machine"]["device"].startswith("cuda")
    tables = []
    for op in OPS:
        records = [r for r in report["results"] if r["op"] == op and not r.get("skipped")]
        if not records:
            continue
        impls = ["ours", "ours_unfused", "torch"] if op == "separable" else ["ours", "torch"]
        label = {"ours": "ours", "ours_unfused": "unfused", "torch": "torch"}
        headers = ["case", "input", "dir"]
        headers += [f"{label[i]} {LAYOUT_LABEL[lay]}" for lay in LAYOUTS for i in impls]
        headers += [f"x {LAYOUT_LABEL[lay]}" for lay in LAYOUTS] + ["x best"]
        if op == "separable":
            headers += ["x unfused"]
        if op == "depthwise":
            headers += ["ours GB/s", "%copy"]
        elif cuda:  # GPU GEMMs run at TFLOP/s; "% torch" is ours as a share of PyTorch's (cuBLAS/cuDNN)
            headers += ["ours TFLOP/s", "torch TFLOP/s", "% torch"]
        else:
            headers += ["ours GFLOP/s", "torch GFLOP/s"]
        if cuda:
            headers += ["ours hot", "torch hot"]
        headers += ["max err", "check"]
        rows = []
        for r in records:
            for direction, rec in r["directions"].items():
                med = {i: {lay: v.get("median") for lay, v in rec["timings_ms"][i].items()} for i in impls}
                row = [r["name"], r["geometry_text"], DIRECTION_LABEL[direction]]
                row += [fmt_ms(med[i].get(lay)) for lay in LAYOUTS for i in impls]
                row += [fmt_x(rec["speedup"]["ours"].get(lay)) for lay in LAYOUTS]
                row += [fmt_x(rec["speedup_vs_torch_best"]["ours"].get("best"))]
                if op == "separable":
                    row += [fmt_x(ratio(min(filter(None, med["ours_unfused"].values()), default=None),
                                      min(filter(None, med["ours"].values()), default=None)))]
                if op == "depthwise":
                    pct = _best(rec.get("pct_copy", {}).get("ours"))
                    row += [fmt_num(_best(rec["GBps"]["ours"])), fmt_num(pct, ".0f")]
                elif cuda:
                    ours, theirs = _best(rec["GFLOPs"]["ours"]), _best(rec["GFLOPs"]["torch"])
                    row += [fmt_num(ours and ours / 1e3, ".2f"), fmt_num(theirs and theirs / 1e3, ".2f"),
                            fmt_num(ratio(ours, theirs) and 100 * ratio(ours, theirs), ".0f")]
                else:
                    row += [fmt_num(_best(rec["GFLOPs"]["ours"])), fmt_num(_best(rec["GFLOPs"]["torch"]))]
                if cuda:
                    hot = {i: min((v["hot_median"] for v in rec["timings_ms"][i].values()
                                   if "hot_median" in v), default=None) for i in ("ours", "torch")}
                    row += [fmt_ms(hot["ours"]), fmt_ms(hot["torch"])]
                errs = [e for m in rec["max_rel_err"].values() for e in m.values()]
                check = rec["check"] + (" noisy" if rec["noisy"] else "")
                row += [fmt_err(errs), check]
                rows.append(row)
        title = {"depthwise": "depthwise (memory-bound: GB/s and % of copy bandwidth at ours' faster layout)",
                 "pointwise": "pointwise 1x1 (GEMM)", "dense": "dense atrous 3x3 (im2col + GEMM)",
                 "separable": "separable forward: fused vs our two ops vs PyTorch's two convs (+ReLU)"}[op]
        tables.append(Table(title, headers, rows, left=3))
    return tables


def header_lines(report: dict) -> list[str]:
    m, s = report["machine"], report["settings"]
    bw = m["copy_bandwidth"]["GBps"]
    isa = m.get("isa")
    isa_text = f"; ISA: ATen {isa['aten']}, atrous {isa['atrous'].get('active', 'unknown')}" if isa else ""
    return [
        (f"atrous bench: {m['device_name']}, {m['threads']} threads, torch {m['torch']}, {s['dtype']}; "
         f"copy bandwidth {bw:.1f} GB/s{isa_text}"),
        (f"times: {timing_text(s)}; x = PyTorch time / our time (> 1x: ours faster); "
         f"x best = PyTorch's faster layout vs ours' faster layout"),
    ]


def timing_text(s: dict) -> str:
    """How the times were taken, from the report's settings (older reports lack the noise settings)."""
    text = f"median ms of up to {s['repeats']} runs after {s['warmup']} warm-up ({s['timer']})"
    if "max_spread" in s:
        text += (f", interleaved with PyTorch's runs (ABAB...), a set spread by more than "
                 f"{s['max_spread']:.0%} rerun up to {s['retries']} times")
    return text


def format_report(report: dict) -> str:
    parts = ["\n".join(header_lines(report))]
    parts += [t.text() for t in result_tables(report)]
    skipped = [f"  {r['name']}: {r['skipped']}" for r in report["results"] if r.get("skipped")]
    if skipped:
        parts.append("skipped\n" + "\n".join(skipped))
    parts.append("summary (geometric means over cases; x = PyTorch time / our time)\n"
                 + "\n".join(format_summary(report) + noise_lines(report)))
    return "\n\n".join(parts)


def markdown_report(report: dict) -> str:
    """The README block: command, machine, summary, then every table folded away."""
    lines = [(f"Regenerate with `{report['command']}` "
              f"(the JSON and chart go to `{report['settings']['out']}/`)."), ""]
    lines += [f"{line}  " for line in header_lines(report)]  # two spaces: a markdown line break
    lines += ["", "```", "summary (geometric means over cases; x = PyTorch time / our time)"]
    lines += format_summary(report) + noise_lines(report)
    lines += ["```", "", "<details><summary>every shape</summary>", ""]
    for table in result_tables(report):
        lines += [table.markdown(), ""]
    lines += [f"Skipped {r['name']}: {r['skipped']}.  " for r in report["results"] if r.get("skipped")]
    lines.append("</details>")
    return "\n".join(lines)


def update_readme(path: str | Path, block: str, start: str = README_START, end: str = README_END) -> None:
    """Replaces what lies between the README's bench markers with `block`; nothing else changes."""
    try:
        replace_block(path, block, start, end)
    except ReadmeBlockError as exc:  # the harness reports every bad option as a BenchError
        raise BenchError(str(exc)) from None


def format_shapes(shapes: Sequence[Shape]) -> str:
    """The table `--list` prints."""
    rows = [[s.name, s.op, "/".join(map(str, s.output_strides)), s.describe(), s.where] for s in shapes]
    return Table("shapes (a case appends -n<batch>: batch 1 by default, --batch 1,8 for training batches)",
                 ["name", "op", "OS", "geometry (C x H x W -> C_out x H_out x W_out, kernel)", "layer"],
                 rows, left=5).text()


def write_outputs(report: dict, out: Path, stem: str, plot: Callable[[dict, Path], Any],
                  echo: Callable[[str], None],
                  markdown: Callable[[dict], str] | None = markdown_report) -> None:
    """OUT/STEM.json (everything), STEM.md (unless markdown is None) and the chart STEM.png."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    written = [f"{stem}.json"]
    if markdown is not None:
        (out / f"{stem}.md").write_text(markdown(report) + "\n")
        written.append(f"{stem}.md")
    try:
        plot(report, out / f"{stem}.png")
        written.append(f"{stem}.png")
    except ImportError as exc:  # matplotlib is optional for the numbers
        echo(f"no chart: {exc}")
    echo(f"wrote {', '.join(written)} to {out}/")
