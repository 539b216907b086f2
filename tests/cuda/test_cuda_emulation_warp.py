"""The emulator's warp features (shuffles, mma.sync fragments, cp.async, warp-synchronous code).

Each feature is checked against hand-computed results, and each has a planted-bug probe (a kernel
with a mistake that is wrong on a GPU) that the emulator must turn into a wrong result or an
error. The probes are tests/cuda/cuda_emulation/probes.cpp, built with the emulated CUDA operators.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

if os.environ.get("ATROUS_SKIP_CUDA_EMULATION") == "1":
    pytest.skip("ATROUS_SKIP_CUDA_EMULATION=1", allow_module_level=True)

from cuda_emulation import build  # noqa: E402

if build.toolkit_include() is None:
    pytest.skip("no CUDA toolkit headers (cuda_fp16.h) to build the CPU emulation of the CUDA kernels",
                allow_module_level=True)


@pytest.fixture(scope="module")
def probes():
    build.load()
    return torch.ops.atrous_emu_probes


def _values(n, seed=0):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed))


def test_warp_sum_by_shuffles_is_exact_and_the_lockstep_idiom_is_caught(probes):
    x = _values(64)
    got = probes.warp_sum(x, False)
    # The butterfly adds in a fixed order; compare with the same tree in float64 at float32's eps.
    torch.testing.assert_close(got.double(), x.double().view(2, 32).sum(1), rtol=1e-6, atol=1e-6)
    # Planted bug: the shared-memory tree without __syncwarp() (lanes assumed in lockstep).
    buggy = probes.warp_sum(x, True)
    assert not torch.allclose(buggy.double(), x.double().view(2, 32).sum(1), atol=1e-3)


def _expected_shuffle(mode, arg, width):
    # CUDA Programming Guide, "Warp Shuffle Functions": lanes work in segments of `width`; a
    # source outside the lane's segment (up/down) or in a later segment (xor) gives its own value.
    out = []
    for lane in range(32):
        base = lane - lane % width
        if mode == "idx":
            src = base + arg % width
        elif mode == "up":
            src = lane - arg if lane - arg >= base else lane
        elif mode == "down":
            src = lane + arg if lane + arg < base + width else lane
        else:
            src = lane ^ arg if (lane ^ arg) < base + width else lane
        out.append(src)
    return out


@pytest.mark.parametrize("mode,arg,width", [
    ("idx", 5, 32), ("idx", 37, 32), ("idx", 3, 8), ("up", 1, 32), ("up", 3, 16), ("down", 2, 32),
    ("down", 1, 4), ("xor", 1, 32), ("xor", 16, 32), ("xor", 4, 8), ("xor", 8, 8),
])
def test_shuffle_modes_follow_the_documented_semantics(probes, mode, arg, width):
    x = torch.arange(32, dtype=torch.float32) * 10 + 1
    got = probes.shuffle(x, mode, arg, width)
    assert got.tolist() == [x[s].item() for s in _expected_shuffle(mode, arg, width)]


def test_partial_warp_shuffle_and_a_mask_that_deadlocks(probes):
    out = probes.partial_mask(False)
    # lanes 0..15 shuffle down by 1 in a segment of 16: lane 15 keeps its own value
    assert out.tolist() == [float(min(lane + 1, 15)) for lane in range(16)] + [0.0] * 16
    # Planted bug: the mask names lanes that wait at __syncthreads() (a hang on a GPU).
    with pytest.raises(RuntimeError, match="deadlock"):
        probes.partial_mask(True)


def _tf32(t):
    # cvt.rna.tf32.f32: round to 10 mantissa bits, ties away from zero (on the bit pattern).
    bits = t.numpy().view(np.uint32).astype(np.uint64)
    return torch.from_numpy(((bits + 0x1000) & 0xFFFFE000).astype(np.uint32).view(np.float32))


@pytest.mark.parametrize("kind", ["tf32", "f16", "bf16"])
def test_mma_fragments_give_the_matrix_product_and_a_swapped_fragment_is_caught(probes, kind):
    k = 8 if kind == "tf32" else 16
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(16, k, generator=gen), torch.randn(k, 8, generator=gen)
    c = torch.randn(16, 8, generator=gen)
    if kind == "tf32":
        ar, br = _tf32(a), _tf32(b)
    else:
        dtype = torch.float16 if kind == "f16" else torch.bfloat16
        ar, br = a.to(dtype).float(), b.to(dtype).float()
    expected = ar.double() @ br.double() + c.double()
    got = probes.mma(a, b, c, kind, False)
    # Products of these operands are exact in float32; only the float32 additions round.
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)
    if kind == "tf32":  # the operands really were rounded to TF32 (10 mantissa bits)
        assert not torch.allclose(got.double(), a.double() @ b.double() + c.double(), rtol=1e-6, atol=1e-6)
    # Planted bug: registers a1 and a2 swapped, so rows 8..15 and the upper k half trade places.
    buggy = probes.mma(a, b, c, kind, True)
    assert (buggy.double() - expected).abs().max() > 1e-2


def test_tf32_rounding_is_to_nearest_ties_away():
    one_ulp = 2.0 ** -10  # TF32 keeps 10 mantissa bits
    x = torch.tensor([1 + one_ulp / 2, 1 + one_ulp / 4, -(1 + one_ulp / 2), 1 + 3 * one_ulp / 2])
    assert _tf32(x).tolist() == [1 + one_ulp, 1.0, -(1 + one_ulp), 1 + 2 * one_ulp]


@pytest.mark.parametrize("n", [256, 100])
def test_cp_async_copies_after_wait_and_zero_fills(probes, n):
    x = _values(n, seed=n) + 5
    got = probes.cp_async_copy(x, 0)
    staged = torch.cat([x, torch.zeros(256 - n)])  # chunks past n are zero-filled (src size 0)
    assert torch.equal(got, staged.view(64, 4).roll(-1, 0).reshape(-1))


@pytest.mark.parametrize("bug", [1, 2], ids=["no-wait", "wait-leaves-the-group-pending"])
def test_cp_async_read_before_its_group_retires_is_caught(probes, bug):
    got = probes.cp_async_copy(_values(256) + 5, bug)
    assert got.isnan().all()  # the destination still holds what was there before the copy
