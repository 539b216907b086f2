// CUDA bias gradient shared by all convolutions: grad_output summed over N, H, W (host side).
//
// The kernels are in reduce_kernels.cu: two passes with fixed-order sums, no atomics, so the
// result is bit-identical from run to run. grad_output is read through its strides.
#include <torch/library.h>

#include "cuda_host.h"

namespace atrous::cuda {
namespace {

constexpr const char* kOp = "atrous.conv2d_backward_bias";

at::Tensor conv2d_backward_bias_cuda(const at::Tensor& grad_output) {
  check_backward_bias(kOp, grad_output);
  check_device(kOp, grad_output);
  const DeviceGuard guard(grad_output);
  const int64_t batch = grad_output.size(0), channels = grad_output.size(1);
  const int64_t h = grad_output.size(2), w = grad_output.size(3);
  if (batch * h * w == 0 || channels == 0) return at::zeros({channels}, grad_output.options());
  at::Tensor grad_bias = at::empty({channels}, grad_output.options());
  at::Tensor scratch = workspace(grad_output, backward_bias_workspace(dtype_of(grad_output), batch, channels, h, w));
  backward_bias(dtype_of(grad_output), grad_output.const_data_ptr(), strides_of(grad_output), batch, channels, h, w,
                grad_bias.mutable_data_ptr(), scratch.mutable_data_ptr(), current_stream());
  return grad_bias;
}

}  // namespace

TORCH_LIBRARY_IMPL(ATROUS_CUDA_LIBRARY, ATROUS_CUDA_KEY, m) {
  m.impl("conv2d_backward_bias", &conv2d_backward_bias_cuda);
}

}  // namespace atrous::cuda
