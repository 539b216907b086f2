"""torch.compile(fullgraph=True) and torch.export of a small module built on the atrous ops."""

import pytest
import torch
import torch.nn as nn

import atrous.ops as ops

from helpers.devices import DEVICES


class SeparableBlock(nn.Module):
    """Depthwise atrous -> pointwise -> dense atrous, with a residual sum: every op and its backward."""

    def __init__(self, channels: int = 4, rate: int = 2):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.rate = rate
        self.dw = nn.Parameter(torch.randn(channels, 1, 3, 3, generator=gen))
        self.pw = nn.Parameter(torch.randn(channels, channels, 1, 1, generator=gen) / channels)
        self.pw_bias = nn.Parameter(torch.randn(channels, generator=gen))
        self.dense = nn.Parameter(torch.randn(channels, channels, 3, 3, generator=gen) / channels)

    def forward(self, x):
        y = ops.depthwise_conv2d(x, self.dw, None, 1, self.rate, self.rate)
        y = torch.relu(ops.pointwise_conv2d(y, self.pw, self.pw_bias))
        return x + ops.atrous_conv2d(y, self.dense, None, 1, "same", 2 * self.rate)


def _forward_backward(module, x):
    x = x.detach().requires_grad_(True)
    module.zero_grad()
    y = module(x)
    y.square().sum().backward()
    return y.detach(), x.grad, [p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_matches_eager(device):
    torch._dynamo.reset()
    module = SeparableBlock().to(device)
    x = torch.randn(2, 4, 13, 11).to(device)
    compiled = torch.compile(module, fullgraph=True, backend="inductor")
    y_e, gx_e, gp_e = _forward_backward(module, x)
    y_c, gx_c, gp_c = _forward_backward(compiled, x)
    torch.testing.assert_close(y_c, y_e)
    torch.testing.assert_close(gx_c, gx_e)
    for a, b in zip(gp_c, gp_e):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_compile_dynamic_shapes(device):
    torch._dynamo.reset()
    module = SeparableBlock(rate=3).to(device)
    compiled = torch.compile(module, fullgraph=True, dynamic=True, backend="aot_eager")
    for size in (9, 14):
        x = torch.randn(1, 4, size, size + 1).to(device)
        torch.testing.assert_close(compiled(x), module(x))


@pytest.mark.parametrize("device", DEVICES)
def test_export_graph_contains_our_ops(device):
    module = SeparableBlock().to(device)
    x = torch.randn(1, 4, 10, 10).to(device)
    program = torch.export.export(module, (x,))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert {"atrous.depthwise_conv2d.default", "atrous.pointwise_conv2d.default",
            "atrous.atrous_conv2d.default"} <= targets
    assert not any("convolution" in t for t in targets)
    torch.testing.assert_close(program.module()(x), module(x))


@pytest.mark.parametrize("device", DEVICES)
def test_compile_unbatched_input_matches_eager_and_torch(device):
    # A (C, H, W) input through torch.compile: the wrappers add the batch of one inside the graph.
    torch._dynamo.reset()
    module = SeparableBlock().to(device)
    x = torch.randn(4, 13, 11).to(device)
    compiled = torch.compile(module, fullgraph=True, backend="inductor")
    y_e, gx_e, gp_e = _forward_backward(module, x)
    y_c, gx_c, gp_c = _forward_backward(compiled, x)
    assert y_c.shape == x.shape and gx_c.shape == x.shape
    torch.testing.assert_close(y_c, y_e)
    torch.testing.assert_close(gx_c, gx_e)
    for a, b in zip(gp_c, gp_e):
        torch.testing.assert_close(a, b)
    # ... and eager unbatched equals the batched op on a batch of one.
    torch.testing.assert_close(y_e, module(x.unsqueeze(0)).squeeze(0).detach())


def test_unbatched_input_on_meta_and_export():
    # Fake kernels (meta) give the unbatched shape; torch.export keeps the atrous ops.
    module = SeparableBlock()
    y = module.to("meta")(torch.empty(4, 10, 9, device="meta"))
    assert y.shape == (4, 10, 9) and y.device.type == "meta"
    module = SeparableBlock()
    x = torch.randn(4, 10, 9)
    program = torch.export.export(module, (x,))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert "atrous.depthwise_conv2d.default" in targets
    torch.testing.assert_close(program.module()(x), module(x))
