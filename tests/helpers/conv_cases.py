"""Shared test helpers: hypothesis strategies for convolution cases and the oracle comparison."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from hypothesis import strategies as st

import atrous.ops as ops
import atrous.reference as reference

from .devices import DEVICES, device_algos, ladder  # noqa: F401  (re-exported for the tests)

# Sizes that catch real bugs: 1 (degenerate), odd sizes with vector tails (33, 65), small primes.
SIZES = [1, 2, 3, 5, 7, 8, 11, 16, 17, 33, 65]
DILATIONS = [1, 2, 3, 4, 6, 12, 18, 24]
KERNELS = [1, 2, 3, 5, 7]
LAYOUTS = ["contiguous", "channels_last", "strided"]


OPS = {
    "depthwise": (ops.depthwise_conv2d, reference.depthwise_conv2d),
    "pointwise": (ops.pointwise_conv2d, reference.pointwise_conv2d),
    "dense": (ops.atrous_conv2d, reference.atrous_conv2d),
}


@dataclass
class ConvCase:
    kind: str
    n: int
    c: int
    out_c: int
    h: int
    w: int
    kh: int
    kw: int
    stride: tuple
    padding: tuple
    dilation: tuple
    bias: bool
    layout: str
    dtype: torch.dtype
    unbatched: bool = False  # input (C, H, W), as F.conv2d accepts; n is then ignored

    def input_shape(self) -> tuple:
        return (self.c, self.h, self.w) if self.unbatched else (self.n, self.c, self.h, self.w)

    def conv_kwargs(self) -> dict:
        if self.kind == "pointwise":
            return {}
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}

    def torch_kwargs(self) -> dict:
        kw = {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}
        if self.kind == "depthwise":
            kw["groups"] = self.c
        return kw

    def weight_shape(self) -> tuple:
        in_per_group = 1 if self.kind == "depthwise" else self.c
        return (self.out_c, in_per_group, self.kh, self.kw)


def lay_out(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values in another memory layout (a 3-D (C, H, W) tensor's channels_last is HWC)."""
    if layout == "channels_last" and t.dim() == 3:
        return t.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # (C, H, W) view of HWC memory
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "strided":  # a non-contiguous view: every other column of a wider tensor
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
        wide[..., ::2] = t
        return wide[..., ::2]
    return t.contiguous()


