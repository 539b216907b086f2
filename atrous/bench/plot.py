"""The charts: x per case (plot_results), the ladder's rungs (plot_ladder), whole models (plot_models), and
the roofline (plot_roofline).

Speed-ups are dots on a log axis centred on 1x (equal ratios look equally far from 1x either way), with
whiskers spanning the interquartile range of the runs; noisy measurements are drawn hollow. Colours are
Okabe-Ito (no red/green pair). matplotlib is imported only when a chart is drawn: the numbers and the JSON
never need it.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from .common import NOISY_SPREAD, OPS

__all__ = ["plot_ladder", "plot_models", "plot_results", "plot_roofline", "ratio_iqr"]

# Okabe-Ito (the same as atrous.viz.theme, which sits above the bench in no layer: kept here by value)
BLUE, ORANGE, SKY, GREEN = "#0072B2", "#E69F00", "#56B4E9", "#009E73"
VERMILLION, PURPLE = "#D55E00", "#CC79A7"
LAYER_COLOURS = (BLUE, ORANGE, GREEN, PURPLE, SKY, VERMILLION)
LAYOUT_MARKER = {"nchw": "o", "channels_last": "s"}
NOISY_NOTE = f"hollow: noisy (runs' IQR > {NOISY_SPREAD:.0%} of the median)"


def _figure(height: float, ncols: int = 1, nrows: int = 1, **kw):
    from matplotlib.figure import Figure  # imported here: only the chart needs matplotlib

    fig = Figure(figsize=(11, height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def _quartiles(timing: dict) -> tuple[float, float, float]:
    """(q1, median, q3) of a timing record's runs (the median alone when there is one run)."""
    runs, med = timing.get("runs") or [], timing["median"]
    if len(runs) < 2:
        return med, med, med
    q1, _, q3 = statistics.quantiles(runs, n=4, method="inclusive")
    return q1, med, q3


def ratio_iqr(torch_timing: dict, ours_timing: dict) -> tuple[float, float, float]:
    """x = PyTorch median / our median, and the span of the ratio over the two interquartile ranges:
    (PyTorch q1 / our q3, PyTorch q3 / our q1), the whisker drawn around x."""
    t1, tm, t3 = _quartiles(torch_timing)
    o1, om, o3 = _quartiles(ours_timing)
    return tm / om, t1 / o3, t3 / o1


def _noisy(*timings: dict) -> bool:
    return any(t.get("spread", 0) > NOISY_SPREAD for t in timings)


def _title(report: dict, what: str) -> str:
    m = report["machine"]
    threads = m.get("threads")
    return (f"{what}: {m['device_name']}" + (f", {threads} thread(s)" if threads else "")
            + f", {report['settings']['dtype']}")


def _centre_on_one(axes, values: list[float]) -> None:
    """Log x axes symmetric about 1x (shared by ``axes``), labelled in x, with the 1x line on each."""
    from matplotlib.ticker import FuncFormatter, LogLocator  # imported here: only the chart needs it

    finite = [v for v in values if v and v > 0 and math.isfinite(v)]
    span = max([abs(math.log10(v)) for v in finite] + [math.log10(1.25)]) * 1.15
    subs = (1.0, 2.0, 5.0) if span < 1.2 else (1.0,)  # few labels over many decades: no overlap
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlim(10 ** -span, 10 ** span)
        ax.axvline(1.0, color="black", linewidth=1.2, zorder=1)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.grid(axis="x", which="both", alpha=0.3)


def _dot(ax, x: float, y: float, lo: float, hi: float, color: str, marker: str, noisy: bool, gid: str):
    drawn = ax.errorbar([x], [y], xerr=[[x - lo], [hi - x]], fmt=marker, color=color, markersize=7,
                        markerfacecolor="white" if noisy else color, markeredgewidth=1.5, capsize=2.5,
                        elinewidth=1.2, zorder=3)
    drawn.lines[0].set_gid(gid)  # the dot itself (the caps are lines too)


