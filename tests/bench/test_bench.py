"""Tests for the benchmark harness (atrous.bench) on tiny shapes: structure and arithmetic, never speed."""

import argparse
import json
import math
import statistics
import time
import types
import warnings

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from atrous import __main__ as atrous_main
from atrous import bench
from atrous.bench import cases as bench_cases
from atrous.bench import common as bench_common
from atrous.bench import config as bench_config
from atrous.bench import demo as bench_demo
from atrous.bench import ladder as bench_ladder
from atrous.bench import machine as bench_machine
from atrous.bench import profile as bench_profile
from atrous.bench import report as bench_report
from atrous.bench import same_isa as bench_same_isa
from atrous.bench import shapes as bench_shapes
from atrous.bench import timing as bench_timing
from atrous.cli import bench as bench_cli
from atrous.models import list_models

matplotlib.use("Agg")  # headless

FAST = ("--tiny", "--repeats", "2", "--warmup", "0", "--budget", "0", "--retries", "0")


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m atrous bench")
    bench_cli.add_arguments(parser)
    return parser.parse_args(argv)


def run(*argv, ops=None, shapes=None, models=None):
    args = parse([str(a) for a in argv])
    return bench_cli.main(args, shapes=shapes, ops=ops, registry=models)


def real_ops(**overrides):
    """atrous.ops's three functions (without the coming ladder API), with replacements."""
    from atrous import ops

    names = ("depthwise_conv2d", "pointwise_conv2d", "atrous_conv2d")
    return types.SimpleNamespace(**{n: getattr(ops, n) for n in names} | overrides)


def fused_separable(x, dw_w, dw_b, pw_w, pw_b, stride=1, padding=0, dilation=1, activation=None, **kw):
    y = F.conv2d(x, dw_w, dw_b, stride, padding, dilation, x.shape[1])
    return F.conv2d(y.relu() if activation == "relu" else y, pw_w, pw_b)


def is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------
# A whole run
# --------------------------------------------------------------------------------------------

def test_tiny_run_writes_consistent_json_chart_markdown_and_readme(tmp_path, capsys):
    readme = tmp_path / "README.md"
    before, after = "# title\n\nintro\n\n", "\n\n## later\ntext\n"
    readme.write_text(f"{before}{bench_common.README_START}\nold table\n{bench_common.README_END}{after}")
    assert run(*FAST, "--out", tmp_path / "out", "--update-readme", readme) == 0
    out = capsys.readouterr().out

    report = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert report["schema"] == "atrous-bench/1"
    machine = report["machine"]
    assert machine["threads"] == torch.get_num_threads() and machine["torch"] == torch.__version__
    copy_gbps = machine["copy_bandwidth"]["GBps"]
    assert copy_gbps > 0 and report["atrous"]["extension"]  # atrous.info.collect()
    assert report["settings"]["repeats"] == 2 and report["settings"]["dtype"] == "float32"
    names = [r["name"] for r in report["results"]]
    assert names == ["tiny-dw8-d2-n2", "tiny-dw8-s2-n2", "tiny-pw8-6-n2", "tiny-dense4-5-d2-n2",
                     "tiny-sep8-6-d2-n2"]

    from atrous import ops

    fused = hasattr(ops, "separable_conv2d")  # not in the build yet, or it is: both are checked
    for r in report["results"]:
        if r.get("skipped"):
            assert not fused and r["op"] == "separable" and "separable_conv2d" in r["skipped"]
            continue
        assert r["ok"] and tuple(r["directions"]) == bench_cases.directions(r["op"])
        for rec in r["directions"].values():
            med = {}
            for impl in ("ours", "torch"):
                for layout in bench.LAYOUTS:
                    timing = rec["timings_ms"][impl][layout]
                    assert len(timing["runs"]) == 2 and timing["median"] == statistics.median(timing["runs"])
                    med[impl, layout] = timing["median"]
                    assert rec["GFLOPs"][impl][layout] == pytest.approx(rec["flops"] / timing["median"] / 1e6)
                    assert rec["GBps"][impl][layout] == pytest.approx(rec["bytes"] / timing["median"] / 1e6)
            for layout in bench.LAYOUTS:  # ratios come from the medians
                ratio = med["torch", layout] / med["ours", layout]
                assert rec["speedup"]["ours"][layout] == pytest.approx(ratio)
                assert rec["max_rel_err"]["ours"][layout] <= 1e-4
            torch_best = min(med["torch", lay] for lay in bench.LAYOUTS)
            assert rec["torch_best_layout"] == min(bench.LAYOUTS, key=lambda lay: med["torch", lay])
            assert rec["speedup_vs_torch_best"]["ours"]["best"] == pytest.approx(
                torch_best / min(med["ours", lay] for lay in bench.LAYOUTS))
            if r["op"] == "depthwise":
                pct = 100 * rec["GBps"]["ours"]["nchw"] / copy_gbps
                assert rec["pct_copy"]["ours"]["nchw"] == pytest.approx(pct)
            else:
                assert "pct_copy" not in rec

    dw = report["results"][0]["directions"]  # 2x8x9x9, 3x3 d2 same padding: output 2x8x9x9
    x = y = 2 * 8 * 9 * 9
    assert dw["forward"]["bytes"] == 4 * (x + 72 + y) and dw["forward"]["flops"] == 2 * y * 9
    assert dw["backward"]["bytes"] == 4 * (y + x + 72 + x + 72) and dw["backward"]["flops"] == 4 * y * 9

    summary = {s["key"]: s for s in report["summary"]}
    fwd = summary["depthwise_forward_same_layout"]
    per_case = [r["directions"]["forward"]["speedup"]["ours"]["nchw"] for r in report["results"][:2]]
    assert fwd["count"] == 2 and fwd["values"]["NCHW"] == pytest.approx(math.sqrt(per_case[0] * per_case[1]))
    assert fwd["min"]["value"] == min(r["directions"]["forward"]["speedup"]["ours"][lay]
                                      for r in report["results"][:2] for lay in bench.LAYOUTS)
    assert summary["pointwise_forward_throughput"]["count"] == 1
    assert summary["separable_forward_vs_torch_best"]["count"] == int(fused)

    assert is_png(tmp_path / "out" / "bench.png")
    markdown = (tmp_path / "out" / "bench.md").read_text()
    assert "| tiny-dw8-d2-n2 |" in markdown and markdown.startswith("Regenerate with `python -m atrous bench")
    text = readme.read_text()
    start, end = bench_common.README_START, bench_common.README_END
    assert text.startswith(before + start + "\n") and text.endswith(end + after)
    assert "old table" not in text and markdown.strip() in text
    assert "--update-readme" in text and "--repeats 2" in text  # the command that regenerates it

    for line in ("depthwise (memory-bound", "pointwise 1x1 (GEMM)", "summary (geometric means",
                 "depthwise forward vs PyTorch, same layout", "wrote bench.json, bench.md, bench.png"):
        assert line in out
    assert fused or "tiny-sep8-6-d2-n2: atrous.ops.separable_conv2d is not in this build yet" in out


