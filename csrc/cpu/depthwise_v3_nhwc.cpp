// Depthwise ladder v3 "nhwc": channels_last, vectorised across channels.
//
// In NHWC the C values of a pixel are contiguous, and a depthwise tap multiplies each of them by
// its own weight: the inner loop runs over a block of channels with no shifts at all, whatever
// the dilation. Weights are transposed once to (kh, kw, C*m) so they are contiguous too. For
// each output pixel the valid taps are found by interval arithmetic, so dilated taps in the
// padding cost nothing (oneDNN's channels_last kernel slows down sharply at ASPP rates).
// Forward and backward-input run in parallel over output (input) rows; backward-weight over
// channel blocks, each summing the batch in a fixed order.
#include <algorithm>
#include <vector>

#include "kernel_support.h"
#include "isa_kernels.h"
#include "simd.h"

namespace atrous::cpu::ATROUS_ISA_NS::depthwise::nhwc {
namespace {

// Vector width for this rung: a full register (64 bytes measured faster than 32 on AVX-512).
constexpr int kW = simd::kBytes;
template <typename T>
using V = simd::Vec<T, kW>;
template <typename T>
constexpr int64_t kL = simd::kLanes<T, kW>;
template <typename T>
inline V<T> vload(const T* p) { return simd::load<T, kW>(p); }
template <typename T>
inline void vstore(T* p, V<T> v) { simd::store<T, kW>(p, v); }

// Channels per register block in backward-weight: 4 vectors of sums per tap.
constexpr int kVectors = 4;
template <typename T>
constexpr int64_t kBlock = kVectors * kL<T>;

// acc[k] += a[k] * b[k] over one block of channels.
template <typename T>
inline void fma_block(V<T>* acc, const T* a, const T* b) {
  for (int k = 0; k < kVectors; ++k) acc[k] += vload(a + k * kL<T>) * vload(b + k * kL<T>);
}

// The input channel that output channel oc reads; the identity when m == 1.
inline int64_t source_channel(int64_t oc, int64_t m) { return m == 1 ? oc : oc / m; }

}  // namespace

template <typename T>
std::vector<T> transpose_weight(const T* w, int64_t channels, int64_t taps) {
  std::vector<T> wt(channels * taps);
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t t = 0; t < taps; ++t) wt[t * channels + c] = w[c * taps + t];
  return wt;
}

// Where the taps of one output row read: for each row tap that stays inside the image, the
// input row and that tap's weights; for each column tap, its offset from the pixel.
template <typename T>
struct RowTaps {
  std::vector<const T*> input_rows;  // x[n, ih, 0, :] per valid row tap
  std::vector<const T*> weights;     // wt[(i*kw), :] per valid row tap
  std::vector<int64_t> column_offset;  // (j*dw - pw) * C per column tap
};

// Channel block starts for blocks of `width` channels: full blocks, then one block aligned to
// the end that overlaps the previous one (its channels are recomputed with identical results),
// so no channel needs a scalar tail when C >= width.
inline void channel_blocks(int64_t channels, int64_t width, std::vector<int64_t>& starts) {
  starts.clear();
  int64_t c = 0;
  for (; c + width <= channels; c += width) starts.push_back(c);
  if (c < channels && channels >= width) starts.push_back(channels - width);
}

template <typename T>
inline V<T> activate(V<T> v, bool relu) {
  const V<T> zero{};
  return relu ? (v > zero ? v : zero) : v;
}

