// Small helpers shared by the CPU kernels: device check, parallel grain, output layout.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <optional>
#include <vector>

#include "../common/checks.h"
#include "../common/conv_index.h"
#include "kernel_support.h"  // parallel_for, grain_for, tap_column_ranges

namespace atrous::cpu {

inline void check_cpu(const char* op, const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu(), op, ": the CPU kernel got a tensor on ", t.device());
}

// Applies the documented output layout rule (checks.h) to a kernel's result, in whatever
// layout the kernel wrote it (a no-op when they agree).
inline at::Tensor to_output_format(const at::Tensor& out, const at::Tensor& ref,
                                   const at::Tensor& weight = at::Tensor()) {
  return out.contiguous(output_memory_format(ref, weight));
}

// Drivers shared by the kernel rungs that work on whole tensors in one layout (`format`: NCHW or
// channels_last). Each makes the operands contiguous in that layout, allocates the result,
// dispatches on the dtype and calls `rung` with typed pointers; a generic lambda deduces the
// element type, e.g. [&](auto x, auto w, auto b, auto y) { naive::forward(x, w, b, y, g); }.
// Outputs follow the documented layout rule (checks.h).

// rung(x, w, bias_or_null, y) computes the forward output y.
template <typename Rung>
at::Tensor run_forward(at::MemoryFormat format, const at::Tensor& input,
                       const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       const ConvGeometry& g, Rung&& rung) {
  const at::Tensor x = input.contiguous(format);  // (N, C, H, W) in the rung's layout
  const at::Tensor w = weight.contiguous();
  const bool has_bias = bias.has_value() && bias->defined();
  const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
  at::Tensor out = at::empty({g.batch, g.out_channels, g.out_h, g.out_w}, x.options().memory_format(format));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "atrous_forward_cpu", [&] {
    rung(x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
         has_bias ? b.const_data_ptr<scalar_t>() : nullptr, out.mutable_data_ptr<scalar_t>());
  });
  return to_output_format(out, input, weight);
}

// rung(gy, w, gx) computes the input gradient gx of shape input_size.
template <typename Rung>
at::Tensor run_backward_input(at::MemoryFormat format, const at::Tensor& grad_output,
                              const at::Tensor& weight, at::IntArrayRef input_size, Rung&& rung) {
  const at::Tensor go = grad_output.contiguous(format);  // (N, C_out, Ho, Wo)
  const at::Tensor w = weight.contiguous();
  at::Tensor grad_in = at::empty(input_size, go.options().memory_format(format));  // (N, C, H, W)
  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "atrous_backward_input_cpu", [&] {
    rung(go.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), grad_in.mutable_data_ptr<scalar_t>());
  });
  return to_output_format(grad_in, grad_output, weight);
}

// rung(gy, x, gw) computes the weight gradient gw of shape weight_size.
template <typename Rung>
at::Tensor run_backward_weight(at::MemoryFormat format, const at::Tensor& grad_output,
                               const at::Tensor& input, at::IntArrayRef weight_size, Rung&& rung) {
  const at::Tensor go = grad_output.contiguous(format);  // (N, C_out, Ho, Wo)
  const at::Tensor x = input.contiguous(format);         // (N, C, H, W)
  at::Tensor grad_w = at::empty(weight_size, go.options());
  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "atrous_backward_weight_cpu", [&] {
    rung(go.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), grad_w.mutable_data_ptr<scalar_t>());
  });
  return grad_w;
}

}  // namespace atrous::cpu
