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


RUNGS = {"depthwise": ("naive", "tiled", "nhwc"), "pointwise": ("naive", "tiled", "mma"),
         "dense": ("naive", "im2col", "implicit")}
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


# ---- the tensor-core GEMM rung (gemm_mma_kernels.cu) ------------------------------------------
# C = 16 takes the 16-byte cp.async path for the weight (and, channels_last, for the image);
# C = 13 the element-wise staging; 70 output channels and 99 pixels leave ragged tiles.
MMA_SHAPES = [(2, 16, 70, 9, 11), (1, 13, 70, 9, 11)]


def _pointwise_by(E, algo, x, w, b, gy):
    return (E.pointwise_conv2d(x, w, b, algo), E.pointwise_conv2d_backward_input(gy, w, algo),
            E.pointwise_conv2d_backward_weight(gy, x, algo))


def _pointwise_reference(x, w, b, gy):
    x, w, b = (t.detach().double().requires_grad_(True) for t in (x, w, b))
    y = F.conv2d(x, w, b)
    return (y.detach(), *torch.autograd.grad(y, (x, w), gy.double()))


def _mma_case(shape, layout, dtype, seed=5):
    n, c, c_out, h, w = shape
    gen = torch.Generator().manual_seed(seed)
    x = lay_out(torch.randn(n, c, h, w, generator=gen).to(dtype), layout)
    wt = (torch.randn(c_out, c, 1, 1, generator=gen) / 4).to(dtype)
    b = torch.randn(c_out, generator=gen).to(dtype)
    gy = lay_out(torch.randn(n, c_out, h, w, generator=gen).to(dtype), layout)
    return x, wt, b, gy


def _rel_errors(got, expected):
    return [((a.double() - e).abs().max() / max(1.0, e.abs().max().item())).item()
            for a, e in zip(got, expected)]


