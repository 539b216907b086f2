"""Solutions to the exercises of tutorial 6 (pointwise GEMM, separable convolution); run it to check them."""

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode


def counted(c, c_out, k, size):
    """(weights, flops) of the dense and the separable conv, from modules on meta tensors."""
    dense = torch.nn.Conv2d(c, c_out, k, padding=k // 2, bias=False, device="meta")
    depthwise = torch.nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False, device="meta")
    pointwise = torch.nn.Conv2d(c, c_out, 1, bias=False, device="meta")
    x = torch.empty(1, c, size, size, device="meta")
    with FlopCounterMode(display=False) as fd:
        dense(x)
    with FlopCounterMode(display=False) as fs:
        pointwise(depthwise(x))
    n_dense = sum(p.numel() for p in dense.parameters())
    n_sep = sum(p.numel() for m in (depthwise, pointwise) for p in m.parameters())
    return (n_dense, fd.get_total_flops()), (n_sep, fs.get_total_flops())


# 1. Decoder, 129x129: 304 -> 256 then 256 -> 256, 3x3.
#    dense 304->256: 9*304*256 = 700,416 weights, 2*700,416*129^2 = 23.31 GFLOP
#    sep   304->256: 9*304 + 304*256 = 80,560 weights, 2.68 GFLOP
#    dense 256->256: 589,824 weights, 19.63 GFLOP; sep: 2,304 + 65,536 = 67,840 weights, 2.26 GFLOP
hw = 129 * 129
for (c, c_out), dense_w, sep_w in [((304, 256), 700_416, 80_560), ((256, 256), 589_824, 67_840)]:
    assert 9 * c * c_out == dense_w and 9 * c + c * c_out == sep_w
    assert counted(c, c_out, 3, 129) == ((dense_w, 2 * dense_w * hw), (sep_w, 2 * sep_w * hw))
assert round(2 * 700_416 * hw / 1e9, 2) == 23.31 and round(2 * 80_560 * hw / 1e9, 2) == 2.68
assert round(2 * 589_824 * hw / 1e9, 2) == 19.63 and round(2 * 67_840 * hw / 1e9, 2) == 2.26

# 2. 1/C_out + 1/9 >= 1/2  <=>  C_out <= 18/7 = 2.57: only C_out = 1 or 2.
assert [co for co in range(1, 100) if 1 / co + 1 / 9 >= 1 / 2] == [1, 2]

# 3. A strided 1x1 conv reads only the pixels (s*i, s*j): it is the GEMM W @ X on the subsampled image.
x = torch.randn(2, 6, 9, 8, dtype=torch.float64)
w = torch.randn(5, 6, 1, 1, dtype=torch.float64)
sub = x[:, :, ::2, ::2]
gemm = (w[:, :, 0, 0] @ sub.reshape(2, 6, -1)).reshape(2, 5, *sub.shape[2:])
torch.testing.assert_close(gemm, F.conv2d(x, w, stride=2))


# 4. The blocked GEMM accumulating into a given C.
def pack_a(a, mr):
    m, kc = a.shape
    padded = np.zeros((-(-m // mr) * mr, kc))
    padded[:m] = a
    return padded.reshape(-1, mr, kc).transpose(0, 2, 1)


def pack_b(b, nr):
    kc, n = b.shape
    padded = np.zeros((kc, -(-n // nr) * nr))
    padded[:, :n] = b
    return padded.reshape(kc, -1, nr).transpose(1, 0, 2)


def blocked_gemm(a, b, c=None, mr=4, nr=8, kc_=16, mc_=8, nc_=32):
    """Returns c + a @ b (c = 0 when None), blocked as in gemm.cpp."""
    m, k = a.shape
    n = b.shape[1]
    c = np.zeros((m, n)) if c is None else c.copy()
    for jc in range(0, n, nc_):
        nc = min(nc_, n - jc)
        for pc in range(0, k, kc_):
            kc = min(kc_, k - pc)
            bp = pack_b(b[pc:pc + kc, jc:jc + nc], nr)
            for ic in range(0, m, mc_):
                mc = min(mc_, m - ic)
                ap = pack_a(a[ic:ic + mc, pc:pc + kc], mr)
                for jr in range(0, nc, nr):
                    for ir in range(0, mc, mr):
                        acc = np.zeros((mr, nr))
                        for kk in range(kc):
                            acc += np.outer(ap[ir // mr][kk], bp[jr // nr][kk])
                        rows, cols = min(mr, mc - ir), min(nr, nc - jr)
                        c[ic + ir:ic + ir + rows, jc + jr:jc + jr + cols] += acc[:rows, :cols]
    return c


rng = np.random.default_rng(1)
a, b, c0 = rng.standard_normal((13, 40)), rng.standard_normal((40, 21)), rng.standard_normal((13, 21))
np.testing.assert_allclose(blocked_gemm(a, b, c0), c0 + a @ b, rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(blocked_gemm(a, b), a @ b, rtol=1e-12, atol=1e-12)
# 5. Design: on AVX2 a vector is one ymm of 8 floats; the k loop holds M_R * N_V sums, N_V vectors of B
#    and one broadcast of A: M_R * N_V + N_V + 1 <= 16. Per step it does 2 M_R N_R flops for M_R + N_R
#    loads (N_R = 8 N_V). By that count alone the best is a tall, narrow tile:
candidates = {(mr, nv): 2 * mr * 8 * nv / (mr + 8 * nv) for mr in range(1, 16) for nv in range(1, 4)
              if mr * nv + nv + 1 <= 16}
best = max(candidates, key=candidates.get)
assert best == (14, 1) and 6 * 2 + 2 + 1 <= 16  # the BLIS 6 x 16 tile fits too (15 registers)
#    BLIS still prefers 6 x 16: an FMA has a latency of 4-5 cycles and two issue per cycle, so at
#    least 8-10 independent sums must be in flight (6 x 2 = 12 vectors; 14 x 1 = 14 also works), and
#    its B panel of 16 floats is two vectors read contiguously, while a 14-row A panel costs 14
#    broadcasts per step against 6. The flops per load are close: 8.7 against 10.2.
assert round(candidates[(6, 2)], 1) == 8.7 and round(candidates[(14, 1)], 1) == 10.2
print("all solutions check out")
