// Host side of every CUDA operator (g++): checks, output allocation, strides, rung choice, launches.
//
// One file for all of them keeps the build short: each host file costs a parse of the torch
// headers, while the kernels (*_kernels.cu, nvcc) include none. Sections, one per op family:
//   depthwise   depthwise_kernels.cu   v0 naive, v1 tiled (auto)
//   pointwise   gemm_kernels.cu        v0 naive, v1 tiled (auto)
//   dense       conv_gemm_kernels.cu   v0 naive, v1 im2col (auto) + gemm_kernels.cu
//   separable   depthwise + GEMM, not fused yet
//   bias        reduce_kernels.cu      deterministic two-pass sum
// Inputs of any layout are read through their strides; outputs follow the layout rule (checks.h).
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "cuda_host.h"

namespace atrous::cuda {
namespace {

// ===============================================================================================
// CUDA depthwise atrous convolution: checks, output allocation and the choice of rung (host side).
//
// The kernels and the ladder are in depthwise_kernels.cu: v0 "naive" (one thread per output)
// and v1 "tiled" (shared-memory tile with a dilation-sized halo), which "auto" picks. Inputs of
// any layout are read through their strides; outputs follow the layout rule (checks.h).
// ===============================================================================================

namespace depthwise_op {

constexpr const char* kForward = "atrous.depthwise_conv2d";
constexpr const char* kBackwardInput = "atrous.depthwise_conv2d_backward_input";
constexpr const char* kBackwardWeight = "atrous.depthwise_conv2d_backward_weight";

DepthwiseRung choose(const char* op, c10::string_view algo) {
  const int index = parse_algorithm(op, view(algo), kDepthwiseCudaAlgorithms);
  return index == 0 ? DepthwiseRung::Naive : DepthwiseRung::Tiled;
}

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
  const at::Tensor w = weight.contiguous();
  const at::Tensor b = contiguous_or_undefined(bias);
  depthwise_forward(rung, dtype_of(input), input.const_data_ptr(), strides_of(input), w.const_data_ptr(),
                    data_or_null(b), out.mutable_data_ptr(), strides_of(out), g, /*relu=*/false, current_stream());
  return out;
}

at::Tensor depthwise_backward_input_cuda(const at::Tensor& grad_output, const at::Tensor& weight,
                                         at::IntArrayRef input_size, at::IntArrayRef stride,
                                         at::IntArrayRef padding, at::IntArrayRef dilation, c10::string_view algo) {
  const ConvGeometry g = check_backward_input(kBackwardInput, ConvKind::Depthwise, grad_output, weight, input_size,
                                              stride, padding, dilation);
  check_device(kBackwardInput, grad_output);
  const DepthwiseRung rung = choose(kBackwardInput, algo);
  const DeviceGuard guard(grad_output);
  at::Tensor grad_in = at::empty(input_size, grad_output.options().memory_format(output_memory_format(grad_output, weight)));
  if (grad_in.numel() == 0) return grad_in;
  const at::Tensor w = weight.contiguous();
  depthwise_backward_input(rung, dtype_of(grad_output), grad_output.const_data_ptr(), strides_of(grad_output),
                           w.const_data_ptr(), grad_in.mutable_data_ptr(), strides_of(grad_in), g, current_stream());
  return grad_in;
}

at::Tensor depthwise_backward_weight_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                          at::IntArrayRef weight_size, at::IntArrayRef stride,
                                          at::IntArrayRef padding, at::IntArrayRef dilation, c10::string_view algo) {
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

}  // namespace depthwise_op

// ===============================================================================================
// CUDA pointwise (1x1) convolution: one batched GEMM per op on the project's CUDA GEMM (host side).
//
// The ladder (kPointwiseCudaAlgorithms): v0 "naive" (one thread per output) and v1 "tiled"
// (shared-memory tiles with register blocks; "auto"), both in gemm_kernels.cu. Each image is a
// (C x H*W) matrix through its strides, NCHW or channels_last alike (image_matrices), so
// out[n] = weight (C_out x C) @ input[n] runs on either layout without a copy and writes the
// output in the input's layout.
// ===============================================================================================

namespace pointwise_op {

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
  const bool one_matrix = g.batch == 1 || (a.batch_stride == pixels * a.col_stride && b.batch_stride == pixels * b.col_stride);
  if (one_matrix) {
    gemm(rung, dtype, 1, g.out_channels, g.in_channels, g.batch * pixels, a, transposed(b), gw, half, nullptr,
         /*accumulate=*/false, current_stream());
  } else {
    for (int64_t n = 0; n < g.batch; ++n) {
      gemm(rung, dtype, 1, g.out_channels, g.in_channels, pixels, skip(a, n, esize), transposed(skip(b, n, esize)),
           gw, half, nullptr, /*accumulate=*/n > 0, current_stream());
    }
  }
  return half ? acc.to(grad_output.scalar_type()) : acc;
}

}  // namespace pointwise_op

