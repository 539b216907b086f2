"""The `info` command: what was built and what this machine offers; paste it into bug reports."""

from __future__ import annotations

import argparse
import json

from atrous import buildinfo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def main(args: argparse.Namespace) -> int:
    info = buildinfo.collect()
    print(json.dumps(info, indent=2) if args.json else buildinfo.format_report(info))
    if info["mode"] == "no-extension":  # installed that way on purpose: nothing is missing
        return 0
    return 0 if info["extension"] is not None and not info["extension_error"] else 1
