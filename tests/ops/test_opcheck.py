"""torch.library.opcheck on every atrous operator: schema, fake kernel, autograd registration, AOT."""

import pytest
import torch

import atrous.ops  # noqa: F401  (registers fake kernels and autograd)

from helpers.devices import device_param

A = torch.ops.atrous


def _t(*shape, layout=torch.contiguous_format, grad=False, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed + sum(shape))
    t = torch.randn(*shape, dtype=torch.float64, generator=gen).to(device)
    if len(shape) == 4:
        t = t.contiguous(memory_format=layout)
    return t.requires_grad_(grad)


CL = torch.channels_last
CONF = ([2, 1], [3, 1], [3, 2])  # stride, padding, dilation


def samples(device):
    # (op, args); inputs that require grad exercise the autograd registration.
    def t(*shape, **kw):
        return _t(*shape, device=device, **kw)

    yield A.depthwise_conv2d.default, (t(2, 3, 9, 8, grad=True), t(6, 1, 3, 2, grad=True), t(6, grad=True),
                                       *CONF)
    yield A.depthwise_conv2d.default, (t(1, 4, 7, 7, layout=CL), t(4, 1, 3, 3), None, [1, 1], [6, 6], [6, 6])
    yield A.depthwise_conv2d.default, (t(0, 3, 9, 8), t(3, 1, 3, 3), None, [1, 1], [1, 1], [1, 1])
    yield A.depthwise_conv2d_backward_input.default, (t(2, 6, 5, 8), t(6, 1, 3, 2), [2, 3, 9, 8], *CONF)
    yield A.depthwise_conv2d_backward_weight.default, (t(2, 6, 5, 8), t(2, 3, 9, 8), [6, 1, 3, 2], *CONF)
    yield A.pointwise_conv2d.default, (t(2, 3, 5, 4, grad=True), t(4, 3, 1, 1, grad=True), t(4, grad=True))
    yield A.pointwise_conv2d.default, (t(2, 3, 5, 4, layout=CL), t(4, 3, 1, 1), None)
    yield A.pointwise_conv2d_backward_input.default, (t(2, 4, 5, 4, layout=CL), t(4, 3, 1, 1))
    yield A.pointwise_conv2d_backward_weight.default, (t(2, 4, 5, 4), t(2, 3, 5, 4))
    yield A.atrous_conv2d.default, (t(2, 3, 9, 8, grad=True), t(4, 3, 3, 2, grad=True), t(4, grad=True),
                                    *CONF)
    yield A.atrous_conv2d.default, (t(1, 3, 6, 6, layout=CL), t(5, 3, 1, 1), None, [1, 1], [0, 0], [1, 1])
    yield A.atrous_conv2d_backward_input.default, (t(2, 4, 5, 8), t(4, 3, 3, 2), [2, 3, 9, 8], *CONF)
    yield A.atrous_conv2d_backward_weight.default, (t(2, 4, 5, 8), t(2, 3, 9, 8), [4, 3, 3, 2], *CONF)
    yield A.conv2d_backward_bias.default, (t(2, 4, 5, 7, grad=True),)
    # Explicit kernel rungs (the algo argument; each device has its own ladder).
    dw_rungs = ("nhwc", "stencil") if device == "cpu" else ("tiled", "naive")
    for rung in dw_rungs:
        yield A.depthwise_conv2d.default, (t(2, 3, 9, 8, grad=True), t(3, 1, 3, 3, grad=True), None, *CONF,
                                           rung)
    yield A.pointwise_conv2d.default, (t(2, 3, 5, 4, grad=True), t(4, 3, 1, 1, grad=True), None, "naive")
    yield A.atrous_conv2d.default, (t(2, 3, 9, 8, grad=True), t(4, 3, 3, 2, grad=True), None, *CONF, "naive")
    yield A.separable_conv2d.default, (t(2, 6, 11, 9), t(6, 1, 3, 3), t(6), t(4, 6, 1, 1), None, [1, 1],
                                       [2, 2], [2, 2], "relu")


def _params():
    # Tensors are built inside the test: a skipped CUDA case must not touch the GPU.
    names = [str(op).removeprefix("atrous.").removesuffix(".default") for op, _ in samples("cpu")]
    return [device_param(device, i, id=f"{device}-{i}-{name}") for device in ("cpu", "cuda")
            for i, name in enumerate(names)]


@pytest.mark.parametrize("device,index", _params())
def test_opcheck(device, index):
    op, args = list(samples(device))[index]
    torch.library.opcheck(op, args)
