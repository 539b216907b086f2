"""Solutions to the exercises of tutorial 8 (benchmarking); run it to check them. Nothing here is timed."""

import math

from atrous import bench

shapes = {s.name: s for s in bench.SHAPES}


def intensity(name, direction="forward", batch=1):
    w = bench.work(bench.Case(shapes[name], batch), direction, 4)
    return w["flops"] / w["bytes"]


# 1. Depthwise backward, k = 3, same size: grad_input and grad_weight each cost a forward,
#    flops = 2 * 2k^2 CHW = 36 CHW; bytes = 4 (gy + x + w + gx + gw) = 4 (3 CHW + 2 k^2 C),
#    so I -> 36 / 12 = 3.0 flop/byte: a little higher than the forward's 2.25, still memory-bound.
c, hw = 728, 33 * 33
backward = 36 * c * hw / (4 * (3 * c * hw + 2 * 9 * c))
assert math.isclose(intensity("os16-middle-dw728", "backward"), backward)
assert 2.9 < backward < 3.0 and backward > intensity("os16-middle-dw728")

# 2. Dense 3x3, 512 -> 512 at 33x33 (dilation 2 changes nothing): flops = 2 * 9 * 512 * 512 * 1089;
#    bytes = 4 (512 * 1089 + 9 * 512 * 512 + 512 * 1089), about 370 flop/byte: far right of a
#    ridge at 10 flop/byte, compute-bound.
dense = 2 * 9 * 512 * 512 * hw / (4 * (2 * 512 * hw + 9 * 512 * 512))
assert math.isclose(intensity("os16-resnet-dense512-d2"), dense)
assert 360 < dense < 380 and dense > 10


# 3. Pointwise C = C_out = 728: I(HW) = 2 C^2 HW / (4 (2 C HW + C^2)) -> C / 4 = 182 as HW -> inf.
#    I >= 0.9 * 182  <=>  2 HW / (2 HW + C) >= 0.9  <=>  HW >= 4.5 C = 3276: a 58 x 58 plane.
def pw(size, c=728):
    return 2 * c * c * size * size / (4 * (2 * c * size * size + c * c))


assert math.isclose(pw(10**6), 182, rel_tol=1e-3)
assert min(s for s in range(1, 200) if pw(s) >= 0.9 * 728 / 4) == 58

# 4. Bytes of the middle-flow depthwise layer at batch N: 4 (2 N * 728 * 1089 + 728 * 9).
#    32 MiB = 33,554,432 bytes: N = 5 moves 31.7 MB, N = 6 moves 38.1 MB.
moved = {n: bench.work(bench.Case(shapes["os16-middle-dw728"], n), "forward", 4)["bytes"]
         for n in range(1, 9)}
assert min(n for n, b in moved.items() if b > 32 << 20) == 6
# 5. Design: a read-only pass, for example the sum of a buffer far larger than the last-level cache,
#    moves each byte exactly once from memory and writes nothing, so its count (N bytes) holds whether
#    stores allocate or not; it measures the read bandwidth. A copy of N bytes moves 3 N with
#    write-allocate and 2 N with non-temporal stores: the same time gives rates 1.5 times apart.
N = 1 << 30
bus = {"read-only sum": N, "copy, non-temporal stores": 2 * N, "copy, write-allocate": 3 * N}
assert bus["copy, write-allocate"] / bus["copy, non-temporal stores"] == 1.5
print("all solutions check out")
