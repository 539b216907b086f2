"""Solutions to the exercises of tutorial 4 (the CUDA kernel); run it to check them.

They are index arithmetic on the helpers of csrc/common/conv_index.h (atrous._C._conv_index): no
compiler, no CUDA toolkit, no GPU.
"""

from atrous import _extension

_C = _extension.load()


def ix(name, *args):
    return _C._conv_index(name, *args)


SMEM_BYTES, MAX_H, MAX_W, MIN_W, MAX_THREADS = 40 * 1024, 32, 64, 8, 256  # depthwise_kernels.cu


def plan(out_h, out_w, k=3, s=1, d=1, acc_bytes=4):
    """What launch_tiled decides (as in the notebook)."""
    taps = k * k
    budget = SMEM_BYTES // acc_bytes - taps
    rs, rc, cs, cc, in_h, in_w, fits = ix("plan_depthwise_tiles", out_h, out_w, k, k, s, s, d, d,
                                          MAX_H, MAX_W, MIN_W, budget)
    threads = min(MAX_THREADS, max(64, (rs * cs // 4 + 31) // 32 * 32))
    return {"tile": (rs, cs), "tiles": rc * cc, "in": (in_h, in_w), "smem": (taps + in_h * in_w) * acc_bytes,
            "threads": threads, "per_thread": -(-rs * cs // threads), "fits": bool(fits)}


# 1. Entry flow, strided: 3x3, s = 2, p = 1 on 257x257 -> (257 + 2 - 3) // 2 + 1 = 129 outputs per axis.
#    Rows: ceil(129 / 32) = 5 tiles of ceil(129 / 5) = 26; columns: ceil(129 / 64) = 3 tiles of 43.
#    Input tile: (26 - 1) * 2 + 3 = 53 rows, (43 - 1) * 2 + 3 = 87 columns = 4611 floats, under the
#    10240 - 9 budget, so the first tile fits: (9 + 4611) * 4 = 18480 bytes of shared memory.
#    1118 outputs per tile: 256 threads (the cap), ceil(1118 / 256) = 5 outputs each.
assert ix("conv_output_size", 257, 3, 2, 1, 1) == 129
assert (ix("input_tile_extent", 26, 3, 2, 1), ix("input_tile_extent", 43, 3, 2, 1)) == (53, 87)
assert plan(129, 129, s=2) == {"tile": (26, 43), "tiles": 15, "in": (53, 87), "smem": 18480, "threads": 256,
                               "per_thread": 5, "fits": True}
#    The tile stages 4611 / 1118 = 4.1 inputs per output, against 1260 / 1118 = 1.1 for the decoder's
#    stride-1 tile of the same output size: with stride 2 each output moves the window by 2 in both
#    directions, so the input is about s^2 = 4 times the output.

# 2. 5x5 on 65x65, float32: budget 10240 - 25 = 10215 elements. The plan shrinks to one row, then the
#    columns 33 -> 17 -> 9 -> 5 (9 > 8 = the minimum, so it halves once more). The last tile, 1 x 5,
#    stages (4d + 1) rows and (5 - 1) + 4d + 1 = 4d + 5 columns: it fits while (4d + 1)(4d + 5) <= 10215.
#    d = 24: 97 * 101 = 9797 fits; d = 25: 101 * 105 = 10605 does not. So naive from d = 25.
#    (At d = 24 the plan stops earlier, at 1 x 9: 97 x 105 = 10185 elements already fit.)
assert 97 * 101 <= 10215 < 101 * 105
assert plan(65, 65, k=5, d=24)["fits"] and not plan(65, 65, k=5, d=25)["fits"]
assert plan(65, 65, k=5, d=24)["tile"] == (1, 9) and plan(65, 65, k=5, d=24)["in"] == (97, 105)
#    (5x5 at d = 25 spans 4 * 25 + 1 = 101 pixels, far wider than the 65x65 map.)


# 3. Bank conflicts of the compute loop: thread tid computes outputs q = tid + r * threads at
#    (q // tw, q % tw); tap (i, j) reads the word taps + orow*s*in_w + ocol*s + i*d*in_w + j*d of
#    shared memory (the 9 weights come first). Bank = word % 32. A warp is 32 consecutive tids.
def conflict_degrees(th, tw, s, d, k=3, threads=160):
    in_w = ix("input_tile_extent", tw, k, s, d)
    degrees = {}
    for w0 in range(0, threads, 32):
        for r in range(8):
            for i in range(k):
                for j in range(k):
                    banks = {}
                    for tid in range(w0, w0 + 32):
                        q = tid + r * threads
                        if q < th * tw:
                            orow, ocol = divmod(q, tw)
                            word = k * k + orow * s * in_w + ocol * s + i * d * in_w + j * d
                            banks.setdefault(word % 32, set()).add(word)
                    if banks:
                        degree = max(len(words) for words in banks.values())
                        degrees[degree] = degrees.get(degree, 0) + 1
    return degrees


stride1, stride2 = conflict_degrees(17, 33, 1, 6), conflict_degrees(17, 33, 2, 6)
print("conflict degree: number of warp reads, stride 1:", stride1, "stride 2:", stride2)
assert ix("input_tile_extent", 33, 3, 2, 6) == 77
assert stride1 == {1: 18, 2: 144} and stride2 == {2: 27, 3: 135}
#    Stride 1: within one output row a warp reads consecutive words, 32 different banks, no conflict.
#    But a row of the tile is 33 outputs, so nearly every warp straddles the end of a row: its last
#    threads read the next row, in_w = 45 words further on, and those words land in banks that the
#    first threads already use: 2-way conflicts, 144 of the 162 warp reads. Only the two groups of 32
#    outputs that lie within one row, the first (outputs 0-31) and the last, partial one (544-560),
#    are conflict-free: 2 x 9 taps = 18 reads.
#    Stride 2: consecutive threads read every other word, so a warp uses only 16 banks, two words
#    each, and the row wrap adds a third: mostly 3-way. The hardware serialises a k-way conflict
#    into k turns. (A tile row of exactly 32 outputs, or a padded tile pitch, would remove the
#    stride-1 conflicts.)
print("all solutions check out")