// P consecutive interior output pixels (every column tap inside the image) x KV vectors of
// channels starting at c0: P*KV sums in registers; each tap's weights are loaded once and
// used for all P pixels.
template <typename T, int P, int KV>
inline void interior_block(const RowTaps<T>& rt, int64_t kernel_w, int64_t co, int64_t pixel_stride,
                           int64_t first, int64_t c0, const T* bias, T* dst, int64_t ldo, bool relu) {
  constexpr int64_t L = kL<T>;
  V<T> acc[P][KV];
  for (int k = 0; k < KV; ++k) {
    const V<T> b = bias ? vload(bias + c0 + k * L) : V<T>{};
    for (int p = 0; p < P; ++p) acc[p][k] = b;
  }
  for (size_t r = 0; r < rt.input_rows.size(); ++r) {
    const T* row = rt.input_rows[r] + first * pixel_stride + c0;
    const T* wrow = rt.weights[r] + c0;
    for (int64_t j = 0; j < kernel_w; ++j) {
      const T* px = row + rt.column_offset[j];
      V<T> w[KV];
      for (int k = 0; k < KV; ++k) w[k] = vload(wrow + j * co + k * L);
      for (int p = 0; p < P; ++p)
        for (int k = 0; k < KV; ++k) acc[p][k] += w[k] * vload(px + p * pixel_stride + k * L);
    }
  }
  for (int p = 0; p < P; ++p)
    for (int k = 0; k < KV; ++k) vstore(dst + p * ldo + c0 + k * L, activate<T>(acc[p][k], relu));
}

// One output pixel at the image border: only the column taps whose interval holds ow.
template <typename T, int KV>
inline void border_pixel(const RowTaps<T>& rt, const std::vector<Range>& cols, int64_t kernel_w, int64_t co,
                         int64_t pixel_stride, int64_t ow, int64_t c0, const T* bias, T* dst, bool relu) {
  constexpr int64_t L = kL<T>;
  V<T> acc[KV];
  for (int k = 0; k < KV; ++k) acc[k] = bias ? vload(bias + c0 + k * L) : V<T>{};
  for (size_t r = 0; r < rt.input_rows.size(); ++r) {
    const T* row = rt.input_rows[r] + ow * pixel_stride + c0;
    for (int64_t j = 0; j < kernel_w; ++j) {
      if (ow < cols[j].begin || ow >= cols[j].end) continue;  // tap in the padding
      const T* px = row + rt.column_offset[j];
      const T* wv = rt.weights[r] + j * co + c0;
      for (int k = 0; k < KV; ++k) acc[k] += vload(wv + k * L) * vload(px + k * L);
    }
  }
  for (int k = 0; k < KV; ++k) vstore(dst + c0 + k * L, activate<T>(acc[k], relu));
}

// The general case, one channel at a time: any depth multiplier, and C below one vector.
template <typename T>
void scalar_pixel(const RowTaps<T>& rt, const std::vector<Range>& cols, const ConvGeometry& g,
                  int64_t ow, const T* bias, T* dst, bool relu) {
  const int64_t m = g.out_channels / g.in_channels, co = g.out_channels;
  for (int64_t oc = 0; oc < co; ++oc) {
    T sum = bias ? bias[oc] : T(0);
    for (size_t r = 0; r < rt.input_rows.size(); ++r)
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        if (ow < cols[j].begin || ow >= cols[j].end) continue;
        const T* px = rt.input_rows[r] + ow * g.stride_w * g.in_channels + rt.column_offset[j];
        sum += rt.weights[r][j * co + oc] * px[source_channel(oc, m)];
      }
    dst[oc] = (relu && sum < T(0)) ? T(0) : sum;
  }
}

