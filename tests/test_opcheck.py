"""torch.library.opcheck on every atrous operator: schema, fake kernel, autograd registration, AOT."""

import pytest
import torch

import atrous.ops  # noqa: F401  (registers fake kernels and autograd)

A = torch.ops.atrous


def _t(*shape, layout=torch.contiguous_format, grad=False, seed=0):
    gen = torch.Generator().manual_seed(seed + sum(shape))
    t = torch.randn(*shape, dtype=torch.float64, generator=gen)
    if len(shape) == 4:
        t = t.contiguous(memory_format=layout)
    return t.requires_grad_(grad)


CL = torch.channels_last
CONF = ([2, 1], [3, 1], [3, 2])  # stride, padding, dilation


def samples():
    # (op, args); inputs that require grad exercise the autograd registration.
    yield A.depthwise_conv2d.default, (_t(2, 3, 9, 8, grad=True), _t(6, 1, 3, 2, grad=True), _t(6, grad=True), *CONF)
    yield A.depthwise_conv2d.default, (_t(1, 4, 7, 7, layout=CL), _t(4, 1, 3, 3), None, [1, 1], [6, 6], [6, 6])
    yield A.depthwise_conv2d.default, (_t(0, 3, 9, 8), _t(3, 1, 3, 3), None, [1, 1], [1, 1], [1, 1])
    yield A.depthwise_conv2d_backward_input.default, (_t(2, 6, 5, 8), _t(6, 1, 3, 2), [2, 3, 9, 8], *CONF)
    yield A.depthwise_conv2d_backward_weight.default, (_t(2, 6, 5, 8), _t(2, 3, 9, 8), [6, 1, 3, 2], *CONF)
    yield A.pointwise_conv2d.default, (_t(2, 3, 5, 4, grad=True), _t(4, 3, 1, 1, grad=True), _t(4, grad=True))
    yield A.pointwise_conv2d.default, (_t(2, 3, 5, 4, layout=CL), _t(4, 3, 1, 1), None)
    yield A.pointwise_conv2d_backward_input.default, (_t(2, 4, 5, 4, layout=CL), _t(4, 3, 1, 1))
    yield A.pointwise_conv2d_backward_weight.default, (_t(2, 4, 5, 4), _t(2, 3, 5, 4))
    yield A.atrous_conv2d.default, (_t(2, 3, 9, 8, grad=True), _t(4, 3, 3, 2, grad=True), _t(4, grad=True), *CONF)
    yield A.atrous_conv2d.default, (_t(1, 3, 6, 6, layout=CL), _t(5, 3, 1, 1), None, [1, 1], [0, 0], [1, 1])
    yield A.atrous_conv2d_backward_input.default, (_t(2, 4, 5, 8), _t(4, 3, 3, 2), [2, 3, 9, 8], *CONF)
    yield A.atrous_conv2d_backward_weight.default, (_t(2, 4, 5, 8), _t(2, 3, 9, 8), [4, 3, 3, 2], *CONF)
    yield A.conv2d_backward_bias.default, (_t(2, 4, 5, 7, grad=True),)
    # Explicit kernel rungs (the algo argument).
    yield A.depthwise_conv2d.default, (_t(2, 3, 9, 8, grad=True), _t(3, 1, 3, 3, grad=True), None, *CONF, "nhwc")
    yield A.depthwise_conv2d.default, (_t(2, 3, 9, 8, grad=True), _t(3, 1, 3, 3, grad=True), None, *CONF, "stencil")
    yield A.pointwise_conv2d.default, (_t(2, 3, 5, 4, grad=True), _t(4, 3, 1, 1, grad=True), None, "naive")
    yield A.atrous_conv2d.default, (_t(2, 3, 9, 8, grad=True), _t(4, 3, 3, 2, grad=True), None, *CONF, "naive")


@pytest.mark.parametrize("op,args", list(samples()), ids=lambda v: str(v) if not isinstance(v, tuple) else "")
def test_opcheck(op, args):
    torch.library.opcheck(op, args)
