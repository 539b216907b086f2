"""Command-line entry point: `python -m atrous COMMAND ...`; each command is a module of atrous.cli."""

import argparse
import importlib
import sys

# Each command lives in atrous/cli/<name>.py exposing `add_arguments(parser)` and `main(args) -> int`.
# A module is imported only when its command runs, so one command's dependencies (matplotlib,
# the compiled extension, ...) never break another.
COMMANDS = {
    "demo": "check every op against PyTorch on DeepLabV3+ layer shapes",
    "info": "print the build and runtime configuration (paste into bug reports)",
    "bench": "time the ops against PyTorch on DeepLabV3+ shapes: table, JSON, chart",
    "rf": "receptive fields: theory table, gradient check and pictures for a model",
    "train": "train a DeepLab model (alone or under torchrun), validate mIoU, checkpoint",
    "segment": "segment images with a trained checkpoint: mask PNGs and overlays",
    "export": "export a checkpoint as ONNX (checked with onnxruntime) or a torch.export program",
    "eval": "evaluate a checkpoint or imported weights: mIoU, per-class IoU, confusion matrix, JSON",
    "experiment": "when does atrous convolution help: the reach, transfer and legacy designs",
    "gallery": "every teaching figure with a caption in one HTML page",
    "list-models": "the registered models: parameters, default output stride, importable weights",
}


def _module(command: str) -> str:
    return "atrous.cli." + command.replace("-", "_")  # list-models -> atrous/cli/list_models.py


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m atrous", description="atrous command line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, help_text in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if argv[:1] == [name]:
            importlib.import_module(_module(name)).add_arguments(cmd)
    args = parser.parse_args(argv)
    module = importlib.import_module(_module(args.command))
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
