"""Fused separable convolution (inference): property tests against the composition of F.conv2d calls."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous.ops as ops

from helpers.conv_cases import SIZES, assert_relative, axis_params, lay_out
from helpers.devices import DEVICES


@st.composite
def separable_cases(draw):
    h, w = draw(st.sampled_from(SIZES)), draw(st.sampled_from(SIZES))
    kh, kw = draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([1, 3, 5]))
    sh, ph, dh = draw(axis_params(h, kh))
    sw, pw, dw = draw(axis_params(w, kw))
    c = draw(st.integers(1, 40))
    return dict(n=draw(st.integers(0, 2)), c=c, m=draw(st.sampled_from([1, 1, 2])),
                out=draw(st.integers(1, 40)), h=h, w=w, kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw),
                dilation=(dh, dw),
                dw_bias=draw(st.booleans()), pw_bias=draw(st.booleans()), relu=draw(st.booleans()),
                layout=draw(st.sampled_from(["contiguous", "channels_last", "strided"])),
                dtype=draw(st.sampled_from([torch.float32, torch.float64])))


def _reference(x, dw, db, pw, pb, case):
    mid = F.conv2d(x, dw, db, case["stride"], case["padding"], case["dilation"], groups=case["c"])
    return F.conv2d(F.relu(mid) if case["relu"] else mid, pw, pb)


def _tensors(case, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dt, c, m = case["dtype"], case["c"], case["m"]
    x = torch.randn(case["n"], c, case["h"], case["w"], dtype=dt, generator=gen)
    dw = torch.randn(c * m, 1, *case["kernel"], dtype=dt, generator=gen)
    db = torch.randn(c * m, dtype=dt, generator=gen) if case["dw_bias"] else None
    pw = torch.randn(case["out"], c * m, 1, 1, dtype=dt, generator=gen) / (c * m) ** 0.5
    pb = torch.randn(case["out"], dtype=dt, generator=gen) if case["pw_bias"] else None
    return x, dw, db, pw, pb


def _to(device, *tensors):
    return [t.to(device) if t is not None else None for t in tensors]


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=60)
@given(separable_cases())
def test_matches_two_torch_convolutions(device, case):
    x, dw, db, pw, pb = _tensors(case)
    y = ops.separable_conv2d(lay_out(x.to(device), case["layout"]), *_to(device, dw, db, pw, pb),
                             case["stride"], case["padding"], case["dilation"],
                             "relu" if case["relu"] else None)
    assert y.device.type == device
    assert_relative(y, _reference(x, dw, db, pw, pb, case), case["dtype"], f"separable ({case})")
    if case["layout"] == "channels_last" and case["c"] > 1 and y.numel() > 0 and y.shape[2] * y.shape[3] > 1:
        assert y.is_contiguous(memory_format=torch.channels_last)
    elif case["layout"] != "channels_last":
        assert y.is_contiguous()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels,out,size,rate",
                         [(728, 728, 33, 1), (2048, 256, 17, 12), (304, 256, 65, 1)])
def test_deeplab_shapes_span_many_tiles(channels, out, size, rate, device):
    # Several pixel tiles per image, and a last tile that is partial.
    case = dict(n=2, c=channels, m=1, out=out, h=size, w=size, kernel=(3, 3), stride=(1, 1),
                padding=(rate, rate), dilation=(rate, rate), dw_bias=True, pw_bias=True, relu=True,
                layout="channels_last", dtype=torch.float32)
    x, dw, db, pw, pb = _tensors(case, seed=channels)
    y = ops.separable_conv2d(*_to(device, x, dw, db, pw, pb), 1, rate, rate, "relu")
    assert_relative(y, _reference(x, dw, db, pw, pb, case), torch.float32, "separable")


@pytest.mark.parametrize("device", DEVICES)
def test_equals_the_unfused_ops_exactly_in_float64(device):
    torch.manual_seed(0)
    x = torch.randn(1, 16, 20, 20, dtype=torch.float64).to(device)
    dw, db = (torch.randn(16, 1, 3, 3, dtype=torch.float64).to(device),
              torch.randn(16, dtype=torch.float64).to(device))
    pw, pb = (torch.randn(8, 16, 1, 1, dtype=torch.float64).to(device),
              torch.randn(8, dtype=torch.float64).to(device))
    fused = ops.separable_conv2d(x, dw, db, pw, pb, 1, 2, 2, "relu")
    unfused = ops.pointwise_conv2d(torch.relu(ops.depthwise_conv2d(x, dw, db, 1, 2, 2)), pw, pb)
    torch.testing.assert_close(fused, unfused, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_requires_grad_falls_back_to_the_unfused_ops_with_gradients(device):
    torch.manual_seed(1)
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64, device=device, requires_grad=True)
    dw = torch.randn(4, 1, 3, 3, dtype=torch.float64, device=device, requires_grad=True)
    pw = torch.randn(5, 4, 1, 1, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, dw, pw: ops.separable_conv2d(x, dw, None, pw, None, 1, 2, 2, "relu"), (x, dw, pw))
    with torch.no_grad():  # inference: the fused kernel, no graph
        y = ops.separable_conv2d(x, dw, None, pw, None, 1, 2, 2)
    assert y.grad_fn is None


def test_bad_arguments():
    x, dw, pw = torch.zeros(1, 4, 8, 8), torch.zeros(4, 1, 3, 3), torch.zeros(5, 4, 1, 1)
    with pytest.raises(RuntimeError,
                       match=r"expected pw_weight of shape \(C_out, 4, 1, 1\) after a depthwise stage"):
        ops.separable_conv2d(x, dw, None, torch.zeros(5, 3, 1, 1), None)
    with pytest.raises(RuntimeError, match=r"expected pw_bias of shape \(C_out,\) = \(5,\), got \[4\]"):
        ops.separable_conv2d(x, dw, None, pw, torch.zeros(4))
    with pytest.raises(ValueError, match="expected activation to be None or 'relu', got 'gelu'"):
        ops.separable_conv2d(x, dw, None, pw, None, activation="gelu")
    with pytest.raises(RuntimeError, match="expected activation to be 'none' or 'relu', got 'gelu'"):
        torch.ops.atrous.separable_conv2d(x, dw, None, pw, None, [1, 1], [1, 1], [1, 1], "gelu")
    # The fake kernel (meta tensors, torch.compile) says the same.
    with pytest.raises(RuntimeError, match=r"expected pw_weight of shape \(C_out, 4, 1, 1\)"):
        ops.separable_conv2d(x.to("meta"), dw.to("meta"), None, torch.zeros(5, 3, 1, 1, device="meta"), None)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_and_compile(device):
    x = torch.randn(2, 6, 11, 9, dtype=torch.float64).to(device)
    args = (x, torch.randn(6, 1, 3, 3, dtype=torch.float64).to(device),
            torch.randn(6, dtype=torch.float64).to(device),
            torch.randn(4, 6, 1, 1, dtype=torch.float64).to(device), None, [1, 1], [2, 2], [2, 2], "relu")
    torch.library.opcheck(torch.ops.atrous.separable_conv2d.default, args)
    fn = torch.compile(lambda *a: ops.separable_conv2d(*a[:5], 1, 2, 2, "relu"), fullgraph=True,
                       backend="aot_eager")
    torch.testing.assert_close(fn(*args[:5]), ops.separable_conv2d(*args[:5], 1, 2, 2, "relu"))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_unbatched_input_matches_torch(device, requires_grad):
    # (C, H, W) in, (C_out, H_out, W_out) out, fused (no grad) and unfused (grad) paths alike.
    case = dict(n=1, c=5, m=2, out=7, h=13, w=11, kernel=(3, 3), stride=(1, 2), padding=(4, 4),
                dilation=(4, 3), dw_bias=True, pw_bias=True, relu=True, dtype=torch.float64)
    x, dw, db, pw, pb = _tensors(case)
    x3 = x[0].to(device).requires_grad_(requires_grad)
    y = ops.separable_conv2d(x3, *_to(device, dw, db, pw, pb), case["stride"], case["padding"],
                             case["dilation"], "relu")
    expected = _reference(x[0], dw, db, pw, pb, case)  # F.conv2d on the unbatched input
    assert y.shape == expected.shape == (7, 13, 7)  # W: (11 + 8 - 6 - 1) // 2 + 1
    assert_relative(y, expected, torch.float64, "unbatched separable")
    if requires_grad:
        y.sum().backward()
        x_ref = x[0].clone().requires_grad_(True)
        _reference(x_ref, dw, db, pw, pb, case).sum().backward()
        assert_relative(x3.grad, x_ref.grad, torch.float64, "unbatched separable grad")
