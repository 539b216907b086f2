"""The `experiment` command: small DeepLabV3+ variants trained with one budget (:mod:`atrous.experiment`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from atrous.experiment import VARIANTS, format_seeds_table, format_table, run_experiment, update_readme

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = ", ".join(f"'{v.name}'" for v in VARIANTS)
    parser.add_argument("--variants", default=None, metavar="LIST",
                        help=f"comma-separated subset of {names} (default: all)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per variant (default: the demo's)")
    parser.add_argument("--train-size", type=int, default=None, help="training images (default: the demo's)")
    parser.add_argument("--val-size", type=int, default=None, help="validation images (default: the demo's)")
    parser.add_argument("--image-size", type=int, default=None, help="image side (default: the demo's)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch (default: the demo's)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the demo's)")
    parser.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    parser.add_argument("--seeds", default=None, metavar="LIST",
                        help="repeat the experiment for each seed (e.g. 0,1,2) and report the mean and "
                             "range; runs go to OUT/seed-S")
    parser.add_argument("--cue", choices=("rim", "shape"), default=None,
                        help="ContextShapes cue (default: rim)")
    parser.add_argument("--deep", type=float, default=12.0, help="depth (pixels) of the 'far inside' column")
    parser.add_argument("--out", default="experiment-out", help="output folder (default: experiment-out)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.add_argument("--update-readme", default=None, metavar="PATH",
                        help="also write the table between the '<!-- experiment:start/end -->' lines of PATH")


def main(args: argparse.Namespace) -> int:
    variants = VARIANTS
    if args.variants:
        wanted = [w.strip() for w in args.variants.split(",")]
        known = {v.name: v for v in VARIANTS}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            print(f"experiment: error: --variants: unknown {unknown}; expected names from {list(known)}",
                  file=sys.stderr)
            return 2
        variants = tuple(known[w] for w in wanted)
    overrides = {k: getattr(args, k) for k in ("epochs", "train_size", "val_size", "image_size", "batch_size",
                                                 "lr", "seed", "cue") if getattr(args, k) is not None}
    seeds = None
    if args.seeds is not None:
        try:
            seeds = [int(x) for x in args.seeds.split(",")]
        except ValueError:
            seeds = []
        if not seeds or args.seed is not None:
            print(f"experiment: error: --seeds: expected comma-separated integers, without --seed; got "
                  f"{args.seeds!r}", file=sys.stderr)
            return 2
    readme = Path(args.update_readme) if args.update_readme else None
    if readme is not None and not readme.is_file():  # checked before minutes of training, not after
        print(f"experiment: error: --update-readme: no file {str(readme)!r}", file=sys.stderr)
        return 2
    try:
        if seeds is None:
            rows = run_experiment(variants=variants, deep=args.deep, out=args.out, progress=args.progress,
                                  **overrides)
            table = format_table(rows, args.deep)
        else:
            runs = [run_experiment(variants=variants, deep=args.deep, out=Path(args.out) / f"seed-{seed}",
                                   progress=args.progress, seed=seed, **overrides) for seed in seeds]
            rows = [r for run in runs for r in run]
            table = format_seeds_table(seeds, runs, args.deep)
            print(table)
            (Path(args.out) / "experiment.md").write_text(table + "\n")
            print(f"wrote {Path(args.out) / 'experiment.md'}")
        if readme is not None:
            flags = [f"--{k.replace('_', '-')} {v}" for k, v in overrides.items()]
            if seeds is not None:
                flags.insert(0, f"--seeds {args.seeds}")
            if args.variants:
                flags.insert(0, f"--variants '{args.variants}'")
            update_readme(readme, rows, args.deep, " ".join(flags), table)
    except ValueError as e:
        print(f"experiment: error: {e}", file=sys.stderr)
        return 2
    return 0
