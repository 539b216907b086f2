"""The `info` command: what was built and what this machine offers; paste it into bug reports."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from atrous import buildinfo, cuda_resources


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--cuda-resources", nargs="?", const="9.0", metavar="ARCH",
                        help="compile csrc/cuda/*.cu with nvcc -Xptxas -v for ARCH (default 9.0) and print "
                             "each kernel's registers and spill bytes (needs nvcc, not a GPU; exit 1 on a "
                             "spill)")


def main(args: argparse.Namespace) -> int:
    if args.cuda_resources:
        return _resources(args.cuda_resources, args.json)
    info = buildinfo.collect()
    if info["extension"] is None and "ATROUS_CPU_ISA" in (info["extension_error"] or ""):
        print(f"atrous info: {info['extension_error']}", file=sys.stderr)  # bad input, not a bad build
        return 2
    print(json.dumps(info, indent=2) if args.json else buildinfo.format_report(info))
    if info["mode"] == "no-extension":  # installed that way on purpose: nothing is missing
        return 0
    return 0 if info["extension"] is not None and not info["extension_error"] else 1


def _resources(arch: str, as_json: bool) -> int:
    try:
        rows = cuda_resources.collect(arch)
    except (RuntimeError, ValueError, FileNotFoundError) as err:
        print(f"atrous info --cuda-resources: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    else:
        print(cuda_resources.format_table(rows))
    return 1 if any(r.spills for r in rows) else 0
