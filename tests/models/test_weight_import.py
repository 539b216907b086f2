"""Weight import: random timm / torchvision models, their state dicts in our models, equal outputs."""

import pytest
import torch
from torch import nn

import atrous.models as M

pytestmark = pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")

timm = pytest.importorskip("timm", reason="timm is a test dependency: pip install timm")
segmentation = pytest.importorskip("torchvision.models.segmentation",
                                   reason="torchvision is a test dependency: pip install torchvision")


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters (fresh models have mean 0, var 1, weight 1,
    bias 0, under which a misplaced or missing BN would go unnoticed in eval mode)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.randn(n, generator=g) * 0.2
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-10) -> None:
    scale = max(b.abs().max().item(), 1e-30)
    err = (a - b).abs().max().item()
    assert err <= tol * scale, f"max abs error {err:.3e} > {tol:.0e} x scale {scale:.3e}"


# ---- timm aligned Xception ---------------------------------------------------------------------------

@pytest.mark.parametrize("variant,output_stride", [("xception65", 32), ("xception65", 16), ("xception65", 8),
                                                   ("xception41", 16), ("xception71", 16)])
def test_timm_xception_weights_give_timm_outputs(variant, output_stride):
    torch.manual_seed(0)
    ref = timm.create_model(variant, pretrained=False, output_stride=output_stride)
    ref = _randomize_bn(ref).double().eval()
    ours = M.XceptionAligned(variant, output_stride).double().eval()
    assert M.load_timm_xception(ours, ref.state_dict()) is ours
    x = torch.randn(2, 3, 37, 45, dtype=torch.float64)
    with torch.no_grad():
        features = ours(x)
        expected = ref.forward_features(x)
        taps = ref.forward_intermediates(x, intermediates_only=True)
    _close(features["out"], expected)
    # timm taps the stride-4 map after the ReLU that follows it; the DeepLab decoder reads it before
    _close(features["low"].relu(), taps[1])
    assert features["low"].shape[-2:] == taps[1].shape[-2:] == (10, 12)


def test_timm_xception_into_a_deeplabv3plus_backbone():
    torch.manual_seed(0)
    ref = timm.create_model("xception65", pretrained=False)
    model = M.deeplabv3plus_xception65(num_classes=3)
    M.load_timm_xception(model, ref)  # a module works as well as a state dict
    for name, tensor in M.convert_timm_xception(ref.state_dict()).items():
        assert torch.equal(model.backbone.state_dict()[name], tensor), name


def test_timm_checkpoint_of_another_variant_is_rejected_with_the_differences():
    ref = timm.create_model("xception41", pretrained=False)
    ours = M.xception65()
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(M.WeightImportError) as info:
        M.load_timm_xception(ours, ref.state_dict())
    message = str(info.value)
    assert "missing from the checkpoint (our names) (" in message
    assert "blocks.13.stack.conv1.conv_dw.weight" in message  # 41 has blocks 0..12, 65 has 0..20
    assert "shape mismatches" in message  # blocks 11, 12: exit flow in 41, middle flow in 65
    assert "head.fc.weight" in message and "xception65" in message
    assert all(torch.equal(before[k], v) for k, v in ours.state_dict().items())  # nothing loaded


def test_timm_preactivation_variant_is_rejected():
    ref = timm.create_model("xception65p", pretrained=False)
    with pytest.raises(M.WeightImportError, match="unexpected in the checkpoint"):
        M.load_timm_xception(M.xception65(), ref.state_dict())


# ---- torchvision DeepLabV3 -----------------------------------------------------------------------------

TORCHVISION = {
    "resnet50": segmentation.deeplabv3_resnet50,
    "resnet101": segmentation.deeplabv3_resnet101,
    "mobilenet_v3_large": segmentation.deeplabv3_mobilenet_v3_large,
}


def _torchvision(backbone: str, num_classes: int = 5, aux_loss: bool = True) -> nn.Module:
    torch.manual_seed(0)
    model = TORCHVISION[backbone](weights=None, weights_backbone=None, num_classes=num_classes,
                                  aux_loss=aux_loss)
    return _randomize_bn(model)


@pytest.mark.parametrize("backbone", list(TORCHVISION))
def test_torchvision_deeplabv3_weights_give_torchvision_outputs(backbone):
    ref = _torchvision(backbone).double().eval()
    ours = M.deeplabv3_from_torchvision(ref.state_dict()).double().eval()
    assert ours.num_classes == 5 and ours.aux_classifier is not None
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    x = torch.randn(2, 3, 37, 45, dtype=torch.float64)
    with torch.no_grad():
        got, expected = ours(x), ref(x)
    _close(got["out"], expected["out"])
    _close(got["aux"], expected["aux"])


