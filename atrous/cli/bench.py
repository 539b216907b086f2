"""The `bench` command: atrous's ops (or whole models) timed against PyTorch (:mod:`atrous.bench`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import atrous.bench
from atrous.bench import LAYOUTS, OPS, QUICK_SHAPES, BenchError, Options, Shape
from atrous.bench.common import (
    DTYPES,
    EXIT_ERROR,
    EXIT_OK,
    MODELS_README_END,
    MODELS_README_START,
    README_END,
    README_START,
)
from atrous.bench.config import (
    DEFAULT_BUDGET_S,
    DEFAULT_MODEL_BATCHES,
    DEFAULT_MODEL_REPEATS,
    DEFAULT_MODEL_RETRIES,
    DEFAULT_MODELS,
    DEFAULT_REPEATS,
    DEFAULT_RETRIES,
    INFERENCE_CASE,
    MODEL_STEPS,
    QUICK_BUDGET_S,
    QUICK_INFERENCE_CASE,
    QUICK_MODEL_REPEATS,
    QUICK_REPEATS,
    QUICK_TRAIN_CASE,
    TRAIN_CASE,
)
from atrous.bench.same_isa import ISAS, run_same_isa

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    o = Options()  # the defaults live there: the same from Python and from the command line
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("exit status: 0 = every row matches PyTorch, 1 = a mismatch or a failing op, "
                     "2 = bad options\n\n" + (atrous.bench.__doc__ or "").split("\n\n", 1)[1])
    parser.add_argument("--device", default=o.device, help="cpu (default) or cuda[:N]")
    parser.add_argument("--dtype", default=o.dtype, choices=DTYPES)
    parser.add_argument("--ops", default=o.ops, metavar="LIST",
                        help=f"comma-separated, from {','.join(OPS)} (default: all)")
    parser.add_argument("--shapes", default=o.shapes, metavar="LIST",
                        help="comma-separated shape names or globs (os16-aspp-*), optionally with a batch "
                             "suffix (os16-middle-dw728-n4); see --list (default: all, or the quick set)")
    parser.add_argument("--batch", default=o.batch, metavar="LIST",
                        help="comma-separated batch sizes (default: 1; all of the list: 1,8)")
    parser.add_argument("--quick", action="store_true",
                        help=f"batch 1, {len(QUICK_SHAPES)} shapes, fewer runs (about a minute on 2 cores)")
    parser.add_argument("--repeats", type=int, default=o.repeats, metavar="N",
                        help=f"most timed runs per measurement (default {DEFAULT_REPEATS}; "
                             f"--quick {QUICK_REPEATS})")
    parser.add_argument("--warmup", type=int, default=o.warmup, metavar="N",
                        help=f"untimed runs first (default {o.warmup})")
    parser.add_argument("--budget", type=float, default=o.budget, metavar="S",
                        help="stop repeating a measurement after S seconds, once 3 runs are in "
                             f"(default {DEFAULT_BUDGET_S}; --quick {QUICK_BUDGET_S})")
    parser.add_argument("--max-spread", type=float, default=o.max_spread, metavar="F",
                        help="rerun a case whose runs spread by more than F (interquartile range over "
                             f"median; default {o.max_spread:g}); rows still above it are marked noisy")
    parser.add_argument("--retries", type=int, default=o.retries, metavar="N",
                        help=f"reruns of a too-noisy case (default {DEFAULT_RETRIES}; --models "
                             f"{DEFAULT_MODEL_RETRIES})")
    parser.add_argument("--tolerance", type=float, default=o.tolerance,
                        help="largest error relative to the tensor's largest value "
                             "(default 1e-4 float32, 1e-10 float64, 1e-2 half types)")
    parser.add_argument("--out", default=o.out, metavar="DIR",
                        help="where bench.json, bench.png and bench.md go (default bench-out/)")
    parser.add_argument("--update-readme", default=o.update_readme, metavar="PATH",
                        help=f"replace the block between {README_START} and {README_END} in PATH "
                             f"with the summary and tables (with --models: {MODELS_README_START} and "
                             f"{MODELS_README_END})")
    parser.add_argument("--ladder", default=o.ladder, metavar="OP",
                        help="time every rung of one op (depthwise_conv2d, pointwise_conv2d, atrous_conv2d, "
                             "separable_conv2d) on one shape (--shapes NAME; default a middle-flow shape)")
    parser.add_argument("--rung-budget", type=float, default=o.rung_budget, metavar="S",
                        help="ladder: skip a rung whose run is estimated over S seconds, and cap its "
                             f"repeats to fit in S (default {o.rung_budget:g})")
    parser.add_argument("--list", action="store_true",
                        help="list the shapes (with --models: the models) and exit")
    models = parser.add_argument_group(
        "model mode", "time whole DeepLab models, impl='atrous' against impl='torch' (step 7 below)")
    models.add_argument("--models", nargs="?", const=",".join(DEFAULT_MODELS), default=o.models,
                        metavar="LIST",
                        help="comma-separated names or globs from atrous.models.MODELS (without LIST: "
                             f"{','.join(DEFAULT_MODELS)}); without --size and --batch, forward, fused "
                             f"and best run at batch {INFERENCE_CASE[0]} on {INFERENCE_CASE[1]}x"
                             f"{INFERENCE_CASE[1]} and train at batch {TRAIN_CASE[0]} on {TRAIN_CASE[1]}x"
                             f"{TRAIN_CASE[1]} (--quick: {QUICK_INFERENCE_CASE[1]}, and batch "
                             f"{QUICK_TRAIN_CASE[0]} on {QUICK_TRAIN_CASE[1]}); with them every step on "
                             f"every case (--batch default {','.join(map(str, DEFAULT_MODEL_BATCHES))}); "
                             f"--repeats {DEFAULT_MODEL_REPEATS} (--quick {QUICK_MODEL_REPEATS}); "
                             "writes models.json, models.md, models.png")
    models.add_argument("--size", type=int, default=o.size, metavar="N",
                        help="input height = width of every case (default: per step, see --models)")
    models.add_argument("--steps", default=o.steps, metavar="LIST",
                        help=f"comma-separated, from {','.join(MODEL_STEPS)} (default: all; best = each "
                             "impl's fused model on its faster layout)")
    models.add_argument("--layout", default=o.layout, choices=LAYOUTS,
                        help="memory format of the input and the weights, the same for both impls "
                             "(default nchw)")
    parser.add_argument("--same-isa", default=o.same_isa, choices=ISAS, metavar="ISA",
                        help=f"one of {', '.join(ISAS)}: run the comparison in a subprocess with atrous "
                             "(ATROUS_CPU_ISA) and PyTorch (ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS, "
                             "ATEN_CPU_CAPABILITY) held to that instruction set; its files go to "
                             "OUT/same-isa-ISA/, --update-readme writes the bench-same-isa (or "
                             "bench-models-same-isa) block")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests: tiny shapes


def main(args: argparse.Namespace, shapes: Sequence[Shape] | None = None, ops: Any = None,
         registry: Mapping[str, Callable[..., Any]] | None = None) -> int:
    """Runs `python -m atrous bench`. shapes, ops, registry: replacements for tests and notebooks (the
    shape table, the ops module, the models: name -> factory instead of atrous.models.MODELS)."""
    try:
        if args.list:
            print(atrous.bench.listing(args, shapes, registry))
            return EXIT_OK
        cfg = atrous.bench.resolve(args, shapes, registry)  # bad options stop here, before any subprocess
        if getattr(args, "same_isa", None):
            return run_same_isa(args)[1]
        report = atrous.bench.run(cfg, ops)
    except (BenchError, ImportError) as exc:  # ImportError: the kernels are not built (it says how)
        print(f"python -m atrous bench: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return atrous.bench.exit_status(report)
