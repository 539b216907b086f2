"""The à trous equivalence: set_output_stride(model, 8) computes the OS-32 features at every 4th position.

Float64, random weights and BatchNorm statistics, 129x129 inputs (and 128 for even sides). Where it is
not exact (ASPP image pooling, the decoder's bilinear upsampling, MobileNetV3's squeeze-excitation,
SlimXception's "block" dilation rule) the difference is measured and asserted to be far from rounding.
"""

import copy

import pytest
import torch

import atrous.models as M
from atrous.experiment.equivalence import randomize_batchnorm, relative_difference
from atrous.nn import set_impl

pytestmark = pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, float64, eval mode."""
    return randomize_batchnorm(model, seed).double().eval()


_relative = relative_difference


def _features(model, x, output_stride):
    converted = M.set_output_stride(copy.deepcopy(model), output_stride)
    with torch.no_grad():
        return converted(x)


def test_small_model_os8_and_os16_features_equal_os32_on_the_subgrid():
    torch.manual_seed(0)
    model = _randomize(M.SlimXception(32))
    for side in (129, 128):  # odd and even sides: symmetric padding keeps both exact
        x = torch.randn(2, 3, side, side, dtype=torch.float64)
        with torch.no_grad():
            ref = model(x)
        for os_ in (8, 16):
            f = _features(model, x, os_)
            s = 32 // os_
            assert f["out"].shape[-1] == -(-side // os_)
            assert torch.equal(f["out"][..., ::s, ::s], ref["out"]), (side, os_)
            assert torch.equal(f["low"], ref["low"])  # stride 4 in both
    # Back to 32: the converted model is the original one again.
    back = M.set_output_stride(M.set_output_stride(copy.deepcopy(model), 8), 32)
    with torch.no_grad():
        assert torch.equal(back(x)["out"], ref["out"])
    assert all(a.stride == b.stride and a.dilation == b.dilation and a.padding == b.padding
               for a, b in zip(back.modules(), model.modules()) if isinstance(a, torch.nn.Conv2d))


def test_set_output_stride_matches_the_model_built_at_that_stride():
    built = M.deeplabv3plus_small(output_stride=8)
    converted = M.set_output_stride(M.deeplabv3plus_small(output_stride=32), 8)
    geometry = [(m.stride, m.padding, m.dilation) for m in built.modules() if isinstance(m, torch.nn.Conv2d)]
    assert geometry == [(m.stride, m.padding, m.dilation) for m in converted.modules()
                        if isinstance(m, torch.nn.Conv2d)]
    assert converted.aspp.rates == (4, 8, 12) and converted.backbone.output_stride == 8
    # The exact rule: the de-strided block keeps its rate, later blocks are dilated.
    stage3 = [b.conv1.conv_dw.dilation[0] for b in built.backbone.stages[2]]
    stage4 = [b.conv1.conv_dw.dilation[0] for b in built.backbone.stages[3]]
    assert (stage3, stage4) == ([1, 2], [2, 4])
    block = M.SlimXception(8, dilation_rule="block")
    assert [b.conv1.conv_dw.dilation[0] for s in block.stages[2:] for b in s] == [2, 2, 4, 4]
    with pytest.raises(ValueError, match="output_stride"):
        M.set_output_stride(built, 4)
    with pytest.raises(ValueError, match="dilation_rule"):
        M.SlimXception(8, dilation_rule="nope")
    with pytest.raises(TypeError, match="expected a backbone"):
        M.set_output_stride(torch.nn.Conv2d(1, 1, 1), 8)


@pytest.mark.parametrize("name", ["resnet50", "xception65"])
def test_paper_backbones_are_exact(name):
    """ResNet-50 without multi-grid and Xception-65: one float64 forward at each stride (F.conv2d path,
    the geometry is what is tested; the small model above runs the atrous kernels)."""
    torch.manual_seed(1)
    net = M.resnet50(32, multi_grid=None) if name == "resnet50" else M.xception65(32)
    model = _randomize(set_impl(net, "torch"))
    x = torch.randn(1, 3, 129, 129, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)["out"]
    out = _features(model, x, 8)["out"]
    assert out.shape[-2:] == (17, 17) and ref.shape[-2:] == (5, 5)
    assert _relative(out[..., ::4, ::4], ref) <= 1e-12


def test_where_exactness_ends():
    """Measured, not assumed: each of these differs by far more than float64 rounding (1e-12)."""
    torch.manual_seed(2)
    x = torch.randn(2, 3, 129, 129, dtype=torch.float64)
    model = _randomize(M.deeplabv3plus_small(output_stride=32, impl="torch"))
    dense = M.set_output_stride(copy.deepcopy(model), 8)
    with torch.no_grad():
        f32, f8 = model.backbone(x)["out"], dense.backbone(x)["out"]
        a32, a8 = model.aspp(f32), dense.aspp(f8)
        # ASPP image pooling averages a 5x5 map at OS 32 and a 17x17 one at OS 8.
        pooling = _relative(a8[..., ::4, ::4], a32)
        # Without that branch's input difference (both fed the OS-32 pooled value) ASPP is exact.
        pooled32 = model.aspp.convs[-1](f32)[..., :1, :1]
        for m in (model, dense):
            m.aspp.convs[-1].forward = lambda t, p=pooled32: p.expand(-1, -1, *t.shape[-2:])
        no_pooling = _relative(dense.aspp(f8)[..., ::4, ::4], model.aspp(f32))
        del model.aspp.convs[-1].forward, dense.aspp.convs[-1].forward
        logits = _relative(dense(x), model(x))  # + the decoder's bilinear upsampling of another grid
    assert no_pooling <= 1e-12
    assert pooling > 1e-6 and logits > 1e-6
    # MobileNetV3: squeeze-excitation pools globally in every block, and its de-strided block is
    # dilated too (torchvision's convention); so is SlimXception's "block" rule.
    x = x[..., :65, :65]  # MobileNetV3 in float64 is slow; 65 px leaves a 3x3 map at OS 32
    for backbone in (set_impl(M.mobilenet_v3_large(32), "torch"), M.SlimXception(32, dilation_rule="block")):
        backbone = _randomize(backbone)
        with torch.no_grad():
            ref = backbone(x)["out"]
        assert _relative(_features(backbone, x, 8)["out"][..., ::4, ::4], ref) > 1e-6
