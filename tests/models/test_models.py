"""atrous.models: shapes per output stride, strides to dilation, F.conv2d parity, batch 1, compile, ONNX."""

import math
import warnings

import pytest
import torch
from torch import nn

import atrous.models as M
import atrous.nn as ann
from atrous.models.aspp import AtrousRateWarning

# Small test inputs put rates (6, 12, 18) beyond the 3x3 maps on purpose; that warning has its own test.
pytestmark = pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")

OUTPUT_STRIDES = (8, 16, 32)


def _geometry(module: nn.Module) -> list[tuple]:
    """Every convolution's shape and geometry, in module order."""
    return [(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups)
            for m in module.modules() if isinstance(m, nn.Conv2d)]


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _ceil(n: int, s: int) -> int:
    return math.ceil(n / s)


# ---- shapes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("output_stride", OUTPUT_STRIDES)
@pytest.mark.parametrize("backbone", M.BACKBONES)
def test_every_model_at_every_output_stride(backbone, output_stride):
    """Backbone features at strides 4 / aux / output_stride, and both models' logits at the input size,
    for an input whose sides are not multiples of any stride."""
    torch.manual_seed(0)
    H, W = 33, 47
    x = torch.randn(2, 3, H, W)
    v3plus = M.deeplabv3plus(backbone, num_classes=4, output_stride=output_stride, aux_loss=True).eval()
    v3 = M.deeplabv3(backbone, num_classes=4, output_stride=output_stride).eval()
    net = v3plus.backbone
    assert net.output_stride == output_stride
    for model in (v3plus, v3):  # every convolution runs on the atrous operators
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert convs and all(isinstance(m, ann.AtrousConv2d) and m.kind != "unsupported" for m in convs)
    with torch.no_grad():
        features = net(x)
        out_plus = v3plus(x)
        out = v3(x)
    assert features["out"].shape == (2, net.out_channels, _ceil(H, output_stride), _ceil(W, output_stride))
    assert features["low"].shape == (2, net.low_level_channels, _ceil(H, 4), _ceil(W, 4))
    assert features["aux"].shape[1] == net.aux_channels
    assert out_plus["out"].shape == out_plus["aux"].shape == (2, 4, H, W)
    assert out.shape == (2, 4, H, W)
    assert torch.isfinite(out).all() and torch.isfinite(out_plus["out"]).all()


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (17, 1), (65, 64)])
def test_any_input_size(size):
    for factory in (M.deeplabv3plus_mobilenet_v3_large, M.deeplabv3_resnet50):
        model = factory(num_classes=2).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, *size)).shape == (1, 2, *size)


def test_bad_inputs_are_rejected_with_a_clear_message():
    model = M.deeplabv3plus_mobilenet_v3_large(num_classes=2)
    with pytest.raises(ValueError,
                       match=r"DeepLabV3Plus: expected 3 input channels, got shape \(1, 1, 8, 8\)"):
        model(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"expected an \(N, C, H, W\) input, got shape \(3, 8, 8\)"):
        model(torch.randn(3, 8, 8))
    with pytest.raises(ValueError,
                       match="in training mode a single 16x9 image leaves a 1x1 map at output stride 16"):
        model.train()(torch.randn(1, 3, 16, 9))
    model(torch.randn(1, 3, 17, 9))  # 2x1 at output stride 16: trains
    with pytest.raises(ValueError, match=r"output_stride in \(8, 16, 32\), got 4"):
        M.deeplabv3_resnet50(output_stride=4)
    with pytest.raises(ValueError, match="multi_grid"):
        M.deeplabv3_resnet50(multi_grid=(1, 2))
    with pytest.raises(ValueError, match="multi_grid applies to the ResNet"):
        M.deeplabv3plus_xception65(multi_grid=(1, 2, 4))
    with pytest.raises(ValueError, match="expected name in"):
        M.build_backbone("vgg16")


# ---- strides become dilation -----------------------------------------------------------------------

def _layer4_rates(net: M.ResNet) -> list[int]:
    return [unit.conv2.dilation[0] for unit in net.layer4]


@pytest.mark.parametrize("output_stride,layer3,layer4,stride4", [
    (32, [1] * 6, [1, 2, 4], 2),
    (16, [1] * 6, [2, 4, 8], 1),  # the paper's example: rates 2 * (1, 2, 4)
    (8, [1] + [2] * 5, [4, 8, 16], 1),
])
def test_resnet_multi_grid(output_stride, layer3, layer4, stride4):
    net = M.resnet50(output_stride=output_stride, multi_grid=(1, 2, 4))
    assert [u.conv2.dilation[0] for u in net.layer3] == layer3
    assert _layer4_rates(net) == layer4
    assert net.layer4[0].conv2.stride == (stride4, stride4)
    assert all(u.conv2.padding == u.conv2.dilation for u in net.modules() if isinstance(u, M.Bottleneck))


