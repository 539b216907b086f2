// CPU kernels of the dense atrous convolution (groups=1) on the project's GEMM.
//
// The ladder (csrc/common/algorithms.h):
//   v0 naive     direct convolution loops with a bounds check per tap, one thread (this file)
//   v1 im2col    per image: col = im2col(x) (C*kh*kw x Ho*Wo), out = weight (C_out x C*kh*kw) @ col
//   v2 implicit  the default: the taps gathered from an NHWC image while the GEMM packs A
//                (conv_gemm in gemm.cpp), taps that only read padding left out; an NCHW image
//                and result go through channels_last copies. Also the stride-1 input gradient,
//                as the forward convolution by the flipped kernel.
// A 1x1 kernel with stride 1 and no padding skips im2col: the image itself is the matrix. The
// weight gradient and the strided input gradient use im2col / col2im.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <vector>

#include "../common/algorithms.h"
#include "../common/checks.h"
#include "conv_gemm.h"
#include "cpu_utils.h"
#include "gemm.h"

namespace atrous::cpu {
namespace {

constexpr const char* kForward = "atrous.atrous_conv2d";
constexpr const char* kBackwardInput = "atrous.atrous_conv2d_backward_input";
constexpr const char* kBackwardWeight = "atrous.atrous_conv2d_backward_weight";

bool use_naive(const char* op, c10::string_view algo) {
  return parse_algorithm(op, std::string_view(algo.data(), algo.size()), kDenseAlgorithms) == 0;
}

// The forward rung: "implicit" (the default) unless im2col is the identity (a plain GEMM then);
// "im2col" when asked for.
bool use_implicit(const char* op, c10::string_view algo, const ConvGeometry& g) {
  const int index = parse_algorithm(op, std::string_view(algo.data(), algo.size()), kDenseAlgorithms);
  return index != 1 && g.in_channels > 0 &&
         !(g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 && g.pad_w == 0);
}

// The taps (i * kernel_w + j) that read an input pixel for at least one output; the others lie in
// the zero padding everywhere and the implicit GEMM leaves them out of its sum.
std::vector<int64_t> live_taps(const ConvGeometry& g) {
  std::vector<int64_t> taps;
  for (int64_t i = 0; i < g.kernel_h; ++i) {
    if (tap_output_range(g.in_h, g.out_h, g.stride_h, g.pad_h, g.dil_h, i).size() == 0) continue;
    for (int64_t j = 0; j < g.kernel_w; ++j)
      if (tap_output_range(g.in_w, g.out_w, g.stride_w, g.pad_w, g.dil_w, j).size() > 0) taps.push_back(i * g.kernel_w + j);
  }
  return taps;
}

// The implicit GEMM's weight: (C_out x taps*C) in (tap, c) order, keeping the live taps only. A
// channels_last weight with every tap live is that already: a channels_last model's weights are
// used as they are stored.
at::Tensor implicit_weight(const at::Tensor& weight, const std::vector<int64_t>& taps) {
  const int64_t o = weight.size(0), c = weight.size(1), all = weight.size(2) * weight.size(3);
  if (static_cast<int64_t>(taps.size()) == all && weight.is_contiguous(at::MemoryFormat::ChannelsLast)) return weight;
  at::Tensor w = weight.permute({0, 2, 3, 1}).reshape({o, all, c});  // (C_out, taps, C)
  if (static_cast<int64_t>(taps.size()) < all) {
    at::Tensor index = at::empty({static_cast<int64_t>(taps.size())}, weight.options().dtype(at::kLong));
    std::copy(taps.begin(), taps.end(), index.mutable_data_ptr<int64_t>());
    w = w.index_select(1, index);
  }
  return w.contiguous();
}

// out = conv(input, weight) + bias by implicit GEMM, on channels_last copies of the image and the
// result when they are NCHW (the kernel's NHWC gather reads each pixel's channels as one run; an
// NCHW gather of the same taps measured 1.2-2x slower than this, conversions included). out is
// allocated by the caller in the op's output layout; bias may be undefined.
template <typename T>
void implicit_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias, const ConvGeometry& g,
                   at::Tensor& out) {
  const std::vector<int64_t> taps = live_taps(g);
  if (taps.empty()) {  // every tap in the padding: the output is the bias
    if (bias.defined()) {
      out.copy_(bias.view({1, -1, 1, 1}).expand_as(out));
    } else {
      out.zero_();
    }
    return;
  }
  const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);  // (N, H, W, C) in memory
  const at::Tensor w = implicit_weight(weight, taps);                     // (C_out, taps, C)
  const bool nhwc = out.is_contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor y = nhwc ? out : at::empty(out.sizes(), out.options().memory_format(at::MemoryFormat::ChannelsLast));
  // The bias starts the GEMM's sums (one per output channel): no pass of its own.
  const Epilogue<T> epilogue{bias.defined() ? bias.const_data_ptr<T>() : nullptr, nullptr, false};
  conv_gemm<T>(x.const_data_ptr<T>(), w.const_data_ptr<T>(), y.mutable_data_ptr<T>(), g,
               ConvTaps{taps.data(), static_cast<int64_t>(taps.size())}, epilogue);
  if (!nhwc) out.copy_(y);
}