def test_mismatch_and_failing_ops_are_marked_and_exit_1(tmp_path, capsys):
    from atrous import ops

    def off_by_a_little(x, w, b=None, stride=1, padding=0, dilation=1):
        return ops.depthwise_conv2d(x, w, b, stride, padding, dilation) + 1e-2

    def broken(*args, **kwargs):
        raise RuntimeError("pointwise kernel exploded\nsecond line")

    fake = real_ops(depthwise_conv2d=off_by_a_little, pointwise_conv2d=broken)
    assert run(*FAST, "--out", tmp_path, "--ops", "depthwise,pointwise,dense",
               "--shapes", "tiny-dw8-d2,tiny-pw*,tiny-dense*", ops=fake) == 1
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "bench.json").read_text())
    dw, pw, dense = report["results"]
    assert dw["directions"]["forward"]["check"] == "MISMATCH" and not dw["ok"]
    assert dw["directions"]["backward"]["check"] == "ok"  # the offset has no gradient effect
    assert pw["directions"]["forward"]["timings_ms"]["ours"]["nchw"] == {
        "error": "RuntimeError: pointwise kernel exploded"}
    assert pw["directions"]["forward"]["check"] == "ERROR" and "median" in pw["directions"]["forward"][
        "timings_ms"]["torch"]["nchw"]
    assert dense["ok"]  # the run went on
    assert "MISMATCH" in out and "ERROR" in out
    summary = {s["key"]: s for s in report["summary"]}
    assert summary["depthwise_forward_same_layout"]["count"] == 0  # wrong rows never count
    assert summary["dense_forward_throughput"]["count"] == 1


def test_fused_separable_is_compared_with_unfused_and_torch(tmp_path):
    fake = real_ops(separable_conv2d=fused_separable)
    assert run(*FAST, "--out", tmp_path, "--ops", "separable", ops=fake) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    (r,) = report["results"]
    assert r["name"] == "tiny-sep8-6-d2-n2" and list(r["directions"]) == ["forward"]  # forward only
    rec = r["directions"]["forward"]
    assert set(rec["timings_ms"]) == {"ours", "ours_unfused", "torch"}
    assert rec["max_rel_err"]["ours"]["nchw"] < 1e-5 and rec["max_rel_err"]["ours_unfused"]["nchw"] < 1e-5
    for layout in bench.LAYOUTS:
        med = {i: rec["timings_ms"][i][layout]["median"] for i in rec["timings_ms"]}
        assert rec["speedup_vs_unfused"][layout] == pytest.approx(med["ours_unfused"] / med["ours"])
    summary = {s["key"]: s for s in report["summary"]}
    assert summary["separable_forward_vs_torch_best"]["count"] == 1
    unfused = summary["separable_forward_vs_unfused"]
    assert unfused["count"] == 1
    assert unfused["values"]["all"] == pytest.approx(
        math.sqrt(rec["speedup_vs_unfused"]["nchw"] * rec["speedup_vs_unfused"]["channels_last"]))
    assert report["features"]["separable_conv2d"] is True


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------

def test_summary_is_a_geometric_mean_over_ok_records():
    def record(name, ok, nchw, cl):
        rec = {"ok": ok, "speedup": {"ours": {"nchw": nchw, "channels_last": cl}}}
        return {"name": name, "op": "depthwise", "directions": {"forward": rec}}

    results = [record("a", True, 2.0, 0.5), record("b", True, 8.0, 2.0), record("c", False, 100.0, 100.0)]
    (line,) = [s for s in bench_report.summarize(results) if s["key"] == "depthwise_forward_same_layout"]
    assert line["count"] == 2
    assert line["values"] == {"NCHW": pytest.approx(4.0), "CL": pytest.approx(1.0), "all": pytest.approx(2.0)}
    assert line["min"] == {"value": 0.5, "case": "a", "layout": "channels_last"}
    assert bench_report.geomean([]) is None


def test_measure_warms_up_then_takes_the_median_within_the_budget():
    calls = []

    class StepTimer:  # each timed run "takes" 1, 2, 3, ... ms: no clock involved
        flushes = False

        def time_ms(self, fn, flush=True):
            out = fn()
            return float(len(calls)), out

    def fn():
        calls.append(None)
        return len(calls)

    m, last = bench.measure(fn, StepTimer(), bench.TimingPlan(warmup=2, repeats=5, budget_s=1e9))
    assert m.runs_ms == [3.0, 4.0, 5.0, 6.0, 7.0] and m.median_ms == 5.0 and last == 7
    calls.clear()
    m, _ = bench.measure(fn, StepTimer(), bench.TimingPlan(warmup=0, repeats=50, budget_s=0.0))
    assert len(m.runs_ms) == bench_timing.MIN_RUNS  # the budget stops it, never below MIN_RUNS
    calls.clear()
    m, _ = bench.measure(fn, StepTimer(), bench.TimingPlan(warmup=0, repeats=1, budget_s=0.0))
    assert m.runs_ms == [1.0]


def test_relative_error_and_broken_outputs():
    ref = torch.tensor([1.0, -4.0])
    assert bench.rel_error(torch.tensor([1.0, -3.0]), ref) == pytest.approx(0.25)
    assert bench.rel_error((ref, torch.tensor([2.0])), (ref, torch.tensor([1.0]))) == pytest.approx(1.0)
    assert bench.rel_error(torch.tensor([float("nan"), -4.0]), ref) is None  # NaN is never "close"
    assert bench.rel_error(torch.zeros(3), ref) is None  # wrong shape


class ScriptTimer:
    """A fake timer: each call's "time" comes from its function's script (cycled), and every timed call
    is logged. Deterministic, no clock involved."""

    flushes = False

    def __init__(self, scripts=None, default=(1.0,)):
        self.scripts, self.default, self.seen, self.timed = scripts or {}, default, {}, []

    def time_ms(self, fn, flush=True):
        out = fn()
        script = self.scripts.get(fn, self.default)
        k = self.seen[fn] = self.seen.get(fn, -1) + 1
        self.timed.append(fn)
        return float(script[k % len(script)]), out


def test_interleaved_runs_alternate_between_contenders_after_each_ones_warm_up():
    log = []
    calls = {name: (lambda name=name: log.append(name) or name) for name in ("torch", "ours", "unfused")}
    timer = ScriptTimer({calls["torch"]: (2.0,), calls["ours"]: (1.0,), calls["unfused"]: (3.0,)})
    plan = bench.TimingPlan(warmup=2, repeats=4, budget_s=1e9)
    got = bench.measure_interleaved(calls, timer, plan)
    warm, timed = log[:6], log[6:]
    assert warm == ["torch", "ours", "unfused"] * 2  # each contender warmed up in turn, untimed
    assert timed == ["torch", "ours", "unfused"] * 4  # then A B C A B C ...: one run of each per round
    assert len(timer.timed) == 12
    assert {n: g.measurement.runs_ms for n, g in got.items()} == {
        "torch": [2.0] * 4, "ours": [1.0] * 4, "unfused": [3.0] * 4}
    assert all(g.out == n and g.error is None and g.measurement.attempts == 1 for n, g in got.items())
    # The budget counts per contender and stops the rounds, never below MIN_RUNS rounds.
    log.clear()
    got = bench.measure_interleaved(calls, ScriptTimer(), bench.TimingPlan(warmup=0, repeats=50, budget_s=0))
    assert log == ["torch", "ours", "unfused"] * bench_timing.MIN_RUNS


