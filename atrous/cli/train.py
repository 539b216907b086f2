"""The `train` command: train a DeepLab model (alone or under torchrun), validate, save checkpoints."""

from __future__ import annotations

import argparse
import sys

from atrous.data import DatasetLayoutError
from atrous.models import list_models
from atrous.training import add_config_arguments, config_from_args, train
from atrous.training.report import draw_pictures

__all__ = ["add_arguments", "main"]

EXAMPLES = """examples:
  python -m atrous train --preset demo                       # what `make demo` trains: ContextShapes, CPU
  python -m atrous train --epochs 8 --out runs/shapes        # the small DeepLabV3+ on ContextShapes
  python -m atrous train --dataset voc --data-root data/VOCdevkit --model deeplabv3plus_xception65 \\
      --output-stride 16 --batch-size 16 --lr 0.007 --epochs 50 --out runs/voc
  python -m atrous train --dataset folder --data-root mydata --num-classes 5 --crop-size 384
  python -m atrous train --resume runs/voc/last.pt ...        # continue where it stopped (same flags)
  torchrun --nproc_per_node 4 -m atrous train --dataset cityscapes --data-root data/cityscapes ...
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (EXAMPLES + "\nmodels (--model; `python -m atrous list-models` for sizes and "
                     "weights):\n  " + ", ".join(list_models()))
    add_config_arguments(parser)


def main(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        result = train(config)
    except (ValueError, DatasetLayoutError, FileNotFoundError) as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 2
    if result.scores is not None and (result.checkpoint is not None or config.pictures):
        print(f"validation mIoU {100 * result.scores.miou:.1f}% after {result.step} steps "
              f"({result.seconds:.0f} s); checkpoint {result.checkpoint}")
    if config.pictures and result.checkpoint is not None:
        for path in draw_pictures(result):
            print(f"wrote {path}")
    return 0