// v0: the definition, y[n, o, oh, ow] = bias[o] + sum_{c, i, j} w[o, c, i, j] * x[n, c, ih, iw]
// with ih = oh*sh - ph + i*dh, iw = ow*sw - pw + j*dw, taps outside the image skipped.
namespace naive {

template <typename T, typename F>
void for_each_tap(const ConvGeometry& g, F&& f) {  // f(n, o, oh, ow, c, i, j, ih, iw)
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t o = 0; o < g.out_channels; ++o)
      for (int64_t oh = 0; oh < g.out_h; ++oh)
        for (int64_t ow = 0; ow < g.out_w; ++ow)
          for (int64_t c = 0; c < g.in_channels; ++c)
            for (int64_t i = 0; i < g.kernel_h; ++i)
              for (int64_t j = 0; j < g.kernel_w; ++j) {
                const int64_t ih = oh * g.stride_h - g.pad_h + i * g.dil_h;
                const int64_t iw = ow * g.stride_w - g.pad_w + j * g.dil_w;
                if (ih < 0 || ih >= g.in_h || iw < 0 || iw >= g.in_w) continue;  // padding
                f(n, o, oh, ow, c, i, j, ih, iw);
              }
}

template <typename T>
void forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g) {
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t o = 0; o < g.out_channels; ++o)
      for (int64_t q = 0; q < g.out_h * g.out_w; ++q)
        y[(n * g.out_channels + o) * g.out_h * g.out_w + q] = bias ? bias[o] : T(0);
  for_each_tap<T>(g, [&](int64_t n, int64_t o, int64_t oh, int64_t ow, int64_t c, int64_t i, int64_t j,
                         int64_t ih, int64_t iw) {
    y[((n * g.out_channels + o) * g.out_h + oh) * g.out_w + ow] +=
        w[((o * g.in_channels + c) * g.kernel_h + i) * g.kernel_w + j] *
        x[((n * g.in_channels + c) * g.in_h + ih) * g.in_w + iw];
  });
}

template <typename T>
void backward_input(const T* gy, const T* w, T* gx, const ConvGeometry& g) {
  std::fill(gx, gx + g.batch * g.in_channels * g.in_h * g.in_w, T(0));
  for_each_tap<T>(g, [&](int64_t n, int64_t o, int64_t oh, int64_t ow, int64_t c, int64_t i, int64_t j,
                         int64_t ih, int64_t iw) {
    gx[((n * g.in_channels + c) * g.in_h + ih) * g.in_w + iw] +=
        w[((o * g.in_channels + c) * g.kernel_h + i) * g.kernel_w + j] *
        gy[((n * g.out_channels + o) * g.out_h + oh) * g.out_w + ow];
  });
}

template <typename T>
void backward_weight(const T* gy, const T* x, T* gw, const ConvGeometry& g) {
  std::vector<double> acc(g.out_channels * g.in_channels * g.kernel_h * g.kernel_w, 0.0);
  for_each_tap<T>(g, [&](int64_t n, int64_t o, int64_t oh, int64_t ow, int64_t c, int64_t i, int64_t j,
                         int64_t ih, int64_t iw) {
    acc[((o * g.in_channels + c) * g.kernel_h + i) * g.kernel_w + j] +=
        static_cast<double>(gy[((n * g.out_channels + o) * g.out_h + oh) * g.out_w + ow]) *
        x[((n * g.in_channels + c) * g.in_h + ih) * g.in_w + iw];
  });
  for (size_t k = 0; k < acc.size(); ++k) gw[k] = static_cast<T>(acc[k]);
}

}  // namespace naive

bool is_identity_im2col(const ConvGeometry& g) {
  return g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 &&
         g.pad_h == 0 && g.pad_w == 0;
}