template <typename T>
void forward_pixels(const T* x, const T* wt, const T* bias, const ConvGeometry& g,
                    const std::vector<Range>& cols, int64_t n, int64_t q0, int64_t q1, T* out,
                    int64_t ldo, bool relu) {
  constexpr int64_t L = kL<T>;
  // Pixels per interior block: P x 2 vectors of sums, + 2 of weights, fit the register file
  // (6 for 16 registers: AVX2, SSE2; 8 for 32: AVX-512, NEON).
  constexpr int P = ATROUS_ISA_NHWC_PIXELS;
  const int64_t co = g.out_channels, ci = g.in_channels;
  const bool vector_path = co == ci && co >= L;  // no multiplier, at least one vector of channels
  const int64_t width = co >= 2 * L ? 2 * L : L;
  const int64_t pixel_stride = g.stride_w * ci;
  RowTaps<T> rt;
  for (int64_t j = 0; j < g.kernel_w; ++j) rt.column_offset.push_back((j * g.dil_w - g.pad_w) * ci);
  // Output columns where every column tap is inside the image.
  int64_t lo = 0, hi = g.out_w;
  for (const Range& c : cols) lo = std::max(lo, c.begin), hi = std::min(hi, c.end);
  std::vector<int64_t> blocks;
  channel_blocks(co, width, blocks);
  for (int64_t q = q0; q < q1;) {
    const int64_t oh = q / g.out_w, ow0 = q % g.out_w, ow1 = std::min(g.out_w, ow0 + (q1 - q));
    T* row_out = out + (q - q0) * ldo - ow0 * ldo;  // pixel ow of this row at row_out + ow * ldo
    const Range rows = output_tap_range(g.in_h, g.kernel_h, g.stride_h, g.pad_h, g.dil_h, oh);
    rt.input_rows.clear();
    rt.weights.clear();
    for (int64_t i = rows.begin; i < rows.end; ++i) {
      rt.input_rows.push_back(x + (n * g.in_h + input_index(oh, i, g.stride_h, g.pad_h, g.dil_h)) * g.in_w * ci);
      rt.weights.push_back(wt + i * g.kernel_w * co);
    }
    const int64_t a = std::clamp(lo, ow0, ow1), b = std::clamp(hi, a, ow1);  // interior [a, b)
    for (int64_t ow = ow0; ow < ow1; ++ow) {
      T* dst = row_out + ow * ldo;
      if (!vector_path) {
        scalar_pixel(rt, cols, g, ow, bias, dst, relu);
      } else if (ow >= a && ow + P <= b) {  // a block of P interior pixels
        for (int64_t c0 : blocks) {
          if (width == 2 * L) interior_block<T, P, 2>(rt, g.kernel_w, co, pixel_stride, ow, c0, bias, dst, ldo, relu);
          else interior_block<T, P, 1>(rt, g.kernel_w, co, pixel_stride, ow, c0, bias, dst, ldo, relu);
        }
        ow += P - 1;
      } else {
        for (int64_t c0 : blocks) {
          if (width == 2 * L) border_pixel<T, 2>(rt, cols, g.kernel_w, co, pixel_stride, ow, c0, bias, dst, relu);
          else border_pixel<T, 1>(rt, cols, g.kernel_w, co, pixel_stride, ow, c0, bias, dst, relu);
        }
      }
    }
    q += ow1 - ow0;
  }
}

template <typename T>
void forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g) {
  const std::vector<T> wt = transpose_weight(w, g.out_channels, g.kernel_h * g.kernel_w);
  const std::vector<Range> cols = tap_column_ranges(g);
  parallel_for(0, g.batch * g.out_h, grain_for(g.out_w * g.out_channels * g.kernel_h * g.kernel_w),
                   [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / g.out_h, oh = row % g.out_h;
      forward_pixels(x, wt.data(), bias, g, cols, n, oh * g.out_w, (oh + 1) * g.out_w,
                     y + row * g.out_w * g.out_channels, g.out_channels, false);
    }
  });
}

