"""The `experiment` command: when does atrous convolution help? Designs reach, transfer, legacy."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from atrous.experiment import VARIANTS, format_seeds_table, format_table, run_experiment, update_readme
from atrous.experiment import reach as reach_design
from atrous.experiment import transfer as transfer_design
from atrous.readme import replace_block

__all__ = ["add_arguments", "main"]

DESIGNS = ("reach", "transfer", "legacy")
_LEGACY_ONLY = ("variants", "train_size", "val_size", "image_size", "cue", "seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--design", choices=DESIGNS, default="reach",
                        help="reach (default): four equal-size networks that differ in rates and strides, "
                             "accuracy by distance to the cue; transfer: train at OS 32, evaluate at OS 8 "
                             "dilated and undilated; legacy: the first experiment (see the README)")
    parser.add_argument("--quick", action="store_true", help="a tiny run of the design (for tests; numbers "
                                                             "mean nothing)")
    parser.add_argument("--seeds", default=None, metavar="LIST",
                        help="comma-separated seeds (reach default 0,1,2,3,4; transfer 0,1,2; legacy: repeat "
                             "the experiment per seed, runs go to OUT/seed-S)")
    parser.add_argument("--steps", type=int, default=None, help="reach: training steps per network")
    parser.add_argument("--workers", type=int, default=None,
                        help="reach and transfer: trainings in parallel processes (default 1)")
    parser.add_argument("--finetune-steps", type=int, default=None,
                        help="transfer: also fine-tune each OS-8 model for this many steps")
    parser.add_argument("--epochs", type=int, default=None, help="legacy and transfer: epochs per training")
    parser.add_argument("--batch-size", type=int, default=None, help="batch (default: the design's)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the design's)")
    legacy = parser.add_argument_group("legacy design only")
    names = ", ".join(f"'{v.name}'" for v in VARIANTS)
    legacy.add_argument("--variants", default=None, metavar="LIST",
                        help=f"comma-separated subset of {names} (default: all)")
    legacy.add_argument("--train-size", type=int, default=None, help="training images (default: the demo's)")
    legacy.add_argument("--val-size", type=int, default=None, help="validation images (default: the demo's)")
    legacy.add_argument("--image-size", type=int, default=None, help="image side (default: the demo's)")
    legacy.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    legacy.add_argument("--cue", choices=("rim", "shape"), default=None,
                        help="ContextShapes cue (default: rim)")
    legacy.add_argument("--deep", type=float, default=12.0, help="depth (pixels) of the 'far inside' column")
    parser.add_argument("--out", default="experiment-out",
                        help="output folder (default: experiment-out; reach and transfer write to OUT/reach "
                             "and OUT/transfer)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.add_argument("--update-readme", default=None, metavar="PATH",
                        help="also write the design's table between the '<!-- DESIGN:start/end -->' lines of "
                             "PATH (legacy: '<!-- experiment:start/end -->')")


def _error(message: str) -> int:
    print(f"experiment: error: {message}", file=sys.stderr)
    return 2


def _positive(args, name: str) -> bool:
    value = getattr(args, name)
    return value is None or value > 0


def main(args: argparse.Namespace) -> int:
    seeds = None
    if args.seeds is not None:
        try:
            seeds = tuple(int(x) for x in args.seeds.split(","))
        except ValueError:
            seeds = ()
        if not seeds or args.seed is not None:
            return _error(f"--seeds: expected comma-separated integers, without --seed; got {args.seeds!r}")
    for name in ("steps", "workers", "finetune_steps", "epochs", "batch_size", "lr"):
        if not _positive(args, name) and not (name == "finetune_steps" and args.finetune_steps == 0):
            flag = "--" + name.replace("_", "-")
            return _error(f"{flag}: expected a positive number, got {getattr(args, name)}")
    readme = Path(args.update_readme) if args.update_readme else None
    if readme is not None and not readme.is_file():  # checked before minutes of training, not after
        return _error(f"--update-readme: no file {str(readme)!r}")
    if args.design == "legacy":
        return _legacy(args, seeds, readme)
    given = [f"--{n.replace('_', '-')}" for n in _LEGACY_ONLY if getattr(args, n) is not None]
    if given:
        return _error(f"{', '.join(given)}: only for --design legacy")
    wrong = {"reach": ("finetune_steps", "epochs"), "transfer": ("steps",)}[args.design]
    given = [f"--{n.replace('_', '-')}" for n in wrong if getattr(args, n) is not None]
    if given:
        return _error(f"{', '.join(given)}: not used by --design {args.design}")
    if args.design == "reach":
        cfg = reach_design.QUICK if args.quick else reach_design.ReachConfig()
        fields = {"seeds": seeds, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                  "workers": args.workers}
        cfg = replace(cfg, **{k: v for k, v in fields.items() if v is not None})
        if len(cfg.seeds) < 2:
            return _error("--seeds: the paired tests need at least 2 seeds")
        results = reach_design.run_reach(cfg, out=Path(args.out) / "reach", progress=args.progress)
        text = reach_design.format_reach(results)
    else:
        cfg = transfer_design.QUICK if args.quick else transfer_design.TransferConfig()
        fields = {"seeds": seeds, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                  "finetune_steps": args.finetune_steps, "workers": args.workers}
        cfg = replace(cfg, **{k: v for k, v in fields.items() if v is not None})
        if len(cfg.seeds) < 2:
            return _error("--seeds: the paired tests need at least 2 seeds")
        results = transfer_design.run_transfer(cfg, out=Path(args.out) / "transfer", progress=args.progress)
        text = transfer_design.format_transfer(results)
    if readme is not None:
        flags = [f"--design {args.design}"] + (["--quick"] if args.quick else [])
        flags += [f"--seeds {args.seeds}"] if args.seeds else []
        flags += [f"--{n.replace('_', '-')} {getattr(args, n)}" for n in ("steps", "finetune_steps", "epochs",
                                                                          "batch_size", "lr", "workers")
                  if getattr(args, n) is not None]
        block = f"Measured with `python -m atrous experiment {' '.join(flags)}`:\n\n{text}"
        replace_block(readme, block, f"<!-- {args.design}:start -->", f"<!-- {args.design}:end -->",
                      option="experiment --update-readme")
        print(f"wrote the {args.design} table into {readme}")
    return 0


def _legacy(args: argparse.Namespace, seeds, readme) -> int:
    if args.steps is not None or args.finetune_steps is not None or args.workers is not None or args.quick:
        return _error("--steps, --workers, --finetune-steps and --quick: not used by --design legacy")
    variants = VARIANTS
    if args.variants:
        wanted = [w.strip() for w in args.variants.split(",")]
        known = {v.name: v for v in VARIANTS}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            return _error(f"--variants: unknown {unknown}; expected names from {list(known)}")
        variants = tuple(known[w] for w in wanted)
    overrides = {k: getattr(args, k) for k in ("epochs", "train_size", "val_size", "image_size", "batch_size",
                                                 "lr", "seed", "cue") if getattr(args, k) is not None}
    try:
        if seeds is None:
            rows = run_experiment(variants=variants, deep=args.deep, out=args.out, progress=args.progress,
                                  **overrides)
            table = format_table(rows, args.deep)
        else:
            runs = [run_experiment(variants=variants, deep=args.deep, out=Path(args.out) / f"seed-{seed}",
                                   progress=args.progress, seed=seed, **overrides) for seed in seeds]
            rows = [r for run in runs for r in run]
            table = format_seeds_table(list(seeds), runs, args.deep)
            print(table)
            (Path(args.out) / "experiment.md").write_text(table + "\n")
            print(f"wrote {Path(args.out) / 'experiment.md'}")
        if readme is not None:
            flags = ["--design legacy"] + [f"--{k.replace('_', '-')} {v}" for k, v in overrides.items()]
            if seeds is not None:
                flags.insert(1, f"--seeds {args.seeds}")
            if args.variants:
                flags.insert(1, f"--variants '{args.variants}'")
            update_readme(readme, rows, args.deep, " ".join(flags), table)
    except ValueError as e:
        return _error(str(e))
    return 0
