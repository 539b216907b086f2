"""The `eval` command: mIoU, per-class IoU, pixel accuracy and a confusion matrix of a model on a dataset."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from atrous.data import EVAL_DATASETS, DatasetLayoutError, build_eval_data
from atrous.inference import load_imported_weights
from atrous.training import evaluate, load_model, resolve_impl
from atrous.viz.metrics_plots import plot_confusion_matrix

from .common import add_impl_and_device, add_weights_source

__all__ = ["add_arguments", "main"]

EXAMPLES = """examples:
  python -m atrous eval --checkpoint demo-out/best.pt                     # ContextShapes validation set
  python -m atrous eval --checkpoint runs/voc/best.pt --dataset voc --data-root data/VOCdevkit \\
      --scales 0.5,0.75,1,1.25,1.5,1.75 --flip --out runs/voc/eval
  python -m atrous eval --weights torchvision:deeplabv3_resnet50=deeplabv3_resnet50_coco-cd0a2569.pth \\
      --dataset voc --data-root data/VOCdevkit

writes OUT/report.json (mIoU, pixel accuracy, per-class IoU and accuracy, the confusion matrix) and
OUT/confusion_matrix.png (rows: true class, normalised).
exit status: 0 done, 2 bad arguments, missing weights or data.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    add_weights_source(parser)
    parser.add_argument("--dataset", default="shapes", choices=EVAL_DATASETS,
                        help="shapes (generated), voc, cityscapes or folder (default: shapes)")
    parser.add_argument("--data-root", default=None, metavar="DIR", help="dataset folder (voc, cityscapes, "
                                                                        "folder)")
    parser.add_argument("--split", default="val", help="split to evaluate (default: val)")
    parser.add_argument("--num-classes", type=int, default=None, help="folder datasets without classes.json")
    parser.add_argument("--mask-palette", default=None, metavar="PALETTE",
                        help="folder: masks are RGB colours (binary, voc, cityscapes, classes, a JSON file)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="shapes: image side (default: the checkpoint's training size, else 128)")
    parser.add_argument("--size", type=int, default=200, help="shapes: number of images (default: 200)")
    parser.add_argument("--seed", type=int, default=None,
                        help="shapes: seed (default: the checkpoint's validation seed, data_seed + 1000)")
    parser.add_argument("--scales", default="1", metavar="LIST", help="inference scales, e.g. 0.75,1,1.25")
    parser.add_argument("--flip", action="store_true", help="also average with the mirrored images")
    parser.add_argument("--batch-size", type=int, default=4, help="images per batch (default: 4)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    parser.add_argument("--out", default="out/eval", metavar="DIR", help="output folder (default: out/eval)")
    add_impl_and_device(parser)


def _error(message: str) -> int:
    print(f"eval: error: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    try:
        scales = tuple(float(s) for s in args.scales.split(","))
        if not scales or min(scales) <= 0:
            raise ValueError
    except ValueError:
        return _error(f"--scales: expected positive numbers separated by commas, got {args.scales!r}")
    for name in ("batch_size", "size", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return _error(f"--{name.replace('_', '-')}: expected a number >= 1, got {value}")
    device = torch.device(args.device)
    impl = resolve_impl(args.impl, device)
    try:
        if args.checkpoint is not None:
            model, state = load_model(args.checkpoint, impl)
            info, config = dict(state.get("dataset", {})), state.get("config", {})
            source = {"checkpoint": str(args.checkpoint), "model_spec": state["model_spec"]}
        else:
            model, info = load_imported_weights(args.weights, impl)
            config, source = {}, {"weights": info.pop("weights")}
        kwargs = {k: info[k] for k in ("mean", "std") if info.get(k)}
        dataset, classes, palette = build_eval_data(
            args.dataset, args.data_root, args.split, num_classes=args.num_classes,
            mask_palette=args.mask_palette, size=args.size,
            image_size=args.image_size or config.get("image_size", 128),
            seed=args.seed if args.seed is not None else config.get("data_seed", 1) + 1000,
            cue=config.get("cue", "rim"), **kwargs)
    except (ValueError, FileNotFoundError, DatasetLayoutError, TypeError) as e:
        return _error(str(e).splitlines()[0] if "\n" in str(e) else str(e))
    num_classes = getattr(model, "num_classes", len(classes))
    if num_classes != len(classes):
        return _error(f"the model predicts {num_classes} classes, dataset {args.dataset!r} "
                      f"has {len(classes)}")
    if args.limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(args.limit, len(dataset))))
    model.to(device)
    try:
        cm = evaluate(model, dataset, num_classes, batch_size=args.batch_size, scales=scales, flip=args.flip,
                      device=device)
    except (ValueError, OSError) as e:  # unreadable or malformed files name themselves
        return _error(str(e))
    scores = cm.scores()
    print(scores.table(classes))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {**source, "dataset": args.dataset, "data_root": args.data_root, "split": args.split,
              "images": len(dataset), "scales": list(scales), "flip": args.flip, "impl": impl,
              **scores.report(classes), "classes": list(classes), "confusion_matrix": cm.matrix.tolist()}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    plot_confusion_matrix(cm.matrix, classes, path=out / "confusion_matrix.png",
                          title=f"{args.dataset} {args.split}: mIoU {100 * scores.miou:.1f}%")
    print(f"wrote {out / 'report.json'}, {out / 'confusion_matrix.png'}")
    return 0
