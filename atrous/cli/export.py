"""The `export` command: a model as ONNX (checked with onnxruntime) or as a torch.export program."""

from __future__ import annotations

import argparse
import sys

import torch

from atrous.export import export_onnx, export_program
from atrous.inference import load_imported_weights
from atrous.training import load_model

from .common import add_weights_source

__all__ = ["add_arguments", "main"]

EXAMPLES = """examples:
  python -m atrous export --checkpoint demo-out/best.pt --format onnx --out demo.onnx
  python -m atrous export --checkpoint demo-out/best.pt --format torch.export --out demo.pt2
  python -m atrous export --weights torchvision:deeplabv3_resnet50=PATH --format onnx --size 520 520 \
      --out r50.onnx

onnx: ONNX has no atrous operators, so the model is exported with impl="torch" (F.conv2d, the same
weights); the file is then run with onnxruntime and compared with the model on a random input.
torch.export: keeps torch.ops.atrous.* in the graph; load it with `import atrous.ops` first, then
torch.export.load(PATH).module().
exit status: 0 done, 2 bad arguments or weights, 1 the exported model disagrees with PyTorch.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    add_weights_source(parser)
    parser.add_argument("--format", required=True, choices=("onnx", "torch.export"), help="what to write")
    parser.add_argument("--out", required=True, metavar="PATH", help="output file (.onnx or .pt2)")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="input height and width (default: the checkpoint's image size, else 513 513)")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="largest accepted difference from PyTorch (default: 1e-3)")


def main(args: argparse.Namespace) -> int:
    def error(message: str, status: int = 2) -> int:
        print(f"export: error: {message}", file=sys.stderr)
        return status

    try:
        if args.checkpoint is not None:
            model, state = load_model(args.checkpoint, "atrous" if args.format == "torch.export" else None)
            default = state.get("config", {}).get("image_size", 513)
        else:
            model, _ = load_imported_weights(args.weights)
            default = 513
    except (FileNotFoundError, ValueError) as e:
        return error(str(e).splitlines()[0])
    h, w = args.size or (default, default)
    if h < 1 or w < 1:
        return error(f"--size: expected positive sizes, got {h} {w}")
    example = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    if args.format == "onnx":
        print("export: ONNX has no atrous operators: exporting with impl='torch' "
              "(F.conv2d, the same weights)")
        result = export_onnx(model, args.out, example)
        if result["onnxruntime"] is None:
            print(f"wrote {result['path']} (onnxruntime is not installed: not checked)")
            return 0
        check = f"onnxruntime {result['onnxruntime']}"
    else:
        result = export_program(model, args.out, example)
        print(f"export: atrous operators kept in the graph: {', '.join(result['atrous_ops']) or 'none'}")
        check = "the reloaded program"
    diff = result["max_abs_difference"]
    print(f"wrote {result['path']}; {check} vs PyTorch on a random {h}x{w} input: "
          f"max |difference| {diff:.2e}")
    if diff > args.tolerance:
        return error(f"{check} differs from PyTorch by {diff:.2e} > --tolerance {args.tolerance}", 1)
    return 0
