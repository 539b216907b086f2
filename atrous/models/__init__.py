"""DeepLabV3 and DeepLabV3+ on the atrous operators: backbones, ASPP, decoder, weight import and summary.

Models (every one at output stride 8, 16 or 32; see :data:`MODELS`, :func:`list_models`, :func:`get_model`)::

    import atrous.models as M
    model = M.deeplabv3plus_xception65(num_classes=21, output_stride=16)   # DeepLabV3+ paper model
    model = M.deeplabv3_resnet101(num_classes=21, output_stride=8)         # DeepLabV3 with multi-grid
    M.summary(model, (513, 513))                                           # per-layer table

Pretrained weights, for those who have them (nothing is downloaded unless a URL is given)::

    model = M.deeplabv3plus_xception65(weights_backbone="xception65.pth")      # timm state dict on disk

    M.load_timm_xception(model, timm.create_model("xception65", pretrained=True))   # ImageNet backbone
    model = M.deeplabv3_from_torchvision(torch.load("deeplabv3_resnet50_coco-cd0a2569.pth"))

Every convolution runs on :mod:`atrous.ops`; ``impl="torch"`` (argument of the factories, or
:func:`atrous.nn.use_impl` / :func:`atrous.nn.set_impl`) runs the same weights with ``F.conv2d``.
"""

from .aspp import ASPP, ASPPPooling, AtrousRateWarning, default_aspp_rates
from .decoder import Decoder, FCNHead
from .deeplab import (
    BACKBONES,
    DeepLabV3,
    DeepLabV3Plus,
    build_backbone,
    deeplabv3,
    deeplabv3plus,
    torchvision_deeplabv3,
)
from .mobilenetv3 import MobileNetV3, mobilenet_v3_large
from .pretrained import download_weights, load_backbone_weights
from .registry import MODELS, get_model, list_models, register_model
from .resnet import Bottleneck, ResNet, resnet50, resnet101
from .summary import LayerSummary, ModelSummary, summary
from .transforms import undilate
from .weights import (
    WeightImportError,
    convert_timm_xception,
    convert_torchvision_deeplabv3,
    deeplabv3_from_torchvision,
    load_timm_xception,
    load_torchvision_backbone,
    load_torchvision_deeplabv3,
)
from .xception import XceptionAligned, XceptionBlock, xception41, xception65, xception71
from .zoo import (  # registers the named factories, in this order, before the small model
    deeplabv3_mobilenet_v3_large,
    deeplabv3_resnet50,
    deeplabv3_resnet101,
    deeplabv3_xception41,
    deeplabv3_xception65,
    deeplabv3_xception71,
    deeplabv3plus_mobilenet_v3_large,
    deeplabv3plus_resnet50,
    deeplabv3plus_resnet101,
    deeplabv3plus_xception41,
    deeplabv3plus_xception65,
    deeplabv3plus_xception71,
)

# isort: split
# Registration order is import order: list_models() shows the paper models first, then the small one.
from .small import SlimXception, deeplabv3plus_small, small_aspp_rates  # registers after the zoo

# isort: split
from .output_stride import backbone_twin, set_output_stride  # needs every backbone class

__all__ = [
    "ASPP",
    "BACKBONES",
    "MODELS",
    "ASPPPooling",
    "AtrousRateWarning",
    "Bottleneck",
    "Decoder",
    "DeepLabV3",
    "DeepLabV3Plus",
    "FCNHead",
    "LayerSummary",
    "MobileNetV3",
    "ModelSummary",
    "ResNet",
    "SlimXception",
    "WeightImportError",
    "XceptionAligned",
    "XceptionBlock",
    "backbone_twin",
    "build_backbone",
    "convert_timm_xception",
    "convert_torchvision_deeplabv3",
    "deeplabv3",
    "deeplabv3_from_torchvision",
    "deeplabv3_mobilenet_v3_large",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3_xception41",
    "deeplabv3_xception65",
    "deeplabv3_xception71",
    "deeplabv3plus",
    "deeplabv3plus_mobilenet_v3_large",
    "deeplabv3plus_resnet50",
    "deeplabv3plus_resnet101",
    "deeplabv3plus_small",
    "deeplabv3plus_xception41",
    "deeplabv3plus_xception65",
    "deeplabv3plus_xception71",
    "default_aspp_rates",
    "download_weights",
    "get_model",
    "list_models",
    "load_backbone_weights",
    "load_timm_xception",
    "load_torchvision_backbone",
    "load_torchvision_deeplabv3",
    "mobilenet_v3_large",
    "register_model",
    "resnet50",
    "resnet101",
    "set_output_stride",
    "small_aspp_rates",
    "summary",
    "torchvision_deeplabv3",
    "undilate",
    "xception41",
    "xception65",
    "xception71",
]
