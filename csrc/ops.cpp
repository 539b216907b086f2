// Operator schemas of the atrous library: every op is defined here and nowhere else.
//
// Kernels live in one file per op and backend: csrc/cpu/<op>.cpp register with
// TORCH_LIBRARY_IMPL(atrous, CPU, m), csrc/cuda/<op>.cpp with TORCH_LIBRARY_IMPL(atrous, CUDA, m).
// Autograd and fake (meta) kernels are registered from Python in atrous/ops.py. The Python
// module atrous._C (csrc/module.cpp) exports the names below as atrous._C.operators.
// Every convolution op takes algo: "auto" or a rung of its kernel ladder
// (csrc/common/algorithms.h), which depends on the device: atrous.ops.algorithms(name, device)
// lists them.
#include "ops.h"

#include <torch/library.h>

#include <string_view>

namespace atrous {
namespace {

constexpr std::string_view kSchemas[] = {
    // Depthwise atrous convolution, F.conv2d(input, weight, bias, stride, padding, dilation,
    // groups=C) with weight (C*m, 1, kh, kw).
    "depthwise_conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, "
    "int[2] padding, int[2] dilation, str algo=\"auto\") -> Tensor",
    "depthwise_conv2d_backward_input(Tensor grad_output, Tensor weight, "
    "SymInt[4] input_size, int[2] stride, int[2] padding, int[2] dilation, str algo=\"auto\") -> Tensor",
    "depthwise_conv2d_backward_weight(Tensor grad_output, Tensor input, "
    "SymInt[4] weight_size, int[2] stride, int[2] padding, int[2] dilation, str algo=\"auto\") -> Tensor",

    // Pointwise (1x1) convolution, a GEMM per image: out[n] = weight (C_out x C) @ input[n].
    "pointwise_conv2d(Tensor input, Tensor weight, Tensor? bias, str algo=\"auto\") -> Tensor",
    "pointwise_conv2d_backward_input(Tensor grad_output, Tensor weight, str algo=\"auto\") -> Tensor",
    "pointwise_conv2d_backward_weight(Tensor grad_output, Tensor input, str algo=\"auto\") -> Tensor",

    // Dense atrous convolution (groups=1): dilated im2col + the same GEMM.
    "atrous_conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, "
    "int[2] padding, int[2] dilation, str algo=\"auto\") -> Tensor",
    "atrous_conv2d_backward_input(Tensor grad_output, Tensor weight, "
    "SymInt[4] input_size, int[2] stride, int[2] padding, int[2] dilation, str algo=\"auto\") -> Tensor",
    "atrous_conv2d_backward_weight(Tensor grad_output, Tensor input, "
    "SymInt[4] weight_size, int[2] stride, int[2] padding, int[2] dilation, str algo=\"auto\") -> Tensor",

    // Fused separable convolution for inference: depthwise (+ bias, optional ReLU) then pointwise
    // (+ bias), the intermediate kept in cache tile by tile. Forward only.
    "separable_conv2d(Tensor input, Tensor dw_weight, Tensor? dw_bias, Tensor pw_weight, "
    "Tensor? pw_bias, int[2] stride, int[2] padding, int[2] dilation, "
    "str activation=\"none\") -> Tensor",

    // Bias gradient of any of the convolutions: grad_output summed over N, H and W.
    "conv2d_backward_bias(Tensor grad_output) -> Tensor",
};
}  // namespace

std::span<const std::string_view> operator_schemas() { return kSchemas; }

}  // namespace atrous

// The operator namespace. Only the CPU emulation of the CUDA kernels (tests/cuda/cuda_emulation)
// changes it, to define the same schemas a second time under its own name.
#ifndef ATROUS_LIBRARY
#define ATROUS_LIBRARY atrous
#endif
#define ATROUS_TORCH_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)  // expands ATROUS_LIBRARY first

ATROUS_TORCH_LIBRARY(ATROUS_LIBRARY, m) {
#ifndef ATROUS_CUDA_EMULATION
  // Fake kernels and autograd are registered in this Python module; the dispatcher names it
  // in errors when the op is used before it is imported.
  m.set_python_module("atrous.ops");
#endif
  for (const std::string_view schema : atrous::kSchemas) m.def(schema.data());  // literals: NUL-terminated
}
