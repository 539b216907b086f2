// Helpers of the GEMM-based convolutions (pointwise, dense atrous): image views, im2col, col2im.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <vector>

#include "../common/conv_index.h"
#include "cpu_utils.h"
#include "gemm.h"

namespace atrous::cpu {

// True when image n of a 4-D tensor is a (C x H*W) matrix with plain strides: NCHW- or
// channels_last-contiguous. Other views are made NCHW-contiguous first.
inline bool is_gemm_friendly(const at::Tensor& t) {
  return t.is_contiguous() || t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

// Image n of a (N, C, H, W) tensor as a (C x H*W) matrix, for either layout.
template <typename T>
MatrixView<T> image_matrix(const at::Tensor& t, int64_t n) {
  const int64_t c = t.size(1), p = t.size(2) * t.size(3);
  const T* base = t.const_data_ptr<T>() + n * c * p;
  if (t.is_contiguous()) return {base, p, 1};  // NCHW: rows are channel planes
  return {base, 1, c};                         // NHWC: channels interleaved per pixel
}

// NCHW gives one (C x H*W) matrix per image. channels_last stores every pixel of every image as
// a row of C values, so the whole batch is one (C x N*H*W) matrix (image_matrix(t, 0) with N*H*W
// columns) and the product is one large GEMM: the weight is packed once, threads share one
// parallel region, and there are fewer ragged edges.
inline bool batch_is_one_matrix(const at::Tensor& t) {
  return !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

template <typename T>
MutableMatrixView<T> image_matrix_mut(at::Tensor& t, int64_t n) {
  const int64_t c = t.size(1), p = t.size(2) * t.size(3);
  T* base = t.mutable_data_ptr<T>() + n * c * p;
  if (t.is_contiguous()) return {base, p, 1};
  return {base, 1, c};
}

// im2col with dilation: row r = (c, i, j) of col (C*kh*kw x Ho*Wo) holds, at output position
// (oh, ow), input[c, oh*sh - ph + i*dh, ow*sw - pw + j*dw], or 0 where that is padding.
// x is one NCHW-contiguous image (C, H, W).
template <typename T>
void im2col(const T* __restrict x, T* __restrict col, const ConvGeometry& g,
            const std::vector<Range>& cols) {
  const int64_t taps = g.kernel_h * g.kernel_w;
  const int64_t out_plane = g.out_h * g.out_w;
  at::parallel_for(0, g.in_channels * taps, grain_for(out_plane), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t c = r / taps, i = (r % taps) / g.kernel_w, j = r % g.kernel_w;
      const T* plane = x + c * g.in_h * g.in_w;
      T* dst = col + r * out_plane;
      const Range rows = tap_output_range(g.in_h, g.out_h, g.stride_h, g.pad_h, g.dil_h, i);
      const Range cr = cols[j];
      const int64_t offset = j * g.dil_w - g.pad_w;
      std::fill(dst, dst + rows.begin * g.out_w, T(0));
      for (int64_t oh = rows.begin; oh < rows.end; ++oh) {
        const T* src = plane + input_index(oh, i, g.stride_h, g.pad_h, g.dil_h) * g.in_w;
        T* d = dst + oh * g.out_w;
        std::fill(d, d + cr.begin, T(0));
        if (g.stride_w == 1) {
          std::copy(src + cr.begin + offset, src + cr.end + offset, d + cr.begin);
        } else {
          for (int64_t ow = cr.begin; ow < cr.end; ++ow) d[ow] = src[ow * g.stride_w + offset];
        }
        std::fill(d + cr.end, d + g.out_w, T(0));
      }
      std::fill(dst + rows.end * g.out_w, dst + out_plane, T(0));
    }
  });
}

// col2im, the adjoint of im2col: grad_x[c, ih, iw] += col[(c, i, j), (oh, ow)] for every tap
// that read (ih, iw). grad_x (C, H, W) must be zeroed. One thread owns each channel plane and
// visits its taps in order: race-free and deterministic.
template <typename T>
void col2im(const T* __restrict col, T* __restrict grad_x, const ConvGeometry& g,
            const std::vector<Range>& cols) {
  const int64_t taps = g.kernel_h * g.kernel_w;
  const int64_t out_plane = g.out_h * g.out_w;
  at::parallel_for(0, g.in_channels, grain_for(taps * out_plane), [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      T* plane = grad_x + c * g.in_h * g.in_w;
      for (int64_t i = 0; i < g.kernel_h; ++i) {
        const Range rows = tap_output_range(g.in_h, g.out_h, g.stride_h, g.pad_h, g.dil_h, i);
        for (int64_t j = 0; j < g.kernel_w; ++j) {
          const T* src = col + ((c * g.kernel_h + i) * g.kernel_w + j) * out_plane;
          const Range cr = cols[j];
          const int64_t offset = j * g.dil_w - g.pad_w;
          for (int64_t oh = rows.begin; oh < rows.end; ++oh) {
            T* d = plane + input_index(oh, i, g.stride_h, g.pad_h, g.dil_h) * g.in_w;
            const T* s = src + oh * g.out_w;
            for (int64_t ow = cr.begin; ow < cr.end; ++ow) d[ow * g.stride_w + offset] += s[ow];
          }
        }
      }
    }
  });
}

}  // namespace atrous::cpu
