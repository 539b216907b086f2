"""CUDA specifics: CUDA kernels against the CPU ones, half-type tolerances, dtypes, streams, 64-bit indices.

The property, gradcheck, opcheck and compile tests of every op run on each device already (the
`device` parameter); this file holds what only concerns CUDA. Tests that need a GPU are marked
`cuda` and skip with the reason where none is visible; the dtype and ladder rules of CUDA tensors
are checked without a GPU too, through fake CUDA tensors (what torch.compile traces with).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

import atrous.ops as ops

from helpers.conv_cases import lay_out
from helpers.devices import CUDA_SKIP, requires_cuda

A = torch.ops.atrous

# --------------------------------------------------------------------------------------------
# Rules for CUDA tensors, checked without a GPU (fake CUDA tensors)
# --------------------------------------------------------------------------------------------


def test_each_device_has_its_own_ladder():
    assert ops.algorithms("depthwise_conv2d") == ("naive", "rows", "stencil", "nhwc")
    assert ops.algorithms("depthwise_conv2d", "cpu") == ops.algorithms("depthwise_conv2d")
    assert ops.algorithms("depthwise_conv2d", "cuda") == ("naive", "tiled", "nhwc")
    assert ops.algorithms("pointwise_conv2d", torch.device("cuda", 0)) == ("naive", "tiled", "mma")
    assert ops.algorithms("atrous_conv2d", "cuda:0") == ("naive", "im2col", "implicit")
    with pytest.raises(ValueError, match=r"expected device to be one of \['cpu', 'cuda'\], got 'tpu'"):
        ops.algorithms("depthwise_conv2d", "tpu")


HALF_TYPES = (torch.float16, torch.bfloat16)
# Fake CUDA tensors need a CUDA build of torch (not a GPU).
fake_cuda = pytest.mark.skipif(torch.version.cuda is None,
                               reason="a CPU-only build of torch has no (fake) CUDA tensors")
CUDA_DTYPES = "torch.float32, torch.float64, torch.float16 or torch.bfloat16"


def _every_op(device, dtype):
    """Calls every operator (forward and backward) once on tensors of `device` and `dtype`."""
    def t(*shape):
        return torch.zeros(*shape, device=device, dtype=dtype)

    conf = ([1, 1], [2, 2], [2, 2])
    return [
        A.depthwise_conv2d(t(1, 3, 8, 8), t(6, 1, 3, 3), t(6), *conf),
        A.depthwise_conv2d_backward_input(t(1, 6, 8, 8), t(6, 1, 3, 3), [1, 3, 8, 8], *conf),
        A.depthwise_conv2d_backward_weight(t(1, 6, 8, 8), t(1, 3, 8, 8), [6, 1, 3, 3], *conf),
        A.pointwise_conv2d(t(1, 3, 8, 8), t(4, 3, 1, 1), t(4)),
        A.pointwise_conv2d_backward_input(t(1, 4, 8, 8), t(4, 3, 1, 1)),
        A.pointwise_conv2d_backward_weight(t(1, 4, 8, 8), t(1, 3, 8, 8)),
        A.atrous_conv2d(t(1, 3, 8, 8), t(4, 3, 3, 3), t(4), *conf),
        A.atrous_conv2d_backward_input(t(1, 4, 8, 8), t(4, 3, 3, 3), [1, 3, 8, 8], *conf),
        A.atrous_conv2d_backward_weight(t(1, 4, 8, 8), t(1, 3, 8, 8), [4, 3, 3, 3], *conf),
        A.conv2d_backward_bias(t(1, 4, 8, 8)),
        A.separable_conv2d(t(1, 3, 8, 8), t(3, 1, 3, 3), t(3), t(4, 3, 1, 1), t(4), *conf, "relu"),
    ]


@fake_cuda
@pytest.mark.parametrize("dtype", HALF_TYPES)
def test_fake_cuda_tensors_take_the_half_types(dtype):
    with FakeTensorMode():
        for out in _every_op("cuda", dtype):
            assert out.dtype == dtype and out.device.type == "cuda"


@fake_cuda
def test_fake_cuda_tensors_name_the_cuda_dtypes_and_ladder():
    with FakeTensorMode():
        x = torch.zeros(1, 3, 8, 8, device="cuda", dtype=torch.int32)
        w = torch.zeros(3, 1, 3, 3, device="cuda")
        with pytest.raises(RuntimeError,
                           match=f"atrous.depthwise_conv2d: expected input of dtype {CUDA_DTYPES}, got Int"):
            A.depthwise_conv2d(x, w, None, [1, 1], [1, 1], [1, 1])
        with pytest.raises(RuntimeError,
                           match="expected algo to be one of 'auto', 'naive', 'tiled', 'nhwc', "
                                 "got 'stencil'"):
            A.depthwise_conv2d(x.float(), w, None, [1, 1], [1, 1], [1, 1], "stencil")
        with pytest.raises(RuntimeError,
                           match="expected algo to be one of 'auto', 'naive', 'im2col', 'implicit', "
                                 "got 'blocked'"):
            A.atrous_conv2d(x.float(), torch.zeros(4, 3, 3, 3, device="cuda"), None, [1, 1], [1, 1], [1, 1],
                            "blocked")


@pytest.mark.parametrize("dtype", HALF_TYPES)
def test_cpu_still_rejects_the_half_types(dtype):
    with pytest.raises(RuntimeError, match="expected input of dtype torch.float32 or torch.float64, got"):
        _every_op("cpu", dtype)


# --------------------------------------------------------------------------------------------
# Our CUDA kernels against our CPU kernels
# --------------------------------------------------------------------------------------------

# (kind, N, C, C_out, H, W, kernel, stride, padding, dilation, bias, layout): DeepLab-like rates
# on odd planes, strides, even and large kernels, depth multiplier 2, a dilated kernel wider than
# the input, and a dilation so large that the tiled kernel's halo cannot fit shared memory.
COMPARE = [
    ("depthwise", 2, 16, 16, 33, 33, (3, 3), (1, 1), (1, 1), (1, 1), True, "contiguous"),
    ("depthwise", 2, 16, 32, 33, 33, (3, 3), (1, 1), (6, 6), (6, 6), False, "channels_last"),
    ("depthwise", 1, 8, 8, 33, 33, (3, 3), (1, 1), (24, 24), (24, 24), True, "strided"),
    ("depthwise", 1, 4, 4, 65, 65, (3, 3), (1, 1), (36, 36), (36, 36), True, "contiguous"),
    ("depthwise", 1, 3, 3, 33, 33, (3, 3), (1, 1), (300, 300), (300, 300), True, "contiguous"),
    ("depthwise", 2, 8, 8, 65, 64, (3, 3), (2, 2), (1, 1), (1, 1), True, "contiguous"),
    ("depthwise", 2, 8, 8, 17, 16, (5, 5), (2, 1), (3, 2), (2, 3), True, "channels_last"),
    ("depthwise", 2, 6, 12, 20, 21, (7, 2), (1, 3), (4, 1), (1, 2), False, "contiguous"),
    ("depthwise", 1, 5, 5, 129, 129, (3, 3), (1, 1), (1, 1), (1, 1), False, "contiguous"),
    ("pointwise", 2, 64, 48, 33, 33, (1, 1), (1, 1), (0, 0), (1, 1), True, "contiguous"),
    ("pointwise", 3, 70, 130, 9, 7, (1, 1), (1, 1), (0, 0), (1, 1), False, "channels_last"),
    ("pointwise", 2, 17, 5, 13, 11, (1, 1), (1, 1), (0, 0), (1, 1), True, "strided"),
    ("dense", 2, 16, 24, 33, 33, (3, 3), (1, 1), (2, 2), (2, 2), True, "contiguous"),
    ("dense", 2, 8, 8, 21, 19, (3, 3), (2, 1), (3, 1), (3, 1), False, "channels_last"),
    ("dense", 1, 5, 7, 9, 9, (3, 3), (1, 1), (12, 12), (12, 12), True, "strided"),
    ("dense", 2, 9, 4, 7, 5, (1, 1), (1, 1), (0, 0), (1, 1), True, "channels_last"),
]

OPS = {"depthwise": ops.depthwise_conv2d, "pointwise": ops.pointwise_conv2d, "dense": ops.atrous_conv2d}
LADDER = {"depthwise": "depthwise_conv2d", "pointwise": "pointwise_conv2d", "dense": "atrous_conv2d"}


def _outputs(case, device, dtype, algo):
    kind, n, c, c_out, h, w, kernel, stride, padding, dilation, bias, layout = case
    gen = torch.Generator().manual_seed(n * c + h)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64).to(dtype)
    wt = torch.randn(c_out, 1 if kind == "depthwise" else c, *kernel, generator=gen,
                     dtype=torch.float64).to(dtype)
    b = torch.randn(c_out, generator=gen, dtype=torch.float64).to(dtype) if bias else None
    x = lay_out(x.to(device), layout).requires_grad_(True)
    wt = wt.to(device).requires_grad_(True)
    b = b.to(device).requires_grad_(True) if b is not None else None
    kwargs = {} if kind == "pointwise" else dict(stride=stride, padding=padding, dilation=dilation)
    y = OPS[kind](x, wt, b, algo=algo, **kwargs)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    gy = gy.to(dtype).to(device)
    grads = torch.autograd.grad(y, [t for t in (x, wt, b) if t is not None], gy)
    return [t.detach().cpu() for t in (y, *grads)], y


def _rung(case, rung):
    """The CUDA algo of rung `rung` of the case's op (v2: nhwc depthwise, mma GEMM; float32 on the
    mma rung stays exact here, TF32 being off in the tests, see conftest.py)."""
    ladder = ops.algorithms(LADDER[case[0]], "cuda")
    if rung >= len(ladder):
        pytest.skip(f"{LADDER[case[0]]} has {len(ladder)} CUDA rungs, no rung {rung}")
    return ladder[rung]


def _rel_err(a, b):
    scale = max(1.0, b.abs().max().item()) if b.numel() else 1.0
    return (a.double() - b.double()).abs().max().item() / scale if b.numel() else 0.0


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)],
                         ids=["float64", "float32"])
@pytest.mark.parametrize("case", COMPARE,
                         ids=lambda c: f"{c[0]}-{c[4]}x{c[5]}-k{c[6][0]}-s{c[7][0]}-d{c[9][0]}-{c[11]}")
@pytest.mark.parametrize("rung", [0, 1, 2], ids=["naive", "fast", "v2"])
@pytest.mark.cuda
@requires_cuda
def test_cuda_kernels_match_our_cpu_kernels(case, dtype, tol, rung):
    algo = _rung(case, rung)
    expected, _ = _outputs(case, "cpu", dtype, "auto")
    got, y = _outputs(case, "cuda", dtype, algo)
    for name, a, e in zip(("forward", "grad_input", "grad_weight", "grad_bias"), got, expected):
        assert a.shape == e.shape and a.dtype == e.dtype
        assert _rel_err(a, e) <= tol, f"{name}: CUDA {algo} vs CPU, error {_rel_err(a, e):.3g} > {tol:g}"
    channels_last = case[11] == "channels_last" and case[2] > 1
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_cuda_gemm_big_tiles_match_cpu(layout):
    # Batch 8 of the middle-flow pointwise layer: enough tiles for the 128 x 128 GEMM kernel.
    gen = torch.Generator().manual_seed(8)
    x = lay_out(torch.randn(8, 728, 33, 33, generator=gen), layout)
    w, b = torch.randn(728, 728, 1, 1, generator=gen) / 27, torch.randn(728, generator=gen)
    xg, wg, bg = (t.cuda().requires_grad_(True) for t in (x, w, b))
    y = ops.pointwise_conv2d(xg, wg, bg)
    gy = torch.randn(y.shape, generator=gen)
    grads = torch.autograd.grad(y, (xg, wg, bg), gy.cuda())
    xc, wc, bc = (t.clone().requires_grad_(True) for t in (x, w, b))
    yc = ops.pointwise_conv2d(xc, wc, bc)
    expected = (yc, *torch.autograd.grad(yc, (xc, wc, bc), gy))
    for got, want in zip((y, *grads), expected):
        assert _rel_err(got.detach().cpu(), want.detach()) <= 1e-4


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_cuda_separable_matches_cpu(layout):
    gen = torch.Generator().manual_seed(3)
    x = lay_out(torch.randn(2, 32, 33, 33, generator=gen), layout)
    dw, db = torch.randn(64, 1, 3, 3, generator=gen), torch.randn(64, generator=gen)
    pw, pb = torch.randn(48, 64, 1, 1, generator=gen) / 8, torch.randn(48, generator=gen)
    args = (1, 6, 6, "relu")
    expected = ops.separable_conv2d(x, dw, db, pw, pb, *args)
    got = ops.separable_conv2d(*(t.cuda() for t in (x, dw, db, pw, pb)), *args)
    assert _rel_err(got.cpu(), expected) <= 1e-4
    assert got.is_contiguous(
        memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format)


# --------------------------------------------------------------------------------------------
# float16 and bfloat16 (CUDA only): inputs and outputs in the half type, sums in float32
# --------------------------------------------------------------------------------------------

# Largest error relative to the tensor's largest |value|, against exact (float64) arithmetic on the
# same half-precision inputs. u is the unit roundoff: 2^-11 for float16 (10-bit mantissa), 2^-8
# for bfloat16 (7-bit). Results are rounded once (u/2 each), but the dense input gradient and the
# separable op also round an intermediate (the column buffer, the depthwise output) to the half
# type, so the table allows 4u. float32 accumulation adds about 1e-7: nothing at this scale.
HALF_TOLERANCE = {torch.float16: 4 * 2.0 ** -11, torch.bfloat16: 4 * 2.0 ** -8}  # 1.95e-3, 1.56e-2


@pytest.mark.parametrize("dtype", HALF_TYPES, ids=["float16", "bfloat16"])
@pytest.mark.parametrize("case", COMPARE,
                         ids=lambda c: f"{c[0]}-{c[4]}x{c[5]}-k{c[6][0]}-s{c[7][0]}-d{c[9][0]}-{c[11]}")
@pytest.mark.parametrize("rung", [0, 1, 2], ids=["naive", "fast", "v2"])
@pytest.mark.cuda
@requires_cuda
def test_half_types_within_the_tolerance_table(case, dtype, rung):
    algo = _rung(case, rung)
    got, y = _outputs(case, "cuda", dtype, algo)
    assert y.dtype == dtype
    # The reference: float64 on the CPU from the very same half-precision values.
    kind, n, c, c_out, h, w, kernel, stride, padding, dilation, bias, layout = case
    gen = torch.Generator().manual_seed(n * c + h)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64).to(dtype).double().requires_grad_(True)
    wt = torch.randn(c_out, 1 if kind == "depthwise" else c, *kernel, generator=gen, dtype=torch.float64)
    wt = wt.to(dtype).double().requires_grad_(True)
    b = torch.randn(c_out, generator=gen, dtype=torch.float64) if bias else None
    b = b.to(dtype).double().requires_grad_(True) if bias else None
    groups = c if kind == "depthwise" else 1
    ref = F.conv2d(x, wt, b, stride, padding, dilation, groups) if kind != "pointwise" else F.conv2d(x, wt, b)
    gy = torch.randn(ref.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    gy = gy.to(dtype).double()
    expected = [ref.detach(), *torch.autograd.grad(ref, [t for t in (x, wt, b) if t is not None], gy)]
    for name, a, e in zip(("forward", "grad_input", "grad_weight", "grad_bias"), got, expected):
        assert a.dtype == dtype
        err = _rel_err(a, e)
        assert err <= HALF_TOLERANCE[dtype], f"{name} {dtype}: error {err:.3g} > {HALF_TOLERANCE[dtype]:.3g}"


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("dtype", HALF_TYPES, ids=["float16", "bfloat16"])
def test_half_types_separable(dtype):
    gen = torch.Generator().manual_seed(4)
    tensors = [torch.randn(2, 32, 33, 33, generator=gen), torch.randn(32, 1, 3, 3, generator=gen),
               torch.randn(32, generator=gen), torch.randn(40, 32, 1, 1, generator=gen) / 6,
               torch.randn(40, generator=gen)]
    half = [t.to(dtype) for t in tensors]
    x, dw, db, pw, pb = (t.double() for t in half)
    expected = F.conv2d(F.relu(F.conv2d(x, dw, db, 1, 12, 12, groups=32)), pw, pb)
    got = ops.separable_conv2d(*(t.cuda() for t in half), 1, 12, 12, "relu")
    assert got.dtype == dtype
    assert _rel_err(got.cpu(), expected) <= HALF_TOLERANCE[dtype]


# --------------------------------------------------------------------------------------------
# Errors, empty inputs, streams, 64-bit indices
# --------------------------------------------------------------------------------------------

@pytest.mark.cuda
@requires_cuda
def test_error_messages_on_cuda_match_cpu():
    from test_errors import CASES, _error

    differ = {"unsupported_dtype_half", "unsupported_dtype_int", "unknown_algo",
              "unknown_algo_pointwise_backward"}
    for name, (call, _) in CASES.items():
        if name not in differ:
            assert str(_error(call, "cuda")) == str(_error(call, "cpu")), name
    x = torch.zeros(1, 3, 8, 8, device="cuda", dtype=torch.int64)
    with pytest.raises(RuntimeError, match=f"expected input of dtype {CUDA_DTYPES}, got Long"):
        ops.depthwise_conv2d(x, torch.zeros(3, 1, 3, 3, device="cuda"))
    with pytest.raises(RuntimeError,
                       match="expected algo to be one of 'auto', 'naive', 'tiled', 'nhwc', "
                             "got 'stencil'"):
        ops.depthwise_conv2d(x.float(), torch.zeros(3, 1, 3, 3, device="cuda"), algo="stencil")


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, *HALF_TYPES])
def test_empty_batch_on_cuda(dtype):
    outs = _every_op("cuda", dtype)  # sizes as in _every_op, but N = 0 below
    assert all(o.device.type == "cuda" for o in outs)
    x = torch.zeros(0, 3, 8, 8, device="cuda", dtype=dtype, requires_grad=True)
    for op, w in ((ops.depthwise_conv2d, torch.randn(3, 1, 3, 3)),
                  (ops.pointwise_conv2d, torch.randn(4, 3, 1, 1)),
                  (ops.atrous_conv2d, torch.randn(4, 3, 3, 3))):
        w = w.to("cuda", dtype).requires_grad_(True)
        b = torch.randn(w.shape[0], device="cuda", dtype=dtype, requires_grad=True)
        y = op(x, w, b, padding=1) if op is not ops.pointwise_conv2d else op(x, w, b)
        assert y.shape[0] == 0
        y.sum().backward()
        assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, torch.zeros_like(b))


@pytest.mark.cuda
@requires_cuda
def test_kernels_queue_on_the_current_stream():
    # A long op queued on a side stream, read after that stream alone is synchronised: correct
    # only if our kernels were launched on the current stream, not the default one.
    gen = torch.Generator().manual_seed(5)
    x, w = torch.randn(8, 256, 65, 65, generator=gen), torch.randn(256, 1, 3, 3, generator=gen)
    pw = torch.randn(128, 256, 1, 1, generator=gen)
    expected = ops.pointwise_conv2d(ops.depthwise_conv2d(x, w, None, 1, 2, 2), pw)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        xc, wc, pwc = x.cuda(non_blocking=True), w.cuda(non_blocking=True), pw.cuda(non_blocking=True)
        got = ops.pointwise_conv2d(ops.depthwise_conv2d(xc, wc, None, 1, 2, 2), pwc)
    side.synchronize()
    assert _rel_err(got.cpu(), expected) <= 1e-4


@pytest.mark.cuda
@requires_cuda
@pytest.mark.skipif(CUDA_SKIP is None and torch.cuda.get_device_properties(0).total_memory < 24 << 30,
                    reason="needs 24 GB of GPU memory")
@pytest.mark.parametrize("algo", ["naive", "tiled"])
def test_depthwise_indexes_past_2_pow_31_elements(algo):
    # 46341^2 > 2^31 elements in one plane: every offset past element 2^31 needs 64-bit indexing.
    # The bottom rows must equal the same op on just those rows (and PyTorch's).
    size = 46341
    x = torch.randn(1, 1, size, size, device="cuda", dtype=torch.float16)
    w = torch.randn(1, 1, 3, 3, device="cuda", dtype=torch.float16)
    y = ops.depthwise_conv2d(x, w, None, 1, 1, 1, algo=algo)
    assert y.numel() > 2 ** 31
    tail = x[:, :, -64:, :].contiguous()
    expected = ops.depthwise_conv2d(tail, w, None, 1, 1, 1, algo=algo)[:, :, 1:-1]
    assert torch.equal(y[:, :, -63:-1], expected)
    torch.testing.assert_close(y[:, :, -63:-1], F.conv2d(tail, w, None, 1, 1)[:, :, 1:-1],
                               rtol=2e-3, atol=2e-3)
    del x, y
    torch.cuda.empty_cache()
