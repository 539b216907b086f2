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

// Calls the rung's function F<scalar_t> for the chosen rung.
#define ATROUS_CALL_RUNG(rung, fn, ...)                       \
  switch (rung) {                                             \
    case kNaive: depthwise::naive::fn(__VA_ARGS__); break;    \
    case kRows: depthwise::rows::fn(__VA_ARGS__); break;      \
    case kStencil: depthwise::stencil::fn(__VA_ARGS__); break; \
    case kNhwc: depthwise::nhwc::fn(__VA_ARGS__); break;      \
  }

at::Tensor depthwise_forward(const at::Tensor& input, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, c10::string_view algo) {
  const ConvGeometry g =
      check_forward(kForward, ConvKind::Depthwise, input, weight, bias, stride, padding, dilation);
  check_cpu(kForward, input);
  const Rung rung = choose(kForward, algo, input);
  const auto format = rung_format(rung);
  const at::Tensor x = input.contiguous(format);  // (N, C, H, W) in the rung's layout
  const at::Tensor w = weight.contiguous();       // (C*m, 1, kh, kw)
  const bool has_bias = bias.has_value() && bias->defined();
  const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
  at::Tensor out = at::empty({g.batch, g.out_channels, g.out_h, g.out_w}, x.options().memory_format(format));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "depthwise_conv2d_cpu", [&] {
    ATROUS_CALL_RUNG(rung, forward<scalar_t>, x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                     has_bias ? b.const_data_ptr<scalar_t>() : nullptr, out.mutable_data_ptr<scalar_t>(), g);
  });
  return out.contiguous(output_memory_format(input));
}

at::Tensor depthwise_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                    at::IntArrayRef input_size, at::IntArrayRef stride,
                                    at::IntArrayRef padding, at::IntArrayRef dilation, c10::string_view algo) {
  const ConvGeometry g = check_backward_input(kBackwardInput, ConvKind::Depthwise, grad_output,
                                              weight, input_size, stride, padding, dilation);
  check_cpu(kBackwardInput, grad_output);
  const Rung rung = choose(kBackwardInput, algo, grad_output);
  const auto format = rung_format(rung);
  const at::Tensor go = grad_output.contiguous(format);  // (N, C*m, Ho, Wo)
  const at::Tensor w = weight.contiguous();              // (C*m, 1, kh, kw)
  at::Tensor grad_in = at::empty(input_size, go.options().memory_format(format));  // (N, C, H, W)
  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "depthwise_conv2d_backward_input_cpu", [&] {
    ATROUS_CALL_RUNG(rung, backward_input<scalar_t>, go.const_data_ptr<scalar_t>(),
                     w.const_data_ptr<scalar_t>(), grad_in.mutable_data_ptr<scalar_t>(), g);
  });
  return grad_in.contiguous(output_memory_format(grad_output));
}

at::Tensor depthwise_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                     at::IntArrayRef weight_size, at::IntArrayRef stride,
                                     at::IntArrayRef padding, at::IntArrayRef dilation, c10::string_view algo) {
  const ConvGeometry g = check_backward_weight(kBackwardWeight, ConvKind::Depthwise, grad_output,
                                               input, weight_size, stride, padding, dilation);
  check_cpu(kBackwardWeight, grad_output);
  const Rung rung = choose(kBackwardWeight, algo, input);
  const auto format = rung_format(rung);
  const at::Tensor go = grad_output.contiguous(format);  // (N, C*m, Ho, Wo)
  const at::Tensor x = input.contiguous(format);         // (N, C, H, W)
  at::Tensor grad_w = at::empty(weight_size, go.options());  // (C*m, 1, kh, kw)
  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "depthwise_conv2d_backward_weight_cpu", [&] {
    ATROUS_CALL_RUNG(rung, backward_weight<scalar_t>, go.const_data_ptr<scalar_t>(),
                     x.const_data_ptr<scalar_t>(), grad_w.mutable_data_ptr<scalar_t>(), g);
  });
  return grad_w;
}

#undef ATROUS_CALL_RUNG

}  // namespace

TORCH_LIBRARY_IMPL(atrous, CPU, m) {
  m.impl("depthwise_conv2d", &depthwise_forward);
  m.impl("depthwise_conv2d_backward_input", &depthwise_backward_input);
  m.impl("depthwise_conv2d_backward_weight", &depthwise_backward_weight);
}

}  // namespace atrous::cpu
