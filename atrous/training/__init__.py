"""Training and evaluation: config, loop, checkpoints, scale-out with torchrun (DDP, SyncBatchNorm).

``predict`` (:mod:`atrous.inference`) and ``build_data`` / ``DataBundle`` (:mod:`atrous.data`) are re-exported
here for convenience; they live below training, which imports them, never the reverse.

::

    from atrous.training import TrainConfig, train
    result = train(TrainConfig(epochs=4, out="runs/shapes"))      # the small DeepLabV3+ on ContextShapes
    print(result.scores.miou)

    python -m atrous train --preset demo                           # the same from the command line
    torchrun --nproc_per_node 4 -m atrous train --dataset voc --data-root data/ \
        --model deeplabv3plus_xception65
"""

from ..data import DataBundle, build_data
from ..inference import predict
from .checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    ModelSpec,
    build_model,
    load_checkpoint,
    load_model,
    load_weights,
    save_checkpoint,
)
from .config import DATASETS, PRESETS, TrainConfig, add_config_arguments, config_from_args
from .distributed import (
    DistributedContext,
    GlooSyncBatchNorm2d,
    ShardedBatchSampler,
    convert_sync_batchnorm,
    setup_distributed,
)
from .loop import (
    TrainResult,
    evaluate,
    model_kwargs,
    poly_lr,
    resolve_impl,
    seed_everything,
    segmentation_loss,
    train,
)

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "DATASETS",
    "PRESETS",
    "DataBundle",
    "DistributedContext",
    "GlooSyncBatchNorm2d",
    "ModelSpec",
    "ShardedBatchSampler",
    "TrainConfig",
    "TrainResult",
    "add_config_arguments",
    "build_data",
    "build_model",
    "config_from_args",
    "convert_sync_batchnorm",
    "evaluate",
    "load_checkpoint",
    "load_model",
    "load_weights",
    "model_kwargs",
    "poly_lr",
    "predict",
    "resolve_impl",
    "save_checkpoint",
    "seed_everything",
    "segmentation_loss",
    "setup_distributed",
    "train",
]