// grad_input[ih, iw, c] = sum over the m output channels of c and the taps (i, j) whose output
// (oh, ow) = ((ih + ph - i*dh) / sh, (iw + pw - j*dw) / sw) exists, of w * grad_output.
// At stride 1 with m = 1 that is the forward kernel run on grad_output with the flipped kernel
// and padding k_eff - 1 - p (negative padding crops), so it reuses the blocked forward.
// Otherwise a gather, each thread writing only its own input rows.
template <typename T>
void backward_input(const T* gy, const T* w, T* gx, const ConvGeometry& g) {
  const int64_t m = g.out_channels / g.in_channels, co = g.out_channels, ci = g.in_channels;
  const int64_t taps = g.kernel_h * g.kernel_w;
  if (g.stride_h == 1 && g.stride_w == 1 && m == 1) {
    std::vector<T> flipped(co * taps);  // flipped[c][i][j] = w[c][kh-1-i][kw-1-j]
    for (int64_t c = 0; c < co; ++c)
      for (int64_t t = 0; t < taps; ++t) flipped[c * taps + t] = w[c * taps + (taps - 1 - t)];
    ConvGeometry t = g;
    t.in_h = g.out_h, t.in_w = g.out_w, t.out_h = g.in_h, t.out_w = g.in_w;
    t.pad_h = effective_kernel_size(g.kernel_h, g.dil_h) - 1 - g.pad_h;
    t.pad_w = effective_kernel_size(g.kernel_w, g.dil_w) - 1 - g.pad_w;
    forward(gy, flipped.data(), static_cast<const T*>(nullptr), gx, t);
    return;
  }
  const std::vector<T> wt = transpose_weight(w, co, taps);
  constexpr int64_t L = kL<T>;
  std::vector<int64_t> blocks;
  channel_blocks(ci, L, blocks);
  parallel_for(0, g.batch * g.in_h, grain_for(g.in_w * co * taps), [&](int64_t begin, int64_t end) {
    std::vector<int64_t> tap_rows, tap_oh;
    std::vector<const T*> pixel(taps), weight(taps);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / g.in_h, ih = row % g.in_h;
      tap_rows.clear();
      tap_oh.clear();
      for (int64_t i = 0; i < g.kernel_h; ++i) {  // row taps that land on a real output row
        const int64_t num = ih + g.pad_h - i * g.dil_h;
        if (num < 0 || num % g.stride_h != 0 || num / g.stride_h >= g.out_h) continue;
        tap_rows.push_back(i);
        tap_oh.push_back(num / g.stride_h);
      }
      for (int64_t iw = 0; iw < g.in_w; ++iw) {
        T* out = gx + ((n * g.in_h + ih) * g.in_w + iw) * ci;
        int64_t n_taps = 0;
        for (size_t r = 0; r < tap_rows.size(); ++r) {
          for (int64_t j = 0; j < g.kernel_w; ++j) {
            const int64_t num = iw + g.pad_w - j * g.dil_w;
            if (num < 0 || num % g.stride_w != 0 || num / g.stride_w >= g.out_w) continue;
            pixel[n_taps] = gy + ((n * g.out_h + tap_oh[r]) * g.out_w + num / g.stride_w) * co;
            weight[n_taps++] = wt.data() + (tap_rows[r] * g.kernel_w + j) * co;
          }
        }
        if (m == 1 && ci >= L) {  // vector blocks, the last one overlapping (same values rewritten)
          for (int64_t c0 : blocks) {
            V<T> acc{};
            for (int64_t t = 0; t < n_taps; ++t) acc += vload(weight[t] + c0) * vload(pixel[t] + c0);
            vstore(out + c0, acc);
          }
          continue;
        }
        for (int64_t c = 0; c < ci; ++c) {  // the m output channels of each input channel
          T sum = 0;
          for (int64_t t = 0; t < n_taps; ++t)
            for (int64_t k = 0; k < m; ++k) sum += weight[t][c * m + k] * pixel[t][c * m + k];
          out[c] = sum;
        }
      }
    }
  });
}

namespace {

// Weight gradient of the channels [c0, c0 + KV*L) into acc[tap][lane] (double): for each output
// row, each tap's sums run in registers along the row, then are added in double, in order.
template <typename T, int KV>
void weight_block(const T* gy, const T* x, const ConvGeometry& g, const std::vector<Range>& cols,
                  int64_t c0, double* acc) {
  constexpr int64_t L = kL<T>, B = KV * L;
  const int64_t co = g.out_channels, ci = g.in_channels;
  for (int64_t n = 0; n < g.batch; ++n) {
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      const T* gy_row = gy + (n * g.out_h + oh) * g.out_w * co + c0;
      const Range rows = output_tap_range(g.in_h, g.kernel_h, g.stride_h, g.pad_h, g.dil_h, oh);
      for (int64_t i = rows.begin; i < rows.end; ++i) {
        const T* x_row = x + (n * g.in_h + input_index(oh, i, g.stride_h, g.pad_h, g.dil_h)) * g.in_w * ci + c0;
        for (int64_t j = 0; j < g.kernel_w; ++j) {
          V<T> sum[KV] = {};
          const int64_t x_offset = (j * g.dil_w - g.pad_w) * ci;
          for (int64_t ow = cols[j].begin; ow < cols[j].end; ++ow) {
            const T* pg = gy_row + ow * co;
            const T* px = x_row + ow * g.stride_w * ci + x_offset;
            for (int k = 0; k < KV; ++k) sum[k] += vload(pg + k * L) * vload(px + k * L);
          }
          double* a = acc + (i * g.kernel_w + j) * B;
          for (int k = 0; k < KV; ++k)
            for (int64_t v = 0; v < L; ++v) a[k * L + v] += sum[k][v];
        }
      }
    }
  }
}

}  // namespace