def test_a_failing_contender_is_dropped_and_the_others_go_on():
    log = []

    def broken():
        log.append("ours")
        if log.count("ours") == 2:  # the warm-up passes, the first timed run fails
            raise RuntimeError("kernel exploded\nmore")

    calls = {"torch": lambda: log.append("torch"), "ours": broken}
    got = bench.measure_interleaved(calls, ScriptTimer(), bench.TimingPlan(warmup=1, repeats=3, budget_s=1e9))
    assert log == ["torch", "ours", "torch", "ours", "torch", "torch"]
    assert got["ours"].measurement is None and str(got["ours"].error).startswith("kernel exploded")
    assert got["torch"].measurement.runs_ms == [1.0] * 3


def test_a_noisy_set_is_rerun_and_the_quietest_attempt_kept():
    log = []
    calls = {name: (lambda name=name: log.append(name)) for name in ("torch", "ours")}
    # torch is noisy on the first attempt (runs 1, 9, 1, 9 ms) and quiet on the second (4 runs of 5 ms).
    timer = ScriptTimer({calls["torch"]: (1, 9, 1, 9, 5, 5, 5, 5), calls["ours"]: (2,)})
    plan = bench.TimingPlan(warmup=1, repeats=4, budget_s=1e9, max_spread=0.25, retries=3)
    got = bench.measure_interleaved(calls, timer, plan)
    assert log == ["torch", "ours"] + ["torch", "ours"] * 8  # one warm-up only; two attempts of 4 rounds
    assert got["torch"].measurement.runs_ms == [5.0] * 4 and got["torch"].measurement.attempts == 2
    assert got["ours"].measurement.runs_ms == [2.0] * 4  # both from the same (kept) attempt
    # Noisy on every attempt: 1 + retries attempts, then the one with the smallest worst spread.
    log.clear()
    timer = ScriptTimer({calls["torch"]: (1, 9, 1, 9, 1, 9, 1, 9, 4, 6, 4, 6)})
    plan = bench.TimingPlan(warmup=0, repeats=4, budget_s=1e9, max_spread=0.1, retries=2)
    got = bench.measure_interleaved(calls, timer, plan)
    assert len(log) == 3 * 4 * 2
    m = got["torch"].measurement
    assert m.runs_ms == [4.0, 6.0, 4.0, 6.0] and m.attempts == 3 and m.spread > 0.1  # still noisy
    # retries=0: measured once, however noisy.
    log.clear()
    got = bench.measure_interleaved(calls, ScriptTimer({calls["torch"]: (1, 9)}),
                                    bench.TimingPlan(warmup=0, repeats=4, budget_s=1e9, retries=0))
    assert len(log) == 8 and got["torch"].measurement.attempts == 1


def test_run_case_interleaves_reruns_and_marks_still_noisy_rows(tmp_path):
    cfg = bench.resolve(parse([*FAST, "--ops", "pointwise", "--retries", "1", "--max-spread", "0.5",
                               "--repeats", "4", "--budget", "1000", "--out", str(tmp_path)]))
    assert cfg.plan.retries == 1 and cfg.plan.max_spread == 0.5
    (case,) = cfg.cases
    timer = ScriptTimer(default=(1.0, 3.0))  # every contender alternates 1 and 3 ms: spread 1.0 > 0.5
    record = bench_cases.run_case(case, cfg, timer, 10.0, real_ops())
    for rec in record["directions"].values():
        for impl in ("torch", "ours"):
            for layout in bench.LAYOUTS:
                timing = rec["timings_ms"][impl][layout]
                assert timing["attempts"] == 2 and timing["runs"] == [1.0, 3.0, 1.0, 3.0]
        expected = sorted(f"{i}/{lay}" for i in ("torch", "ours") for lay in bench.LAYOUTS)
        assert sorted(rec["noisy"]) == expected
        assert rec["check"] == "ok" and rec["speedup"]["ours"]["nchw"] == 1.0
    # Interleaved: within each (layout, direction) set the timed calls alternate torch, ours, torch, ...
    names = {}
    for fn in timer.timed:
        names.setdefault(fn, len(names))
    order = [names[fn] for fn in timer.timed]
    for start in range(0, len(order), 16):  # 2 attempts x 4 rounds x 2 contenders per set
        chunk = order[start:start + 16]
        assert chunk[0::2] == [chunk[0]] * 8 and chunk[1::2] == [chunk[1]] * 8 and chunk[0] != chunk[1]
    report = {"results": [record], "settings": {"max_spread": 0.5}}
    lines = bench_report.noise_lines(report)
    assert lines[0].startswith("  reruns: 8 of 8 measurements come from a rerun")
    assert "8 of 8 measurements had runs spread by more than 50%" in lines[1]


def test_spread_flags_noisy_measurements():
    assert bench.Measurement([10.0, 10.0, 10.0]).spread == 0.0
    assert bench.Measurement([8.0, 10.0, 12.0]).spread == pytest.approx(0.2)  # quartiles 9 and 11
    assert bench.Measurement([5.0]).spread == 0.0
    timing = bench.Measurement([1.0, 2.0, 9.0]).to_json()
    assert timing["median"] == 2.0 and timing["spread"] == pytest.approx(2.0)
    rec = {"timings_ms": {"torch": {"nchw": timing}}}
    report = {"results": [{"directions": {"forward": rec}}]}
    assert "1 of 1 measurements had runs spread" in bench_report.noise_lines(report)[0]


def test_xception65_geometry():
    shapes = {s.name: s for s in bench.SHAPES}
    assert len(shapes) == len(bench.SHAPES)  # names are unique
    strided = ("entry-dw128-s2", "entry-dw256-s2", "os16-entry-dw728-s2")
    assert [shapes[n].out_size for n in strided] == [129, 65, 33]  # 257 -> 129 -> 65 -> 33
    assert {s.size for s in bench.SHAPES if s.name.startswith("os16-middle")} == {33}
    assert {(s.size, s.dilation) for s in bench.SHAPES if s.name.startswith("os8-middle-dw")} == {(65, 2)}
    aspp = {(s.output_strides, s.size, s.dilation) for s in bench.SHAPES
            if s.op == "depthwise" and "aspp" in s.name}
    assert aspp == {((16,), 33, 6), ((16,), 33, 12), ((16,), 33, 18),
                    ((8,), 65, 12), ((8,), 65, 24), ((8,), 65, 36)}
    assert all(s.out_size == s.size for s in bench.SHAPES if s.stride == 1)  # "same" padding
    assert {(s.channels, s.out_channels) for s in bench.SHAPES if s.op == "pointwise"} == {
        (728, 728), (2048, 256), (304, 256), (1536, 2048)}
    dense = {(s.channels, s.dilation, s.size) for s in bench.SHAPES if s.op == "dense"}
    assert dense == {(512, 2, 33), (512, 4, 65)}
    assert {s.channels for s in bench.SHAPES if s.name.startswith("dec-dw")} == {304, 256}
    assert set(bench.QUICK_SHAPES) <= set(shapes)
    assert set(bench_shapes.DEFAULT_LADDER_SHAPE.values()) <= set(shapes)


