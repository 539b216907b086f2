// CPU kernels of the pointwise (1x1) convolution: one GEMM per image on the project's own gemm.
//
// The ladder (csrc/common/algorithms.h):
//   v0 naive    the textbook triple loop over NCHW, one thread (this file)
//   v1 blocked  the blocked GEMM of gemm.cpp (the default)
// An image is a (C x H*W) matrix in NCHW or channels_last without any copy (image_matrix),
// so out[n] = weight (C_out x C) @ input[n] runs on either layout and writes the output in
// the input's layout, as F.conv2d does.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "../common/algorithms.h"
#include "../common/checks.h"
#include "conv_gemm.h"
#include "cpu_utils.h"
#include "gemm.h"

namespace atrous::cpu {
namespace {

constexpr const char* kForward = "atrous.pointwise_conv2d";
constexpr const char* kBackwardInput = "atrous.pointwise_conv2d_backward_input";
constexpr const char* kBackwardWeight = "atrous.pointwise_conv2d_backward_weight";

at::Tensor gemm_friendly(const at::Tensor& t) {
  return is_gemm_friendly(t) ? t : t.contiguous();
}

bool use_naive(const char* op, c10::string_view algo) {
  return parse_algorithm(op, std::string_view(algo.data(), algo.size()), kPointwiseAlgorithms) == 0;
}

// v0: the three products written as plain loops over NCHW-contiguous tensors.
namespace naive {

template <typename T>
void forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g) {
  const int64_t p = g.in_h * g.in_w;
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t o = 0; o < g.out_channels; ++o)
      for (int64_t q = 0; q < p; ++q) {
        T sum = bias ? bias[o] : T(0);
        for (int64_t c = 0; c < g.in_channels; ++c) sum += w[o * g.in_channels + c] * x[(n * g.in_channels + c) * p + q];
        y[(n * g.out_channels + o) * p + q] = sum;
      }
}

template <typename T>
void backward_input(const T* gy, const T* w, T* gx, const ConvGeometry& g) {
  const int64_t p = g.in_h * g.in_w;
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t c = 0; c < g.in_channels; ++c)
      for (int64_t q = 0; q < p; ++q) {
        T sum = 0;
        for (int64_t o = 0; o < g.out_channels; ++o) sum += w[o * g.in_channels + c] * gy[(n * g.out_channels + o) * p + q];
        gx[(n * g.in_channels + c) * p + q] = sum;
      }
}

template <typename T>
void backward_weight(const T* gy, const T* x, T* gw, const ConvGeometry& g) {
  const int64_t p = g.in_h * g.in_w;
  for (int64_t o = 0; o < g.out_channels; ++o)
    for (int64_t c = 0; c < g.in_channels; ++c) {
      double sum = 0;
      for (int64_t n = 0; n < g.batch; ++n)
        for (int64_t q = 0; q < p; ++q)
          sum += static_cast<double>(gy[(n * g.out_channels + o) * p + q]) * x[(n * g.in_channels + c) * p + q];
      gw[o * g.in_channels + c] = static_cast<T>(sum);
    }
}

}  // namespace naive

at::Tensor pointwise_forward(const at::Tensor& input, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, c10::string_view algo) {
  const ConvGeometry g =
      check_forward(kForward, ConvKind::Pointwise, input, weight, bias, {}, {}, {});
  check_cpu(kForward, input);
  if (use_naive(kForward, algo)) {
    return run_forward(at::MemoryFormat::Contiguous, input, weight, bias, g,
                       [&](auto x, auto w, auto b, auto y) { naive::forward(x, w, b, y, g); });
  }
  const at::Tensor x = gemm_friendly(input);  // (N, C, H, W), NCHW or NHWC
  const at::Tensor w = weight.contiguous();   // (C_out, C, 1, 1)
  const bool has_bias = bias.has_value() && bias->defined();
  at::Tensor out = at::empty({g.batch, g.out_channels, g.out_h, g.out_w},
                             x.options().memory_format(output_memory_format(input, weight)));
  const bool one = batch_is_one_matrix(x) && batch_is_one_matrix(out);
  const int64_t matrices = one ? 1 : g.batch, cols = (one ? g.batch : 1) * g.out_h * g.out_w;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "pointwise_conv2d_cpu", [&] {
    const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
    // The bias starts the GEMM's sums (one per output channel, a row of C): no pass of its own.
    const Epilogue<scalar_t> epilogue{has_bias ? b.const_data_ptr<scalar_t>() : nullptr, nullptr, false};
    const MatrixView<scalar_t> wm{w.const_data_ptr<scalar_t>(), g.in_channels, 1};
    for (int64_t n = 0; n < matrices; ++n) {
      gemm<scalar_t>(g.out_channels, cols, g.in_channels, wm, image_matrix<scalar_t>(x, n),
                     image_matrix_mut<scalar_t>(out, n), /*accumulate=*/false, epilogue);
    }
  });
  return out;
}