def test_torchvision_deeplabv3_equal_in_training_too():
    """Training mode (batch statistics, dropout with the same seed): outputs and every gradient."""
    ref = _torchvision("mobilenet_v3_large").double().train()
    ours = M.deeplabv3_from_torchvision(ref.state_dict()).double().train()
    x = torch.randn(2, 3, 41, 33, dtype=torch.float64)
    results = []
    for model in (ours, ref):
        torch.manual_seed(3)
        out = model(x)
        loss = (out["out"].square().mean() + out["aux"].square().mean())
        results.append((out["out"].detach(), torch.autograd.grad(loss, list(model.parameters()))))
    _close(results[0][0], results[1][0])
    # Same parameter order: ours follows torchvision's module order. Some gradients are zero up to
    # rounding (a BN shift before another BN in training mode): compare on the largest gradient's scale.
    floor = max(g.abs().max().item() for g in results[1][1])
    for a, b in zip(results[0][1], results[1][1]):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= 1e-8 * max(b.abs().max().item(), 1e-6 * floor)


@pytest.mark.parametrize("backbone,aux_loss", [("resnet50", False), ("resnet101", True),
                                               ("mobilenet_v3_large", False)])
def test_parameter_counts_equal_torchvision(backbone, aux_loss):
    ref = TORCHVISION[backbone](weights=None, weights_backbone=None, num_classes=21, aux_loss=aux_loss)
    ours = M.torchvision_deeplabv3(backbone, 21, aux_loss=aux_loss)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    assert len(ours.state_dict()) == len(ref.state_dict())


def test_strict_aux():
    source = _torchvision("mobilenet_v3_large", aux_loss=True).state_dict()
    no_aux = M.torchvision_deeplabv3("mobilenet_v3_large", 5, aux_loss=False)
    with pytest.raises(M.WeightImportError, match="aux_loss=True, or pass strict_aux=False"):
        M.load_torchvision_deeplabv3(no_aux, source)
    M.load_torchvision_deeplabv3(no_aux, source, strict_aux=False)
    assert torch.equal(no_aux.classifier.weight, source["classifier.4.weight"])
    dropped = M.deeplabv3_from_torchvision(source, aux_loss=False)
    assert dropped.aux_classifier is None
    # a checkpoint without the aux head cannot fill a model that has one, strict_aux or not
    with pytest.raises(M.WeightImportError, match="(?s)missing from the checkpoint.*aux_classifier"):
        M.load_torchvision_deeplabv3(M.torchvision_deeplabv3("mobilenet_v3_large", 5, aux_loss=True),
                                     _torchvision("mobilenet_v3_large", aux_loss=False).state_dict(),
                                     strict_aux=False)


def test_mismatching_checkpoints_list_what_differs():
    source = _torchvision("resnet50", num_classes=5, aux_loss=False).state_dict()
    with pytest.raises(M.WeightImportError) as info:
        M.load_torchvision_deeplabv3(M.torchvision_deeplabv3("resnet50", 21), source)
    message = str(info.value)
    assert "shape mismatches (2)" in message
    assert ("classifier.weight (checkpoint classifier.4.weight): "
            "checkpoint (5, 256, 1, 1), model (21, 256, 1, 1)") in message
    with pytest.raises(M.WeightImportError) as info:
        M.load_torchvision_deeplabv3(M.torchvision_deeplabv3("resnet101", 5), source)
    assert "missing from the checkpoint (our names) (" in str(info.value)
    assert "backbone.layer3.6.conv1.weight" in str(info.value)  # ResNet-50 stops at layer3.5
    with pytest.raises(M.WeightImportError, match="neither torchvision's ResNet"):
        M.deeplabv3_from_torchvision({"classifier.4.weight": torch.zeros(3, 256, 1, 1)})


def test_convert_torchvision_renames_only_the_head():
    source = _torchvision("mobilenet_v3_large", aux_loss=True).state_dict()
    converted = M.convert_torchvision_deeplabv3(source, "mobilenet_v3_large")
    assert "aspp.convs.4.1.weight" in converted and "head_conv.0.weight" in converted
    assert "backbone.features.16.0.weight" in converted and "aux_classifier.4.bias" in converted
    assert len(converted) == len(source)


# ---- torchvision ImageNet backbones ---------------------------------------------------------------------

def test_torchvision_resnet_backbone_weights():
    from torchvision.models import resnet50

    torch.manual_seed(0)
    ref = _randomize_bn(resnet50(replace_stride_with_dilation=[False, True, True])).double().eval()
    ours = M.deeplabv3_resnet50(output_stride=8, multi_grid=None).double().eval()
    M.load_torchvision_backbone(ours, ref.state_dict())
    x = torch.randn(1, 3, 45, 37, dtype=torch.float64)
    with torch.no_grad():
        stem = ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))
        expected = ref.layer4(ref.layer3(ref.layer2(ref.layer1(stem))))
        _close(ours.backbone(x)["out"], expected)


def test_torchvision_mobilenet_backbone_weights():
    from torchvision.models import mobilenet_v3_large

    torch.manual_seed(0)
    ref = _randomize_bn(mobilenet_v3_large()).double().eval()
    ours = M.mobilenet_v3_large(output_stride=32).double().eval()
    M.load_torchvision_backbone(ours, ref)
    x = torch.randn(1, 3, 45, 37, dtype=torch.float64)
    with torch.no_grad():
        _close(ours(x)["out"], ref.features(x))
    with pytest.raises(TypeError, match="ResNet or MobileNetV3 backbone"):
        M.load_torchvision_backbone(M.xception41(), ref)
