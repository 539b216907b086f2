"""The `demo` command: each op checked against F.conv2d on DeepLabV3+ layers (`atrous.bench.run_demo`)."""

from __future__ import annotations

import argparse
import functools
import sys

from atrous.bench import BenchError, run_demo

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, default=1, help="batch size (1 = inference)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median)")
    parser.add_argument("--quick", action="store_true", help="channels / 8 and planes <= 17 (seconds)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest relative error accepted (default 1e-4 float32, 1e-10 float64)")


def main(args: argparse.Namespace) -> int:
    try:
        rows = run_demo(batch=args.batch, dtype=args.dtype, repeats=args.repeats, quick=args.quick,
                        tolerance=args.tolerance, echo=functools.partial(print, flush=True))
    except (BenchError, ImportError) as exc:  # ImportError: the kernels are not built (it says how)
        print(f"python -m atrous demo: error: {exc}", file=sys.stderr)
        return 2
    return 0 if all(row["ok"] for row in rows) else 1
