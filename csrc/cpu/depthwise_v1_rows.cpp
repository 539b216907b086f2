// Depthwise ladder v1 "rows": per-tap column intervals instead of per-tap bounds checks.
//
// For a kernel tap j the output columns whose input lies inside the image form one interval
// (tap_output_range), and for an output row the taps that stay inside form one range
// (output_tap_range). So every inner loop runs over an interval with no branch, and taps in
// the padding are never visited. Each output row is built tap by tap (an axpy per tap);
// planes run in parallel.
#include <vector>

#include "kernel_support.h"
#include "isa_kernels.h"

namespace atrous::cpu::ATROUS_ISA_NS::depthwise::rows {
namespace {

// One output plane: out = bias + sum over taps (i, j) of w[i, j] * shifted input.
template <typename T>
void forward_plane(const T* __restrict in, const T* __restrict w, T bias, T* __restrict out,
                   const ConvGeometry& g, const std::vector<Range>& cols) {
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    T* out_row = out + oh * g.out_w;
    for (int64_t ow = 0; ow < g.out_w; ++ow) out_row[ow] = bias;
    const Range taps = output_tap_range(g.in_h, g.kernel_h, g.stride_h, g.pad_h, g.dil_h, oh);
    for (int64_t i = taps.begin; i < taps.end; ++i) {
      const T* in_row = in + input_index(oh, i, g.stride_h, g.pad_h, g.dil_h) * g.in_w;
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const T wv = w[i * g.kernel_w + j];
        const int64_t offset = j * g.dil_w - g.pad_w;
        const Range c = cols[j];
        if (g.stride_w == 1) {  // unit stride: the compiler vectorises this
          for (int64_t ow = c.begin; ow < c.end; ++ow) out_row[ow] += wv * in_row[ow + offset];
        } else {
          for (int64_t ow = c.begin; ow < c.end; ++ow) out_row[ow] += wv * in_row[ow * g.stride_w + offset];
        }
      }
    }
  }
}

// One input plane's gradient from one output channel: the adjoint of forward_plane, scattering
// each output-gradient row back along the same intervals (accumulates into grad_in).
template <typename T>
void backward_input_plane(const T* __restrict grad_out, const T* __restrict w, T* __restrict grad_in,
                          const ConvGeometry& g, const std::vector<Range>& cols) {
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    const T* go_row = grad_out + oh * g.out_w;
    const Range taps = output_tap_range(g.in_h, g.kernel_h, g.stride_h, g.pad_h, g.dil_h, oh);
    for (int64_t i = taps.begin; i < taps.end; ++i) {
      T* gi_row = grad_in + input_index(oh, i, g.stride_h, g.pad_h, g.dil_h) * g.in_w;
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const T wv = w[i * g.kernel_w + j];
        const int64_t offset = j * g.dil_w - g.pad_w;
        const Range c = cols[j];
        for (int64_t ow = c.begin; ow < c.end; ++ow) gi_row[ow * g.stride_w + offset] += wv * go_row[ow];
      }
    }
  }
}

// Weight gradient of one output channel over one image, accumulated into acc[kh*kw].
template <typename T>
void backward_weight_plane(const T* __restrict grad_out, const T* __restrict in, double* __restrict acc,
                           const ConvGeometry& g, const std::vector<Range>& cols) {
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    const T* go_row = grad_out + oh * g.out_w;
    const Range taps = output_tap_range(g.in_h, g.kernel_h, g.stride_h, g.pad_h, g.dil_h, oh);
    for (int64_t i = taps.begin; i < taps.end; ++i) {
      const T* in_row = in + input_index(oh, i, g.stride_h, g.pad_h, g.dil_h) * g.in_w;
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const int64_t offset = j * g.dil_w - g.pad_w;
        const Range c = cols[j];
        double sum = 0;
        for (int64_t ow = c.begin; ow < c.end; ++ow) {
          sum += static_cast<double>(go_row[ow]) * static_cast<double>(in_row[ow * g.stride_w + offset]);
        }
        acc[i * g.kernel_w + j] += sum;
      }
    }
  }
}

}  // namespace

template <typename T>
void forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g) {
  const int64_t m = g.out_channels / g.in_channels;
  const std::vector<Range> cols = tap_column_ranges(g);
  const int64_t work = g.out_h * g.out_w * g.kernel_h * g.kernel_w;
  parallel_for(0, g.batch * g.out_channels, grain_for(work), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / g.out_channels, oc = p % g.out_channels;
      forward_plane(x + (n * g.in_channels + oc / m) * g.in_h * g.in_w,
                    w + oc * g.kernel_h * g.kernel_w, bias ? bias[oc] : T(0),
                    y + p * g.out_h * g.out_w, g, cols);
    }
  });
}

template <typename T>
void backward_input(const T* gy, const T* w, T* gx, const ConvGeometry& g) {
  const int64_t m = g.out_channels / g.in_channels;
  const std::vector<Range> cols = tap_column_ranges(g);
  const int64_t work = m * g.out_h * g.out_w * g.kernel_h * g.kernel_w;
  // One thread owns each input plane and visits its m output channels in order: race-free
  // and deterministic.
  parallel_for(0, g.batch * g.in_channels, grain_for(work), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / g.in_channels, c = p % g.in_channels;
      T* plane = gx + p * g.in_h * g.in_w;
      std::fill(plane, plane + g.in_h * g.in_w, T(0));
      for (int64_t k = 0; k < m; ++k) {
        const int64_t oc = c * m + k;
        backward_input_plane(gy + (n * g.out_channels + oc) * g.out_h * g.out_w,
                             w + oc * g.kernel_h * g.kernel_w, plane, g, cols);
      }
    }
  });
}

template <typename T>
void backward_weight(const T* gy, const T* x, T* gw, const ConvGeometry& g) {
  const int64_t m = g.out_channels / g.in_channels;
  const std::vector<Range> cols = tap_column_ranges(g);
  const int64_t taps = g.kernel_h * g.kernel_w;
  // One thread owns each output channel and sums over the batch in order: deterministic.
  parallel_for(0, g.out_channels, grain_for(g.batch * g.out_h * g.out_w * taps), [&](int64_t begin, int64_t end) {
    std::vector<double> acc(taps);
    for (int64_t oc = begin; oc < end; ++oc) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t n = 0; n < g.batch; ++n) {
        backward_weight_plane(gy + (n * g.out_channels + oc) * g.out_h * g.out_w,
                              x + (n * g.in_channels + oc / m) * g.in_h * g.in_w, acc.data(), g, cols);
      }
      for (int64_t t = 0; t < taps; ++t) gw[oc * taps + t] = static_cast<T>(acc[t]);
    }
  });
}

}  // namespace atrous::cpu::ATROUS_ISA_NS::depthwise::rows

namespace atrous::cpu::ATROUS_ISA_NS::depthwise {
ATROUS_INSTANTIATE_DEPTHWISE_RUNG(rows)
}