// Image n as the GEMM's (C*kh*kw x Ho*Wo) operand: the image itself when im2col is the
// identity, otherwise im2col into `col`. `x` is NCHW-contiguous unless im2col is the identity.
template <typename T>
MatrixView<T> columns_of(const at::Tensor& x, int64_t n, const ConvGeometry& g,
                         const std::vector<Range>& cols, std::vector<T>& col) {
  if (is_identity_im2col(g)) return image_matrix<T>(x, n);
  im2col<T>(x.const_data_ptr<T>() + n * g.in_channels * g.in_h * g.in_w, col.data(), g, cols);
  return {col.data(), g.out_h * g.out_w, 1};
}

at::Tensor prepare_input(const at::Tensor& input, const ConvGeometry& g) {
  return is_identity_im2col(g) && is_gemm_friendly(input) ? input : input.contiguous();
}

int64_t col_size(const ConvGeometry& g) {
  return is_identity_im2col(g) ? 0 : g.in_channels * g.kernel_h * g.kernel_w * g.out_h * g.out_w;
}

at::Tensor atrous_forward(const at::Tensor& input, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                          at::IntArrayRef padding, at::IntArrayRef dilation, c10::string_view algo) {
  const ConvGeometry g =
      check_forward(kForward, ConvKind::Dense, input, weight, bias, stride, padding, dilation);
  check_cpu(kForward, input);
  if (use_naive(kForward, algo)) {
    return run_forward(at::MemoryFormat::Contiguous, input, weight, bias, g,
                       [&](auto x, auto w, auto b, auto y) { naive::forward(x, w, b, y, g); });
  }
  const bool has_bias = bias.has_value() && bias->defined();
  at::Tensor out = at::empty({g.batch, g.out_channels, g.out_h, g.out_w},
                             input.options().memory_format(output_memory_format(input, weight)));
  const int64_t k = g.in_channels * g.kernel_h * g.kernel_w;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "atrous_conv2d_cpu", [&] {
    const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
    // The bias starts the GEMM's sums (one per output channel, a row of C): no pass of its own.
    const Epilogue<scalar_t> epilogue{has_bias ? b.const_data_ptr<scalar_t>() : nullptr, nullptr, false};
    if (use_implicit(kForward, algo, g)) {
      implicit_conv<scalar_t>(input, weight, has_bias ? b : at::Tensor(), g, out);
      return;
    }
    const at::Tensor x = prepare_input(input, g);  // (N, C, H, W)
    const at::Tensor w = weight.contiguous();      // (C_out, C, kh, kw)
    const std::vector<Range> cols = tap_column_ranges(g);
    std::vector<scalar_t> col(col_size(g));
    const MatrixView<scalar_t> wm{w.const_data_ptr<scalar_t>(), k, 1};
    for (int64_t n = 0; n < g.batch; ++n) {
      gemm<scalar_t>(g.out_channels, g.out_h * g.out_w, k, wm, columns_of<scalar_t>(x, n, g, cols, col),
                     image_matrix_mut<scalar_t>(out, n), /*accumulate=*/false, epilogue);
    }
  });
  return out;
}

