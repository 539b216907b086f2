// CUDA separable convolution for inference: depthwise -> bias -> ReLU -> pointwise -> bias (host side).
//
// Not fused yet: the tiled depthwise kernel writes the intermediate (N, C*m, Ho, Wo) with its
// bias and ReLU applied in the same pass, and one batched tiled GEMM multiplies it by the
// pointwise weight. The intermediate makes one round trip through memory (the CPU version keeps
// it in cache tile by tile); fusing them on the GPU is future work. The output follows the
// input's layout.
#include <torch/library.h>

#include "cuda_host.h"

namespace atrous::cuda {
namespace {

constexpr const char* kOp = "atrous.separable_conv2d";

at::Tensor separable_forward_cuda(const at::Tensor& input, const at::Tensor& dw_weight,
                                  const std::optional<at::Tensor>& dw_bias, const at::Tensor& pw_weight,
                                  const std::optional<at::Tensor>& pw_bias, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation, c10::string_view activation) {
  const ConvGeometry g =
      check_separable(kOp, input, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation, view(activation));
  check_device(kOp, input);
  const DeviceGuard guard(input);
  const int64_t mid_channels = g.out_channels, out_channels = pw_weight.size(0);
  at::Tensor out = at::empty({g.batch, out_channels, g.out_h, g.out_w},
                             input.options().memory_format(output_memory_format(input, pw_weight)));
  if (out.numel() == 0) return out;
  const DType dtype = dtype_of(input);
  const cudaStream_t stream = current_stream();
  const at::Tensor dw = dw_weight.contiguous(), pw = pw_weight.contiguous();
  const at::Tensor db = contiguous_or_undefined(dw_bias), pb = contiguous_or_undefined(pw_bias);
  at::Tensor mid = at::empty({g.batch, mid_channels, g.out_h, g.out_w}, input.options());  // NCHW
  depthwise_forward(DepthwiseRung::Tiled, dtype, input.const_data_ptr(), strides_of(input), dw.const_data_ptr(),
                    data_or_null(db), mid.mutable_data_ptr(), strides_of(mid), g, view(activation) == "relu", stream);
  gemm(GemmRung::Tiled, dtype, g.batch, out_channels, g.out_h * g.out_w, mid_channels,
       row_major(pw.const_data_ptr(), mid_channels), image_matrices(mid), image_matrices_mut(out), false,
       data_or_null(pb), false, stream);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ATROUS_CUDA_LIBRARY, ATROUS_CUDA_KEY, m) { m.impl("separable_conv2d", &separable_forward_cuda); }

}  // namespace atrous::cuda