def plot_results(report: dict, path: Path) -> Path:
    """Dots of x = PyTorch time / our time per case and series (direction x layout), on a log axis centred
    on 1x (right of it ours is faster), with IQR whiskers; noisy measurements are hollow."""
    from matplotlib.lines import Line2D  # imported here: only the chart needs matplotlib

    series = [("forward", "nchw", BLUE), ("forward", "channels_last", BLUE),
              ("backward", "nchw", ORANGE), ("backward", "channels_last", ORANGE)]
    by_op = [(op, [r for r in report["results"] if r["op"] == op and r.get("directions")]) for op in OPS]
    by_op = [(op, rs) for op, rs in by_op if rs] or [("nothing measured", [])]
    heights = [max(1, len(rs)) for _, rs in by_op]
    fig, axes = _figure(1.6 + 0.5 * sum(heights), nrows=len(heights), sharex=True,
                        gridspec_kw={"height_ratios": heights})
    xs_all = []
    for ax, (op, records) in zip(axes[:, 0], by_op):
        step = 0.8 / len(series)
        for k, (direction, layout, color) in enumerate(series):
            for j, r in enumerate(records):
                rec = r["directions"].get(direction, {})
                t = rec.get("timings_ms", {})
                ours, ref = t.get("ours", {}).get(layout, {}), t.get("torch", {}).get(layout, {})
                if not ours.get("median") or not ref.get("median"):
                    continue
                x, lo, hi = ratio_iqr(ref, ours)
                xs_all += [lo, hi]
                _dot(ax, x, j - 0.4 + (k + 0.5) * step, lo, hi, color, LAYOUT_MARKER[layout],
                     _noisy(ours, ref), gid=f"{op}-{r['name']}-{direction}-{layout}")
        ax.set_yticks(range(len(records)), [r["name"] for r in records], fontsize=8)
        ax.set_ylim(len(records) - 0.5, -0.5)  # first case on top
        ax.set_title(op, fontsize=10, loc="left")
    _centre_on_one(list(axes[:, 0]), xs_all)
    axes[-1, 0].set_xlabel("x = PyTorch time / our time, same layout (log scale; right of 1x: ours faster);"
                           " whiskers: IQR of the runs")
    handles = [Line2D([], [], color=BLUE, marker="o", ls="none", label="forward NCHW"),
               Line2D([], [], color=BLUE, marker="s", ls="none", label="forward channels_last"),
               Line2D([], [], color=ORANGE, marker="o", ls="none", label="backward NCHW"),
               Line2D([], [], color=ORANGE, marker="s", ls="none", label="backward channels_last"),
               Line2D([], [], color="grey", marker="o", mfc="white", ls="none", label=NOISY_NOTE)]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8)
    fig.suptitle(_title(report, "atrous bench"), fontsize=10, x=0.02, ha="left")
    return _save(fig, path)


def plot_ladder(ladder: dict, path: Path) -> Path:
    """Median time per rung as dots with IQR whiskers (log scale), one panel per direction, a marker per
    layout; noisy measurements hollow."""
    from matplotlib.lines import Line2D  # imported here: only the chart needs matplotlib

    dirs = sorted({r["direction"] for r in ladder["rows"]}, reverse=True)  # forward, backward
    fig, axes = _figure(1.8 + 0.4 * len(ladder["rungs"]) * len(dirs), nrows=len(dirs))
    labels = ["torch", *ladder["rungs"]]
    for ax, direction in zip(axes[:, 0], dirs):
        for k, (layout, color) in enumerate((("nchw", BLUE), ("channels_last", ORANGE))):
            for j, label in enumerate(labels):
                row = next((r for r in ladder["rows"] if (r["rung"], r["layout"], r["direction"])
                            == (label, layout, direction)), {})
                if "timing_ms" in row:
                    q1, med, q3 = _quartiles(row["timing_ms"])
                    _dot(ax, med, j - 0.15 + 0.3 * k, q1, q3, color, LAYOUT_MARKER[layout],
                         _noisy(row["timing_ms"]), gid=f"{direction}-{label}-{layout}")
        ax.set_xscale("log")
        ax.set_yticks(range(len(labels)), ["PyTorch" if lab == "torch" else lab for lab in labels])
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_xlabel("median time per call (ms, log scale; whiskers: IQR; no dot: skipped)")
        ax.set_title(f"{ladder['op']} {direction}, {ladder['case']}", fontsize=10)
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.legend(handles=[Line2D([], [], color=BLUE, marker="o", ls="none", label="NCHW"),
                           Line2D([], [], color=ORANGE, marker="s", ls="none", label="channels_last"),
                           Line2D([], [], color="grey", marker="o", mfc="white", ls="none",
                                  label=NOISY_NOTE)], fontsize=8)
    return _save(fig, path)


def plot_models(report: dict, path: Path) -> Path:
    """Left: images/s of each impl per case and step; right: x = torch time / atrous time as dots with IQR
    whiskers on a log axis centred on 1x; noisy measurements hollow."""
    from matplotlib.lines import Line2D  # imported here: only the chart needs matplotlib

    rows = [(f"{r['name']} {step}", rec) for r in report["models"] for step, rec in r["steps"].items()]
    fig, axes = _figure(1.8 + 0.45 * max(1, len(rows)), ncols=2, sharey=True)
    ax_rate, ax_x = axes[0]
    ys = range(len(rows))
    for k, (impl, color) in enumerate((("atrous", BLUE), ("torch", ORANGE))):
        ax_rate.barh([y - 0.2 + 0.4 * k for y in ys], [rec["images_per_s"].get(impl, 0) for _, rec in rows],
                     height=0.4, color=color, label=f"impl='{impl}'")
    ax_rate.set_xlabel("images / s (linear; higher is faster)")
    ax_rate.legend(fontsize=8)
    xs_all = []
    for y, (label, rec) in zip(ys, rows):
        t = rec.get("timings_ms", {})
        best = rec.get("best_layout")  # the "best" step keeps each impl's runs per layout
        ours = t.get(f"atrous/{best.get('atrous')}" if best else "atrous", {})  # absent for a failed impl
        ref = t.get(f"torch/{best.get('torch')}" if best else "torch", {})
        if not rec.get("speedup") or not ours.get("median") or not ref.get("median"):
            continue  # a failed row: no dot
        x, lo, hi = ratio_iqr(ref, ours)
        xs_all += [lo, hi]
        _dot(ax_x, x, y, lo, hi, BLUE, "o", _noisy(ours, ref), gid=f"x-{label}")
        ax_x.annotate(f"{x:.2f}x", (x, y), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=7)
    _centre_on_one([ax_x], xs_all)
    ax_x.set_xlabel("x = torch time / atrous time (log; right of 1x: atrous faster); whiskers: IQR")
    # Above the axes, outside them: inside, it covered a row's dot and label.
    ax_x.legend(handles=[Line2D([], [], color=BLUE, marker="o", ls="none", label="x (median ratio)"),
                         Line2D([], [], color=BLUE, marker="o", mfc="white", ls="none", label=NOISY_NOTE)],
                fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2)
    ax_rate.set_yticks(list(ys), [label for label, _ in rows], fontsize=8)
    ax_rate.set_ylim(len(rows) - 0.5, -0.5)  # first case on top
    ax_rate.grid(axis="x", alpha=0.3)
    s = report["settings"]
    fig.suptitle(_title(report, "atrous bench --models") + f", {s['layout']}", fontsize=10, x=0.02, ha="left")
    return _save(fig, path)


