"""The index arithmetic shared by the CPU and CUDA kernels (csrc/common/conv_index.h), against brute force.

The helpers are compiled into atrous._C and called through atrous._C._conv_index, so these CPU
tests check the very code the CUDA kernels run: output sizes, tap intervals, the backward gather's
inverse tap map, halo extents, tile bounds and the tiled depthwise kernel's tile plan.
"""

import math

from hypothesis import given
from hypothesis import strategies as st

from atrous import _extension

_C = _extension.load()


def helper(name, *args):
    return _C._conv_index(name, *args)


sizes = st.integers(1, 40)
kernels = st.integers(1, 7)
strides = st.integers(1, 4)
dilations = st.integers(1, 30)


@st.composite
def axes(draw):
    """(in, k, s, p, d) with a padded input at least the dilated kernel, as the op checks demand."""
    size, k, s, d = draw(sizes), draw(kernels), draw(strides), draw(dilations)
    k_eff = d * (k - 1) + 1
    min_pad = max(0, -(-(k_eff - size) // 2))
    p = draw(st.integers(min_pad, min_pad + 8))
    return size, k, s, p, d


def reads(size, k, s, p, d):
    """{(o, t): input index} for every output o and tap t, by definition."""
    out = (size + 2 * p - d * (k - 1) - 1) // s + 1
    return out, {(o, t): o * s - p + t * d for o in range(out) for t in range(k)}


@given(st.integers(-50, 50), st.integers(1, 9))
def test_floor_and_ceil_division(a, b):
    assert helper("floor_div", a, b) == a // b
    assert helper("ceil_div", a, b) == -(-a // b)


@given(axes())
def test_output_size_and_input_index(axis):
    size, k, s, p, d = axis
    out, idx = reads(size, k, s, p, d)
    assert helper("conv_output_size", size, k, s, p, d) == out == len(range(0, size + 2 * p - d * (k - 1), s))
    for (o, t), i in idx.items():
        assert helper("input_index", o, t, s, p, d) == i


@given(axes())
def test_tap_and_output_ranges_are_exactly_the_reads_inside_the_input(axis):
    size, k, s, p, d = axis
    out, idx = reads(size, k, s, p, d)
    for t in range(k):
        begin, end = helper("tap_output_range", size, out, s, p, d, t)
        inside = [o for o in range(out) if 0 <= idx[o, t] < size]
        assert list(range(begin, end)) == inside
    for o in range(out):
        begin, end = helper("output_tap_range", size, k, s, p, d, o)
        assert list(range(begin, end)) == [t for t in range(k) if 0 <= idx[o, t] < size]


@given(axes())
def test_tap_source_output_inverts_input_index(axis):
    # The backward-input gathers: input i receives from output o through tap t iff o*s - p + t*d == i.
    size, k, s, p, d = axis
    out, idx = reads(size, k, s, p, d)
    for i in range(size):
        for t in range(k):
            sources = [o for o in range(out) if idx[o, t] == i]
            assert helper("tap_source_output", i, t, s, p, d, out) == (sources[0] if sources else -1)


@given(st.integers(1, 70), kernels, strides, dilations)
def test_input_tile_extent_and_halo(tile, k, s, d):
    lowest = min(o * s + t * d for o in range(tile) for t in range(k))
    highest = max(o * s + t * d for o in range(tile) for t in range(k))
    assert helper("input_tile_extent", tile, k, s, d) == highest - lowest + 1
    assert helper("halo_extent", k, d) == helper("input_tile_extent", tile, k, s, d) - ((tile - 1) * s + 1)


@given(st.integers(1, 300), st.integers(1, 80))
def test_balanced_tiles_cover_the_axis_with_the_fewest_tiles(out, max_tile):
    size, count = helper("balanced_tiles", out, max_tile)
    assert count == math.ceil(out / max_tile) and size <= max_tile
    ranges = [helper("tile_range", t, size, out) for t in range(count)]
    covered = [o for begin, end in ranges for o in range(begin, end)]
    assert covered == list(range(out))  # in order, no overlap, no gap
    assert all(end > begin for begin, end in ranges)  # no empty tile
    assert max(e - b for b, e in ranges) - min(e - b for b, e in ranges) <= count  # balanced, no sliver


@given(st.integers(1, 130), st.integers(1, 130), kernels, kernels, strides, strides, dilations, dilations,
       st.sampled_from([64, 600, 5120, 10240]))
def test_depthwise_tile_plan(out_h, out_w, kh, kw, sh, sw, dh, dw, budget):
    # The tiled CUDA kernel's plan: tiles cover the plane, the staged input tile (halo included)
    # is the one its outputs read, and it fits the shared-memory budget whenever `fits`.
    plan = helper("plan_depthwise_tiles", out_h, out_w, kh, kw, sh, sw, dh, dw, 32, 64, 8, budget)
    rows_size, rows_count, cols_size, cols_count, in_h, in_w, fits = plan
    assert rows_size <= 32 and cols_size <= 64
    assert (rows_count - 1) * rows_size < out_h <= rows_count * rows_size
    assert (cols_count - 1) * cols_size < out_w <= cols_count * cols_size
    assert in_h == (rows_size - 1) * sh + dh * (kh - 1) + 1
    assert in_w == (cols_size - 1) * sw + dw * (kw - 1) + 1
    assert bool(fits) == (in_h * in_w <= budget)
    if not fits:  # shrunk as far as it goes: one row, and columns down to about the minimum
        assert rows_size == 1 and cols_size <= 8
    first_rows, _ = helper("balanced_tiles", out_h, 32)
    first_cols, _ = helper("balanced_tiles", out_w, 64)
    first_in_h = (first_rows - 1) * sh + dh * (kh - 1) + 1
    first_in_w = (first_cols - 1) * sw + dw * (kw - 1) + 1
    if (rows_size, cols_size) != (first_rows, first_cols):  # tiles shrink only when they do not fit
        assert first_in_h * first_in_w > budget
    if cols_size != first_cols:  # and columns only once rows are down to one
        assert rows_size == 1
