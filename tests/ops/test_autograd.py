"""Autograd of the atrous ops: gradcheck and gradgradcheck in float64, and deterministic gradients."""

import functools

import pytest
import torch

import atrous.ops as ops

from helpers.devices import DEVICES, device_param

# (op, weight shape for C=3 inputs, kwargs): asymmetric stride/padding/dilation where allowed.
CASES = {
    "depthwise": (ops.depthwise_conv2d, (6, 1, 3, 2), dict(stride=(2, 1), padding=(3, 1), dilation=(3, 2))),
    "depthwise_big_rate": (ops.depthwise_conv2d, (3, 1, 3, 3), dict(padding=12, dilation=12)),
    "pointwise": (ops.pointwise_conv2d, (4, 3, 1, 1), {}),
    "dense": (ops.atrous_conv2d, (4, 3, 3, 3), dict(stride=(1, 2), padding=(2, 1), dilation=(2, 1))),
}


def _inputs(weight_shape, bias=True, layout=torch.contiguous_format, device="cpu"):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, generator=gen)
    x = x.to(device).contiguous(memory_format=layout)
    w = torch.randn(*weight_shape, dtype=torch.float64, generator=gen).to(device)
    b = torch.randn(weight_shape[0], dtype=torch.float64, generator=gen).to(device) if bias else None
    return [t.requires_grad_(True) if t is not None else None for t in (x, w, b)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_gradcheck(name, layout, device):
    op, weight_shape, kwargs = CASES[name]
    x, w, b = _inputs(weight_shape, layout=layout, device=device)
    assert torch.autograd.gradcheck(lambda x, w, b: op(x, w, b, **kwargs), (x, w, b))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["depthwise", "pointwise", "dense"])
def test_gradcheck_every_rung(name, device):
    # The backward pass runs the rung the forward pass used.
    op, weight_shape, kwargs = CASES[name]
    x, w, b = _inputs(weight_shape, layout=torch.channels_last, device=device)
    op_name = {"depthwise": "depthwise_conv2d", "pointwise": "pointwise_conv2d",
               "dense": "atrous_conv2d"}[name]
    for algo in ops.algorithms(op_name, device):
        fn = functools.partial(op, **kwargs, algo=algo)  # fn(x, w, b) = op(x, w, b, **kwargs, algo=algo)
        assert torch.autograd.gradcheck(fn, (x, w, b))
        assert torch.autograd.gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", CASES)
def test_gradgradcheck(name, device):
    # Double backward works: the backward ops have registered gradients (see atrous/ops.py).
    op, weight_shape, kwargs = CASES[name]
    x, w, b = _inputs(weight_shape, device=device)
    assert torch.autograd.gradgradcheck(lambda x, w, b: op(x, w, b, **kwargs), (x, w, b))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", CASES)
def test_gradcheck_without_bias_and_partial_requires_grad(name, device):
    op, weight_shape, kwargs = CASES[name]
    x, w, _ = _inputs(weight_shape, bias=False, device=device)
    assert torch.autograd.gradcheck(lambda x: op(x, w.detach(), None, **kwargs), (x,))
    assert torch.autograd.gradcheck(lambda w: op(x.detach(), w, None, **kwargs), (w,))


def _weight_and_bias_grads(op, x, w, b, kwargs, gy):
    x, w, b = (t.detach().requires_grad_(True) for t in (x, w, b))
    return torch.autograd.grad(op(x, w, b, **kwargs), (x, w, b), gy)


def _determinism_params():
    # CPU: every depthwise rung and the default GEMM rungs; CUDA: every rung of every ladder.
    cpu = [("depthwise", a) for a in ops.algorithms("depthwise_conv2d")]
    cpu += [("pointwise", "auto"), ("dense", "auto")]
    cuda = [(name, a) for name, op in (("depthwise", "depthwise_conv2d"), ("pointwise", "pointwise_conv2d"),
                                       ("dense", "atrous_conv2d")) for a in ops.algorithms(op, "cuda")]
    return [device_param("cpu", *p) for p in cpu] + [device_param("cuda", *p) for p in cuda]


@pytest.mark.parametrize("device,name,algo", _determinism_params())
def test_gradients_are_bitwise_deterministic_across_runs_and_threads(device, name, algo):
    # Weight and bias gradients reduce over the batch and the plane; each element is summed
    # in a fixed order (no float atomics on the GPU either), so two runs, and runs on 1 or 2
    # CPU threads, agree bit for bit.
    op, weight_shape, kwargs = CASES[name]
    kwargs = {**kwargs, "algo": algo}
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 33, 33, generator=gen).to(device)
    w = torch.randn(*weight_shape, generator=gen).to(device)
    b = torch.randn(weight_shape[0], generator=gen).to(device)
    gy = torch.randn(op(x, w, b, **kwargs).shape, generator=gen).to(device)
    first = _weight_and_bias_grads(op, x, w, b, kwargs, gy)
    second = _weight_and_bias_grads(op, x, w, b, kwargs, gy)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = _weight_and_bias_grads(op, x, w, b, kwargs, gy)
    finally:
        torch.set_num_threads(threads)
    for a, s, t in zip(first, second, single):
        assert torch.equal(a, s)
        assert torch.equal(a, t)
