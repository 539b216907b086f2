"""The benchmark charts (atrous.bench.plot): speed-up dots centred on 1x with IQR whiskers, the roofline."""

import math
from pathlib import Path

import matplotlib
import pytest
from matplotlib.image import imread

import atrous.bench.plot as plot
from atrous.bench import NOISY_SPREAD, plot_ladder, plot_models, plot_results, plot_roofline, ratio_iqr

matplotlib.use("Agg")


def timing(runs):
    runs = sorted(runs)
    med = runs[len(runs) // 2]
    q1, q3 = runs[len(runs) // 4], runs[3 * len(runs) // 4]  # exact for 5 runs ("inclusive")
    return {"median": med, "spread": (q3 - q1) / med, "runs": runs}


QUIET = [1.0, 1.0, 1.0, 1.0, 1.0]
TORCH = [3.8, 3.9, 4.0, 4.1, 4.2]  # median 4, IQR 3.9 .. 4.1
NOISY = [1.0, 1.5, 2.0, 2.5, 3.0]  # IQR 1 over a median of 2: 50%


def report():
    def case(name, ours_runs):
        t = {"ours": {lay: timing(ours_runs) for lay in ("nchw", "channels_last")},
             "torch": {lay: timing(TORCH) for lay in ("nchw", "channels_last")}}
        return {"op": "depthwise", "name": name, "directions": {"forward": {"timings_ms": t}}}

    return {"machine": {"device_name": "Test CPU, 2 cores", "threads": 2}, "settings": {"dtype": "float32"},
            "results": [case("quiet", [2.0] * 5), case("noisy", NOISY)]}


def test_ratio_iqr_spans_both_interquartile_ranges():
    x, lo, hi = ratio_iqr(timing(TORCH), timing(NOISY))
    assert (x, lo, hi) == pytest.approx((4 / 2, 3.9 / 2.5, 4.1 / 1.5))
    assert ratio_iqr({"median": 4.0}, {"median": 2.0}) == (2.0, 2.0, 2.0)  # one run: no whisker


def test_results_are_dots_centred_on_1x_with_whiskers_and_noisy_ones_hollow(tmp_path, monkeypatch):
    path = plot_results(report(), tmp_path / "bench.png")
    assert imread(path).shape[0] > 100
    drawn = []  # the chart is a file: keep the figure of a second draw to inspect it
    real_save = plot._save
    monkeypatch.setattr(plot, "_save", lambda fig, p: drawn.append(fig) or real_save(fig, p))
    plot_results(report(), Path(tmp_path / "x.png"))
    (fig,) = drawn
    (ax,) = [a for a in fig.axes if a.get_title(loc="left") == "depthwise"]
    lo, hi = ax.get_xlim()
    assert ax.get_xscale() == "log" and math.log10(lo) == pytest.approx(-math.log10(hi))  # centred on 1x
    assert any(line.get_xdata()[0] == 1.0 for line in ax.lines if len(line.get_xdata()) == 2)  # the 1x line
    assert not ax.patches  # no bars
    markers = {line.get_gid(): line for line in ax.lines if line.get_gid()}
    quiet, noisy = markers["depthwise-quiet-forward-nchw"], markers["depthwise-noisy-forward-nchw"]
    assert quiet.get_xdata()[0] == pytest.approx(2.0) and noisy.get_xdata()[0] == pytest.approx(2.0)
    assert quiet.get_markerfacecolor() != "white" and noisy.get_markerfacecolor() == "white"
    assert NOISY_SPREAD < timing(NOISY)["spread"]
    assert "2 thread(s)" in fig._suptitle.get_text()
    (legend,) = fig.legends
    assert any("noisy" in t.get_text() for t in legend.get_texts())


def test_roofline_has_units_a_legend_and_no_hidden_markers(tmp_path):
    points = [{"label": "dw", "intensity": 2.0, "gflops": g, "impl": impl, "layout": lay}
              for g, impl, lay in ((5, "ours", "nchw"), (5, "torch", "nchw"), (5, "ours", "channels_last"),
                                   (5, "torch", "channels_last"))]
    fig = plot_roofline(points, 100.0, 20.0, title="t", path=tmp_path / "roof.png")
    assert imread(tmp_path / "roof.png").shape[0] > 100
    (ax,) = fig.axes
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "GB/s" in texts and "GFLOP/s" in texts and "flop/byte" in ax.get_xlabel()
    drawn = [line for line in ax.lines if line.get_gid() == "point"]
    xy = {(round(float(line.get_xdata()[0]), 6), float(line.get_ydata()[0])) for line in drawn}
    assert len(xy) == 4  # four equal points of one layer, nudged apart
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"dw", "filled: atrous", "hollow: PyTorch", "circle: NCHW", "square: channels_last"} <= set(labels)
    colours = {line.get_color() for line in drawn}
    assert colours.isdisjoint({"red", "green", "#d62728", "#2ca02c"})  # no red/green pair
    with pytest.raises(ValueError, match="peak_gflops"):
        plot_roofline(points, 0, 1)


def test_ladder_and_models_charts_render(tmp_path, monkeypatch):
    ladder = {"op": "depthwise_conv2d", "case": "c", "rungs": ["naive", "auto"],
              "rows": [{"rung": r, "layout": lay, "direction": "forward", "timing_ms": timing(QUIET)}
                       for r in ("torch", "naive", "auto") for lay in ("nchw", "channels_last")]}
    assert imread(plot_ladder(ladder, tmp_path / "ladder.png")).shape[0] > 100
    # The "best" step times each impl on both layouts and compares each one's faster layout.
    best = {"images_per_s": {"atrous": 10.0, "torch": 4.0}, "speedup": 2.5,
            "best_layout": {"atrous": "channels_last", "torch": "nchw"},
            "timings_ms": {"atrous/nchw": timing([3.0] * 5), "atrous/channels_last": timing([2.0] * 5),
                           "torch/nchw": timing([5.0] * 5), "torch/channels_last": timing([6.0] * 5)}}
    models = {"machine": {"device_name": "Test CPU", "threads": 2},
              "settings": {"dtype": "float32", "layout": "nchw"},
              "models": [{"name": "m", "steps": {"forward": {
                  "images_per_s": {"atrous": 10.0, "torch": 5.0}, "speedup": 2.0,
                  "timings_ms": {"atrous": timing([2.0] * 5), "torch": timing(TORCH)}}, "best": best}}]}
    figs = []
    save = plot._save
    monkeypatch.setattr(plot, "_save", lambda fig, path: figs.append(fig) or save(fig, path))
    assert imread(plot_models(models, tmp_path / "models.png")).shape[0] > 100
    dots = {line.get_gid(): float(line.get_xdata()[0]) for ax in figs[0].axes for line in ax.lines
            if (line.get_gid() or "").startswith("x-")}
    assert set(dots) == {"x-m forward", "x-m best"} and dots["x-m best"] == pytest.approx(2.5)