def plot_roofline(points: list[dict], peak_gflops: float, bandwidth_gbps: float, *, title: str = "roofline",
                  path: Path | None = None):
    """The roofline ``min(P, I B)`` with measured points. Each point is a dict with ``label`` (the layer:
    colour), ``intensity`` (flop/byte), ``gflops``, ``impl`` ("ours" filled, "torch" hollow, any other
    half-filled) and
    ``layout`` (marker). Points of one layer share an intensity, so each impl/layout pair is nudged
    sideways by a few percent to keep markers from hiding each other. Returns the Figure."""
    from matplotlib.figure import Figure  # imported here: only the chart needs matplotlib
    from matplotlib.lines import Line2D

    if peak_gflops <= 0 or bandwidth_gbps <= 0:
        raise ValueError(f"peak_gflops and bandwidth_gbps must be > 0, got {peak_gflops}, {bandwidth_gbps}")
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.subplots()
    ridge = peak_gflops / bandwidth_gbps
    intensities = [p["intensity"] for p in points] or [ridge]
    lo, hi = min(min(intensities), ridge) / 4, max(max(intensities), ridge) * 4
    ax.plot([lo, ridge, hi], [lo * bandwidth_gbps, peak_gflops, peak_gflops], color="black", lw=1.8,
            gid="roof")
    mid = math.sqrt(lo * ridge)
    ax.annotate(f"memory roof: I x {bandwidth_gbps:.1f} GB/s", (mid, mid * bandwidth_gbps), xytext=(-10, 10),
                textcoords="offset points", ha="right", fontsize=9)
    ax.annotate(f"compute roof: {peak_gflops:.0f} GFLOP/s", (math.sqrt(ridge * hi), peak_gflops),
                xytext=(0, 5), textcoords="offset points", ha="center", fontsize=9)
    ax.axvline(ridge, color="black", ls=":", lw=0.8)
    ax.annotate(f"ridge {ridge:.1f} flop/byte", (ridge, peak_gflops), xytext=(4, -14),
                textcoords="offset points", fontsize=8)
    colours: dict[str, str] = {}
    pairs = sorted({(p["impl"], p["layout"]) for p in points})
    nudge = {pair: 1.07 ** (k - (len(pairs) - 1) / 2) for k, pair in enumerate(pairs)}
    others = sorted({p["impl"] for p in points} - {"ours", "torch"})
    for p in points:
        colour = colours.setdefault(p["label"], LAYER_COLOURS[len(colours) % len(LAYER_COLOURS)])
        fill = {"ours": "full", "torch": "none"}.get(p["impl"], "left")
        x = p["intensity"] * nudge[p["impl"], p["layout"]]
        ax.plot(x, p["gflops"], LAYOUT_MARKER.get(p["layout"], "D"), color=colour, fillstyle=fill,
                mfc=colour if fill != "none" else "white", mfcalt="white", mew=1.6, ms=8, gid="point")
    handles = [Line2D([], [], color="black", lw=1.8, label="roof min(P, I B)")]
    handles += [Line2D([], [], color=c, marker="o", ls="none", label=label) for label, c in colours.items()]
    handles += [Line2D([], [], color="grey", marker="o", ls="none", label="filled: atrous"),
                Line2D([], [], color="grey", marker="o", mfc="white", ls="none", label="hollow: PyTorch"),
                *[Line2D([], [], color="grey", marker="o", fillstyle="left", mfcalt="white", ls="none",
                         label=f"half: {impl}") for impl in others],
                Line2D([], [], color="grey", marker="o", ls="none", label="circle: NCHW"),
                Line2D([], [], color="grey", marker="s", ls="none", label="square: channels_last")]
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity I (flop/byte)",
           ylabel="attained rate (GFLOP/s)")
    ax.set_title(title, fontsize=10)
    ax.grid(which="both", alpha=0.2)
    if path is not None:
        _save(fig, Path(path))
    return fig
