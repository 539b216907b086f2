"""The charts: x per case (plot_results), the ladder's rungs (plot_ladder), whole models (plot_models).

matplotlib is imported only when a chart is drawn: the numbers and the JSON never need it.
"""

from __future__ import annotations

from pathlib import Path

from .common import LAYOUT_LABEL, OPS, fmt_x

__all__ = ["plot_ladder", "plot_models", "plot_results"]


def _figure(height: float, ncols: int = 1, nrows: int = 1, **kw):
    from matplotlib.figure import Figure  # imported here: only the chart needs matplotlib

    fig = Figure(figsize=(11, height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def plot_results(report: dict, path: Path) -> Path:
    """Bars of x = PyTorch time / our time per case, growing from the 1x line (log scale): right of
    it ours is faster, left of it PyTorch is."""
    series = [("forward", "nchw", "#1f77b4"), ("forward", "channels_last", "#aec7e8"),
              ("backward", "nchw", "#d62728"), ("backward", "channels_last", "#ff9896")]
    by_op = [(op, [r for r in report["results"] if r["op"] == op and r.get("directions")]) for op in OPS]
    by_op = [(op, rs) for op, rs in by_op if rs] or [("nothing measured", [])]
    heights = [max(1, len(rs)) for _, rs in by_op]
    fig, axes = _figure(1.2 + 0.45 * sum(heights), nrows=len(heights), sharex=True,
                        gridspec_kw={"height_ratios": heights})
    for ax, (op, records) in zip(axes[:, 0], by_op):
        bar = 0.8 / len(series)
        for k, (direction, layout, color) in enumerate(series):
            ys, xs = [], []
            for j, r in enumerate(records):
                v = r["directions"].get(direction, {}).get("speedup", {}).get("ours", {}).get(layout)
                if v:
                    ys.append(j - 0.4 + (k + 0.5) * bar)
                    xs.append(v)
            ax.barh(ys, [v - 1 for v in xs], left=1, height=bar, color=color,
                    label=f"{direction} {LAYOUT_LABEL[layout]}")
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_xscale("log")
        ax.set_yticks(range(len(records)), [r["name"] for r in records], fontsize=7)
        ax.set_ylim(len(records) - 0.5, -0.5)  # first case on top
        ax.set_title(op, fontsize=9, loc="left")
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[-1, 0].set_xlabel("PyTorch time / our time on the same layout (log scale; > 1: ours faster)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", ncols=4, fontsize=8)
    m = report["machine"]
    fig.suptitle(f"atrous bench: {m['device_name']}, {report['settings']['dtype']}", fontsize=10,
                 x=0.02, ha="left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def plot_ladder(ladder: dict, path: Path) -> Path:
    """Median time per rung (log scale), one panel per direction, bars per layout."""
    dirs = sorted({r["direction"] for r in ladder["rows"]}, reverse=True)  # forward, backward
    fig, axes = _figure(1.5 + 0.35 * len(ladder["rungs"]) * len(dirs), nrows=len(dirs))
    labels = ["torch", *ladder["rungs"]]
    for ax, direction in zip(axes[:, 0], dirs):
        for k, (layout, color) in enumerate((("nchw", "#1f77b4"), ("channels_last", "#ff7f0e"))):
            ys, xs = [], []
            for j, label in enumerate(labels):
                row = next((r for r in ladder["rows"] if (r["rung"], r["layout"], r["direction"])
                            == (label, layout, direction)), {})
                if "timing_ms" in row:
                    ys.append(j - 0.2 + 0.4 * k)
                    xs.append(row["timing_ms"]["median"])
            ax.barh(ys, xs, height=0.4, color=color, label=LAYOUT_LABEL[layout])
        ax.set_xscale("log")
        ax.set_yticks(range(len(labels)), ["PyTorch" if lab == "torch" else lab for lab in labels])
        ax.invert_yaxis()
        ax.set_xlabel("median ms (log scale; missing bar: skipped)")
        ax.set_title(f"{ladder['op']} {direction}, {ladder['case']}", fontsize=9)
        ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def plot_models(report: dict, path: Path) -> Path:
    """Left: images/s of each impl per case and step; right: x = torch time / atrous time (log scale)."""
    from matplotlib.ticker import FuncFormatter  # imported here: only the chart needs matplotlib

    rows = [(f"{r['name']} {step}", rec) for r in report["models"] for step, rec in r["steps"].items()]
    fig, axes = _figure(1.5 + 0.45 * max(1, len(rows)), ncols=2, sharey=True)
    ax_rate, ax_x = axes[0]
    ys = range(len(rows))
    for k, (impl, color) in enumerate((("atrous", "#1f77b4"), ("torch", "#ff7f0e"))):
        ax_rate.barh([y - 0.2 + 0.4 * k for y in ys], [rec["images_per_s"].get(impl, 0) for _, rec in rows],
                     height=0.4, color=color, label=f"impl='{impl}'")
    ax_rate.set_xlabel("images / s (higher is faster)")
    ax_rate.legend(fontsize=8)
    x = [rec["speedup"] or 1.0 for _, rec in rows]  # a failed row shows as 1x, without a label
    ax_x.barh(list(ys), [v - 1 for v in x], left=1, height=0.6,
              color=["#2ca02c" if v >= 1 else "#d62728" for v in x])
    for y, v, (_, rec) in zip(ys, x, rows):
        if rec["speedup"]:
            ax_x.annotate(fmt_x(v), (v, y), xytext=(3 if v >= 1 else -3, 0), textcoords="offset points",
                          ha="left" if v >= 1 else "right", va="center", fontsize=7)
    ax_x.axvline(1.0, color="black", linewidth=1)
    ax_x.set_xscale("log")
    ax_x.margins(x=0.15)
    for axis in (ax_x.xaxis.set_major_formatter, ax_x.xaxis.set_minor_formatter):
        axis(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax_x.set_xlabel("torch time / atrous time (log scale; > 1: atrous faster)")
    ax_rate.set_yticks(list(ys), [label for label, _ in rows], fontsize=7)
    ax_rate.set_ylim(len(rows) - 0.5, -0.5)  # first case on top
    for ax in (ax_rate, ax_x):
        ax.grid(axis="x", which="both", alpha=0.3)
    m, s = report["machine"], report["settings"]
    fig.suptitle(f"atrous bench --models: {m['device_name']}, {s['dtype']}, {s['layout']}", fontsize=10,
                 x=0.02, ha="left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
