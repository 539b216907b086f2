"""The training configuration: one dataclass, mirrored field by field by the `train` command's flags."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field

__all__ = ["DATASETS", "PRESETS", "TrainConfig", "add_config_arguments", "config_from_args"]

DATASETS = ("shapes", "voc", "cityscapes", "folder")


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Everything a training run depends on. Each field is a ``--flag`` of ``python -m atrous train``
    (underscores become dashes; booleans also have ``--no-flag``). Defaults fit the synthetic dataset."""

    # ---- model
    model: str = _f("deeplabv3plus_small", "model factory in atrous.models.MODELS")
    output_stride: int = _f(8, "output stride: 8, 16 or 32", choices=(8, 16, 32))
    dilated: bool = _f(True, "keep the atrous rates; --no-dilated sets every dilation to 1 (same strides)")
    dropout: float | None = _f(None, "dropout after the ASPP projection (default: the model's, 0.1)")
    aux_loss: bool = _f(False, "build the model with an auxiliary FCN head (torchvision's aux_loss) and "
                               "train it with --aux-loss-weight")
    aux_loss_weight: float = _f(0.5, "weight of the auxiliary head's loss when the model has one "
                                     "(torchvision's reference: 0.5)")
    backbone_weights: str | None = _f(None, "pretrained backbone: a file or URL holding a timm Xception, "
                                            "torchvision ResNet-50/101 or MobileNetV3-Large state dict, or "
                                            "an atrous checkpoint (default: random initialisation)")
    backbone_weights_sha256: str | None = _f(None, "sha256 (or prefix) a --backbone-weights URL must match")
    impl: str = _f("auto", "convolutions: 'atrous' (our kernels), 'torch' (F.conv2d), 'auto' (atrous where "
                           "it runs: CPU)", choices=("auto", "atrous", "torch"))
    # ---- data
    dataset: str = _f("shapes", "shapes (generated), voc, cityscapes or folder (your own)", choices=DATASETS)
    data_root: str | None = _f(None, "dataset folder (voc, cityscapes, folder)")
    train_split: str | None = _f(None, "training split (default: train; voc: train_aug if present)")
    val_split: str = _f("val", "validation split")
    num_classes: int | None = _f(None, "classes (folder datasets without classes.json)")
    mask_palette: str | None = _f(None, "folder: masks are RGB colours, colour i is class i: binary (black "
                                        "0, white 1), voc, cityscapes, classes (classes.json's palette) or "
                                        "a JSON file of [r, g, b]")
    class_weights: str | None = _f(None, "cross-entropy class weights: auto (median frequency balancing, "
                                         "printed with the class frequencies) or K numbers, comma separated")
    cue: str = _f("rim", "shapes: what decides the class, the rim colour or the shape",
                  choices=("rim", "shape"))
    image_size: int = _f(128, "shapes: image side in pixels")
    train_size: int = _f(2000, "shapes: training images")
    val_size: int = _f(200, "shapes: validation images")
    data_seed: int = _f(1, "shapes: seed of the training images (validation uses data_seed + 1000)")
    crop_size: int | None = _f(None, "random crop side (default: 513 voc, 768 cityscapes, 512 folder, "
                                     "none for shapes)")
    min_scale: float | None = _f(None, "random scale range (default 0.5 to 2.0; shapes: no scaling)")
    max_scale: float | None = _f(None, "upper end of the random scale range")
    flip: bool = _f(True, "random horizontal flips")
    workers: int = _f(0, "DataLoader worker processes per training process")
    # ---- optimisation
    epochs: int = _f(10, "epochs; the poly schedule spans epochs x steps per epoch")
    batch_size: int = _f(8, "global batch (split evenly between the processes)")
    lr: float = _f(0.05, "base learning rate (SGD)")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(1e-4, "L2 weight decay")
    poly_power: float = _f(0.9, "poly schedule: lr = base (1 - step / total) ^ power")
    dtype: str = _f("float32", "parameter and image dtype: float32, or float64 for exact comparisons",
                    choices=("float32", "float64"))
    channels_last: bool = _f(True, "NHWC layout for weights and images (faster on CPU: our nhwc kernels)")
    amp: bool = _f(True, "mixed precision (float16 autocast + gradient scaling) on CUDA; ignored on CPU")
    sync_bn: bool = _f(True, "synchronise BatchNorm statistics across processes")
    seed: int = _f(0, "seed of the initialisation, the shuffling and the augmentation")
    stop_after: int | None = _f(None, "stop after this many steps (as a preempted job; the schedule is "
                                      "unchanged)")
    # ---- evaluation, checkpoints, output
    val_every: int = _f(1, "validate every N epochs (and after the last)")
    val_batch_size: int = _f(8, "validation images per batch per process")
    eval_scales: str = _f("1", "validation scales, comma separated (e.g. 0.75,1,1.25)")
    eval_flip: bool = _f(False, "average the validation prediction with its mirror image")
    eval_only: bool = _f(False, "only validate the model (from --resume, or --backbone-weights) and write "
                                "OUT/eval.json; no training")
    out: str = _f("runs/train", "output folder: checkpoints, history.json, metrics.csv/json, curves.png")
    resume: str | None = _f(None, "checkpoint to continue from ('auto': OUT/last.pt if it exists)")
    checkpoint_every: int = _f(0, "also save OUT/last.pt every N steps (0: at each epoch's end)")
    device: str = _f("auto", "auto (cuda:LOCAL_RANK if available, else cpu), cpu, cuda or cuda:N")
    progress: bool = _f(True, "progress bar (tqdm) with loss and learning rate")
    pictures: bool = _f(False, "after training, draw overlays and the effective receptive field into OUT")

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "val_every", "val_batch_size", "image_size", "train_size",
                     "val_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig: expected {name} to be an int >= 1, got {value!r}")
        if not self.aux_loss_weight >= 0:
            raise ValueError(f"TrainConfig: expected aux_loss_weight >= 0, got {self.aux_loss_weight}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig: expected lr > 0, got {self.lr}")
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"TrainConfig: expected output_stride in (8, 16, 32), got {self.output_stride}")
        if self.dataset not in DATASETS:
            raise ValueError(f"TrainConfig: expected dataset in {DATASETS}, got {self.dataset!r}")
        if self.stop_after is not None and self.stop_after < 1:
            raise ValueError(f"TrainConfig: expected stop_after >= 1 or None, got {self.stop_after}")
        self.scales()  # validates eval_scales

    def scales(self) -> tuple[float, ...]:
        try:
            scales = tuple(float(s) for s in str(self.eval_scales).split(",") if s.strip())
        except ValueError:
            scales = ()
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"TrainConfig: expected eval_scales as positive numbers separated by commas, "
                             f"got {self.eval_scales!r}")
        return scales

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# Named sets of defaults (`--preset NAME`); flags given on the command line override them.
PRESETS: dict[str, dict] = {
    # `make demo`: the small DeepLabV3+ on ContextShapes, on CPU, in about three minutes with 2 cores.
    "demo": dict(model="deeplabv3plus_small", dataset="shapes", output_stride=8, image_size=112,
                 train_size=1600, val_size=200, epochs=8, batch_size=8, lr=0.1, out="demo-out",
                 pictures=True),
}


def _field_type(f: dataclasses.Field) -> type:
    hint = typing.get_type_hints(TrainConfig)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per :class:`TrainConfig` field, plus ``--preset``. Flags default to None
    (= not given), so :func:`config_from_args` can layer dataclass defaults, the preset, then flags."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="start from a named set of defaults (demo: what `make demo` trains)")
    for f in dataclasses.fields(TrainConfig):
        kind = _field_type(f)
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if "default" not in help_text and f.default is not None:
            help_text += f" (default: {f.default})"
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            choices = f.metadata.get("choices")
            metavar = "{" + ",".join(map(str, choices)) + "}" if choices else f.name.upper()
            parser.add_argument(flag, dest=f.name, type=kind, default=None, choices=choices, metavar=metavar,
                                help=help_text)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Dataclass defaults, overridden by ``--preset``, overridden by the flags given."""
    values = dict(PRESETS[args.preset]) if getattr(args, "preset", None) else {}
    for f in dataclasses.fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    return TrainConfig(**values)