def test_shape_selection_by_name_glob_batch_suffix_and_op():
    def names(cases):
        return [c.name for c in cases]

    all_ops = bench.OPS
    assert names(bench.select_cases(bench.SHAPES, all_ops, ["os16-aspp-dw*"], [1])) == [
        "os16-aspp-dw2048-r6-n1", "os16-aspp-dw2048-r12-n1", "os16-aspp-dw2048-r18-n1"]
    assert names(bench.select_cases(bench.SHAPES, all_ops, ["dec-dw304"], [1, 8])) == [
        "dec-dw304-n1", "dec-dw304-n8"]
    assert names(bench.select_cases(bench.SHAPES, all_ops, ["dec-dw304-n4", "dec-dw304"], [1])) == [
        "dec-dw304-n1", "dec-dw304-n4"]
    assert names(bench.select_cases(bench.SHAPES, ["pointwise"], ["dec-*"], [1])) == ["dec-pw304-256-n1"]
    every = bench.select_cases(bench.SHAPES, all_ops, None, [1, 8])
    assert len(every) == 2 * len(bench.SHAPES)
    with pytest.raises(bench.BenchError, match="--shapes: 'dec-dw999' matches no shape"):
        bench.select_cases(bench.SHAPES, all_ops, ["dec-dw999"], [1])
    with pytest.raises(bench.BenchError, match="--shapes"):  # exists, but not among the selected ops
        bench.select_cases(bench.SHAPES, ["dense"], ["dec-dw304"], [1])


def test_update_readme_needs_exactly_one_marked_block(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("a\n<!-- bench:start -->\nx\n<!-- bench:end -->\nb\n")
    bench.update_readme(path, "new\n")
    assert path.read_text() == "a\n<!-- bench:start -->\nnew\n<!-- bench:end -->\nb\n"
    for text in ("no markers\n", "<!-- bench:end -->\n<!-- bench:start -->\n",
                 "<!-- bench:start -->\n<!-- bench:end -->\n<!-- bench:start -->\n"):
        path.write_text(text)
        with pytest.raises(bench.BenchError, match="--update-readme .*expected one '<!-- bench:start -->'"):
            bench.update_readme(path, "new")
        assert path.read_text() == text  # untouched


def test_bad_options_exit_2_naming_the_option(tmp_path, capsys):
    cases = [
        (("--ops", "depthwise,conv3d"), "--ops: expected comma-separated names from depthwise"),
        (("--batch", "0"), "--batch: expected comma-separated positive integers, got '0'"),
        (("--batch", "one"), "--batch: expected"),
        (("--repeats", "0"), "--repeats: expected an integer >= 1"),
        (("--budget", "-1"), "--budget: expected seconds >= 0"),
        (("--tolerance", "0"), "--tolerance: expected a positive number"),
        (("--device", "tpu"), "--device: expected cpu or cuda[:N], got 'tpu'"),
        (("--shapes", "nothing-like-this"), "--shapes: 'nothing-like-this' matches no shape"),
        (("--ladder", "conv3d"), "--ladder: expected one of depthwise_conv2d"),
        (("--ladder", "depthwise_conv2d", "--shapes", "tiny-dw*"), "--ladder times one shape"),
    ]
    for argv, message in cases:
        assert run(*FAST, "--out", tmp_path, *argv) == bench_common.EXIT_ERROR, argv
        assert message in capsys.readouterr().err, argv
    assert not any(tmp_path.iterdir())  # nothing ran
    with pytest.raises(SystemExit) as exc:
        run("--dtype", "int8")
    assert exc.value.code == 2 and "--dtype" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_device_cuda_without_gpu_is_a_clear_error(tmp_path, capsys):
    assert run(*FAST, "--out", tmp_path, "--device", "cuda") == bench_common.EXIT_ERROR
    err = capsys.readouterr().err
    assert "--device cuda: no CUDA GPU is visible to torch" in err and "--device cpu" in err


def test_list_and_command_line(capsys):
    assert run("--list") == 0
    out = capsys.readouterr().out
    assert "os8-aspp-dw2048-r24" in out and "entry-dw128-s2" in out and "128x257x257 -> 128x129x129" in out
    args = parse(["--quick", "--ops", "depthwise", "--update-readme", "README.md"])
    expected = "python -m atrous bench --ops depthwise --quick --update-readme README.md"
    assert bench.command_line(args) == expected


def test_options_from_python_are_the_flags_of_the_command():
    flags = parse(["--ops", "depthwise,pointwise", "--shapes", "os16-middle-*,dec-dw304-n4", "--batch", "1,8",
                   "--repeats", "3"])
    options = bench.Options(ops=("depthwise", "pointwise"), shapes=["os16-middle-*", "dec-dw304-n4"],
                            batch=[8, 1], repeats=3)
    from_flags, from_python = bench.resolve(flags), bench.resolve(options)
    assert [c.name for c in from_python.cases] == [c.name for c in from_flags.cases] == [
        "os16-middle-dw728-n1", "os16-middle-dw728-n8", "dec-dw304-n4",  # SHAPES order: depthwise first
        "os16-middle-pw728-728-n1", "os16-middle-pw728-728-n8"]
    assert from_python.plan == from_flags.plan and from_python.plan.repeats == 3
    assert from_flags.command == "python -m atrous bench --ops depthwise,pointwise --shapes " \
                                 "os16-middle-*,dec-dw304-n4 --batch 1,8 --repeats 3"
    assert from_python.command == "python -m atrous bench --ops depthwise,pointwise --shapes " \
                                  "os16-middle-*,dec-dw304-n4 --batch 8,1 --repeats 3"
    with pytest.raises(bench.BenchError, match="--dtype: expected one of float32"):  # argparse's choices
        bench.resolve(bench.Options(dtype="int8"))


def test_update_readme_without_the_file_is_an_error_before_the_run(tmp_path, capsys):
    missing = tmp_path / "nope.md"
    assert run(*FAST, "--out", tmp_path / "out", "--update-readme", missing) == bench_common.EXIT_ERROR
    assert f"--update-readme {tmp_path / 'nope.md'}: no such file" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing ran


def test_median_ms_times_exactly_the_runs_asked_for():
    calls = []

    class StepTimer:  # each timed run "takes" 1, 2, 3, ... ms, counting the warm-up calls
        flushes = False

        def time_ms(self, fn, flush=True):
            out = fn()
            return float(len(calls)), out

    assert bench.median_ms(lambda: calls.append(None), repeats=5, warmup=2, timer=StepTimer()) == 5.0
    assert len(calls) == 7  # 2 untimed, 5 timed (3, 4, 5, 6, 7 ms): no time budget cuts it short
    assert bench.median_ms(lambda: None, repeats=3) >= 0.0  # the default: the CPU clock


# --------------------------------------------------------------------------------------------
# The ladder (the rungs come with the kernel ladder; a fake ops module stands in for them)
# --------------------------------------------------------------------------------------------

class SlowBackward(torch.autograd.Function):
    """Identity whose backward sleeps, so the "naive" rung is slow in both directions."""

    @staticmethod
    def forward(ctx, y):
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad):
        time.sleep(0.05)
        return grad