// grad_col = weight^T (C*kh*kw x C_out) @ grad_output[n], then col2im scatters it back.
at::Tensor atrous_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                 at::IntArrayRef input_size, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef dilation, c10::string_view algo) {
  const ConvGeometry g = check_backward_input(kBackwardInput, ConvKind::Dense, grad_output,
                                              weight, input_size, stride, padding, dilation);
  check_cpu(kBackwardInput, grad_output);
  if (use_naive(kBackwardInput, algo)) {
    return run_backward_input(at::MemoryFormat::Contiguous, grad_output, weight,
                              {g.batch, g.in_channels, g.in_h, g.in_w},
                              [&](auto gy, auto w, auto gx) { naive::backward_input(gy, w, gx, g); });
  }
  const auto format = output_memory_format(grad_output, weight);
  const int64_t flip_pad_h = g.dil_h * (g.kernel_h - 1) - g.pad_h, flip_pad_w = g.dil_w * (g.kernel_w - 1) - g.pad_w;
  if (g.stride_h == 1 && g.stride_w == 1 && flip_pad_h >= 0 && flip_pad_w >= 0 && g.out_channels > 0 &&
      use_implicit(kBackwardInput, algo, g)) {
    // Stride 1: grad_input is the forward convolution of grad_output by the kernel flipped in
    // space with C and C_out swapped, padding d*(k-1) - p, the same dilation. It runs on the
    // implicit GEMM (no grad_col buffer, no col2im, taps in the padding skipped, either layout).
    const ConvGeometry f{g.batch, g.out_channels, g.in_channels, g.out_h, g.out_w, g.in_h, g.in_w,
                         g.kernel_h, g.kernel_w, 1, 1, flip_pad_h, flip_pad_w, g.dil_h, g.dil_w};
    at::Tensor grad_in = at::empty(input_size, grad_output.options().memory_format(format));
    const at::Tensor flipped = weight.transpose(0, 1).flip({2, 3});  // (C, C_out, kh, kw)
    AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "atrous_conv2d_backward_input_cpu", [&] {
      implicit_conv<scalar_t>(grad_output, flipped, at::Tensor(), f, grad_in);
    });
    return grad_in;
  }
  const at::Tensor go = is_gemm_friendly(grad_output) ? grad_output : grad_output.contiguous();
  const at::Tensor w = weight.contiguous();  // (C_out, C, kh, kw)
  const int64_t k = g.in_channels * g.kernel_h * g.kernel_w;
  const std::vector<Range> cols = tap_column_ranges(g);
  at::Tensor grad_in;
  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "atrous_conv2d_backward_input_cpu", [&] {
    const MatrixView<scalar_t> wt =
        MatrixView<scalar_t>{w.const_data_ptr<scalar_t>(), k, 1}.transposed();
    const int64_t p = g.out_h * g.out_w;
    if (is_identity_im2col(g)) {  // grad_input[n] is grad_col itself
      grad_in = at::empty(input_size, go.options().memory_format(format));
      for (int64_t n = 0; n < g.batch; ++n) {
        gemm<scalar_t>(k, p, g.out_channels, wt, image_matrix<scalar_t>(go, n),
                       image_matrix_mut<scalar_t>(grad_in, n), /*accumulate=*/false);
      }
      return;
    }
    grad_in = at::zeros(input_size, go.options());  // (N, C, H, W)
    std::vector<scalar_t> grad_col(k * p);
    for (int64_t n = 0; n < g.batch; ++n) {
      gemm<scalar_t>(k, p, g.out_channels, wt, image_matrix<scalar_t>(go, n),
                     {grad_col.data(), p, 1}, /*accumulate=*/false);
      col2im<scalar_t>(grad_col.data(),
                       grad_in.mutable_data_ptr<scalar_t>() + n * g.in_channels * g.in_h * g.in_w,
                       g, cols);
    }
    grad_in = to_output_format(grad_in, grad_output, weight);
  });
  return grad_in;
}

// grad_weight = sum_n grad_output[n] (C_out x Ho*Wo) @ col[n]^T (Ho*Wo x C*kh*kw), in order.
at::Tensor atrous_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                  at::IntArrayRef weight_size, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation, c10::string_view algo) {
  const ConvGeometry g = check_backward_weight(kBackwardWeight, ConvKind::Dense, grad_output,
                                               input, weight_size, stride, padding, dilation);
  check_cpu(kBackwardWeight, grad_output);
  if (use_naive(kBackwardWeight, algo)) {
    return run_backward_weight(at::MemoryFormat::Contiguous, grad_output, input,
                               weight_size,
                               [&](auto gy, auto x, auto gw) { naive::backward_weight(gy, x, gw, g); });
  }
  const at::Tensor go = is_gemm_friendly(grad_output) ? grad_output : grad_output.contiguous();
  const at::Tensor x = prepare_input(input, g);
  const int64_t k = g.in_channels * g.kernel_h * g.kernel_w;
  const std::vector<Range> cols = tap_column_ranges(g);
  // The first product writes every element (K = 0 writes zeros); only an empty batch needs zeros.
  at::Tensor grad_w = g.batch > 0 ? at::empty(weight_size, go.options())   // (C_out, C, kh, kw)
                                  : at::zeros(weight_size, go.options());
  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "atrous_conv2d_backward_weight_cpu", [&] {
    std::vector<scalar_t> col(col_size(g));
    const MutableMatrixView<scalar_t> gw{grad_w.mutable_data_ptr<scalar_t>(), k, 1};
    for (int64_t n = 0; n < g.batch; ++n) {
      gemm<scalar_t>(g.out_channels, k, g.out_h * g.out_w, image_matrix<scalar_t>(go, n),
                     columns_of<scalar_t>(x, n, g, cols, col).transposed(), gw,
                     /*accumulate=*/n > 0);
    }
  });
  return grad_w;
}

}  // namespace

TORCH_LIBRARY_IMPL(atrous, CPU, m) {
  m.impl("atrous_conv2d", &atrous_forward);
  m.impl("atrous_conv2d_backward_input", &atrous_backward_input);
  m.impl("atrous_conv2d_backward_weight", &atrous_backward_weight);
}

}  // namespace atrous::cpu
