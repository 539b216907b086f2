"""atrous.nn: AtrousConv2d routing to the ops, impl switch, ConvBNAct, separable conv, pooled BN, fusion."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import atrous.nn as ann
from atrous.nn import layers


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-10) -> None:
    """Equal up to ``tol`` relative to the larger magnitude of the reference (float64 tests)."""
    scale = max(b.abs().max().item(), 1e-30)
    err = (a - b).abs().max().item()
    assert err <= tol * scale, f"max abs error {err:.3e} > {tol:.0e} x scale {scale:.3e}"


def _spy(monkeypatch, name: str) -> list:
    """Record calls to atrous.ops.<name> made by the layers (the op still runs)."""
    calls = []
    original = getattr(layers._ops, name)

    def wrapper(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(layers._ops, name, wrapper)
    return calls


# ---- AtrousConv2d routing ------------------------------------------------------------------------

ROUTES = [
    # (constructor kwargs besides in_channels=6, expected kind, op)
    ({"out_channels": 5, "kernel_size": 1}, "pointwise", "pointwise_conv2d"),
    ({"out_channels": 5, "kernel_size": 1, "padding": "same"}, "pointwise", "pointwise_conv2d"),
    ({"out_channels": 5, "kernel_size": 1, "stride": 2}, "dense", "atrous_conv2d"),
    ({"out_channels": 5, "kernel_size": 3, "padding": 4, "dilation": 4}, "dense", "atrous_conv2d"),
    ({"out_channels": 5, "kernel_size": (3, 5), "stride": (2, 1), "padding": (1, 4), "dilation": (1, 2)},
     "dense", "atrous_conv2d"),
    ({"out_channels": 6, "kernel_size": 3, "padding": 6, "dilation": 6, "groups": 6},
     "depthwise", "depthwise_conv2d"),
    ({"out_channels": 12, "kernel_size": 5, "stride": 2, "padding": 2, "groups": 6},
     "depthwise", "depthwise_conv2d"),  # depth multiplier 2
    ({"out_channels": 6, "kernel_size": 3, "padding": "same", "dilation": 3, "groups": 6},
     "depthwise", "depthwise_conv2d"),
    ({"out_channels": 5, "kernel_size": 3, "padding": "valid"}, "dense", "atrous_conv2d"),
]


@pytest.mark.parametrize("kwargs,kind,op", ROUTES)
def test_routes_to_the_operator_and_equals_conv2d(monkeypatch, kwargs, kind, op):
    torch.manual_seed(0)
    conv = ann.AtrousConv2d(6, **kwargs).double()
    assert conv.kind == kind
    calls = _spy(monkeypatch, op)
    x = torch.randn(2, 6, 13, 11, dtype=torch.float64, requires_grad=True)
    y = conv(x)
    assert len(calls) == 1, f"expected one call to atrous.ops.{op}"
    ref = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    _close(y, ref)
    # gradients of input, weight and bias agree with F.conv2d too
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(y, (x, conv.weight, conv.bias), g)
    grads_ref = torch.autograd.grad(ref, (x, conv.weight, conv.bias), g)
    for a, b in zip(grads, grads_ref):
        _close(a, b)


def test_torch_impl_calls_no_atrous_operator(monkeypatch):
    conv = ann.AtrousConv2d(4, 4, 3, padding=1, impl="torch")
    calls = _spy(monkeypatch, "atrous_conv2d")
    x = torch.randn(1, 4, 8, 8)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))
    assert calls == []


def test_grouped_convolution_needs_torch_impl():
    conv = ann.AtrousConv2d(8, 8, 3, padding=1, groups=2)
    assert conv.kind == "unsupported"
    x = torch.randn(1, 8, 6, 6)
    with pytest.raises(NotImplementedError, match="groups=2.*impl='torch'"):
        conv(x)
    with ann.use_impl("torch"):
        torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1, groups=2))


def test_padding_mode_other_than_zeros_is_rejected():
    with pytest.raises(ValueError, match="padding_mode='zeros'.*'reflect'"):
        ann.AtrousConv2d(3, 3, 3, padding=1, padding_mode="reflect")


def test_state_dict_and_attributes_equal_nn_conv2d():
    ours = ann.AtrousConv2d(4, 8, 3, stride=2, padding=2, dilation=2, bias=True)
    ref = nn.Conv2d(4, 8, 3, stride=2, padding=2, dilation=2, bias=True)
    assert isinstance(ours, nn.Conv2d)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    for attr in ("kernel_size", "stride", "padding", "dilation", "groups", "in_channels", "out_channels"):
        assert getattr(ours, attr) == getattr(ref, attr)
    x = torch.randn(2, 4, 9, 10)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


# ---- impl switch ---------------------------------------------------------------------------------

def test_impl_values_are_validated():
    conv = ann.AtrousConv2d(2, 2, 1)
    with pytest.raises(ValueError, match="AtrousConv2d.impl: expected 'atrous', 'torch' or None, got 'cuda'"):
        conv.impl = "cuda"
    with pytest.raises(ValueError, match="use_impl"), ann.use_impl(None):
        pass
    with pytest.raises(ValueError, match="set_impl"):
        ann.set_impl(conv, "fast")
    with pytest.raises(ValueError, match="impl"):
        ann.AtrousConv2d(2, 2, 1, impl="F")


def test_use_impl_is_scoped_and_module_impl_wins(monkeypatch):
    calls = _spy(monkeypatch, "atrous_conv2d")
    follows, pinned = ann.AtrousConv2d(3, 3, 3), ann.AtrousConv2d(3, 3, 3, impl="atrous")
    x = torch.randn(1, 3, 5, 5)
    assert ann.get_impl() == "atrous"
    with pytest.raises(RuntimeError, match="boom"), ann.use_impl("torch"):
        assert ann.get_impl() == "torch"
        follows(x)  # F.conv2d
        pinned(x)  # still the atrous operator
        raise RuntimeError("boom")
    assert ann.get_impl() == "atrous"  # restored despite the exception
    assert len(calls) == 1
    follows(x)
    assert len(calls) == 2


def test_set_impl_reaches_every_convolution():
    model = nn.Sequential(ann.ConvBNAct(3, 4, 3), ann.AtrousSeparableConv2d(4, 5, dilation=2))
    assert ann.set_impl(model, "torch") is model
    convs = [m for m in model.modules() if isinstance(m, ann.AtrousConv2d)]
    assert len(convs) == 3 and all(c.impl == "torch" for c in convs)
    ann.set_impl(model, None)
    assert all(c.impl is None for c in convs)


# ---- ConvBNAct, AtrousSeparableConv2d --------------------------------------------------------------

def test_conv_bn_act_matches_torchvision_conv2d_norm_activation():
    from torchvision.ops import Conv2dNormActivation

    torch.manual_seed(0)
    ref = Conv2dNormActivation(6, 10, 3, stride=2, dilation=1, groups=1).eval()
    ours = ann.ConvBNAct(6, 10, 3, stride=2).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 6, 15, 14)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    assert isinstance(ours.conv, ann.AtrousConv2d) and ours.conv.bias is None
    assert isinstance(ours.bn, nn.BatchNorm2d) and isinstance(ours.act, nn.ReLU)
    dw = ann.ConvBNAct(8, 8, 5, dilation=3, groups=8, activation=None)
    assert dw.conv.padding == (6, 6) and dw.conv.kind == "depthwise" and len(dw) == 2


@pytest.mark.parametrize("inner,activation", [(True, nn.ReLU), (False, nn.ReLU), (True, None)])
def test_separable_conv_is_depthwise_bn_act_pointwise_bn_act(inner, activation):
    torch.manual_seed(0)
    sep = ann.AtrousSeparableConv2d(6, 9, 3, stride=1, dilation=4, activation=activation,
                                    inner_activation=inner).double().eval()
    for bn in (sep.bn_dw, sep.bn_pw):  # non-trivial statistics, so the BN placement matters
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-1, 1)
    x = torch.randn(2, 6, 17, 12, dtype=torch.float64)

    def bn(t, m):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    y = bn(F.conv2d(x, sep.conv_dw.weight, None, 1, 4, 4, groups=6), sep.bn_dw)
    if inner and activation is not None:
        y = y.relu()
    y = bn(F.conv2d(y, sep.conv_pw.weight), sep.bn_pw)
    if activation is not None:
        y = y.relu()
    _close(sep(x), y)
    assert sep.conv_dw.kind == "depthwise" and sep.conv_pw.kind == "pointwise"


def test_separable_conv_loads_timm_separable_conv():
    from timm.models.xception_aligned import SeparableConv2d

    torch.manual_seed(0)
    ref = SeparableConv2d(8, 16, 3, stride=2, dilation=1, act_layer=nn.ReLU).eval()
    ours = ann.AtrousSeparableConv2d(8, 16, 3, stride=2).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 8, 11, 13)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_separable_conv_parity_between_impls():
    torch.manual_seed(0)
    sep = ann.AtrousSeparableConv2d(5, 7, 3, dilation=2).double().train()
    x = torch.randn(2, 5, 9, 10, dtype=torch.float64, requires_grad=True)
    results = []
    for impl in ("atrous", "torch"):
        with ann.use_impl(impl):
            y = sep(x)
            grads = torch.autograd.grad(y.square().sum(), (x, *sep.parameters()))
        results.append((y, grads))
    _close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        _close(a, b)


# ---- PooledBatchNorm2d -----------------------------------------------------------------------------

def test_pooled_batchnorm_trains_with_one_value_per_channel():
    torch.manual_seed(0)
    bn = ann.PooledBatchNorm2d(4).train()
    bn.running_mean.copy_(torch.tensor([0.5, -1.0, 0.0, 2.0]))
    bn.running_var.copy_(torch.tensor([4.0, 1.0, 0.25, 1.0]))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm2d(4).train()(torch.randn(1, 4, 1, 1))  # what plain BatchNorm does
    x = torch.randn(1, 4, 1, 1)
    y = bn(x)
    expected = (x - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(bn.running_mean, torch.tensor([0.5, -1.0, 0.0, 2.0]))  # unchanged
    y.sum().backward()
    assert bn.weight.grad is not None and bn.bias.grad is not None


def test_pooled_batchnorm_is_batchnorm_otherwise():
    torch.manual_seed(0)
    ours, ref = ann.PooledBatchNorm2d(3).train(), nn.BatchNorm2d(3).train()
    for shape in [(2, 3, 1, 1), (1, 3, 2, 1), (4, 3, 5, 5)]:
        x = torch.randn(shape)
        torch.testing.assert_close(ours(x), ref(x))
        torch.testing.assert_close(ours.running_mean, ref.running_mean)
        torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.eval(), ref.eval()
    x = torch.randn(1, 3, 1, 1)
    torch.testing.assert_close(ours(x), ref(x))


# ---- fusion ----------------------------------------------------------------------------------------

def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g, dtype=m.weight.dtype) + 0.5
            m.bias.data = torch.randn(n, generator=g, dtype=m.bias.dtype)
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)


@pytest.mark.parametrize("groups,out_channels,bias", [(1, 5, False), (1, 5, True), (4, 8, False)])
def test_fold_batchnorm_into_dense_and_depthwise(groups, out_channels, bias):
    torch.manual_seed(0)
    conv = ann.AtrousConv2d(4, out_channels, 3, padding=2, dilation=2, groups=groups, bias=bias).double()
    bn = nn.BatchNorm2d(out_channels).double()
    _randomize_bn(bn)
    bn.eval()
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    expected = bn(conv(x))
    folded = ann.fold_batchnorm(conv, bn)
    assert folded is conv and conv.bias is not None
    _close(conv(x), expected)


def test_fold_batchnorm_checks_its_arguments():
    conv = ann.AtrousConv2d(2, 3, 1)
    with pytest.raises(ValueError, match="num_features == conv.out_channels"):
        ann.fold_batchnorm(conv, nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="running statistics"):
        ann.fold_batchnorm(conv, nn.BatchNorm2d(3, track_running_stats=False))
    with pytest.raises(TypeError, match="nn.BatchNorm2d"):
        ann.fold_batchnorm(conv, nn.ReLU())


@pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")  # 37x29 input: 3x2 map at OS 16
def test_fuse_folds_every_batchnorm_and_keeps_outputs():
    from atrous.models import deeplabv3plus_mobilenet_v3_large, resnet50

    torch.manual_seed(0)
    for model in (deeplabv3plus_mobilenet_v3_large(num_classes=3), resnet50(output_stride=16)):
        model = model.double()
        _randomize_bn(model)
        model.eval()
        x = torch.randn(2, 3, 37, 29, dtype=torch.float64)
        with torch.no_grad():
            expected = model(x)
            fused = ann.fuse(model)
            got = fused(x)
        assert fused is not model and not fused.training
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
        assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched
        separable = [m for m in fused.modules() if isinstance(m, ann.AtrousSeparableConv2d)]
        assert all(m.fused_op == hasattr(layers._ops, "separable_conv2d") for m in separable)
        outs = got.values() if isinstance(got, dict) else [got]
        refs = expected.values() if isinstance(expected, dict) else [expected]
        for a, b in zip(outs, refs):
            _close(a, b, 1e-9)


def test_fuse_inplace_returns_the_same_model():
    model = nn.Sequential(ann.ConvBNAct(3, 4, 3), ann.AtrousSeparableConv2d(4, 4))
    assert ann.fuse(model, inplace=True) is model
    assert isinstance(model[0][1], nn.Identity)
    assert isinstance(model[1].bn_dw, nn.Identity) and isinstance(model[1].bn_pw, nn.Identity)
