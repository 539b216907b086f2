"""Neural-network layers on the atrous operators: atrous/separable convolutions, the impl switch, BN fusion.

Every convolution here is an :class:`AtrousConv2d`: an ``nn.Conv2d`` (same parameters and attributes,
so torchvision/timm state dicts load 1:1) whose forward calls :mod:`atrous.ops`. The ``impl`` switch
runs the same weights through ``F.conv2d`` instead, per module or for a block of code::

    from atrous.nn import AtrousSeparableConv2d, use_impl, set_impl

    block = AtrousSeparableConv2d(256, 256, dilation=12)   # DeepLabV3+ separable ASPP branch
    y = block(x)                                            # atrous kernels
    with use_impl("torch"):
        y_ref = block(x)                                    # F.conv2d, same weights
    set_impl(model, "torch")                                # e.g. before ONNX export
"""

from .fuse import fold_batchnorm, fuse
from .layers import (
    IMPLS,
    AtrousConv2d,
    AtrousSeparableConv2d,
    ConvBNAct,
    PooledBatchNorm2d,
    get_impl,
    same_padding,
    set_impl,
    use_impl,
)

__all__ = [
    "IMPLS",
    "AtrousConv2d",
    "AtrousSeparableConv2d",
    "ConvBNAct",
    "PooledBatchNorm2d",
    "fold_batchnorm",
    "fuse",
    "get_impl",
    "same_padding",
    "set_impl",
    "use_impl",
]
