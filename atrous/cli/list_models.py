"""The `list-models` command: the registered models, parameters, default output stride, importable weights."""

from __future__ import annotations

import argparse
import json
import sys

from atrous.models import list_models
from atrous.models.pretrained import describe_model

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default=None,
                        help="glob over the names, e.g. 'deeplabv3plus_*' (default: every model)")
    parser.add_argument("--num-classes", type=int, default=21,
                        help="classes the parameter count is for (default: 21, VOC)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if not names:
        print(f"list-models: error: no model matches {args.pattern!r}; the models are "
              f"{', '.join(list_models())}", file=sys.stderr)
        return 2
    if args.num_classes < 1:
        print(f"list-models: error: --num-classes: expected a number >= 1, got {args.num_classes}",
              file=sys.stderr)
        return 2
    rows = [describe_model(name, args.num_classes) for name in names]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'model':<{width}}  {'params':>8}  OS  importable weights "
          "(--backbone-weights / weights_backbone=)")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['parameters'] / 1e6:7.2f}M  {r['output_stride']:>2}  "
              + "; ".join(r["weights"]))
    print(f"parameters for {args.num_classes} classes; OS: the factory's default output stride "
          "(--output-stride 8, 16 or 32)")
    return 0
