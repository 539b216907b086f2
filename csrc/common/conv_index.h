// Index arithmetic of a 2-D (dilated) convolution, shared by the CPU and CUDA kernels.
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define ATROUS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define ATROUS_HOST_DEVICE inline
#endif

namespace atrous {

// Division rounding toward -inf / +inf. C++ '/' rounds toward zero, which is wrong for the
// negative numerators that appear when a tap lands in the padding.
ATROUS_HOST_DEVICE constexpr int64_t floor_div(int64_t a, int64_t b) {
  return (a >= 0) ? a / b : -((-a + b - 1) / b);
}
ATROUS_HOST_DEVICE constexpr int64_t ceil_div(int64_t a, int64_t b) {
  return -floor_div(-a, b);
}
ATROUS_HOST_DEVICE constexpr int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
ATROUS_HOST_DEVICE constexpr int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

// Extent of a kernel of k taps spaced d apart: k_eff = k + (k - 1)(d - 1).
ATROUS_HOST_DEVICE constexpr int64_t effective_kernel_size(int64_t k, int64_t d) {
  return d * (k - 1) + 1;
}

// Output size along one axis: floor((in + 2p - k_eff) / s) + 1. Valid when in + 2p >= k_eff.
ATROUS_HOST_DEVICE constexpr int64_t conv_output_size(int64_t in, int64_t k, int64_t s,
                                                      int64_t p, int64_t d) {
  return (in + 2 * p - effective_kernel_size(k, d)) / s + 1;
}

// Input coordinate read by output position o through tap t: o*s - p + t*d.
ATROUS_HOST_DEVICE constexpr int64_t input_index(int64_t o, int64_t t, int64_t s, int64_t p,
                                                 int64_t d) {
  return o * s - p + t * d;
}

// Half-open range [begin, end) with begin <= end.
struct Range {
  int64_t begin;
  int64_t end;
  ATROUS_HOST_DEVICE constexpr int64_t size() const { return end > begin ? end - begin : 0; }
};

// The output positions o in [0, out) whose tap t reads inside the input, i.e.
// 0 <= o*s - p + t*d < in. Because the condition is linear in o, they form one interval:
// a kernel loops over it with no bounds check per element, and the positions outside it
// read zero padding and contribute nothing.
ATROUS_HOST_DEVICE constexpr Range tap_output_range(int64_t in, int64_t out, int64_t s, int64_t p,
                                                    int64_t d, int64_t t) {
  const int64_t offset = t * d - p;
  const int64_t begin = imin(out, imax(0, ceil_div(-offset, s)));
  const int64_t end = imin(out, floor_div(in - 1 - offset, s) + 1);
  return Range{begin, imax(begin, end)};
}

// The taps t in [0, k) that output position o reads inside the input, i.e.
// 0 <= o*s - p + t*d < in.
ATROUS_HOST_DEVICE constexpr Range output_tap_range(int64_t in, int64_t k, int64_t s, int64_t p,
                                                    int64_t d, int64_t o) {
  const int64_t origin = o * s - p;
  const int64_t begin = imin(k, imax(0, ceil_div(-origin, d)));
  const int64_t end = imin(k, floor_div(in - 1 - origin, d) + 1);
  return Range{begin, imax(begin, end)};
}

// Input extent an output tile of `tile` positions reads, halo included: (tile - 1)*s + k_eff.
// A CUDA block stages this many rows/columns in shared memory.
ATROUS_HOST_DEVICE constexpr int64_t input_tile_extent(int64_t tile, int64_t k, int64_t s,
                                                       int64_t d) {
  return (tile - 1) * s + effective_kernel_size(k, d);
}

// Halo of a dilated kernel along one axis: the input an output tile reads beyond the footprint
// of its own outputs, d*(k-1). input_tile_extent(tile, k, s, d) = (tile - 1)*s + 1 + halo.
ATROUS_HOST_DEVICE constexpr int64_t halo_extent(int64_t k, int64_t d) { return d * (k - 1); }

// The output position o whose tap t reads input position i (i = o*s - p + t*d), or -1 when no
// output in [0, out) does: the inverse of input_index, used by the backward-input gathers. With
// stride s only the taps with (i + p - t*d) % s == 0 land on an output.
ATROUS_HOST_DEVICE constexpr int64_t tap_source_output(int64_t i, int64_t t, int64_t s, int64_t p,
                                                       int64_t d, int64_t out) {
  const int64_t num = i + p - t * d;
  if (num < 0 || num % s != 0) return -1;
  return num / s < out ? num / s : -1;
}

// Tiles of an output axis: `count` tiles of `size` positions (the last one possibly shorter).
struct TileAxis {
  int64_t size;
  int64_t count;
};

// The fewest tiles of at most max_tile positions, then balanced: 65 outputs with max_tile 64
// become two tiles of 33 (the second holds 32), not 64 + a sliver of 1.
ATROUS_HOST_DEVICE constexpr TileAxis balanced_tiles(int64_t out, int64_t max_tile) {
  const int64_t count = out > 0 ? ceil_div(out, imax(1, max_tile)) : 0;
  return TileAxis{count > 0 ? ceil_div(out, count) : 0, count};
}

// Output positions [begin, end) of tile t of `size` positions on an axis of `out` positions.
ATROUS_HOST_DEVICE constexpr Range tile_range(int64_t t, int64_t size, int64_t out) {
  return Range{imin(out, t * size), imin(out, (t + 1) * size)};
}

// How the tiled depthwise CUDA kernel covers an output plane: output tiles of tile_h x tile_w
// (tiles_h x tiles_w of them), each staging an input tile of in_h x in_w (halo included) in
// shared memory. Tiles start at max_h x max_w (balanced) and are halved, rows down to 1 first,
// then columns while wider than min_w, until the input tile fits in `budget` elements. If it
// still does not fit, fits is false and the kernel reads global memory directly: a halo that
// large means the dilation dwarfs the tile, and staging would load mostly unused padding.
struct DepthwiseTilePlan {
  TileAxis rows, cols;
  int64_t in_h, in_w;  // input tile extent of a full tile
  bool fits;
};

ATROUS_HOST_DEVICE constexpr DepthwiseTilePlan plan_depthwise_tiles(
    int64_t out_h, int64_t out_w, int64_t kernel_h, int64_t kernel_w, int64_t stride_h,
    int64_t stride_w, int64_t dil_h, int64_t dil_w, int64_t max_h, int64_t max_w, int64_t min_w,
    int64_t budget) {
  TileAxis rows = balanced_tiles(out_h, max_h);
  TileAxis cols = balanced_tiles(out_w, max_w);
  int64_t in_h = input_tile_extent(rows.size, kernel_h, stride_h, dil_h);
  int64_t in_w = input_tile_extent(cols.size, kernel_w, stride_w, dil_w);
  while (in_h * in_w > budget && rows.size > 1) {
    rows = balanced_tiles(out_h, ceil_div(rows.size, 2));
    in_h = input_tile_extent(rows.size, kernel_h, stride_h, dil_h);
  }
  while (in_h * in_w > budget && cols.size > min_w) {
    cols = balanced_tiles(out_w, ceil_div(cols.size, 2));
    in_w = input_tile_extent(cols.size, kernel_w, stride_w, dil_w);
  }
  return DepthwiseTilePlan{rows, cols, in_h, in_w, in_h * in_w <= budget};
}

// Geometry of one 2-D convolution, everything a kernel needs besides the pointers.
struct ConvGeometry {
  int64_t batch, in_channels, out_channels;
  int64_t in_h, in_w, out_h, out_w;
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
};

}  // namespace atrous