// ===============================================================================================
// CUDA dense atrous convolution (groups=1): dilated im2col + the CUDA GEMM (host side).
//
// The ladder (kDenseCudaAlgorithms): v0 "naive", direct loops with one thread per output
// element, and v1 "im2col" ("auto"): per group of images, col = im2col(x) (C*kh*kw x Ho*Wo per
// image) then out = weight (C_out x C*kh*kw) @ col, one batched tiled GEMM. The input gradient is
// weight^T @ grad_output into col, then col2im as a gather; the weight gradient sums
// grad_output[n] @ col[n]^T over the images in order. A 1x1 kernel with stride 1 and no padding
// skips im2col: the image itself is the matrix. Kernels: conv_gemm_kernels.cu, gemm_kernels.cu.
// ===============================================================================================

namespace dense_op {

constexpr const char* kForward = "atrous.atrous_conv2d";
constexpr const char* kBackwardInput = "atrous.atrous_conv2d_backward_input";
constexpr const char* kBackwardWeight = "atrous.atrous_conv2d_backward_weight";

constexpr int64_t kColumnBytes = int64_t{128} << 20;  // im2col buffer: images per group fill at most this

bool use_naive(const char* op, c10::string_view algo) {
  return parse_algorithm(op, view(algo), kDenseCudaAlgorithms) == 0;
}

bool is_identity_im2col(const ConvGeometry& g) {
  return g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 && g.pad_w == 0;
}

int64_t column_rows(const ConvGeometry& g) { return g.in_channels * g.kernel_h * g.kernel_w; }

// Images whose columns fit in the buffer together (at least one).
int64_t images_per_group(const ConvGeometry& g, int64_t element_size) {
  const int64_t per_image = column_rows(g) * g.out_h * g.out_w * element_size;
  return std::clamp<int64_t>(kColumnBytes / std::max<int64_t>(1, per_image), 1, std::max<int64_t>(1, g.batch));
}

at::Tensor atrous_forward_cuda(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                               at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                               c10::string_view algo) {
  const ConvGeometry g = check_forward(kForward, ConvKind::Dense, input, weight, bias, stride, padding, dilation);
  check_device(kForward, input);
  const bool naive = use_naive(kForward, algo);
  const DeviceGuard guard(input);
  at::Tensor out = at::empty({g.batch, g.out_channels, g.out_h, g.out_w},
                             input.options().memory_format(output_memory_format(input, weight)));
  if (out.numel() == 0) return out;
  const at::Tensor w = weight.contiguous();  // a row-major C_out x C*kh*kw matrix
  const at::Tensor b = contiguous_or_undefined(bias);
  const DType dtype = dtype_of(input);
  const cudaStream_t stream = current_stream();
  if (naive) {
    dense_naive_forward(dtype, input.const_data_ptr(), strides_of(input), w.const_data_ptr(), data_or_null(b),
                        out.mutable_data_ptr(), strides_of(out), g, stream);
    return out;
  }
  const int64_t rows = column_rows(g), cols = g.out_h * g.out_w;
  const Matrix wm = row_major(w.const_data_ptr(), rows);
  if (is_identity_im2col(g) && images_are_matrices(input)) {
    gemm(GemmRung::Tiled, dtype, g.batch, g.out_channels, cols, rows, wm, image_matrices(input),
         image_matrices_mut(out), false, data_or_null(b), false, stream);
    return out;
  }
  const int64_t group = images_per_group(g, input.element_size());
  at::Tensor col = at::empty({group * rows * cols}, input.options());
  const MutableMatrix om = image_matrices_mut(out);
  for (int64_t n0 = 0; n0 < g.batch; n0 += group) {
    const int64_t count = std::min(group, g.batch - n0);
    im2col(dtype, input.const_data_ptr(), strides_of(input), n0, count, col.mutable_data_ptr(), g, stream);
    gemm(GemmRung::Tiled, dtype, count, g.out_channels, cols, rows, wm, Matrix{col.const_data_ptr(), cols, 1, rows * cols},
         skip(om, n0, out.element_size()), false, data_or_null(b), false, stream);
  }
  return out;
}

at::Tensor atrous_backward_input_cuda(const at::Tensor& grad_output, const at::Tensor& weight,
                                      at::IntArrayRef input_size, at::IntArrayRef stride, at::IntArrayRef padding,
                                      at::IntArrayRef dilation, c10::string_view algo) {
  const ConvGeometry g = check_backward_input(kBackwardInput, ConvKind::Dense, grad_output, weight, input_size, stride,
                                              padding, dilation);
  check_device(kBackwardInput, grad_output);
  const bool naive = use_naive(kBackwardInput, algo);
  const DeviceGuard guard(grad_output);
  at::Tensor grad_in = at::empty(input_size, grad_output.options().memory_format(output_memory_format(grad_output, weight)));
  if (grad_in.numel() == 0) return grad_in;
  const at::Tensor w = weight.contiguous();
  const DType dtype = dtype_of(grad_output);
  const cudaStream_t stream = current_stream();
  if (naive) {
    dense_naive_backward_input(dtype, grad_output.const_data_ptr(), strides_of(grad_output), w.const_data_ptr(),
                               grad_in.mutable_data_ptr(), strides_of(grad_in), g, stream);
    return grad_in;
  }
  const int64_t rows = column_rows(g), cols = g.out_h * g.out_w;
  const Matrix wt = transposed(row_major(w.const_data_ptr(), rows));  // C*kh*kw x C_out
  const at::Tensor go = as_image_matrices(grad_output);
  const Matrix gm = image_matrices(go);
  if (is_identity_im2col(g)) {
    gemm(GemmRung::Tiled, dtype, g.batch, rows, cols, g.out_channels, wt, gm, image_matrices_mut(grad_in), false,
         nullptr, false, stream);
    return grad_in;
  }
  const int64_t group = images_per_group(g, grad_output.element_size());
  at::Tensor col = at::empty({group * rows * cols}, grad_output.options());
  for (int64_t n0 = 0; n0 < g.batch; n0 += group) {
    const int64_t count = std::min(group, g.batch - n0);
    gemm(GemmRung::Tiled, dtype, count, rows, cols, g.out_channels, wt, skip(gm, n0, go.element_size()),
         MutableMatrix{col.mutable_data_ptr(), cols, 1, rows * cols}, false, nullptr, false, stream);
    col2im(dtype, col.const_data_ptr(), n0, count, grad_in.mutable_data_ptr(), strides_of(grad_in), g, stream);
  }
  return grad_in;
}

// grad_weight (C_out x C*kh*kw) = sum_n grad_output[n] @ col[n]^T, image after image (a fixed
// order); the half types accumulate in a float32 buffer, rounded once at the end.
at::Tensor atrous_backward_weight_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                       at::IntArrayRef weight_size, at::IntArrayRef stride, at::IntArrayRef padding,
                                       at::IntArrayRef dilation, c10::string_view algo) {
  const ConvGeometry g = check_backward_weight(kBackwardWeight, ConvKind::Dense, grad_output, input, weight_size,
                                               stride, padding, dilation);
  check_device(kBackwardWeight, grad_output);
  const bool naive = use_naive(kBackwardWeight, algo);
  const DeviceGuard guard(grad_output);
  if (g.batch == 0) return at::zeros(weight_size, grad_output.options());
  const DType dtype = dtype_of(grad_output);
  const cudaStream_t stream = current_stream();
  if (naive) {
    at::Tensor grad_w = at::empty(weight_size, grad_output.options());
    dense_naive_backward_weight(dtype, grad_output.const_data_ptr(), strides_of(grad_output), input.const_data_ptr(),
                                strides_of(input), grad_w.mutable_data_ptr(), g, stream);
    return grad_w;
  }
  const int64_t rows = column_rows(g), cols = g.out_h * g.out_w;
  const bool half = is_half_type(grad_output);
  at::Tensor acc = at::empty(weight_size, grad_output.options().dtype(half ? at::kFloat : grad_output.scalar_type()));
  const MutableMatrix gw = row_major(acc.mutable_data_ptr(), rows);
  const at::Tensor go = as_image_matrices(grad_output);
  const Matrix gm = image_matrices(go);
  const int64_t esize = grad_output.element_size();
  if (is_identity_im2col(g) && images_are_matrices(input)) {
    const Matrix xm = image_matrices(input);
    for (int64_t n = 0; n < g.batch; ++n) {
      gemm(GemmRung::Tiled, dtype, 1, g.out_channels, rows, cols, skip(gm, n, esize), transposed(skip(xm, n, esize)),
           gw, half, nullptr, n > 0, stream);
    }
  } else {
    at::Tensor col = at::empty({rows * cols}, grad_output.options());
    const Matrix col_t{col.const_data_ptr(), 1, cols, 0};  // col^T: (Ho*Wo x C*kh*kw)
    for (int64_t n = 0; n < g.batch; ++n) {
      im2col(dtype, input.const_data_ptr(), strides_of(input), n, 1, col.mutable_data_ptr(), g, stream);
      gemm(GemmRung::Tiled, dtype, 1, g.out_channels, rows, cols, skip(gm, n, esize), col_t, gw, half, nullptr, n > 0,
           stream);
    }
  }
  return half ? acc.to(grad_output.scalar_type()) : acc;
}

}  // namespace dense_op

