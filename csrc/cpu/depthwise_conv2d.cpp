// CPU kernels of the depthwise atrous convolution: forward, backward-input, backward-weight.
//
// Layout: NCHW planes. Output channel oc reads input channel oc / m (m = depth multiplier).
// Every kernel walks output rows; for each kernel tap the output columns that read inside
// the input form one interval (tap_output_range), so the inner loops carry no bounds check
// and padding costs nothing: taps landing in the padding are simply not visited.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <vector>

#include "../common/checks.h"
#include "../common/conv_index.h"
#include "cpu_utils.h"

namespace atrous::cpu {
namespace {

constexpr const char* kForward = "atrous.depthwise_conv2d";
constexpr const char* kBackwardInput = "atrous.depthwise_conv2d_backward_input";
constexpr const char* kBackwardWeight = "atrous.depthwise_conv2d_backward_weight";

// out_row[ow] += w * in_row[ow*sw + offset] over the tap's column interval.
template <typename scalar_t>
inline void axpy_strided(scalar_t* __restrict out_row, const scalar_t* __restrict in_row,
                         scalar_t w, Range cols, int64_t sw, int64_t offset) {
  if (sw == 1) {  // the common case: unit stride, which the compiler vectorises
    const scalar_t* src = in_row + offset;
    for (int64_t ow = cols.begin; ow < cols.end; ++ow) out_row[ow] += w * src[ow];
  } else {
    for (int64_t ow = cols.begin; ow < cols.end; ++ow) out_row[ow] += w * in_row[ow * sw + offset];
  }
}

// One output plane: out = bias + sum over taps (i, j) of w[i, j] * shifted input.
template <typename scalar_t>
void forward_plane(const scalar_t* __restrict in, const scalar_t* __restrict w, scalar_t bias,
                   scalar_t* __restrict out, const ConvGeometry& g,
                   const std::vector<Range>& cols) {
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    scalar_t* out_row = out + oh * g.out_w;
    for (int64_t ow = 0; ow < g.out_w; ++ow) out_row[ow] = bias;
    const Range taps = output_tap_range(g.in_h, g.kernel_h, g.stride_h, g.pad_h, g.dil_h, oh);
    for (int64_t i = taps.begin; i < taps.end; ++i) {
      const scalar_t* in_row = in + input_index(oh, i, g.stride_h, g.pad_h, g.dil_h) * g.in_w;
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        axpy_strided(out_row, in_row, w[i * g.kernel_w + j], cols[j], g.stride_w,
                     j * g.dil_w - g.pad_w);
      }
    }
  }
}

// One input plane's gradient: the adjoint of forward_plane, scattering each output-gradient
// row back along the same tap intervals. The caller zeroes grad_in and loops over the m
// output channels that read this plane.
template <typename scalar_t>
void backward_input_plane(const scalar_t* __restrict grad_out, const scalar_t* __restrict w,
                          scalar_t* __restrict grad_in, const ConvGeometry& g,
                          const std::vector<Range>& cols) {
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    const scalar_t* go_row = grad_out + oh * g.out_w;
    const Range taps = output_tap_range(g.in_h, g.kernel_h, g.stride_h, g.pad_h, g.dil_h, oh);
    for (int64_t i = taps.begin; i < taps.end; ++i) {
      scalar_t* gi_row = grad_in + input_index(oh, i, g.stride_h, g.pad_h, g.dil_h) * g.in_w;
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const scalar_t wv = w[i * g.kernel_w + j];
        const int64_t offset = j * g.dil_w - g.pad_w;
        const Range c = cols[j];
        if (g.stride_w == 1) {
          scalar_t* dst = gi_row + offset;
          for (int64_t ow = c.begin; ow < c.end; ++ow) dst[ow] += wv * go_row[ow];
        } else {
          for (int64_t ow = c.begin; ow < c.end; ++ow) {
            gi_row[ow * g.stride_w + offset] += wv * go_row[ow];
          }
        }
      }
    }
  }
}

// Weight gradient of one output channel over one image, accumulated into acc[kh*kw]:
// acc[i, j] += sum_{oh, ow} grad_out[oh, ow] * in[oh*sh - ph + i*dh, ow*sw - pw + j*dw].
template <typename scalar_t, typename acc_t>
void backward_weight_plane(const scalar_t* __restrict grad_out, const scalar_t* __restrict in,
                           acc_t* __restrict acc, const ConvGeometry& g,
                           const std::vector<Range>& cols) {
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    const scalar_t* go_row = grad_out + oh * g.out_w;
    const Range taps = output_tap_range(g.in_h, g.kernel_h, g.stride_h, g.pad_h, g.dil_h, oh);
    for (int64_t i = taps.begin; i < taps.end; ++i) {
      const scalar_t* in_row = in + input_index(oh, i, g.stride_h, g.pad_h, g.dil_h) * g.in_w;
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const int64_t offset = j * g.dil_w - g.pad_w;
        const Range c = cols[j];
        acc_t sum = 0;
        for (int64_t ow = c.begin; ow < c.end; ++ow) {
          sum += static_cast<acc_t>(go_row[ow]) * static_cast<acc_t>(in_row[ow * g.stride_w + offset]);
        }
        acc[i * g.kernel_w + j] += sum;
      }
    }
  }
}

