"""The `info` command: what was built and what this machine offers; paste it into bug reports."""

from __future__ import annotations

import argparse
import json
import sys

from atrous import buildinfo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def main(args: argparse.Namespace) -> int:
    info = buildinfo.collect()
    if info["extension"] is None and "ATROUS_CPU_ISA" in (info["extension_error"] or ""):
        print(f"atrous info: {info['extension_error']}", file=sys.stderr)  # bad input, not a bad build
        return 2
    print(json.dumps(info, indent=2) if args.json else buildinfo.format_report(info))
    return 0 if info["extension"] is not None and not info["extension_error"] else 1
