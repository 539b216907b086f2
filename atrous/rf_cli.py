"""The `rf` command: a model's receptive-field table, its check against gradients, and the pictures."""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from atrous import receptive_field as rfm

# Named models for MODEL: the teaching stacks, then every DeepLab factory of atrous.models (built
# with 21 classes at output stride 16 only when chosen).
MODELS: dict[str, tuple[Callable[[], nn.Module], str]] = dict(rfm.TEACHING_STACKS)


def _deeplab_factory(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        return importlib.import_module("atrous.models").MODELS[name](num_classes=21, output_stride=16)
    return build


for _name in importlib.import_module("atrous.models").MODELS:
    MODELS[_name] = (_deeplab_factory(_name), "atrous.models, 21 classes, output stride 16")

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

EXIT_OK, EXIT_DISAGREE, EXIT_ERROR = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = ", ".join(MODELS)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "built-in models:\n" + "\n".join(f"  {n:<32} {d}" for n, (_, d) in MODELS.items()) +
        "\n\nexit status: 0 = analysed (and the measurement agrees), 1 = analysis and measurement disagree,"
        "\n2 = bad arguments or a model the analysis cannot describe"
    )
    parser.add_argument("model", metavar="MODEL",
                        help=f"a built-in name ({names}) or 'package.module:factory' returning an nn.Module")
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


def load_model(spec: str) -> nn.Module:
    """A built-in name from ``MODELS``, or ``package.module:attr`` naming a module instance or a
    zero-argument factory returning one."""
    if spec in MODELS:
        return MODELS[spec][0]()
    if ":" not in spec:
        raise ValueError(f"MODEL {spec!r}: expected one of {', '.join(MODELS)} or 'package.module:factory'")
    module_name, attr = spec.split(":", 1)
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"MODEL {spec!r}: cannot import it ({e})") from e
    model = obj if isinstance(obj, nn.Module) else obj() if callable(obj) else obj
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"MODEL {spec!r}: expected an nn.Module or a factory returning one, got {type(model).__name__}"
        )
    return model


def _photo_tensor(size: tuple[int, int]) -> tuple[torch.Tensor, object]:
    from atrous.viz import load_sample_image

    img = load_sample_image(size)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255
    mean = torch.tensor(_IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(_IMAGENET_STD)[:, None, None]
    return (x - mean) / std, img


def _measure(model, report, in_channels) -> tuple[rfm.MeasuredRF, int]:
    out = report.output
    pos = out.centre_position
    measured = rfm.measure_receptive_field(model, report.input_size, pos, in_channels=in_channels)
    clipped = out.box_clipped(*pos)
    agree = measured.box == clipped
    print(f"\nmeasured from gradients at output {pos}: box {measured.box}, "
          f"{measured.size[0]}x{measured.size[1]} pixels")
    print(f"analytic (clipped to the image):        box {clipped}  -> {'agrees' if agree else 'DISAGREES'}")
    if out.rf is not None:
        box = out.box(*pos)
        H, W = report.input_size
        inside = box[0] >= 0 and box[1] >= 0 and box[2] < H and box[3] < W
        print(f"theory (unclipped):                     box {box}  -> "
              + ("inside the image, so it equals the measurement" if inside else
                 "extends past the image; the measurement sees its clipped part"))
    return measured, EXIT_OK if agree else EXIT_DISAGREE


def main(args: argparse.Namespace) -> int:
    try:
        model = load_model(args.model)
        H, W = args.input_size
        if H < 1 or W < 1:
            raise ValueError(f"--input-size must be positive, got {H} {W}")
        if args.erf_samples < 1:
            raise ValueError(f"--erf-samples must be >= 1, got {args.erf_samples}")
        report = rfm.receptive_field(model, (H, W), in_channels=args.in_channels)
    except (ValueError, TypeError, RuntimeError) as e:
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
            measured, status = _measure(model, report, in_channels)
        except rfm.UnsupportedModelError as e:
            print(f"rf: error: cannot measure: {e}", file=sys.stderr)
            return EXIT_ERROR

    if not args.no_pictures:
        from atrous import viz  # matplotlib only when pictures are drawn

        out = args.out
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.model)
        written = [out / f"{stem}_growth.png"]
        viz.plot_rf_growth({args.model: report}, path=written[-1])
        if measured is not None:
            written.append(out / f"{stem}_measured.png")
            viz.plot_measured_rf(measured, report, path=written[-1])
        if use_photo:
            x, img = _photo_tensor((H, W))
            erf = rfm.effective_receptive_field(model, x)
        else:
            img = None
            erf = rfm.effective_receptive_field(model, input_size=(H, W), samples=args.erf_samples,
                                                in_channels=in_channels)
        written.append(out / f"{stem}_erf.png")
        viz.plot_erf({args.model: erf}, image=img, path=written[-1])
        if args.teaching:
            written += _teaching(out)
        print("\nwrote " + ", ".join(str(p) for p in written))
    return status


def _teaching(out: Path) -> list[Path]:
    from atrous import viz

    paths = {name: out / name for name in ("dilated_kernel.png", "dilated_conv.gif", "rf_growth.png",
                                           "gridding.png", "aspp_coverage.png", "erf_stacks.png")}
    viz.plot_dilated_kernel(path=paths["dilated_kernel.png"])
    viz.animate_dilated_conv(path=paths["dilated_conv.gif"])
    viz.plot_rf_growth(path=paths["rf_growth.png"])
    viz.plot_gridding(path=paths["gridding.png"])
    viz.plot_aspp_coverage(path=paths["aspp_coverage.png"])
    erfs = {name: rfm.effective_receptive_field(MODELS[name][0](), input_size=81, samples=4)
            for name in ("plain", "strided", "atrous", "hybrid")}
    viz.plot_erf(erfs, path=paths["erf_stacks.png"])
    return list(paths.values())
