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

// Geometry of one 2-D convolution, everything a kernel needs besides the pointers.
struct ConvGeometry {
  int64_t batch, in_channels, out_channels;
  int64_t in_h, in_w, out_h, out_w;
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
};

}  // namespace atrous