@st.composite
def axis_params(draw, size: int, kernel: int):
    """(stride, padding, dilation) along one axis, with a padded input at least the dilated kernel.

    Padding is drawn from the smallest legal value upward, so cases with dilation*(k-1) >= size
    (the kernel wider than the unpadded input) appear whenever the dilation is large.
    """
    stride = draw(st.sampled_from([1, 1, 2, 3]))
    dilation = draw(st.sampled_from(DILATIONS)) if kernel > 1 else draw(st.sampled_from([1, 2]))
    k_eff = dilation * (kernel - 1) + 1
    min_pad = max(0, -(-(k_eff - size) // 2))
    padding = draw(st.integers(min_pad, min_pad + 3) | st.just(max(min_pad, (k_eff - 1) // 2)))
    return stride, padding, dilation


@st.composite
def conv_cases(draw, kind: str, dtypes=(torch.float64,), max_batch: int = 3, channels=None,
               unbatched: bool = False):
    """A random convolution. `channels`: a list to draw C from (default 1..4); the vectorised
    rungs need C of a vector or more (16, 32, 64 floats) with tails to exercise their blocks.
    `unbatched`: every input is (C, H, W), as F.conv2d accepts."""
    n = draw(st.integers(0, max_batch))
    c = draw(st.sampled_from(channels)) if channels else draw(st.integers(1, 4))
    h, w = draw(st.sampled_from(SIZES)), draw(st.sampled_from(SIZES))
    if kind == "pointwise":
        kh = kw = 1
        sh = sw = dh = dw = 1
        ph = pw = 0
    else:
        kh, kw = draw(st.sampled_from(KERNELS)), draw(st.sampled_from(KERNELS))
        sh, ph, dh = draw(axis_params(h, kh))
        sw, pw, dw = draw(axis_params(w, kw))
    if kind == "depthwise":
        out_c = c * draw(st.integers(1, 3))  # depth multiplier 1..3
    else:
        out_c = draw(st.integers(1, 5))
    return ConvCase(kind, n, c, out_c, h, w, kh, kw, (sh, sw), (ph, pw), (dh, dw),
                    draw(st.booleans()), draw(st.sampled_from(LAYOUTS)), draw(st.sampled_from(dtypes)),
                    unbatched)


def tolerances(dtype: torch.dtype) -> dict:
    # float64 agrees to ~1e-10; float32 to ~1e-4 relative (atol scaled by the output's size in
    # assert_relative below).
    return {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}


def assert_relative(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str):
    """max |actual - expected| <= tol * max(1, max |expected|): relative to the tensor's scale,
    so sums of many terms (weight gradients over a batch) are judged fairly."""
    actual, expected = actual.cpu(), expected.cpu()  # ours may have run on the GPU
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    if expected.numel() == 0:
        return
    tol = tolerances(dtype)["atol"]
    scale = max(1.0, expected.abs().max().item())
    err = (actual - expected).abs().max().item()
    assert err <= tol * scale, f"{what}: max abs error {err:.3g} > {tol:g} * {scale:.3g}"


def run_case(case: ConvCase, seed: int = 0, algo: str = "auto", device: str = "cpu"):
    """Forward and all gradients of ours (kernel rung `algo`, on `device`), F.conv2d and the
    reference (both on the CPU). The same values are drawn on the CPU for every device."""
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(*case.input_shape(), dtype=case.dtype, generator=gen)
    w0 = torch.randn(*case.weight_shape(), dtype=case.dtype, generator=gen)
    b0 = torch.randn(case.out_c, dtype=case.dtype, generator=gen) if case.bias else None
    ours, ref = OPS[case.kind]

    def grads(fn, layout, dev="cpu"):
        x = lay_out(x0.to(dev), layout).requires_grad_(True)
        w = w0.to(dev, copy=True).requires_grad_(True)
        b = b0.to(dev, copy=True).requires_grad_(True) if b0 is not None else None
        y = fn(x, w, b)
        gy = torch.randn(y.shape, dtype=case.dtype, generator=torch.Generator().manual_seed(seed + 1)).to(dev)
        inputs = (x, w) if b is None else (x, w, b)
        return y, torch.autograd.grad(y, inputs, gy)

    y, g = grads(lambda x, w, b: ours(x, w, b, **case.conv_kwargs(), algo=algo), case.layout, device)
    y_t, g_t = grads(lambda x, w, b: F.conv2d(x, w, b, **case.torch_kwargs()), "contiguous")
    if case.unbatched:  # the reference is 4-D only: a batch of one
        y_r, g_r = grads(lambda x, w, b: ref(x.unsqueeze(0), w, b, **case.conv_kwargs()).squeeze(0),
                         "contiguous")
    else:
        y_r, g_r = grads(lambda x, w, b: ref(x, w, b, **case.conv_kwargs()), "contiguous")
    return (y, g), (y_t, g_t), (y_r, g_r)


def check_case(case: ConvCase, seed: int = 0, algo: str = "auto", device: str = "cpu"):
    """Ours equals F.conv2d and the reference: forward, grad input, grad weight, grad bias."""
    (y, g), (y_t, g_t), (y_r, g_r) = run_case(case, seed, algo, device)
    assert y.device.type == device and all(t.device.type == device for t in g)
    names = ["forward", "grad_input", "grad_weight", "grad_bias"]
    for name, a, t, r in zip(names, (y, *g), (y_t, *g_t), (y_r, *g_r)):
        assert_relative(a, t, case.dtype, f"{name} vs F.conv2d ({case}, algo={algo}, {device})")
        assert_relative(a, r, case.dtype, f"{name} vs reference ({case}, algo={algo}, {device})")
    if case.unbatched:
        assert y.dim() == 3 and g[0].dim() == 3, "unbatched in, unbatched out (as F.conv2d)"
        return
    # Documented layout rule: channels_last in, channels_last out.
    if case.layout == "channels_last" and case.c > 1 and case.h * case.w > 1 and y.numel() > 0:
        assert y.is_contiguous(memory_format=torch.channels_last), "output should be channels_last"
    elif case.layout != "channels_last":
        assert y.is_contiguous(), "output should be NCHW-contiguous"
