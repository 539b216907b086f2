"""Arguments several commands share: where the model's weights come from, and how it runs."""

import argparse

IMPORTED_HELP = "imported weights: torchvision:deeplabv3_resnet50=PATH (also _resnet101, _mobilenet_v3_large)"


def add_weights_source(parser: argparse.ArgumentParser, required: bool = True):
    """``--checkpoint`` (written by ``atrous train``) or ``--weights`` (imported torchvision weights)."""
    weights = parser.add_mutually_exclusive_group(required=required)
    weights.add_argument("--checkpoint", metavar="CKPT",
                         help="checkpoint written by `python -m atrous train`")
    weights.add_argument("--weights", metavar="KIND:NAME=PATH", help=IMPORTED_HELP)
    return weights


def add_impl_and_device(parser: argparse.ArgumentParser) -> None:
    """``--impl`` (our kernels or F.conv2d) and ``--device``."""
    parser.add_argument("--impl", default="auto", choices=("auto", "atrous", "torch"),
                        help="convolutions: our kernels (atrous), F.conv2d (torch), auto: atrous on CPU")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