@pytest.mark.parametrize("shape", MMA_SHAPES, ids=["c16-vector", "c13-scalar"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_emulated_mma_gemm_half_types(emu, shape, layout, dtype):
    x, w, b, gy = _mma_case(shape, layout, dtype)
    got = _pointwise_by(emu, "mma", x, w, b, gy)
    expected = _pointwise_reference(x, w, b, gy)
    for name, err in zip(("forward", "grad_input", "grad_weight"), _rel_errors(got, expected)):
        assert err <= HALF_TOLERANCE[dtype], f"{name}: {err:.3g} ({layout}, {shape})"
    assert got[0].is_contiguous(memory_format=torch.channels_last if layout == "channels_last"
                                else torch.contiguous_format)


@pytest.mark.parametrize("shape", MMA_SHAPES, ids=["c16-vector", "c13-scalar"])
def test_emulated_mma_gemm_float32_is_tf32_only_when_torch_allows_it(emu, shape):
    x, w, b, gy = _mma_case(shape, "channels_last", torch.float32)
    expected = _pointwise_reference(x, w, b, gy)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=True):
        tf32 = _pointwise_by(emu, "mma", x, w, b, gy)
        auto = _pointwise_by(emu, "auto", x, w, b, gy)
    # TF32 keeps 10 mantissa bits (operands rounded by 2^-11 relative at most); sums in float32.
    errors = _rel_errors(tf32, expected)
    assert max(errors) <= 2e-3, errors
    assert max(errors) > 1e-5, "float32 through the tensor cores should show TF32 rounding"
    assert all(torch.equal(a, m) for a, m in zip(auto, tf32)), "auto takes the tensor cores with TF32 allowed"
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # the exact rung instead
        exact = _pointwise_by(emu, "mma", x, w, b, gy)
        tiled = _pointwise_by(emu, "tiled", x, w, b, gy)
    assert all(torch.equal(e, t) for e, t in zip(exact, tiled))
    assert max(_rel_errors(exact, expected)) <= 1e-5


def test_emulated_mma_gemm_is_deterministic(emu):
    x, w, b, gy = _mma_case(MMA_SHAPES[0], "contiguous", torch.bfloat16)
    first, second = _pointwise_by(emu, "mma", x, w, b, gy), _pointwise_by(emu, "mma", x, w, b, gy)
    assert all(torch.equal(f, s) for f, s in zip(first, second))


# ---- the nhwc depthwise rung (depthwise_nhwc_kernels.cu) and split-K -------------------------
@pytest.mark.parametrize("dtype,channels", [(torch.float32, 8), (torch.float64, 6), (torch.float16, 16)],
                         ids=["float32", "float64", "float16"])
@pytest.mark.parametrize("stride,dilation", [(1, 1), (1, 6), (2, 2), (1, 18)],
                         ids=["d1", "d6", "s2d2", "d18"])
def test_emulated_nhwc_depthwise(emu, dtype, channels, stride, dilation):
    # channels a multiple of the 16-byte vector (4 floats, 2 doubles, 8 halves) in channels_last:
    # the nhwc kernel runs (backward input too at stride 1); d18 reaches past the 13 x 11 plane.
    gen = torch.Generator().manual_seed(channels + dilation)
    x = lay_out(torch.randn(2, channels, 13, 11, generator=gen).to(dtype), "channels_last")
    w = torch.randn(channels, 1, 3, 3, generator=gen).to(dtype)
    b = torch.randn(channels, generator=gen).to(dtype)
    y_shape = F.conv2d(x.float(), w.float(), None, stride, dilation, dilation, channels).shape
    gy = lay_out(torch.randn(y_shape, generator=gen).to(dtype), "channels_last")
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: HALF_TOLERANCE[torch.float16]}[dtype]
    conf = ([stride] * 2, [dilation] * 2, [dilation] * 2)
    check(emu, "depthwise", "nhwc", x, w, b, gy, *conf, tol, f"nhwc {dtype} s{stride} d{dilation}")
    # It is a different kernel from tiled (vectors of channels, not planes): same values, to rounding.
    y_tiled = emu.depthwise_conv2d(x, w, b, *conf, "tiled")
    torch.testing.assert_close(emu.depthwise_conv2d(x, w, b, *conf, "nhwc").double(), y_tiled.double(),
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("layout,n,hw", [("channels_last", 2, 64), ("contiguous", 3, 40)],
                         ids=["one-matrix-split", "per-image-split"])
@pytest.mark.parametrize("algo", ["naive", "tiled", "mma"])
def test_emulated_pointwise_weight_gradient_split_k(emu, layout, n, hw, algo):
    # channels_last: one matrix of 2*64*64 = 8192 terms, cut in 2 chunks of 4096 (split_k_count);
    # NCHW with 3 images: the images are the chunks. Partials are summed in order: bit-equal reruns.
    gen = torch.Generator().manual_seed(n)
    x = lay_out(torch.randn(n, 8, hw, hw, generator=gen), layout).to(torch.bfloat16)
    gy = lay_out(torch.randn(n, 12, hw, hw, generator=gen), layout).to(torch.bfloat16)
    got = emu.pointwise_conv2d_backward_weight(gy, x, algo)
    again = emu.pointwise_conv2d_backward_weight(gy, x, algo)
    assert torch.equal(got, again)
    expected = torch.einsum("nohw,nchw->oc", gy.double(), x.double())[:, :, None, None]
    err = ((got.double() - expected).abs().max() / expected.abs().max()).item()
    assert err <= HALF_TOLERANCE[torch.bfloat16], err


@pytest.mark.parametrize("kernel,dilation", [(1, 1), (3, 2)], ids=["1x1-no-im2col", "3x3-d2"])
def test_emulated_dense_weight_gradient_split_k(emu, kernel, dilation):
    # Three images: each image's product is a partial, summed in image order (bit-equal reruns).
    gen = torch.Generator().manual_seed(kernel)
    x = torch.randn(3, 5, 9, 8, generator=gen).to(torch.bfloat16)
    pad = dilation * (kernel // 2)
    gy = torch.randn(3, 6, 9, 8, generator=gen).to(torch.bfloat16)
    conf = ([1, 1], [pad, pad], [dilation, dilation])
    got = emu.atrous_conv2d_backward_weight(gy, x, [6, 5, kernel, kernel], *conf, "im2col")
    assert torch.equal(got, emu.atrous_conv2d_backward_weight(gy, x, [6, 5, kernel, kernel], *conf, "im2col"))
    w = torch.zeros(6, 5, kernel, kernel, dtype=torch.float64, requires_grad=True)
    expected, = torch.autograd.grad(F.conv2d(x.double(), w, None, 1, pad, dilation), w, gy.double())
    err = ((got.double() - expected).abs().max() / expected.abs().max()).item()
    assert err <= HALF_TOLERANCE[torch.bfloat16], err