at::Tensor depthwise_forward(const at::Tensor& input, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation) {
  const ConvGeometry g =
      check_forward(kForward, ConvKind::Depthwise, input, weight, bias, stride, padding, dilation);
  check_cpu(kForward, input);
  const at::Tensor x = input.contiguous();    // (N, C, H, W)
  const at::Tensor w = weight.contiguous();   // (C*m, 1, kh, kw)
  const bool has_bias = bias.has_value() && bias->defined();
  const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
  at::Tensor out = at::empty({g.batch, g.out_channels, g.out_h, g.out_w}, x.options());
  const int64_t m = g.out_channels / g.in_channels;
  const std::vector<Range> cols = tap_column_ranges(g);

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "depthwise_conv2d_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    const scalar_t* bp = has_bias ? b.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    const int64_t planes = g.batch * g.out_channels;
    const int64_t work = g.out_h * g.out_w * g.kernel_h * g.kernel_w;
    at::parallel_for(0, planes, grain_for(work), [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t n = p / g.out_channels;
        const int64_t oc = p % g.out_channels;
        const int64_t c = oc / m;
        forward_plane(xp + (n * g.in_channels + c) * g.in_h * g.in_w,
                      wp + oc * g.kernel_h * g.kernel_w, bp ? bp[oc] : scalar_t(0),
                      op + p * g.out_h * g.out_w, g, cols);
      }
    });
  });
  return to_output_format(out, input);
}

at::Tensor depthwise_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                    at::IntArrayRef input_size, at::IntArrayRef stride,
                                    at::IntArrayRef padding, at::IntArrayRef dilation) {
  const ConvGeometry g = check_backward_input(kBackwardInput, ConvKind::Depthwise, grad_output,
                                              weight, input_size, stride, padding, dilation);
  check_cpu(kBackwardInput, grad_output);
  const at::Tensor go = grad_output.contiguous();  // (N, C*m, Ho, Wo)
  const at::Tensor w = weight.contiguous();        // (C*m, 1, kh, kw)
  at::Tensor grad_in = at::zeros(input_size, go.options());  // (N, C, H, W)
  const int64_t m = g.out_channels / g.in_channels;
  const std::vector<Range> cols = tap_column_ranges(g);

  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "depthwise_conv2d_backward_input_cpu", [&] {
    const scalar_t* gop = go.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    scalar_t* gip = grad_in.mutable_data_ptr<scalar_t>();
    const int64_t planes = g.batch * g.in_channels;
    const int64_t work = m * g.out_h * g.out_w * g.kernel_h * g.kernel_w;
    // One thread owns each input plane and visits its m output channels in order, so the
    // sums are race-free and deterministic.
    at::parallel_for(0, planes, grain_for(work), [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t n = p / g.in_channels;
        const int64_t c = p % g.in_channels;
        for (int64_t k = 0; k < m; ++k) {
          const int64_t oc = c * m + k;
          backward_input_plane(gop + (n * g.out_channels + oc) * g.out_h * g.out_w,
                               wp + oc * g.kernel_h * g.kernel_w,
                               gip + p * g.in_h * g.in_w, g, cols);
        }
      }
    });
  });
  return to_output_format(grad_in, grad_output);
}

at::Tensor depthwise_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                     at::IntArrayRef weight_size, at::IntArrayRef stride,
                                     at::IntArrayRef padding, at::IntArrayRef dilation) {
  const ConvGeometry g = check_backward_weight(kBackwardWeight, ConvKind::Depthwise, grad_output,
                                               input, weight_size, stride, padding, dilation);
  check_cpu(kBackwardWeight, grad_output);
  const at::Tensor go = grad_output.contiguous();  // (N, C*m, Ho, Wo)
  const at::Tensor x = input.contiguous();         // (N, C, H, W)
  at::Tensor grad_w = at::empty(weight_size, go.options());  // (C*m, 1, kh, kw)
  const int64_t m = g.out_channels / g.in_channels;
  const std::vector<Range> cols = tap_column_ranges(g);
  const int64_t taps = g.kernel_h * g.kernel_w;

  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "depthwise_conv2d_backward_weight_cpu", [&] {
    const scalar_t* gop = go.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* gwp = grad_w.mutable_data_ptr<scalar_t>();
    const int64_t work = g.batch * g.out_h * g.out_w * taps;
    // One thread owns each output channel and sums over the batch in order: deterministic.
    at::parallel_for(0, g.out_channels, grain_for(work), [&](int64_t begin, int64_t end) {
      std::vector<double> acc(taps);
      for (int64_t oc = begin; oc < end; ++oc) {
        std::fill(acc.begin(), acc.end(), 0.0);
        const int64_t c = oc / m;
        for (int64_t n = 0; n < g.batch; ++n) {
          backward_weight_plane<scalar_t, double>(
              gop + (n * g.out_channels + oc) * g.out_h * g.out_w,
              xp + (n * g.in_channels + c) * g.in_h * g.in_w, acc.data(), g, cols);
        }
        for (int64_t t = 0; t < taps; ++t) gwp[oc * taps + t] = static_cast<scalar_t>(acc[t]);
      }
    });
  });
  return grad_w;
}

}  // namespace

TORCH_LIBRARY_IMPL(atrous, CPU, m) {
  m.impl("depthwise_conv2d", &depthwise_forward);
  m.impl("depthwise_conv2d_backward_input", &depthwise_backward_input);
  m.impl("depthwise_conv2d_backward_weight", &depthwise_backward_weight);
}

}  // namespace atrous::cpu