def laddered_ops():
    from atrous import ops

    def depthwise(x, w, b=None, stride=1, padding=0, dilation=1, algo="auto"):
        y = ops.depthwise_conv2d(x, w, b, stride, padding, dilation)
        if algo == "naive":  # estimated at 8x 0.05 s from a 1-of-8-channels probe: over the budget
            time.sleep(0.05)
            y = SlowBackward.apply(y)
        return y

    return real_ops(depthwise_conv2d=depthwise,
                    algorithms=lambda name: {"depthwise_conv2d": ("naive", "rows")}[name])


def test_ladder_times_every_rung_and_skips_the_slow_ones(tmp_path, capsys):
    assert run(*FAST, "--out", tmp_path, "--ladder", "depthwise_conv2d", "--shapes", "tiny-dw8-d2-n1",
               "--rung-budget", "0.2", ops=laddered_ops()) == 0
    out = capsys.readouterr().out
    stem = "ladder-depthwise_conv2d-tiny-dw8-d2-n1"
    report = json.loads((tmp_path / f"{stem}.json").read_text())
    assert is_png(tmp_path / f"{stem}.png")
    ladder = report["ladder"]
    assert ladder["rungs"] == ["naive", "rows", "auto"] and ladder["case"] == "tiny-dw8-d2-n1"
    rows = {(r["rung"], r["layout"], r["direction"]): r for r in ladder["rows"]}
    assert len(rows) == 4 * 2 * 2  # (torch + 3 rungs) x layouts x directions
    for layout in bench.LAYOUTS:
        for direction in ("forward", "backward"):
            naive, fast, torch_row = (rows[k, layout, direction] for k in ("naive", "rows", "torch"))
            assert "skipped: about" in naive["skipped"] and "--rung-budget 0.2 s" in naive["skipped"]
            assert "timing_ms" not in naive
            assert fast["ok"] and fast["max_rel_err"] < 1e-5
            assert "torch_timing_ms" not in torch_row and "torch_timing_ms" not in naive  # skipped: no pair
            paired = fast["torch_timing_ms"]  # PyTorch's runs alternating with the rung's
            assert len(paired["runs"]) == len(fast["timing_ms"]["runs"])
            ratio = paired["median"] / fast["timing_ms"]["median"]
            assert fast["x_torch"] == pytest.approx(ratio)
            assert fast["x_first"] == pytest.approx(1.0)  # the first rung that ran
    assert "skipped: about" in out and "ladder of depthwise_conv2d on tiny-dw8-d2-n1" in out


def test_ladder_needs_the_rungs(tmp_path, capsys):
    assert run(*FAST, "--out", tmp_path, "--ladder", "depthwise", "--shapes", "tiny-dw8-d2-n1",
               ops=real_ops()) == bench_common.EXIT_ERROR
    assert "no atrous.ops.algorithms()" in capsys.readouterr().err


@pytest.mark.skipif("bench" not in atrous_main.COMMANDS,
                    reason="`bench` is not registered in atrous.__main__ yet")
def test_python_m_atrous_bench(capsys):
    assert atrous_main.main(["bench", "--list"]) == 0
    assert "os16-middle-dw728" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# Model mode (--models): whole networks, impl="atrous" against impl="torch"
# --------------------------------------------------------------------------------------------

MODEL_FAST = ("--tiny", "--repeats", "1", "--warmup", "0", "--budget", "0", "--retries", "0")


class TinySegNet(torch.nn.Module):
    """DeepLab in miniature: strided stem, atrous separable block, dropout, 1x1 classifier, upsampling.
    groups=2 adds a grouped conv, which has no atrous kernel (an error under impl="atrous")."""

    def __init__(self, num_classes=21, output_stride=16, groups=1):
        from atrous.nn import AtrousConv2d, AtrousSeparableConv2d, ConvBNAct

        super().__init__()
        self.stem = ConvBNAct(3, 8, 3, stride=2)
        self.block = AtrousSeparableConv2d(8, 8, dilation=2)
        self.mix = ConvBNAct(8, 8, 3, groups=groups)
        self.dropout = torch.nn.Dropout(0.1)
        self.classifier = AtrousConv2d(8, num_classes, 1)

    def forward(self, x):
        y = self.classifier(self.dropout(self.mix(self.block(self.stem(x)))))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class Doubled(TinySegNet):
    """Right under impl="torch", twice too large under impl="atrous": what a broken kernel looks like."""

    def forward(self, x):
        y = super().forward(x)
        return 2 * y if self.classifier.impl == "atrous" else y


TINY_MODELS = {"tiny_segnet": TinySegNet, "tiny_doubled": Doubled,
               "tiny_grouped": lambda **kw: TinySegNet(groups=2, **kw)}


