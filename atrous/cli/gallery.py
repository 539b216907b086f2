"""The `gallery` command: every teaching figure with a caption in one HTML page (`atrous.viz.gallery`)."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from atrous.viz.gallery import GALLERY, write_gallery

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("gallery-out"), metavar="DIR",
                        help="folder for the figures and index.html (default: gallery-out)")


def main(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.out.is_dir():
        print(f"gallery: error: --out {args.out} exists and is not a folder", file=sys.stderr)
        return 2
    try:
        page = write_gallery(args.out, echo=functools.partial(print, flush=True))
    except OSError as exc:
        print(f"gallery: error: cannot write to --out {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(GALLERY)} figures and {page}")
    return 0
