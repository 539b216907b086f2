// Depthwise ladder v0 "naive": the definition, one output element at a time, on one thread.
//
//   y[n, oc, oh, ow] = bias[oc] + sum_{i, j} w[oc, i, j] * x[n, oc / m, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
//
// with taps that land outside the input skipped (they read zero padding). Slow and obviously
// correct: the rung every other rung is checked against, and the tutorials start here.
#include "isa_kernels.h"

namespace atrous::cpu::ATROUS_ISA_NS::depthwise::naive {

template <typename T>
void forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g) {
  const int64_t m = g.out_channels / g.in_channels;
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t oc = 0; oc < g.out_channels; ++oc)
      for (int64_t oh = 0; oh < g.out_h; ++oh)
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          T sum = bias ? bias[oc] : T(0);
          for (int64_t i = 0; i < g.kernel_h; ++i)
            for (int64_t j = 0; j < g.kernel_w; ++j) {
              const int64_t ih = oh * g.stride_h - g.pad_h + i * g.dil_h;
              const int64_t iw = ow * g.stride_w - g.pad_w + j * g.dil_w;
              if (ih < 0 || ih >= g.in_h || iw < 0 || iw >= g.in_w) continue;  // padding
              sum += w[(oc * g.kernel_h + i) * g.kernel_w + j] *
                     x[((n * g.in_channels + oc / m) * g.in_h + ih) * g.in_w + iw];
            }
          y[((n * g.out_channels + oc) * g.out_h + oh) * g.out_w + ow] = sum;
        }
}

// Every output scatters its gradient back to the inputs it read.
template <typename T>
void backward_input(const T* gy, const T* w, T* gx, const ConvGeometry& g) {
  const int64_t m = g.out_channels / g.in_channels;
  for (int64_t k = 0; k < g.batch * g.in_channels * g.in_h * g.in_w; ++k) gx[k] = T(0);
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t oc = 0; oc < g.out_channels; ++oc)
      for (int64_t oh = 0; oh < g.out_h; ++oh)
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          const T grad = gy[((n * g.out_channels + oc) * g.out_h + oh) * g.out_w + ow];
          for (int64_t i = 0; i < g.kernel_h; ++i)
            for (int64_t j = 0; j < g.kernel_w; ++j) {
              const int64_t ih = oh * g.stride_h - g.pad_h + i * g.dil_h;
              const int64_t iw = ow * g.stride_w - g.pad_w + j * g.dil_w;
              if (ih < 0 || ih >= g.in_h || iw < 0 || iw >= g.in_w) continue;
              gx[((n * g.in_channels + oc / m) * g.in_h + ih) * g.in_w + iw] +=
                  w[(oc * g.kernel_h + i) * g.kernel_w + j] * grad;
            }
        }
}

// Each weight's gradient is the sum, over every output it touched, of gy * the input it read.
template <typename T>
void backward_weight(const T* gy, const T* x, T* gw, const ConvGeometry& g) {
  const int64_t m = g.out_channels / g.in_channels;
  for (int64_t oc = 0; oc < g.out_channels; ++oc)
    for (int64_t i = 0; i < g.kernel_h; ++i)
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        double sum = 0;  // double: the sum runs over N * Ho * Wo terms
        for (int64_t n = 0; n < g.batch; ++n)
          for (int64_t oh = 0; oh < g.out_h; ++oh)
            for (int64_t ow = 0; ow < g.out_w; ++ow) {
              const int64_t ih = oh * g.stride_h - g.pad_h + i * g.dil_h;
              const int64_t iw = ow * g.stride_w - g.pad_w + j * g.dil_w;
              if (ih < 0 || ih >= g.in_h || iw < 0 || iw >= g.in_w) continue;
              sum += static_cast<double>(gy[((n * g.out_channels + oc) * g.out_h + oh) * g.out_w + ow]) *
                     static_cast<double>(x[((n * g.in_channels + oc / m) * g.in_h + ih) * g.in_w + iw]);
            }
        gw[(oc * g.kernel_h + i) * g.kernel_w + j] = static_cast<T>(sum);
      }
}

}  // namespace atrous::cpu::ATROUS_ISA_NS::depthwise::naive

namespace atrous::cpu::ATROUS_ISA_NS::depthwise {
ATROUS_INSTANTIATE_DEPTHWISE_RUNG(naive)
}
