// CPU kernel of the bias gradient shared by all convolutions: sum of grad_output over N, H, W.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../common/checks.h"
#include "cpu_utils.h"

namespace atrous::cpu {
namespace {

constexpr const char* kOp = "atrous.conv2d_backward_bias";

at::Tensor conv2d_backward_bias(const at::Tensor& grad_output) {
  check_backward_bias(kOp, grad_output);
  check_cpu(kOp, grad_output);
  const at::Tensor go = grad_output.contiguous();  // (N, C, H, W)
  const int64_t batch = go.size(0), channels = go.size(1), plane = go.size(2) * go.size(3);
  at::Tensor grad_bias = at::empty({channels}, go.options());
  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "conv2d_backward_bias_cpu", [&] {
    const scalar_t* gop = go.const_data_ptr<scalar_t>();
    scalar_t* gbp = grad_bias.mutable_data_ptr<scalar_t>();
    // One thread per channel, summing in a fixed order in double: deterministic and accurate
    // for the ~10^5 terms of a training batch.
    at::parallel_for(0, channels, grain_for(batch * plane), [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        double sum = 0;
        for (int64_t n = 0; n < batch; ++n) {
          const scalar_t* p = gop + (n * channels + c) * plane;
          for (int64_t i = 0; i < plane; ++i) sum += p[i];
        }
        gbp[c] = static_cast<scalar_t>(sum);
      }
    });
  });
  return grad_bias;
}

}  // namespace

TORCH_LIBRARY_IMPL(atrous, CPU, m) {
  m.impl("conv2d_backward_bias", &conv2d_backward_bias);
}

}  // namespace atrous::cpu