@pytest.mark.parametrize("output_stride,replace", [(32, [False, False, False]), (16, [False, False, True]),
                                                   (8, [False, True, True])])
def test_resnet_without_multi_grid_equals_torchvision_replace_stride_with_dilation(output_stride, replace):
    from torchvision.models import resnet50

    ours = M.resnet50(output_stride=output_stride, multi_grid=None)
    ref = resnet50(replace_stride_with_dilation=replace)
    assert _geometry(ours) == _geometry(ref)
    assert _n_params(ours) == _n_params(ref) - _n_params(ref.fc)


@pytest.mark.parametrize("variant,output_stride", [("xception65", 32), ("xception65", 16), ("xception65", 8),
                                                   ("xception41", 16), ("xception71", 8)])
def test_xception_geometry_and_size_equal_timm(variant, output_stride):
    import timm

    ours = M.XceptionAligned(variant, output_stride)
    ref = timm.create_model(variant, pretrained=False, output_stride=output_stride, num_classes=0)
    assert _geometry(ours) == _geometry(ref)
    assert _n_params(ours) == _n_params(ref)


def test_xception_exit_flow_rates_follow_output_stride():
    for output_stride, middle, last in ((32, 1, 1), (16, 1, 2), (8, 2, 4)):
        net = M.xception65(output_stride)
        assert net.blocks[10].stack.conv1.conv_dw.dilation == (middle, middle)
        assert net.blocks[20].stack.conv3.conv_dw.dilation == (last, last)
        # every max pooling of Xception is a stride-2 separable conv: no pooling layer at all
        assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in net.modules())
        # BN after every depthwise conv (paper Sec. 3.2)
        seps = [m for m in net.modules() if isinstance(m, ann.AtrousSeparableConv2d)]
        assert len(seps) == 3 * 21 and all(isinstance(s.bn_dw, nn.BatchNorm2d) for s in seps)


@pytest.mark.parametrize("output_stride,dilated", [(32, False), (16, True)])
def test_mobilenet_v3_geometry_and_size_equal_torchvision(output_stride, dilated):
    from torchvision.models import mobilenet_v3_large

    ours = M.mobilenet_v3_large(output_stride)
    ref = mobilenet_v3_large(dilated=dilated).features
    assert _geometry(ours) == _geometry(ref)
    assert _n_params(ours) == _n_params(ref)
    depthwise = [m for m in ours.modules() if isinstance(m, ann.AtrousConv2d) and m.kind == "depthwise"]
    assert len(depthwise) == 15


def test_mobilenet_v3_output_stride_8():
    net = M.mobilenet_v3_large(8)
    rates = [b.block[1].conv.dilation[0] if len(b.block) > 2 else b.block[0].conv.dilation[0]
             for b in net.features[1:16]]
    assert rates == [1] * 6 + [2] * 6 + [4] * 3


# ---- ASPP and decoder ------------------------------------------------------------------------------

def test_aspp_rates_follow_output_stride():
    assert M.default_aspp_rates(16) == (6, 12, 18)
    assert M.default_aspp_rates(8) == (12, 24, 36)
    assert M.default_aspp_rates(32) == (3, 6, 9)
    for output_stride in OUTPUT_STRIDES:
        model = M.deeplabv3_resnet50(output_stride=output_stride)
        assert model.aspp.rates == M.default_aspp_rates(output_stride)
        dilations = [branch[0].dilation[0] for branch in model.aspp.convs[1:4]]
        assert dilations == list(M.default_aspp_rates(output_stride))
    assert M.deeplabv3_resnet50(aspp_rates=(2, 4)).aspp.rates == (2, 4)


