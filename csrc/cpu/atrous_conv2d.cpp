// CPU kernels of the dense atrous convolution (groups=1): dilated im2col + the project's GEMM.
//
// Per image: col = im2col(x) is (C*kh*kw x Ho*Wo) and out = weight (C_out x C*kh*kw) @ col.
// A 1x1 kernel with stride 1 and no padding skips im2col: the image itself is the matrix.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <vector>

#include "../common/checks.h"
#include "conv_gemm.h"
#include "cpu_utils.h"
#include "gemm.h"

namespace atrous::cpu {
namespace {

constexpr const char* kForward = "atrous.atrous_conv2d";
constexpr const char* kBackwardInput = "atrous.atrous_conv2d_backward_input";
constexpr const char* kBackwardWeight = "atrous.atrous_conv2d_backward_weight";

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
                          at::IntArrayRef padding, at::IntArrayRef dilation) {
  const ConvGeometry g =
      check_forward(kForward, ConvKind::Dense, input, weight, bias, stride, padding, dilation);
  check_cpu(kForward, input);
  const at::Tensor x = prepare_input(input, g);  // (N, C, H, W)
  const at::Tensor w = weight.contiguous();      // (C_out, C, kh, kw)
  const bool has_bias = bias.has_value() && bias->defined();
  at::Tensor out = at::empty({g.batch, g.out_channels, g.out_h, g.out_w},
                             x.options().memory_format(output_memory_format(input)));
  const int64_t k = g.in_channels * g.kernel_h * g.kernel_w;
  const std::vector<Range> cols = tap_column_ranges(g);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "atrous_conv2d_cpu", [&] {
    if (has_bias) fill_bias<scalar_t>(out, bias->contiguous().const_data_ptr<scalar_t>());
    std::vector<scalar_t> col(col_size(g));
    const MatrixView<scalar_t> wm{w.const_data_ptr<scalar_t>(), k, 1};
    for (int64_t n = 0; n < g.batch; ++n) {
      gemm<scalar_t>(g.out_channels, g.out_h * g.out_w, k, wm, columns_of<scalar_t>(x, n, g, cols, col),
                     image_matrix_mut<scalar_t>(out, n), /*accumulate=*/has_bias);
    }
  });
  return out;
}

// grad_col = weight^T (C*kh*kw x C_out) @ grad_output[n], then col2im scatters it back.
at::Tensor atrous_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                 at::IntArrayRef input_size, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef dilation) {
  const ConvGeometry g = check_backward_input(kBackwardInput, ConvKind::Dense, grad_output,
                                              weight, input_size, stride, padding, dilation);
  check_cpu(kBackwardInput, grad_output);
  const at::Tensor go = is_gemm_friendly(grad_output) ? grad_output : grad_output.contiguous();
  const at::Tensor w = weight.contiguous();  // (C_out, C, kh, kw)
  const auto format = output_memory_format(grad_output);
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
    grad_in = to_output_format(grad_in, grad_output);
  });
  return grad_in;
}

// grad_weight = sum_n grad_output[n] (C_out x Ho*Wo) @ col[n]^T (Ho*Wo x C*kh*kw), in order.
at::Tensor atrous_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                  at::IntArrayRef weight_size, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation) {
  const ConvGeometry g = check_backward_weight(kBackwardWeight, ConvKind::Dense, grad_output,
                                               input, weight_size, stride, padding, dilation);
  check_cpu(kBackwardWeight, grad_output);
  const at::Tensor go = is_gemm_friendly(grad_output) ? grad_output : grad_output.contiguous();
  const at::Tensor x = prepare_input(input, g);
  const int64_t k = g.in_channels * g.kernel_h * g.kernel_w;
  const std::vector<Range> cols = tap_column_ranges(g);
  at::Tensor grad_w = at::zeros(weight_size, go.options());  // (C_out, C, kh, kw)
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
