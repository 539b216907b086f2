"""The à trous equivalence measured: how far OS-8 features (every 4th position) are from OS-32 ones.

For :func:`atrous.models.set_output_stride` the difference is float rounding where the rule is exact
(every convolution) and measurably larger where a layer sees the whole map or another grid: ASPP's
image pooling, the decoder's and the final bilinear upsampling, MobileNetV3's squeeze-excitation, and
SlimXception's ``"block"`` dilation rule. ``tests/models/test_output_stride.py`` asserts the same.
"""

from __future__ import annotations

import copy

import torch

from ..models import SlimXception, deeplabv3plus_small, mobilenet_v3_large, set_output_stride
from ..nn import set_impl

__all__ = ["equivalence_report", "randomize_batchnorm", "relative_difference"]


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters (a fresh model's are 0 and 1), in place."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b| / max |b|``."""
    return float((a - b).abs().max() / b.abs().max())


@torch.no_grad()
def equivalence_report(side: int = 129, seed: int = 0, mobilenet: bool = True) -> dict[str, float]:
    """Relative differences (float64, random weights) between the OS-8 model's outputs at every 4th
    position (or its full logits) and the OS-32 model's, for the small DeepLabV3+ and MobileNetV3."""
    torch.manual_seed(seed)
    x = torch.randn(1, 3, side, side, dtype=torch.float64)
    model = randomize_batchnorm(deeplabv3plus_small(output_stride=32, impl="torch"), seed).double().eval()
    dense = set_output_stride(copy.deepcopy(model), 8)
    f32, f8 = model.backbone(x), dense.backbone(x)
    report = {"backbone (exact rule)": relative_difference(f8["out"][..., ::4, ::4], f32["out"]),
              "ASPP (image pooling)": relative_difference(dense.aspp(f8["out"])[..., ::4, ::4],
                                                          model.aspp(f32["out"])),
              "logits (decoder and bilinear upsampling)": relative_difference(dense(x), model(x))}
    block = randomize_batchnorm(SlimXception(32, dilation_rule="block"), seed).double().eval()
    report["backbone, 'block' rule"] = relative_difference(
        set_output_stride(copy.deepcopy(block), 8)(x)["out"][..., ::4, ::4], block(x)["out"])
    if mobilenet:
        net = randomize_batchnorm(set_impl(mobilenet_v3_large(32), "torch"), seed).double().eval()
        report["MobileNetV3 (squeeze-excitation)"] = relative_difference(
            set_output_stride(copy.deepcopy(net), 8)(x)["out"][..., ::4, ::4], net(x)["out"])
    return report