def test_aspp_branches():
    aspp = M.ASPP(64, 32, (2, 3, 4), separable=True, dropout=0.3)
    assert len(aspp.convs) == 5 and isinstance(aspp.convs[0], ann.ConvBNAct)
    assert all(isinstance(b, ann.AtrousSeparableConv2d) for b in aspp.convs[1:4])
    assert [b.conv_dw.dilation[0] for b in aspp.convs[1:4]] == [2, 3, 4]
    assert isinstance(aspp.convs[4], M.ASPPPooling) and aspp.project[3].p == 0.3
    assert aspp.project[0].in_channels == 5 * 32
    dense = M.ASPP(64, 32, (2, 3, 4))
    assert all(isinstance(b, ann.ConvBNAct) and b.conv.kernel_size == (3, 3) for b in dense.convs[1:4])
    with pytest.raises(ValueError, match="positive rates"):
        M.ASPP(8, 8, (0, 6))


def test_image_pooling_is_constant_over_the_map_and_trains_with_batch_1():
    torch.manual_seed(0)
    pool = M.ASPPPooling(6, 4).train()
    x = torch.randn(1, 6, 5, 7)
    y = pool(x)
    assert y.shape == (1, 4, 5, 7)
    torch.testing.assert_close(y, y[:, :, :1, :1].expand_as(y))
    y.sum().backward()
    assert pool[1].weight.grad is not None


@pytest.mark.parametrize("impl", ["torch", "atrous"])
def test_channels_last_model_stays_channels_last(impl):
    # The image-pooling branch is a broadcast (an expanded view); concatenated as it is, torch.cat
    # returned NCHW and the ASPP output and the whole decoder ran on NCHW, with layout copies.
    torch.manual_seed(0)
    model = M.deeplabv3plus_mobilenet_v3_large(num_classes=3, impl=impl).eval()
    model = model.to(memory_format=torch.channels_last)
    seen = []
    model.decoder.register_forward_hook(lambda mod, args, out: seen.extend([args[0], args[1], out]))
    x = torch.randn(1, 3, 65, 65).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        model(x)
    cl = [t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous() for t in seen]
    assert cl == [True] * 3
    aspp = M.ASPP(8, 4, (2,)).eval()
    xa = torch.randn(2, 8, 5, 6)
    torch.testing.assert_close(aspp(xa.contiguous(memory_format=torch.channels_last)), aspp(xa))


