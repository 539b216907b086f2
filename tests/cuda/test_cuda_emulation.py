"""The CUDA operators run on the CPU: csrc/cuda compiled against an emulator, checked against F.conv2d.

CI has no GPU, so the CUDA tests there are skipped; this file still runs the CUDA code, host and
kernels line for line, through tests/cuda/cuda_emulation: the same sources compiled by g++ with
-DATROUS_CUDA_EMULATION, registered as torch.ops.atrous_emu with CPU kernels. CUDA blocks run as
coroutines (csrc/cuda/emulation.h), so shared memory, barriers, tiling, halos, the fallbacks, the
deterministic reductions and the half types are all exercised. Timing, warps and real memory
coherence are not: a GPU check (scripts/gpu_check.sh) remains the final word.

Needs the CUDA toolkit's headers (cuda_fp16.h) and ninja, not a GPU; skipped without a toolkit,
or with ATROUS_SKIP_CUDA_EMULATION=1. The first run compiles for about a minute (cached after).
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

from helpers.conv_cases import ConvCase, conv_cases, lay_out, tolerances
from test_cuda import COMPARE, HALF_TOLERANCE

pytestmark = pytest.mark.filterwarnings("ignore:.*CUDA.*:UserWarning")

if os.environ.get("ATROUS_SKIP_CUDA_EMULATION") == "1":
    pytest.skip("ATROUS_SKIP_CUDA_EMULATION=1", allow_module_level=True)

from cuda_emulation import build  # noqa: E402

if build.toolkit_include() is None:
    pytest.skip("no CUDA toolkit headers (cuda_fp16.h) to build the CPU emulation of the CUDA kernels",
                allow_module_level=True)


@pytest.fixture(scope="module")
def emu():
    build.load()  # a compile error here fails the tests: the CUDA sources must build
    return torch.ops.atrous_emu


RUNGS = {"depthwise": ("naive", "tiled"), "pointwise": ("naive", "tiled"), "dense": ("naive", "im2col")}
NAMES = {"depthwise": "depthwise_conv2d", "pointwise": "pointwise_conv2d", "dense": "atrous_conv2d"}


def emulated(E, kind, algo, x, w, b, gy, stride, padding, dilation):
    """Forward, input, weight and bias gradients, each by its CUDA operator (no autograd here)."""
    name = NAMES[kind]
    if kind == "pointwise":
        y = E.pointwise_conv2d(x, w, b, algo)
        gx = E.pointwise_conv2d_backward_input(gy, w, algo)
        gw = E.pointwise_conv2d_backward_weight(gy, x, algo)
    else:
        conf = (list(stride), list(padding), list(dilation))
        y = getattr(E, name)(x, w, b, *conf, algo)
        gx = getattr(E, name + "_backward_input")(gy, w, list(x.shape), *conf, algo)
        gw = getattr(E, name + "_backward_weight")(gy, x, list(w.shape), *conf, algo)
    return y, gx, gw, E.conv2d_backward_bias(gy)


def reference(kind, x, w, b, gy, stride, padding, dilation):
    x, w, b = (t.detach().double().requires_grad_(True) for t in (x, w, b))
    groups = x.shape[1] if kind == "depthwise" else 1
    y = F.conv2d(x, w, b, stride, padding, dilation, groups)
    return (y.detach(), *torch.autograd.grad(y, (x, w, b), gy.double()))


def check(E, kind, algo, x, w, b, gy, stride, padding, dilation, tol, what):
    got = emulated(E, kind, algo, x, w, b, gy, stride, padding, dilation)
    expected = reference(kind, x, w, b, gy, stride, padding, dilation)
    for name, a, e in zip(("forward", "grad_input", "grad_weight", "grad_bias"), got, expected):
        assert a.shape == e.shape and a.dtype == x.dtype, f"{name} ({what})"
        if e.numel():
            err = (a.double() - e).abs().max().item() / max(1.0, e.abs().max().item())
            assert err <= tol, f"{name}: error {err:.3g} > {tol:g} ({what}, algo={algo})"
    # The documented layout rule: channels_last in, channels_last out (backward: follows grad_output).
    for out, ref in ((got[0], x), (got[1], gy)):
        fmt = torch.channels_last if (ref.is_contiguous(memory_format=torch.channels_last)
                                      and not ref.is_contiguous()) else torch.contiguous_format
        assert out.is_contiguous(memory_format=fmt), what


def run(E, case: ConvCase, algo: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = lay_out(torch.randn(case.n, case.c, case.h, case.w, dtype=case.dtype, generator=gen), case.layout)
    w = torch.randn(*case.weight_shape(), dtype=case.dtype, generator=gen)
    b = torch.randn(case.out_c, dtype=case.dtype, generator=gen)
    y_shape = F.conv2d(torch.zeros(1, case.c, case.h, case.w),
                       torch.zeros(case.out_c, 1 if case.kind == "depthwise" else case.c, case.kh, case.kw),
                       None, case.stride, case.padding, case.dilation,
                       case.c if case.kind == "depthwise" else 1).shape
    gy = lay_out(torch.randn(case.n, *y_shape[1:], dtype=case.dtype, generator=gen), case.layout)
    check(E, case.kind, algo, x, w, b, gy, case.stride, case.padding, case.dilation,
          tolerances(case.dtype)["atol"], str(case))


@pytest.mark.parametrize("kind,algo", [(k, a) for k, rungs in RUNGS.items() for a in rungs])
@settings(max_examples=25)
@given(data=conv_cases("depthwise", dtypes=(torch.float64, torch.float32)))
def test_emulated_cuda_matches_torch(emu, kind, algo, data):
    # The depthwise strategy's geometry (dilations up to 24, strides, odd planes) for every op;
    # pointwise takes its 1x1 shape and dense its groups=1 weight from it.
    case = ConvCase(kind, data.n, data.c, data.out_c if kind == "depthwise" else data.out_c // data.c + 1,
                    data.h, data.w, data.kh, data.kw, data.stride, data.padding, data.dilation, True,
                    data.layout, data.dtype)
    if kind == "pointwise":
        case = ConvCase(kind, data.n, data.c, case.out_c, data.h, data.w, 1, 1, (1, 1), (0, 0), (1, 1), True,
                        data.layout, data.dtype)
    run(emu, case, algo)


@pytest.mark.parametrize("case", COMPARE,
                         ids=lambda c: f"{c[0]}-{c[4]}x{c[5]}-k{c[6][0]}-s{c[7][0]}-d{c[9][0]}-{c[11]}")
@pytest.mark.parametrize("rung", [0, 1], ids=["naive", "fast"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16],
                         ids=["float32", "float16", "bfloat16"])
def test_emulated_cuda_on_the_comparison_cases(emu, case, rung, dtype):
    # The shapes of test_cuda.py (DeepLab rates, large kernels, a halo too big for shared
    # memory), in float32 and in the half types against their tolerance table.
    kind, n, c, c_out, h, w, kernel, stride, padding, dilation, bias, layout = case
    if dtype != torch.float32 and h * w * c > 20000:
        pytest.skip("large case: float32 only, to keep the emulation quick")
    gen = torch.Generator().manual_seed(n * c + h)
    x = lay_out(torch.randn(n, c, h, w, generator=gen).to(dtype), layout)
    wt = torch.randn(c_out, 1 if kind == "depthwise" else c, *kernel, generator=gen).to(dtype)
    b = torch.randn(c_out, generator=gen).to(dtype)
    groups = c if kind == "depthwise" else 1
    y_shape = F.conv2d(x.float(), wt.float(), None, stride, padding, dilation, groups).shape
    gy = lay_out(torch.randn(y_shape, generator=gen).to(dtype), layout)
    tol = 1e-4 if dtype == torch.float32 else HALF_TOLERANCE[dtype]
    check(emu, kind, RUNGS[kind][rung], x, wt, b, gy, stride, padding, dilation, tol, f"{case} {dtype}")


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_emulated_separable(emu, layout, dtype):
    gen = torch.Generator().manual_seed(2)
    x = lay_out(torch.randn(2, 6, 17, 15, generator=gen).to(dtype), layout)
    dw, db = torch.randn(12, 1, 3, 3, generator=gen).to(dtype), torch.randn(12, generator=gen).to(dtype)
    pw, pb = (torch.randn(5, 12, 1, 1, generator=gen) / 4).to(dtype), torch.randn(5, generator=gen).to(dtype)
    y = emu.separable_conv2d(x, dw, db, pw, pb, [1, 2], [3, 3], [3, 2], "relu")
    d = [t.double() for t in (x, dw, db, pw, pb)]
    expected = F.conv2d(F.relu(F.conv2d(d[0], d[1], d[2], (1, 2), 3, (3, 2), groups=6)), d[3], d[4])
    tol = 1e-10 if dtype == torch.float64 else HALF_TOLERANCE[dtype]
    assert (y.double() - expected).abs().max().item() <= tol * max(1.0, expected.abs().max().item())
    assert y.is_contiguous(
        memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format)


def test_emulated_empty_batch_and_bias_gradient(emu):
    x, w = torch.zeros(0, 3, 8, 8), torch.zeros(3, 1, 3, 3)
    assert emu.depthwise_conv2d(x, w, None, [1, 1], [1, 1], [1, 1]).shape == (0, 3, 8, 8)
    assert torch.equal(emu.depthwise_conv2d_backward_weight(x, x, [3, 1, 3, 3], [1, 1], [1, 1], [1, 1]),
                       torch.zeros(3, 1, 3, 3))
    assert torch.equal(emu.conv2d_backward_bias(x), torch.zeros(3))
    gy = torch.randn(3, 5, 70, 70)  # more than one chunk per channel in the two-pass reduction
    torch.testing.assert_close(emu.conv2d_backward_bias(gy.contiguous(memory_format=torch.channels_last)),
                               gy.double().sum((0, 2, 3)).float())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_emulated_gemm_with_the_big_tiles(emu, dtype):
    # 250 x 16899 outputs: 266 tiles of 128 x 128, enough (2 per multiprocessor of the emulated
    # 132) for the 8 x 8-per-thread kernel; ragged in M, N and K (13 = one and a half K steps).
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(1, 13, 131, 129, generator=gen).to(dtype)
    w = torch.randn(250, 13, 1, 1, generator=gen).to(dtype)
    b = torch.randn(250, generator=gen).to(dtype)
    y = emu.pointwise_conv2d(x, w, b, "tiled")
    expected = F.conv2d(x.double(), w.double(), b.double())
    tol = 1e-5 if dtype == torch.float32 else HALF_TOLERANCE[dtype]
    assert (y.double() - expected).abs().max().item() <= tol * expected.abs().max().item()