// grad_input[n] = weight^T (C x C_out) @ grad_output[n] (C_out x H*W).
at::Tensor pointwise_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                    c10::string_view algo) {
  const ConvGeometry g = check_pointwise_backward_input(kBackwardInput, grad_output, weight);
  check_cpu(kBackwardInput, grad_output);
  if (use_naive(kBackwardInput, algo)) {
    return run_backward_input(at::MemoryFormat::Contiguous, grad_output, weight,
                              {g.batch, g.in_channels, g.in_h, g.in_w},
                              [&](auto gy, auto w, auto gx) { naive::backward_input(gy, w, gx, g); });
  }
  const at::Tensor go = gemm_friendly(grad_output);  // (N, C_out, H, W)
  const at::Tensor w = weight.contiguous();          // (C_out, C, 1, 1)
  at::Tensor grad_in = at::empty({g.batch, g.in_channels, g.in_h, g.in_w},
                                 go.options().memory_format(output_memory_format(grad_output, weight)));
  const bool one = batch_is_one_matrix(go) && batch_is_one_matrix(grad_in);
  const int64_t matrices = one ? 1 : g.batch, cols = (one ? g.batch : 1) * g.in_h * g.in_w;
  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "pointwise_conv2d_backward_input_cpu", [&] {
    const MatrixView<scalar_t> wt =
        MatrixView<scalar_t>{w.const_data_ptr<scalar_t>(), g.in_channels, 1}.transposed();
    for (int64_t n = 0; n < matrices; ++n) {
      gemm<scalar_t>(g.in_channels, cols, g.out_channels, wt,
                     image_matrix<scalar_t>(go, n), image_matrix_mut<scalar_t>(grad_in, n),
                     /*accumulate=*/false);
    }
  });
  return grad_in;
}

// grad_weight = sum_n grad_output[n] (C_out x H*W) @ input[n]^T (H*W x C), summed over n in
// order (deterministic); for channels_last one GEMM over all N*H*W pixels.
at::Tensor pointwise_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                     c10::string_view algo) {
  const ConvGeometry g = check_pointwise_backward_weight(kBackwardWeight, grad_output, input);
  check_cpu(kBackwardWeight, grad_output);
  if (use_naive(kBackwardWeight, algo)) {
    return run_backward_weight(at::MemoryFormat::Contiguous, grad_output, input,
                               {g.out_channels, g.in_channels, 1, 1},
                               [&](auto gy, auto x, auto gw) { naive::backward_weight(gy, x, gw, g); });
  }
  const at::Tensor go = gemm_friendly(grad_output);  // (N, C_out, H, W)
  const at::Tensor x = gemm_friendly(input);         // (N, C, H, W)
  const bool one = batch_is_one_matrix(go) && batch_is_one_matrix(x);
  const int64_t matrices = one ? 1 : g.batch, depth = (one ? g.batch : 1) * g.in_h * g.in_w;
  // The first product writes every element (K = 0 writes zeros): zero-filling first cost a pass.
  at::Tensor grad_w = matrices > 0 ? at::empty({g.out_channels, g.in_channels, 1, 1}, go.options())
                                   : at::zeros({g.out_channels, g.in_channels, 1, 1}, go.options());
  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "pointwise_conv2d_backward_weight_cpu", [&] {
    const MutableMatrixView<scalar_t> gw{grad_w.mutable_data_ptr<scalar_t>(), g.in_channels, 1};
    for (int64_t n = 0; n < matrices; ++n) {
      gemm<scalar_t>(g.out_channels, g.in_channels, depth,
                     image_matrix<scalar_t>(go, n), image_matrix<scalar_t>(x, n).transposed(),
                     gw, /*accumulate=*/n > 0);
    }
  });
  return grad_w;
}

}  // namespace

TORCH_LIBRARY_IMPL(atrous, CPU, m) {
  m.impl("pointwise_conv2d", &pointwise_forward);
  m.impl("pointwise_conv2d_backward_input", &pointwise_backward_input);
  m.impl("pointwise_conv2d_backward_weight", &pointwise_backward_weight);
}

}  // namespace atrous::cpu
