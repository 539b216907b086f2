"""The `rf` command: a model's receptive-field table, its check against gradients, and the pictures."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path

from torch import nn

from atrous import receptive_field as rfm
from atrous import viz
from atrous.models import get_model, list_models
from atrous.training import CheckpointError, load_model

__all__ = ["add_arguments", "main"]

EXIT_OK, EXIT_DISAGREE, EXIT_ERROR = 0, 1, 2


def _models() -> dict[str, tuple[Callable[[], nn.Module], str]]:
    """Named MODELs: the teaching stacks, then every registered DeepLab (built with 21 classes at
    output stride 16 only when chosen)."""
    models = dict(rfm.TEACHING_STACKS)
    for name in list_models():
        build = functools.partial(get_model, name, num_classes=21, output_stride=16)
        models[name] = (build, "atrous.models, 21 classes, output stride 16")
    return models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    models = _models()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "built-in models:\n" + "\n".join(f"  {n:<32} {d}" for n, (_, d) in models.items()) +
        "\n\nexit status: 0 = analysed (and the measurement agrees), 1 = analysis and measurement disagree,"
        "\n2 = bad arguments or a model the analysis cannot describe"
    )
    parser.add_argument("model", metavar="MODEL",
                        help=f"a built-in name ({', '.join(models)}), 'package.module:factory' "
                             "returning an nn.Module, or a checkpoint file written by `atrous train`")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), default=[129, 129],
                        help="input height and width (default: 129 129)")
    parser.add_argument("--in-channels", type=int, default=None, metavar="C",
                        help="input channels (default: read from the first convolution)")
    parser.add_argument("--out", type=Path, default=Path("out/rf"), metavar="DIR",
                        help="folder for the pictures (default: out/rf)")
    parser.add_argument("--no-pictures", action="store_true", help="print the table only")
    parser.add_argument("--no-measure", action="store_true", help="skip the gradient measurement")
    parser.add_argument("--erf-input", choices=("photo", "random"), default=None,
                        help="ERF over matplotlib's grace_hopper.jpg (default for 3 channels) "
                             "or random images")
    parser.add_argument("--erf-samples", type=int, default=4, metavar="N",
                        help="random images averaged for the ERF (default: 4)")
    parser.add_argument("--teaching", action="store_true",
                        help="also draw the general pictures: dilated kernels (PNG and GIF), RF growth, "
                             "gridding, ASPP coverage, ERFs of the teaching stacks")


def main(args: argparse.Namespace) -> int:
    try:
        if Path(args.model).is_file():  # a checkpoint: read safely (never runs code), weights loaded
            model = load_model(args.model, impl="torch")[0]
        else:
            model = rfm.model_from_spec(args.model, _models())
        H, W = args.input_size
        if H < 1 or W < 1:
            raise ValueError(f"--input-size must be positive, got {H} {W}")
        if args.erf_samples < 1:
            raise ValueError(f"--erf-samples must be >= 1, got {args.erf_samples}")
        report = rfm.receptive_field(model, (H, W), in_channels=args.in_channels)
    except (ValueError, TypeError, RuntimeError, CheckpointError) as e:
        print(f"rf: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(report.table())
    if not report.supported:
        print("\nrf: the model cannot be fully analysed (see the problems above)", file=sys.stderr)
        return EXIT_ERROR
    in_channels = args.in_channels or rfm.infer_in_channels(model)
    use_photo = args.erf_input == "photo" or (args.erf_input is None and in_channels == 3)
    if use_photo and in_channels != 3:
        print(f"rf: error: --erf-input photo needs a 3-channel model, this one takes {in_channels}",
              file=sys.stderr)
        return EXIT_ERROR

    status, measured = EXIT_OK, None
    if not args.no_measure:
        try:
            comparison = rfm.compare_with_measurement(model, report, in_channels=in_channels)
        except rfm.UnsupportedModelError as e:
            print(f"rf: error: cannot measure: {e}", file=sys.stderr)
            return EXIT_ERROR
        print(f"\n{comparison}")
        measured, status = comparison.measured, EXIT_OK if comparison.agrees else EXIT_DISAGREE

    if not args.no_pictures:
        written = viz.model_pictures(model, report, args.out, args.model, measured=measured, photo=use_photo,
                                     erf_samples=args.erf_samples, in_channels=in_channels)
        if args.teaching:
            written += viz.teaching_pictures(args.out)
        print("\nwrote " + ", ".join(str(p) for p in written))
    return status
