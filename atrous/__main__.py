"""Command-line entry point: `python -m atrous COMMAND ...` (demo, info, bench, rf, train, segment, experiment)."""

import argparse
import importlib
import sys

# Each command lives in its own module exposing `add_arguments(parser)` and `main(args) -> int`.
# A module is imported only when its command runs, so one command's dependencies (matplotlib,
# the compiled extension, ...) never break another.
COMMANDS = {
    "demo": ("atrous.demo", "check every op against PyTorch on DeepLabV3+ layer shapes"),
    "info": ("atrous.info", "print the build and runtime configuration (paste into bug reports)"),
    "bench": ("atrous.bench", "time the ops against PyTorch on DeepLabV3+ shapes: table, JSON, chart"),
    "rf": ("atrous.rf_cli", "receptive fields: theory table, gradient check and pictures for a model"),
    "train": ("atrous.train_cli", "train a DeepLab model (alone or under torchrun), validate mIoU, checkpoint"),
    "segment": ("atrous.segment_cli", "segment images with a trained checkpoint: mask PNGs and overlays"),
    "experiment": ("atrous.experiment", "atrous against no atrous against output stride 32, same budget"),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m atrous", description="atrous command line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if argv[:1] == [name]:
            importlib.import_module(module_name).add_arguments(cmd)
    args = parser.parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