def test_model_mode_times_both_impls_and_writes_consistent_json_chart_markdown_and_readme(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench_common.MODELS_README_START}\nold\n{bench_common.MODELS_README_END}\nend\n")
    assert run(*MODEL_FAST, "--models", "tiny_segnet", "--size", "17", "--batch", "1,2", "--out", tmp_path,
               "--update-readme", readme, models=TINY_MODELS) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "models.json").read_text())
    assert report["results"] == [] and report["summary"] == []  # the layer benchmark did not run
    settings = report["settings"]
    assert settings["models"] == ["tiny_segnet"] and settings["steps"] == list(bench_config.MODEL_STEPS)
    assert settings["sizes"] == [17] and settings["batches"] == [1, 2] and settings["layout"] == "nchw"
    assert [r["name"] for r in report["models"]] == ["tiny_segnet-17-n1", "tiny_segnet-17-n2"]

    from atrous import ops

    for r in report["models"]:
        assert r["ok"] and r["input"] == f"{r['batch']}x3x17x17"
        assert list(r["steps"]) == ["forward", "train", "fused", "best"]
        assert r["params"] == sum(p.numel() for p in TinySegNet().parameters())
        for step, rec in r["steps"].items():
            if step == "best":  # each impl's fused model on both layouts; its faster layout counts
                contenders = {f"{i}/{lay}" for i in ("torch", "atrous") for lay in bench.LAYOUTS}
                assert set(rec["timings_ms"]) == contenders
                med = {impl: min(rec["timings_ms"][f"{impl}/{lay}"]["median"] for lay in bench.LAYOUTS)
                       for impl in ("atrous", "torch")}
                assert all(rec["timings_ms"][f"{impl}/{rec['best_layout'][impl]}"]["median"] == med[impl]
                           for impl in med)
            else:
                assert set(rec["timings_ms"]) == {"torch", "atrous"}
                med = {impl: rec["timings_ms"][impl]["median"] for impl in ("atrous", "torch")}
            assert all(len(v["runs"]) == 1 and v["attempts"] == 1 for v in rec["timings_ms"].values())
            for impl, ms in med.items():  # per image and per second come from the medians
                assert rec["ms_per_image"][impl] == pytest.approx(ms / r["batch"])
                assert rec["images_per_s"][impl] == pytest.approx(1e3 * r["batch"] / ms)
            assert rec["speedup"] == pytest.approx(med["torch"] / med["atrous"])
            assert rec["check"] == "ok" and rec["max_rel_err"] <= 1e-4
            assert ("grad_rel_err" in rec) == (step == "train")
        assert r["steps"]["train"]["grad_rel_err"] <= 1e-3  # a small network: far below the bound
        for step in ("train", "best"):  # one profiled run of each impl: time per op type
            prof = r["steps"][step]["profile"]
            for impl in ("atrous", "torch"):
                assert set(prof[impl]["ms"]) == set(bench_profile.CATEGORIES)
                assert sum(prof[impl]["ms"].values()) == pytest.approx(prof[impl]["total_ms"])
                assert prof[impl]["ms"][bench_profile.GEMM] > 0  # the 1x1 classifier
            assert prof["torch"]["ms"][bench_profile.SEPARABLE] == 0  # PyTorch has no fused separable op
        assert "profile" not in r["steps"]["forward"]
        fused_op = int(hasattr(ops, "separable_conv2d"))
        assert r["fused_separable_blocks"] == {"fused_op": fused_op, "separable": 1}
    (forward, train, fused, best) = report["models_summary"]
    assert (forward["step"], train["step"], fused["step"], best["step"]) == bench_config.MODEL_STEPS
    xs = [r["steps"]["forward"]["speedup"] for r in report["models"]]
    assert forward["count"] == 2 and forward["x"] == pytest.approx(math.sqrt(xs[0] * xs[1]))
    assert forward["min"] == {"value": min(xs), "case": report["models"][xs.index(min(xs))]["name"]}

    assert is_png(tmp_path / "models.png")
    markdown = (tmp_path / "models.md").read_text()
    assert "| tiny_segnet-17-n2 | 2x3x17x17 | train |" in markdown
    text = readme.read_text()
    assert text.startswith(f"intro\n{bench_common.MODELS_README_START}\n") and text.endswith(
        f"{bench_common.MODELS_README_END}\nend\n")
    assert "old" not in text and "--models tiny_segnet" in text
    for line in ("models: impl='atrous' against impl='torch'", "tiny_segnet-17-n1  1x3x17x17  forward",
                 "tiny_segnet-17-n2  2x3x17x17  train", "tiny_segnet-17-n2  2x3x17x17  fused",
                 "tiny_segnet-17-n2  2x3x17x17  best (atrous ",
                 "profile of tiny_segnet-17-n2 best, layouts atrous ",
                 "best vs best: fused, each impl's faster layout",
                 "training step (forward + loss + backward + SGD)",
                 "wrote models.json, models.md, models.png"):
        assert line in out


def test_model_mode_marks_disagreeing_and_failing_impls(tmp_path, capsys):
    assert run(*MODEL_FAST, "--models", "tiny_doubled,tiny_grouped", "--size", "9",
               "--layout", "channels_last", "--out", tmp_path,
               models=TINY_MODELS) == bench_common.EXIT_MISMATCH
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "models.json").read_text())
    doubled, grouped = report["models"]
    for step, rec in doubled["steps"].items():
        assert rec["check"] == "MISMATCH" and rec["max_rel_err"] > 1e-2, step  # output or loss
    assert doubled["steps"]["train"]["grad_rel_err"] > bench_config.GRAD_TOLERANCE["float32"]
    for step, rec in grouped["steps"].items():  # torch runs the grouped conv, the atrous kernels do not
        suffix = "/channels_last" if step == "best" else ""
        assert rec["check"] == "ERROR" and "median" in rec["timings_ms"]["torch" + suffix], step
        error = rec["timings_ms"]["atrous" + suffix]["error"]
        assert error.startswith("NotImplementedError: AtrousConv2d: groups=2"), step
        assert rec["speedup"] is None and "max_rel_err" not in rec and "profile" not in rec
    assert all(line["count"] == 0 for line in report["models_summary"])  # wrong rows never count
    assert "MISMATCH" in out and "ERROR; atrous: NotImplementedError" in out


def test_profile_classifies_ops_by_name_and_weight_shape():
    c = bench_profile.classify
    x = [1, 32, 9, 9]
    assert c("aten::mkldnn_convolution", [x, [64, 32, 1, 1], []]) == bench_profile.GEMM
    assert c("aten::mkldnn_convolution", [x, [32, 1, 3, 3], []]) == bench_profile.DEPTHWISE
    assert c("aten::mkldnn_convolution", [x, [64, 32, 3, 3], []]) == bench_profile.DENSE
    assert c("aten::mkldnn_convolution", [[1, 1, 9, 9], [8, 1, 3, 3], []]) == bench_profile.DENSE  # 1 channel
    assert c("aten::convolution_backward", [[1, 32, 9, 9], x, [32, 1, 3, 3]]) == bench_profile.DEPTHWISE
    assert c("atrous::pointwise_conv2d_backward_weight", []) == bench_profile.GEMM
    assert c("atrous::separable_conv2d", []) == bench_profile.SEPARABLE
    assert c("atrous::atrous_conv2d", []) == bench_profile.DENSE
    assert c("aten::addmm") == bench_profile.GEMM
    assert c("aten::upsample_bilinear2d") == c("aten::native_batch_norm") == bench_profile.ELEMENTWISE
    assert c("aten::copy_") == bench_profile.LAYOUT and c("aten::empty") == bench_profile.OTHER
    assert bench_profile.is_autograd_node("ConvolutionBackward0")
    assert bench_profile.is_autograd_node("GeneratedBackwardFor_atrous_pointwise_conv2d_default")
    assert not bench_profile.is_autograd_node("aten::convolution_backward")
    # A real profile: a 1x1 conv and a depthwise conv under PyTorch, every category accounted for.
    xt = torch.randn(1, 16, 12, 12)
    pw, dw = torch.randn(16, 16, 1, 1), torch.randn(16, 1, 3, 3)
    prof = bench_profile.op_profile(lambda: F.conv2d(F.conv2d(xt, pw), dw, padding=1, groups=16), runs=2)
    assert prof["ms"][bench_profile.GEMM] > 0 and prof["ms"][bench_profile.DEPTHWISE] > 0
    assert prof["ms"][bench_profile.DENSE] == 0 and prof["ms"][bench_profile.SEPARABLE] == 0
    assert sum(prof["ms"].values()) == pytest.approx(prof["total_ms"])


