// CUDA pointwise (1x1) convolution: one batched GEMM per op on the project's CUDA GEMM (host side).
//
// The ladder (kPointwiseCudaAlgorithms): v0 "naive" (one thread per output) and v1 "tiled"
// (shared-memory tiles with register blocks; "auto"), both in gemm_kernels.cu. Each image is a
// (C x H*W) matrix through its strides, NCHW or channels_last alike (image_matrices), so
// out[n] = weight (C_out x C) @ input[n] runs on either layout without a copy and writes the
// output in the input's layout.
#include <torch/library.h>

#include <vector>

#include "cuda_host.h"

namespace atrous::cuda {
namespace {

constexpr const char* kForward = "atrous.pointwise_conv2d";
constexpr const char* kBackwardInput = "atrous.pointwise_conv2d_backward_input";
constexpr const char* kBackwardWeight = "atrous.pointwise_conv2d_backward_weight";

GemmRung choose(const char* op, c10::string_view algo) {
  return parse_algorithm(op, view(algo), kPointwiseCudaAlgorithms) == 0 ? GemmRung::Naive : GemmRung::Tiled;
}

at::Tensor pointwise_forward_cuda(const at::Tensor& input, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, c10::string_view algo) {
  const ConvGeometry g = check_forward(kForward, ConvKind::Pointwise, input, weight, bias, {}, {}, {});
  check_device(kForward, input);
  const GemmRung rung = choose(kForward, algo);
  const DeviceGuard guard(input);
  at::Tensor out = at::empty({g.batch, g.out_channels, g.out_h, g.out_w},
                             input.options().memory_format(output_memory_format(input, weight)));
  if (out.numel() == 0) return out;
  const at::Tensor x = as_image_matrices(input);
  const at::Tensor w = weight.contiguous();  // (C_out, C, 1, 1): a row-major C_out x C matrix
  const at::Tensor b = contiguous_or_undefined(bias);
  gemm(rung, dtype_of(input), g.batch, g.out_channels, g.in_h * g.in_w, g.in_channels,
       row_major(w.const_data_ptr(), g.in_channels), image_matrices(x), image_matrices_mut(out),
       /*c_float=*/false, data_or_null(b), /*accumulate=*/false, current_stream());
  return out;
}

// grad_input[n] = weight^T (C x C_out) @ grad_output[n] (C_out x H*W).
at::Tensor pointwise_backward_input_cuda(const at::Tensor& grad_output, const at::Tensor& weight,
                                         c10::string_view algo) {
  const ConvGeometry g = check_pointwise_backward_input(kBackwardInput, grad_output, weight);
  check_device(kBackwardInput, grad_output);
  const GemmRung rung = choose(kBackwardInput, algo);
  const DeviceGuard guard(grad_output);
  at::Tensor grad_in = at::empty({g.batch, g.in_channels, g.in_h, g.in_w},
                                 grad_output.options().memory_format(output_memory_format(grad_output, weight)));
  if (grad_in.numel() == 0) return grad_in;
  const at::Tensor go = as_image_matrices(grad_output);
  const at::Tensor w = weight.contiguous();
  gemm(rung, dtype_of(grad_output), g.batch, g.in_channels, g.in_h * g.in_w, g.out_channels,
       transposed(row_major(w.const_data_ptr(), g.in_channels)), image_matrices(go), image_matrices_mut(grad_in),
       /*c_float=*/false, nullptr, /*accumulate=*/false, current_stream());
  return grad_in;
}

// grad_weight = sum_n grad_output[n] (C_out x H*W) @ input[n]^T (H*W x C): one GEMM over all
// N*H*W pixels when both batches are one matrix (channels_last, or N = 1), else one GEMM per
// image accumulating in order. The half types accumulate in a float32 buffer, rounded once.
at::Tensor pointwise_backward_weight_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                          c10::string_view algo) {
  const ConvGeometry g = check_pointwise_backward_weight(kBackwardWeight, grad_output, input);
  check_device(kBackwardWeight, grad_output);
  const GemmRung rung = choose(kBackwardWeight, algo);
  const DeviceGuard guard(grad_output);
  const std::vector<int64_t> weight_size = {g.out_channels, g.in_channels, 1, 1};
  if (g.batch == 0) return at::zeros(weight_size, grad_output.options());
  const at::Tensor go = as_image_matrices(grad_output);
  const at::Tensor x = as_image_matrices(input);
  const bool half = is_half_type(grad_output);
  at::Tensor acc = at::empty(weight_size, grad_output.options().dtype(half ? at::kFloat : grad_output.scalar_type()));
  const MutableMatrix gw = row_major(acc.mutable_data_ptr(), g.in_channels);
  const Matrix a = image_matrices(go), b = image_matrices(x);
  const int64_t pixels = g.in_h * g.in_w, esize = grad_output.element_size();
  const DType dtype = dtype_of(grad_output);
  const bool one_matrix =
      g.batch == 1 || (a.batch_stride == pixels * a.col_stride && b.batch_stride == pixels * b.col_stride);
  if (one_matrix) {
    gemm(rung, dtype, 1, g.out_channels, g.in_channels, g.batch * pixels, a, transposed(b), gw, half, nullptr,
         /*accumulate=*/false, current_stream());
  } else {
    for (int64_t n = 0; n < g.batch; ++n) {
      gemm(rung, dtype, 1, g.out_channels, g.in_channels, pixels, skip(a, n, esize), transposed(skip(b, n, esize)), gw,
           half, nullptr, /*accumulate=*/n > 0, current_stream());
    }
  }
  return half ? acc.to(grad_output.scalar_type()) : acc;
}

}  // namespace

TORCH_LIBRARY_IMPL(ATROUS_CUDA_LIBRARY, ATROUS_CUDA_KEY, m) {
  m.impl("pointwise_conv2d", &pointwise_forward_cuda);
  m.impl("pointwise_conv2d_backward_input", &pointwise_backward_input_cuda);
  m.impl("pointwise_conv2d_backward_weight", &pointwise_backward_weight_cuda);
}

}  // namespace atrous::cuda
