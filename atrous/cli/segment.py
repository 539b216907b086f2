"""The `segment` command: masks (palette PNGs) and colour overlays, from a checkpoint or imported weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from atrous.data import read_image
from atrous.data.palettes import DATASET_INFO
from atrous.inference import load_imported_weights, segment
from atrous.training import ModelSpec, build_model, load_model, resolve_impl
from atrous.viz import overlay

from .common import add_impl_and_device

__all__ = ["add_arguments", "main"]

EXAMPLES = """examples:
  python -m atrous segment photo.jpg street.png --checkpoint demo-out/best.pt --out out/seg
  python -m atrous segment img/*.jpg --checkpoint runs/voc/best.pt --scales 0.75,1,1.25 --flip
  python -m atrous segment photo.jpg \
      --weights torchvision:deeplabv3_resnet50=deeplabv3_resnet50_coco-cd0a2569.pth   # imported weights
  python -m atrous segment photo.jpg --random-init --palette cityscapes   # untrained: noise, for plumbing

writes OUT/NAME_mask.png (class ids as palette-indexed pixels: open it as an image, or read the
ids with PIL/numpy) and OUT/NAME_overlay.png (the image with the class colours blended in).
exit status: 0 done, 2 bad arguments, missing weights or unreadable files.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (anything PIL reads)")
    parser.add_argument("--checkpoint", default=None, metavar="CKPT",
                        help="checkpoint written by `python -m atrous train` (it names its model and "
                             "classes)")
    parser.add_argument("--weights", default=None, metavar="KIND:NAME=PATH",
                        help="imported weights instead of a checkpoint: torchvision:deeplabv3_resnet50=PATH "
                             "(also _resnet101, _mobilenet_v3_large); VOC classes, ImageNet normalisation")
    parser.add_argument("--random-init", action="store_true",
                        help="run an untrained model (no --checkpoint): the masks are meaningless")
    parser.add_argument("--out", default="out/segment", metavar="DIR",
                        help="output folder (default: out/segment)")
    parser.add_argument("--model", default="deeplabv3plus_small",
                        help="with --random-init: a factory in atrous.models.MODELS "
                             "(default: deeplabv3plus_small)")
    parser.add_argument("--output-stride", type=int, default=16, choices=(8, 16, 32),
                        help="with --random-init: output stride (default: 16)")
    parser.add_argument("--palette", default=None, choices=sorted(DATASET_INFO),
                        help="class names and colours (default: the checkpoint's; voc with --random-init)")
    parser.add_argument("--scales", default="1", metavar="LIST",
                        help="inference scales, e.g. 0.75,1,1.25 (default: 1)")
    parser.add_argument("--flip", action="store_true", help="also average with the mirrored image")
    parser.add_argument("--alpha", type=float, default=0.5,
                        help="overlay opacity of the class colours (default: 0.5)")
    add_impl_and_device(parser)


def _error(message: str) -> int:
    print(f"segment: error: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    given = [flag for flag, value in (("--checkpoint", args.checkpoint), ("--weights", args.weights),
                                      ("--random-init", args.random_init)) if value]
    if not given:
        return _error("no weights: give --checkpoint CKPT (written by `python -m atrous train`), --weights "
                      "torchvision:deeplabv3_resnet50=PATH, or --random-init to run an untrained model on "
                      "purpose (its masks are noise)")
    if len(given) > 1:
        return _error(f"{' and '.join(given)} exclude each other")
    try:
        scales = tuple(float(s) for s in args.scales.split(","))
        if not scales or min(scales) <= 0:
            raise ValueError
    except ValueError:
        return _error(f"--scales: expected positive numbers separated by commas, got {args.scales!r}")
    if not 0 <= args.alpha <= 1:
        return _error(f"--alpha: expected a value in [0, 1], got {args.alpha}")
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        return _error(f"no such image file: {', '.join(missing)}")
    device = torch.device(args.device)
    impl = resolve_impl(args.impl, device)

    if args.checkpoint is not None or args.weights is not None:
        try:
            if args.checkpoint is not None:
                model, state = load_model(args.checkpoint, impl)
                info = state.get("dataset", {})
            else:
                model, info = load_imported_weights(args.weights, impl)
        except (FileNotFoundError, ValueError) as e:
            return _error(str(e).splitlines()[0])
        classes, palette = info.get("classes"), info.get("palette")
        mean, std = info.get("mean"), info.get("std")
        if args.palette is not None:
            classes, palette = DATASET_INFO[args.palette]
        if classes is None or palette is None:
            classes, palette = DATASET_INFO["voc"]
    else:
        classes, palette = DATASET_INFO[args.palette or "voc"]
        torch.manual_seed(0)
        try:
            model = build_model(ModelSpec(args.model, len(classes), args.output_stride), impl).eval()
        except ValueError as e:
            return _error(str(e))
        mean = std = None
        print("segment: --random-init: the model is untrained, its masks are meaningless", file=sys.stderr)
    palette = np.asarray(palette, dtype=np.uint8)
    num_classes = getattr(model, "num_classes", len(classes))
    if len(palette) < num_classes:
        return _error(f"--palette has {len(palette)} colours, the model predicts {num_classes} classes")
    model.to(device)
    kwargs = {} if mean is None else {"mean": mean, "std": std}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    flat_palette = palette.reshape(-1).tolist() + [255, 255, 255] * (256 - len(palette))
    for path in args.images:
        try:
            image = read_image(path)
        except (UnidentifiedImageError, OSError) as e:
            return _error(f"cannot read image {path!r}: {e}")
        mask = segment(model, image, scales=scales, flip=args.flip, device=device, **kwargs)  # (H, W)
        ids = mask.numpy().astype(np.uint8)
        stem = Path(path).stem
        png = Image.fromarray(ids)  # mode "L"; putpalette turns it into "P" with the class colours
        png.putpalette(flat_palette)
        mask_path, overlay_path = out / f"{stem}_mask.png", out / f"{stem}_overlay.png"
        png.save(mask_path)
        background = (0,) if classes and classes[0] == "background" else ()  # untinted: the image shows
        overlay(image, ids, palette, args.alpha, transparent=background, path=overlay_path)
        counts = np.bincount(ids.reshape(-1), minlength=len(classes))
        present = [f"{classes[c]} {100 * counts[c] / ids.size:.1f}%" for c in np.argsort(-counts)
                   if counts[c]]
        print(f"{path}: {ids.shape[1]}x{ids.shape[0]} -> {mask_path}, {overlay_path}; "
              + ", ".join(present[:6]))
    return 0

