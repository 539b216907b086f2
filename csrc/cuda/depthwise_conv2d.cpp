// CUDA depthwise atrous convolution: checks, output allocation and the choice of rung (host side).
//
// The kernels and the ladder: v0 "naive" (one thread per output) and v1 "tiled" (shared-memory
// tile with a dilation-sized halo) in depthwise_kernels.cu, v2 "nhwc" (channels_last, vectors of
// channels) in depthwise_nhwc_kernels.cu. "auto" and "nhwc" take nhwc where it applies
// (channels_last, multiplier 1, channels a multiple of 16 bytes; backward input at stride 1),
// else tiled. Inputs of any layout are read through their strides; outputs follow the layout
// rule (checks.h).
#include <torch/library.h>

#include "cuda_host.h"

namespace atrous::cuda {
namespace {

constexpr const char* kForward = "atrous.depthwise_conv2d";
constexpr const char* kBackwardInput = "atrous.depthwise_conv2d_backward_input";
constexpr const char* kBackwardWeight = "atrous.depthwise_conv2d_backward_weight";

DepthwiseRung choose(const char* op, c10::string_view algo) {
  const int index = parse_algorithm(op, view(algo), kDepthwiseCudaAlgorithms);
  return index == 0 ? DepthwiseRung::Naive : index == 1 ? DepthwiseRung::Tiled : DepthwiseRung::Nhwc;
}

// The weights (C, 1, kh, kw) as [kh][kw][C], the nhwc rung's layout.
at::Tensor taps_by_channel(const at::Tensor& weight) { return weight.permute({2, 3, 0, 1}).contiguous(); }

at::Tensor depthwise_forward_cuda(const at::Tensor& input, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation, c10::string_view algo) {
  const ConvGeometry g = check_forward(kForward, ConvKind::Depthwise, input, weight, bias, stride, padding, dilation);
  check_device(kForward, input);
  const DepthwiseRung rung = choose(kForward, algo);
  const DeviceGuard guard(input);
  at::Tensor out = at::empty({g.batch, g.out_channels, g.out_h, g.out_w},
                             input.options().memory_format(output_memory_format(input, weight)));
  if (out.numel() == 0) return out;
  const at::Tensor b = contiguous_or_undefined(bias);
  if (rung == DepthwiseRung::Nhwc) {
    const at::Tensor wt = taps_by_channel(weight);
    if (depthwise_nhwc(dtype_of(input), input.const_data_ptr(), strides_of(input), wt.const_data_ptr(),
                       data_or_null(b), out.mutable_data_ptr(), strides_of(out), g, /*relu=*/false, /*flip=*/false,
                       current_stream())) {
      return out;
    }
  }
  const at::Tensor w = weight.contiguous();
  depthwise_forward(rung == DepthwiseRung::Nhwc ? DepthwiseRung::Tiled : rung, dtype_of(input), input.const_data_ptr(), strides_of(input), w.const_data_ptr(),
                    data_or_null(b), out.mutable_data_ptr(), strides_of(out), g, /*relu=*/false, current_stream());
  return out;
}

at::Tensor depthwise_backward_input_cuda(const at::Tensor& grad_output, const at::Tensor& weight,
                                         at::IntArrayRef input_size, at::IntArrayRef stride, at::IntArrayRef padding,
                                         at::IntArrayRef dilation, c10::string_view algo) {
  const ConvGeometry g = check_backward_input(kBackwardInput, ConvKind::Depthwise, grad_output, weight, input_size,
                                              stride, padding, dilation);
  check_device(kBackwardInput, grad_output);
  const DepthwiseRung rung = choose(kBackwardInput, algo);
  const DeviceGuard guard(grad_output);
  at::Tensor grad_in =
      at::empty(input_size, grad_output.options().memory_format(output_memory_format(grad_output, weight)));
  if (grad_in.numel() == 0) return grad_in;
  if (rung == DepthwiseRung::Nhwc && g.stride_h == 1 && g.stride_w == 1) {
    // gx = depthwise(gy, flipped w) at stride 1 with padding d*(k-1) - p: the forward's geometry
    // with input and output swapped.
    ConvGeometry t = g;
    t.in_h = g.out_h, t.in_w = g.out_w, t.out_h = g.in_h, t.out_w = g.in_w;
    t.pad_h = halo_extent(g.kernel_h, g.dil_h) - g.pad_h;
    t.pad_w = halo_extent(g.kernel_w, g.dil_w) - g.pad_w;
    const at::Tensor wt = taps_by_channel(weight);
    if (depthwise_nhwc(dtype_of(grad_output), grad_output.const_data_ptr(), strides_of(grad_output),
                       wt.const_data_ptr(), nullptr, grad_in.mutable_data_ptr(), strides_of(grad_in), t,
                       /*relu=*/false, /*flip=*/true, current_stream())) {
      return grad_in;
    }
  }
  const at::Tensor w = weight.contiguous();
  depthwise_backward_input(rung == DepthwiseRung::Nhwc ? DepthwiseRung::Tiled : rung, dtype_of(grad_output), grad_output.const_data_ptr(), strides_of(grad_output),
                           w.const_data_ptr(), grad_in.mutable_data_ptr(), strides_of(grad_in), g, current_stream());
  return grad_in;
}

at::Tensor depthwise_backward_weight_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                          at::IntArrayRef weight_size, at::IntArrayRef stride, at::IntArrayRef padding,
                                          at::IntArrayRef dilation, c10::string_view algo) {
  const ConvGeometry g = check_backward_weight(kBackwardWeight, ConvKind::Depthwise, grad_output, input, weight_size,
                                               stride, padding, dilation);
  check_device(kBackwardWeight, grad_output);
  const DepthwiseRung rung = choose(kBackwardWeight, algo);
  const DeviceGuard guard(grad_output);
  if (g.batch == 0) return at::zeros(weight_size, grad_output.options());  // an empty sum
  at::Tensor grad_w = at::empty(weight_size, grad_output.options());
  at::Tensor scratch = workspace(grad_output, depthwise_backward_weight_workspace(rung, dtype_of(grad_output), g));
  depthwise_backward_weight(rung, dtype_of(grad_output), grad_output.const_data_ptr(), strides_of(grad_output),
                            input.const_data_ptr(), strides_of(input), grad_w.mutable_data_ptr(),
                            scratch.numel() ? scratch.mutable_data_ptr() : nullptr, g, current_stream());
  return grad_w;
}

}  // namespace

TORCH_LIBRARY_IMPL(ATROUS_CUDA_LIBRARY, ATROUS_CUDA_KEY, m) {
  m.impl("depthwise_conv2d", &depthwise_forward_cuda);
  m.impl("depthwise_conv2d_backward_input", &depthwise_backward_input_cuda);
  m.impl("depthwise_conv2d_backward_weight", &depthwise_backward_weight_cuda);
}

}  // namespace atrous::cuda