def test_model_mode_on_a_real_deeplab(tmp_path):
    """DeepLabV3 MobileNetV3-Large at 33x33 (a few seconds): every step runs and agrees, channels_last too."""
    from atrous.models import AtrousRateWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", AtrousRateWarning)  # 3x3 maps at 33x33: the harness silences it
        assert run(*MODEL_FAST, "--models", "deeplabv3_mobilenet_v3_large", "--layout", "channels_last",
                   "--out", tmp_path) == 0
    (r,) = json.loads((tmp_path / "models.json").read_text())["models"]
    assert r["name"] == "deeplabv3_mobilenet_v3_large-33-n1" and r["layout"] == "channels_last"
    assert all(rec["ok"] and rec["speedup"] > 0 for rec in r["steps"].values())


def test_model_mode_best_step_alone(tmp_path):
    assert run(*MODEL_FAST, "--models", "tiny_segnet", "--steps", "best", "--out", tmp_path,
               models=TINY_MODELS) == 0
    (r,) = json.loads((tmp_path / "models.json").read_text())["models"]
    assert list(r["steps"]) == ["best"] and r["steps"]["best"]["ok"]
    assert set(r["steps"]["best"]["best_layout"].values()) <= set(bench.LAYOUTS)


def test_model_mode_defaults_and_quick_config():
    def config(*argv):
        return bench.resolve(parse(list(argv)))

    full = config("--models")  # the issue's models: inference on one 513x513 image, training at 8 x 257x257
    expected = [(f"{name}-513-n1", ("forward", "fused", "best")) for name in bench_config.DEFAULT_MODELS]
    expected += [(f"{name}-257-n8", ("train",)) for name in bench_config.DEFAULT_MODELS]
    assert sorted((c.name, c.steps) for c in full.model_cases) == sorted(expected)
    issue = {"deeplabv3plus_xception65", "deeplabv3plus_mobilenet_v3_large", "deeplabv3_resnet50"}
    assert set(bench_config.DEFAULT_MODELS) == issue <= set(list_models())
    assert full.steps == ("forward", "train", "fused", "best") and full.layout == "nchw" and not full.cases
    assert full.plan.repeats == bench_config.DEFAULT_MODEL_REPEATS and full.grad_tolerance == 0.1
    assert full.plan.retries == bench_config.DEFAULT_MODEL_RETRIES
    quick = config("--models", "--quick")
    assert {(c.size, c.batch, c.steps) for c in quick.model_cases} == {
        (bench_config.QUICK_MODEL_SIZE, 1, ("forward", "fused", "best")), (129, 2, ("train",))}
    assert quick.plan.repeats == bench_config.QUICK_MODEL_REPEATS
    assert quick.plan.budget_s == bench_config.QUICK_BUDGET_S
    inference_only = config("--models", "--steps", "best")
    assert {(c.size, c.batch, c.steps) for c in inference_only.model_cases} == {(513, 1, ("best",))}
    mine = config("--models", "deeplabv3plus_*65,deeplabv3_mobilenet*", "--size", "129", "--batch", "2",
                  "--steps", "fused,forward", "--repeats", "7", "--layout", "channels_last")
    assert [c.name for c in mine.model_cases] == ["deeplabv3plus_xception65-129-n2",
                                                  "deeplabv3_mobilenet_v3_large-129-n2"]
    assert mine.steps == ("forward", "fused") and mine.plan.repeats == 7 and mine.layout == "channels_last"
    assert set(mine.factories) == {"deeplabv3plus_xception65", "deeplabv3_mobilenet_v3_large"}
    args = parse(["--models", "--quick"])
    assert bench.command_line(args) == ("python -m atrous bench --quick --models "
                                        "deeplabv3plus_xception65,deeplabv3plus_mobilenet_v3_large,"
                                        "deeplabv3_resnet50")


def test_model_mode_bad_options_exit_2_naming_the_option(tmp_path, capsys):
    cases = [
        (("--models", "deeplabv3plus_xception99"),
         ("--models: 'deeplabv3plus_xception99' matches no model; expected comma-separated names or globs "
          "from deeplabv3_resnet50")),
        (("--models", ","), "--models: expected comma-separated names or globs"),
        (("--models", "--steps", "forward,backward"), "--steps: expected comma-separated names from forward"),
        (("--models", "--size", "0"), "--size: expected a positive integer, got 0"),
        (("--models", "--batch", "0"), "--batch: expected comma-separated positive integers"),
        (("--models", "--shapes", "tiny-dw*"), "--shapes: selects layers, not models"),
        (("--models", "--ladder", "depthwise"), "--ladder: selects layers, not models"),
        (("--models", "--ops", "depthwise"), "--ops: selects layers, not models"),
        (("--size", "65",), "--size: applies to the model mode only; add --models"),
        (("--steps", "forward"), "--steps: applies to the model mode only"),
        (("--layout", "channels_last"), "--layout: applies to the model mode only"),
    ]
    for argv, message in cases:
        assert run(*MODEL_FAST, "--out", tmp_path, *argv) == bench_common.EXIT_ERROR, argv
        assert message in capsys.readouterr().err, argv
    assert not any(tmp_path.iterdir())  # nothing ran
    assert run("--models", "--list") == 0
    out = capsys.readouterr().out
    assert "deeplabv3_resnet101" in out
    assert [line.split() for line in out.splitlines() if "default" in line.split()] == [
        [name, "default"] for name in list_models() if name in bench_config.DEFAULT_MODELS]


def test_cuda_tables_show_tflops_percent_of_torch_and_hot_times(tmp_path):
    # The GPU columns, from a CPU report relabelled as a CUDA one (no GPU needed): GEMMs in
    # TFLOP/s with ours as a % of PyTorch's, depthwise as % of copy bandwidth, hot (L2-warm) times.
    assert run(*FAST, "--out", tmp_path, "--ops", "depthwise,pointwise") == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    report["machine"]["device"] = "cuda:0"
    for r in report["results"]:
        for rec in r["directions"].values():
            for timings in rec["timings_ms"].values():
                for v in timings.values():
                    v["hot_median"] = v["median"] / 2
    tables = {t.title.split()[0]: t for t in bench_report.result_tables(report)}
    pw = tables["pointwise"]
    assert {"ours TFLOP/s", "torch TFLOP/s", "% torch", "ours hot", "torch hot"} <= set(pw.headers)
    row = dict(zip(pw.headers, pw.rows[0]))
    rec = report["results"][2]["directions"]["forward"]
    ours, theirs = (max(rec["GFLOPs"][i].values()) for i in ("ours", "torch"))
    assert float(row["% torch"]) == pytest.approx(100 * ours / theirs, abs=0.5)
    assert rec["pct_torch"]["ours"]["nchw"] == pytest.approx(100 * rec["speedup"]["ours"]["nchw"])
    assert {"ours GB/s", "%copy", "ours hot"} <= set(tables["depthwise"].headers)