// ===============================================================================================
// CUDA separable convolution for inference: depthwise -> bias -> ReLU -> pointwise -> bias (host side).
//
// Not fused yet: the tiled depthwise kernel writes the intermediate (N, C*m, Ho, Wo) with its
// bias and ReLU applied in the same pass, and one batched tiled GEMM multiplies it by the
// pointwise weight. The intermediate makes one round trip through memory (the CPU version keeps
// it in cache tile by tile); fusing them on the GPU is future work. The output follows the
// input's layout.
// ===============================================================================================

namespace separable_op {

constexpr const char* kOp = "atrous.separable_conv2d";

at::Tensor separable_forward_cuda(const at::Tensor& input, const at::Tensor& dw_weight,
                                  const std::optional<at::Tensor>& dw_bias, const at::Tensor& pw_weight,
                                  const std::optional<at::Tensor>& pw_bias, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation, c10::string_view activation) {
  const ConvGeometry g = check_separable(kOp, input, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation,
                                         view(activation));
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

}  // namespace separable_op

// ===============================================================================================
// CUDA bias gradient shared by all convolutions: grad_output summed over N, H, W (host side).
//
// The kernels are in reduce_kernels.cu: two passes with fixed-order sums, no atomics, so the
// result is bit-identical from run to run. grad_output is read through its strides.
// ===============================================================================================

namespace bias_op {

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

}  // namespace bias_op

}  // namespace

TORCH_LIBRARY_IMPL(ATROUS_CUDA_LIBRARY, ATROUS_CUDA_KEY, m) {
  m.impl("depthwise_conv2d", &depthwise_op::depthwise_forward_cuda);
  m.impl("depthwise_conv2d_backward_input", &depthwise_op::depthwise_backward_input_cuda);
  m.impl("depthwise_conv2d_backward_weight", &depthwise_op::depthwise_backward_weight_cuda);
  m.impl("pointwise_conv2d", &pointwise_op::pointwise_forward_cuda);
  m.impl("pointwise_conv2d_backward_input", &pointwise_op::pointwise_backward_input_cuda);
  m.impl("pointwise_conv2d_backward_weight", &pointwise_op::pointwise_backward_weight_cuda);
  m.impl("atrous_conv2d", &dense_op::atrous_forward_cuda);
  m.impl("atrous_conv2d_backward_input", &dense_op::atrous_backward_input_cuda);
  m.impl("atrous_conv2d_backward_weight", &dense_op::atrous_backward_weight_cuda);
  m.impl("separable_conv2d", &separable_op::separable_forward_cuda);
  m.impl("conv2d_backward_bias", &bias_op::conv2d_backward_bias_cuda);
}

}  // namespace atrous::cuda
