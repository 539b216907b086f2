// CPU depthwise atrous convolution: checks, layouts and the choice of kernel rung.
//
// The ladder (csrc/common/algorithms.h), one file per rung, each checked by the same tests:
//   v0 naive    depthwise_v0_naive.cpp    the definition, one output at a time
//   v1 rows     depthwise_v1_rows.cpp     per-tap intervals: no bounds checks, parallel planes
//   v2 stencil  depthwise_v2_stencil.cpp  padded polyphase plane, taps summed in registers
//   v3 nhwc     depthwise_v3_nhwc.cpp     channels_last, vectorised across channels
// algo="auto" takes v3 for channels_last inputs and v2 otherwise.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../common/algorithms.h"
#include "../common/checks.h"
#include "cpu_utils.h"
#include "depthwise_rungs.h"

namespace atrous::cpu {
namespace {

constexpr const char* kForward = "atrous.depthwise_conv2d";
constexpr const char* kBackwardInput = "atrous.depthwise_conv2d_backward_input";
constexpr const char* kBackwardWeight = "atrous.depthwise_conv2d_backward_weight";

enum Rung { kNaive = 0, kRows = 1, kStencil = 2, kNhwc = 3 };

// The rung to run; `layout_of` is the tensor whose layout "auto" follows.
Rung choose(const char* op, c10::string_view algo, const at::Tensor& layout_of) {
  const int index = parse_algorithm(op, std::string_view(algo.data(), algo.size()), kDepthwiseAlgorithms);
  if (index >= 0) return static_cast<Rung>(index);
  return output_memory_format(layout_of) == at::MemoryFormat::ChannelsLast ? kNhwc : kStencil;
}

at::MemoryFormat rung_format(Rung rung) {
  return rung == kNhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// Calls function `fn` of the chosen rung; the element type comes from the pointers.
#define ATROUS_CALL_RUNG(rung, fn, ...)                        \
  switch (rung) {                                              \
    case kNaive: depthwise::naive::fn(__VA_ARGS__); break;     \
    case kRows: depthwise::rows::fn(__VA_ARGS__); break;       \
    case kStencil: depthwise::stencil::fn(__VA_ARGS__); break; \
    case kNhwc: depthwise::nhwc::fn(__VA_ARGS__); break;       \
  }

at::Tensor depthwise_forward(const at::Tensor& input, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, c10::string_view algo) {
  const ConvGeometry g =
      check_forward(kForward, ConvKind::Depthwise, input, weight, bias, stride, padding, dilation);
  check_cpu(kForward, input);
  const Rung rung = choose(kForward, algo, input);
  return run_forward(rung_format(rung), input, weight, bias, g,
                     [&](auto x, auto w, auto b, auto y) { ATROUS_CALL_RUNG(rung, forward, x, w, b, y, g); });
}

at::Tensor depthwise_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                    at::IntArrayRef input_size, at::IntArrayRef stride,
                                    at::IntArrayRef padding, at::IntArrayRef dilation, c10::string_view algo) {
  const ConvGeometry g = check_backward_input(kBackwardInput, ConvKind::Depthwise, grad_output,
                                              weight, input_size, stride, padding, dilation);
  check_cpu(kBackwardInput, grad_output);
  const Rung rung = choose(kBackwardInput, algo, grad_output);
  return run_backward_input(rung_format(rung), grad_output, weight,
                            input_size, [&](auto gy, auto w, auto gx) { ATROUS_CALL_RUNG(rung, backward_input, gy, w, gx, g); });
}

at::Tensor depthwise_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                     at::IntArrayRef weight_size, at::IntArrayRef stride,
                                     at::IntArrayRef padding, at::IntArrayRef dilation, c10::string_view algo) {
  const ConvGeometry g = check_backward_weight(kBackwardWeight, ConvKind::Depthwise, grad_output,
                                               input, weight_size, stride, padding, dilation);
  check_cpu(kBackwardWeight, grad_output);
  const Rung rung = choose(kBackwardWeight, algo, input);
  return run_backward_weight(rung_format(rung), grad_output, input,
                             weight_size, [&](auto gy, auto x, auto gw) { ATROUS_CALL_RUNG(rung, backward_weight, gy, x, gw, g); });
}

#undef ATROUS_CALL_RUNG

}  // namespace

TORCH_LIBRARY_IMPL(atrous, CPU, m) {
  m.impl("depthwise_conv2d", &depthwise_forward);
  m.impl("depthwise_conv2d_backward_input", &depthwise_backward_input);
  m.impl("depthwise_conv2d_backward_weight", &depthwise_backward_weight);
}

}  // namespace atrous::cpu
