// Argument validation shared by every backend: clear errors before any kernel runs.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/MemoryFormat.h>

#include <optional>
#include <string_view>

#include "conv_index.h"

namespace atrous {

// Which convolution family an op belongs to; decides the expected weight shape.
enum class ConvKind {
  Depthwise,  // weight (C*m, 1, kh, kw), groups = C
  Pointwise,  // weight (Cout, C, 1, 1), stride 1, no padding
  Dense,      // weight (Cout, C, kh, kw), groups = 1
};

// Validates input, weight, bias and the convolution parameters of a forward call and
// returns the geometry. `op` is the user-facing name, e.g. "atrous.depthwise_conv2d".
ConvGeometry check_forward(const char* op, ConvKind kind, const at::Tensor& input,
                           const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           at::IntArrayRef stride, at::IntArrayRef padding,
                           at::IntArrayRef dilation);

// Validates the arguments of a backward-input call (grad_output, weight, input_size).
ConvGeometry check_backward_input(const char* op, ConvKind kind, const at::Tensor& grad_output,
                                  const at::Tensor& weight, at::IntArrayRef input_size,
                                  at::IntArrayRef stride, at::IntArrayRef padding,
                                  at::IntArrayRef dilation);

// Validates the arguments of a backward-weight call (grad_output, input, weight_size).
ConvGeometry check_backward_weight(const char* op, ConvKind kind, const at::Tensor& grad_output,
                                   const at::Tensor& input, at::IntArrayRef weight_size,
                                   at::IntArrayRef stride, at::IntArrayRef padding,
                                   at::IntArrayRef dilation);

// Pointwise backward ops take no sizes: input_size and weight_size follow from the tensors.
ConvGeometry check_pointwise_backward_input(const char* op, const at::Tensor& grad_output,
                                            const at::Tensor& weight);
ConvGeometry check_pointwise_backward_weight(const char* op, const at::Tensor& grad_output,
                                             const at::Tensor& input);

// Validates the fused separable convolution: the depthwise part as check_forward, then
// pw_weight (C_out, C*m, 1, 1), pw_bias (C_out,) and activation ("none" or "relu").
// Returns the depthwise geometry; C_out is pw_weight.size(0).
ConvGeometry check_separable(const char* op, const at::Tensor& input, const at::Tensor& dw_weight,
                             const std::optional<at::Tensor>& dw_bias, const at::Tensor& pw_weight,
                             const std::optional<at::Tensor>& pw_bias, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation,
                             std::string_view activation);

// Validates grad_output of the bias gradient (sum over N, H, W).
void check_backward_bias(const char* op, const at::Tensor& grad_output);

// Output layout rule of every op, PyTorch's for convolutions: channels_last when the first
// tensor argument (input, or grad_output) or the weight is channels_last (and not also
// NCHW-contiguous, as happens when C == 1 or H == W == 1), otherwise NCHW. A model converted
// with .to(memory_format=torch.channels_last) therefore stays channels_last. The Python fake
// kernels apply the same rule.
at::MemoryFormat output_memory_format(const at::Tensor& t, const at::Tensor& weight = at::Tensor());

}  // namespace atrous