// grad_weight[oc, i, j] = sum over n, oh, ow of grad_output * input. One thread owns a block of
// channels and sums in a fixed order, so the result does not depend on the thread count.
template <typename T>
void backward_weight(const T* gy, const T* x, T* gw, const ConvGeometry& g) {
  const int64_t m = g.out_channels / g.in_channels, co = g.out_channels;
  const int64_t taps = g.kernel_h * g.kernel_w;
  const std::vector<Range> cols = tap_column_ranges(g);
  constexpr int64_t L = kL<T>;
  if (m == 1 && co >= L) {
    // Blocks of 4 vectors (1 when C is small); the last block overlaps the previous one and
    // writes only its own new channels.
    const int kv = co >= 4 * L ? 4 : 1;
    std::vector<int64_t> blocks;
    channel_blocks(co, kv * L, blocks);
    parallel_for(0, static_cast<int64_t>(blocks.size()), 1, [&](int64_t begin, int64_t end) {
      std::vector<double> acc(taps * kv * L);
      for (int64_t b = begin; b < end; ++b) {
        const int64_t c0 = blocks[b];
        const int64_t first_new = b == 0 ? 0 : std::max(c0, blocks[b - 1] + kv * L);
        std::fill(acc.begin(), acc.end(), 0.0);
        if (kv == 4) weight_block<T, 4>(gy, x, g, cols, c0, acc.data());
        else weight_block<T, 1>(gy, x, g, cols, c0, acc.data());
        for (int64_t c = first_new; c < c0 + kv * L; ++c)
          for (int64_t t = 0; t < taps; ++t) gw[c * taps + t] = static_cast<T>(acc[t * kv * L + (c - c0)]);
      }
    });
    return;
  }
  // Any depth multiplier, or fewer channels than one vector: one output channel at a time.
  const int64_t ci = g.in_channels;
  parallel_for(0, co, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> acc(taps);
    for (int64_t oc = begin; oc < end; ++oc) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t n = 0; n < g.batch; ++n)
        for (int64_t oh = 0; oh < g.out_h; ++oh) {
          const Range rows = output_tap_range(g.in_h, g.kernel_h, g.stride_h, g.pad_h, g.dil_h, oh);
          for (int64_t i = rows.begin; i < rows.end; ++i) {
            const int64_t ih = input_index(oh, i, g.stride_h, g.pad_h, g.dil_h);
            for (int64_t j = 0; j < g.kernel_w; ++j) {
              double sum = 0;
              for (int64_t ow = cols[j].begin; ow < cols[j].end; ++ow) {
                const int64_t iw = input_index(ow, j, g.stride_w, g.pad_w, g.dil_w);
                sum += static_cast<double>(gy[((n * g.out_h + oh) * g.out_w + ow) * co + oc]) *
                       x[((n * g.in_h + ih) * g.in_w + iw) * ci + source_channel(oc, m)];
              }
              acc[i * g.kernel_w + j] += sum;
            }
          }
        }
      for (int64_t t = 0; t < taps; ++t) gw[oc * taps + t] = static_cast<T>(acc[t]);
    }
  });
}

}  // namespace atrous::cpu::ATROUS_ISA_NS::depthwise::nhwc

namespace atrous::cpu::ATROUS_ISA_NS::depthwise {
ATROUS_INSTANTIATE_DEPTHWISE_RUNG(nhwc)
template std::vector<float> nhwc::transpose_weight<float>(const float*, int64_t, int64_t);
template std::vector<double> nhwc::transpose_weight<double>(const double*, int64_t, int64_t);
template void nhwc::forward_pixels<float>(const float*, const float*, const float*, const ConvGeometry&,
                                          const std::vector<Range>&, int64_t, int64_t, int64_t, float*,
                                          int64_t, bool);
template void nhwc::forward_pixels<double>(const double*, const double*, const double*, const ConvGeometry&,
                                           const std::vector<Range>&, int64_t, int64_t, int64_t, double*,
                                           int64_t, bool);
}