def test_ladder_asks_for_the_devices_ladder():
    seen = []
    fake = types.SimpleNamespace(algorithms=lambda name, *device: seen.append(device) or ("a", "b"))
    assert bench_ladder.ladder_rungs(fake, "depthwise_conv2d", torch.device("cpu")) == ("a", "b")
    assert bench_ladder.ladder_rungs(fake, "depthwise_conv2d", torch.device("cuda", 0)) == ("a", "b")
    assert seen == [(), ("cuda",)]


# --------------------------------------------------------------------------------------------
# Same-ISA comparison (--same-isa): a subprocess with both libraries held to one instruction set
# --------------------------------------------------------------------------------------------

def test_same_isa_child_gets_every_option_but_its_own_and_the_readme():
    options = bench.Options(tiny=True, ops="depthwise", shapes=["tiny-dw8-d2"], repeats=2, retries=0,
                            same_isa="avx2", update_readme="README.md", out="o")
    assert bench_same_isa.child_arguments(options, "o/same-isa-avx2") == [
        "--ops", "depthwise", "--shapes", "tiny-dw8-d2", "--repeats", "2", "--retries", "0", "--tiny",
        "--out", "o/same-isa-avx2"]
    assert bench_same_isa.child_arguments(bench.Options(models="a,b", steps=["best"]), "x") == [
        "--models", "a,b", "--steps", "best", "--out", "x"]
    assert set(bench_same_isa.ISAS) == {"avx512", "avx2", "generic"}
    for env in bench_same_isa.ISA_ENV.values():
        assert set(env) == set(bench_machine.ISA_ENV_VARS)


def test_same_isa_runs_the_comparison_in_a_restricted_subprocess(tmp_path, capsys):
    readme = tmp_path / "README.md"
    start, end = bench_common.SAME_ISA_README_START, bench_common.SAME_ISA_README_END
    readme.write_text(f"intro\n{start}\nold\n{end}\nend\n")
    assert run(*FAST, "--ops", "depthwise", "--shapes", "tiny-dw8-d2", "--same-isa", "avx2",
               "--out", tmp_path / "out", "--update-readme", readme) == 0
    out = capsys.readouterr().out
    assert "same ISA (avx2): ATROUS_CPU_ISA=avx2 ONEDNN_MAX_CPU_ISA=AVX2" in out
    assert "depthwise (memory-bound" in out  # the subprocess's own tables, passed through
    report = json.loads((tmp_path / "out" / "same-isa-avx2" / "bench.json").read_text())
    isa = report["machine"]["isa"]
    assert isa["env"] == bench_same_isa.ISA_ENV["avx2"]  # the subprocess saw the restriction
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):  # this process could go wider
        assert isa["aten"] == "AVX2"  # and ATen took it
    assert [r["name"] for r in report["results"]] == ["tiny-dw8-d2-n2"] and report["results"][0]["ok"]
    text = readme.read_text()
    assert text.startswith(f"intro\n{start}\nSame instruction set, avx2: both libraries restricted")
    assert text.endswith(f"{end}\nend\n") and "old" not in text
    assert "--same-isa avx2" in text and "| tiny-dw8-d2-n2 |" in text


def test_same_isa_bad_options_exit_2(tmp_path, capsys):
    assert run(*FAST, "--out", tmp_path, "--ladder", "depthwise_conv2d", "--shapes", "tiny-dw8-d2-n1",
               "--same-isa", "avx2") == bench_common.EXIT_ERROR
    assert "--same-isa: compares atrous with PyTorch; expected no --ladder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        run("--same-isa", "sse")
    assert exc.value.code == 2 and "--same-isa" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing ran


# --------------------------------------------------------------------------------------------
# Demo mode (`python -m atrous demo`): every op against F.conv2d on DEMO_SHAPES
# --------------------------------------------------------------------------------------------

def test_demo_shapes_are_the_deeplab_layers_of_the_operator_check():
    shapes = {s.name: s for s in bench.SHAPES}
    demo = bench.DEMO_SHAPES
    assert [s.op for s in demo].count("depthwise") == 5 and [s.op for s in demo].count("pointwise") == 3
    assert [s.dilation for s in demo if "ASPP rate" in s.where] == [6, 12, 18]
    (dense,) = [s for s in demo if s.op == "dense"]
    assert (dense.channels, dense.out_channels, dense.size, dense.dilation) == (2048, 256, 33, 12)
    assert all(shapes[s.name] == s for s in demo if s is not dense)  # the others are bench shapes
    quick = bench_demo.demo_shapes(quick=True)
    assert [(s.channels, s.out_channels, s.size) for s in quick[:2]] == [(91, 91, 17), (91, 91, 17)]
    assert [s.dilation for s in quick] == [s.dilation for s in demo]


def test_demo_checks_every_layer_and_marks_a_mismatch():
    from atrous import ops

    lines = []
    rows = bench.run_demo(quick=True, repeats=1, echo=lines.append)
    assert [r["layer"] for r in rows] == [s.where for s in bench.DEMO_SHAPES]
    assert all(r["ok"] and r["forward_rel_err"] <= 1e-4 and r["grad_rel_err"] <= 1e-4 for r in rows)
    times = ("ours_fwd_ms", "torch_fwd_ms", "ours_fwdbwd_ms", "torch_fwdbwd_ms")
    assert all(r[k] > 0 for r in rows for k in times)
    assert lines[-1].startswith("all layers match F.conv2d within 0.0001")
    assert sum(line.endswith("  ok") for line in lines) == len(rows)

    def off_by_a_little(x, w, b=None, stride=1, padding=0, dilation=1):
        return ops.depthwise_conv2d(x, w, b, stride, padding, dilation) + 1e-2

    lines.clear()
    rows = bench.run_demo(quick=True, repeats=1, ops=real_ops(depthwise_conv2d=off_by_a_little),
                          echo=lines.append)
    assert [r["ok"] for r in rows] == [s.op != "depthwise" for s in bench.DEMO_SHAPES]
    assert sum(line.endswith("MISMATCH") for line in lines) == 5
    assert lines[-1] == "5 layer(s) differ from F.conv2d by more than 0.0001 (relative) or failed"


def test_demo_bad_arguments_name_the_option():
    for kwargs, message in (({"batch": 0}, "--batch: expected a positive integer, got 0"),
                            ({"repeats": 0}, "--repeats: expected a positive integer"),
                            ({"dtype": "float16"}, "--dtype: expected one of float32, float64"),
                            ({"tolerance": -1.0}, "--tolerance: expected a positive number")):
        with pytest.raises(bench.BenchError, match=message):
            bench.run_demo(quick=True, **kwargs)