def test_aspp_warns_when_a_rate_reaches_the_feature_map():
    aspp = M.ASPP(8, 8, (2, 6)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aspp(torch.randn(1, 8, 7, 9))  # every rate below the map size: no warning
    with pytest.warns(AtrousRateWarning, match="rate 6 is not smaller than the 6x9 feature map.*height"):
        aspp(torch.randn(1, 8, 6, 9))


def test_decoder_layout():
    model = M.deeplabv3plus_xception65(num_classes=5)
    dec = model.decoder
    assert dec.project.conv.out_channels == 48 and dec.project.conv.in_channels == 256
    assert [c.out_channels for c in dec.convs] == [256, 256]
    assert dec.convs[0].in_channels == 256 + 48
    assert all(isinstance(c, ann.AtrousSeparableConv2d) for c in dec.convs)
    assert dec.classifier.out_channels == 5 and dec.classifier.bias is not None
    assert model.aspp.separable and model.backbone.low_level_index == 1
    assert M.xception71().low_level_index == 2


# ---- atrous operators against F.conv2d, model by model ----------------------------------------------

def _forward_backward(model: nn.Module, x: torch.Tensor, impl: str, call=None):
    """Output, input gradient and parameter gradients (by name) of ``call`` (default: ``model``)."""
    x = x.detach().clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # same dropout masks for both implementations
    with ann.use_impl(impl):
        out = (model if call is None else call)(x)
    out = out["out"] + out["aux"] if isinstance(out, dict) else out
    out.square().mean().backward()
    return out.detach(), x.grad, {n: p.grad for n, p in model.named_parameters()}


def _assert_parity(a: torch.Tensor, b: torch.Tensor, what: str, floor: float = 0.0) -> None:
    scale = max(b.abs().max().item(), floor)
    err = (a - b).abs().max().item()
    assert err <= 1e-8 * scale, f"{what}: max abs error {err:.3e} vs scale {scale:.3e}"


@pytest.mark.parametrize("name,output_stride", [
    ("deeplabv3_resnet50", 8), ("deeplabv3_resnet101", 16), ("deeplabv3_mobilenet_v3_large", 8),
    ("deeplabv3_xception41", 32), ("deeplabv3_xception65", 16), ("deeplabv3_xception71", 16),
    ("deeplabv3plus_resnet50", 16), ("deeplabv3plus_resnet101", 8), ("deeplabv3plus_mobilenet_v3_large", 32),
    ("deeplabv3plus_xception41", 16), ("deeplabv3plus_xception65", 8), ("deeplabv3plus_xception71", 16),
    ("deeplabv3plus_small", 8),
])
def test_atrous_impl_matches_torch_impl(name, output_stride):
    """Outputs, input gradients and every parameter's gradient of impl='atrous' against F.conv2d
    (impl='torch'), float64, training mode (batch statistics, dropout with the same seed)."""
    torch.manual_seed(0)
    model = M.MODELS[name](num_classes=3, output_stride=output_stride, aux_loss=True).double().train()
    x = torch.randn(2, 3, 29, 35, dtype=torch.float64)
    out_a, gx_a, gp_a = _forward_backward(model, x, "atrous")
    out_t, gx_t, gp_t = _forward_backward(model, x, "torch")
    _assert_parity(out_a, out_t, "output")
    _assert_parity(gx_a, gx_t, "input gradient")
    # Some gradients are zero up to rounding (a BN shift followed by another BN in training mode):
    # compare them on the scale of the largest parameter gradient.
    floor = 1e-6 * max(g.abs().max().item() for g in gp_t.values())
    assert gp_a.keys() == gp_t.keys() and len(gp_a) == len(list(model.parameters()))
    for key in gp_t:
        _assert_parity(gp_a[key], gp_t[key], f"gradient of {key}", floor)


@pytest.mark.parametrize("name", list(M.MODELS))
def test_batch_size_1_in_training_mode(name):
    torch.manual_seed(0)
    model = M.MODELS[name](num_classes=3).train()
    x = torch.randn(1, 3, 33, 47, requires_grad=True)
    y = model(x)
    assert y.shape == (1, 3, 33, 47)
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_torchvision_image_pooling_fails_with_batch_1_where_ours_trains():
    """The peer behaviour the issue mentions, so this test documents why PooledBatchNorm2d exists."""
    from torchvision.models.segmentation.deeplabv3 import ASPPPooling

    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ASPPPooling(8, 4).train()(torch.randn(1, 8, 5, 5))
    M.ASPPPooling(8, 4).train()(torch.randn(1, 8, 5, 5)).sum().backward()


# ---- compile and export ----------------------------------------------------------------------------

def test_torch_compile_full_model_fullgraph():
    """DeepLabV3+ (MobileNetV3) captured as one graph, one training step: equal to eager (float64,
    since AOT autograd decomposes BN and float32 rounding would differ). aot_eager runs AOT autograd
    over our fake kernels and backward operators without inductor's C++ build, which takes minutes for
    a full model on two cores (tests/ops/test_compile.py covers inductor on a block of the same ops)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = M.deeplabv3plus_mobilenet_v3_large(num_classes=3).double().train()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 33, 47, dtype=torch.float64)
    out_e, gx_e, gp_e = _forward_backward(model, x, "atrous")
    out_c, gx_c, gp_c = _forward_backward(model, x, "atrous", call=compiled)
    _assert_parity(out_c, out_e, "output")
    _assert_parity(gx_c, gx_e, "input gradient")
    floor = 1e-6 * max(g.abs().max().item() for g in gp_e.values())
    for key in gp_e:
        _assert_parity(gp_c[key], gp_e[key], f"gradient of {key}", floor)


def test_torch_export_keeps_the_atrous_operators():
    model = M.deeplabv3plus_mobilenet_v3_large(num_classes=3).eval()
    program = torch.export.export(model, (torch.randn(1, 3, 33, 47),))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert {"atrous.depthwise_conv2d.default", "atrous.pointwise_conv2d.default",
            "atrous.atrous_conv2d.default"} <= targets
    assert "aten.conv2d.default" not in targets and "aten.convolution.default" not in targets


def test_onnx_export_through_torch_impl(tmp_path):
    onnx = pytest.importorskip("onnx", reason="onnx is not installed: pip install onnx onnxscript")
    pytest.importorskip("onnxscript", reason="onnxscript is not installed: pip install onnxscript")
    torch.manual_seed(0)
    model = M.deeplabv3_mobilenet_v3_large(num_classes=3, impl="torch").eval()
    x = torch.randn(1, 3, 33, 47)
    path = tmp_path / "deeplabv3.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=True, verbose=False)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert "Conv" in {node.op_type for node in proto.graph.node}
    try:
        import onnxruntime
    except ImportError:
        return  # the graph is valid; running it needs onnxruntime (optional)
    session = onnxruntime.InferenceSession(str(path))
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = ann.set_impl(model, "atrous")(x)  # the exported graph computes what our operators compute
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-5)
