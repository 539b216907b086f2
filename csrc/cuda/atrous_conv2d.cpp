// CUDA dense atrous convolution (groups=1): dilated im2col + the CUDA GEMM (host side).
//
// The ladder (kDenseCudaAlgorithms): v0 "naive", direct loops with one thread per output
// element, and v1 "im2col" ("auto"): per group of images, col = im2col(x) (C*kh*kw x Ho*Wo per
// image) then out = weight (C_out x C*kh*kw) @ col, one batched tiled GEMM. The input gradient is
// weight^T @ grad_output into col, then col2im as a gather; the weight gradient sums
// grad_output[n] @ col[n]^T over the images in order. A 1x1 kernel with stride 1 and no padding
// skips im2col: the image itself is the matrix. Kernels: conv_gemm_kernels.cu, gemm_kernels.cu.
// v2 "implicit" (conv_implicit_kernels.cu) gathers the columns inside the GEMM instead: no
// buffer, for the forward and (stride 1) the input gradient; its weight gradient is im2col's.
#include <torch/library.h>

#include <algorithm>

#include "cuda_host.h"

namespace atrous::cuda {
namespace {

constexpr const char* kForward = "atrous.atrous_conv2d";
constexpr const char* kBackwardInput = "atrous.atrous_conv2d_backward_input";
constexpr const char* kBackwardWeight = "atrous.atrous_conv2d_backward_weight";

constexpr int64_t kColumnBytes = int64_t{128} << 20;  // im2col buffer: images per group fill at most this

bool use_naive(const char* op, c10::string_view algo) {
  return parse_algorithm(op, view(algo), kDenseCudaAlgorithms) == 0;
}

bool use_implicit(const char* op, c10::string_view algo) {
  return parse_algorithm(op, view(algo), kDenseCudaAlgorithms) == 2;
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
  if (use_implicit(kForward, algo)) {
    dense_implicit_forward(dtype, input.const_data_ptr(), strides_of(input), w.const_data_ptr(), /*flip=*/false,
                           data_or_null(b), out.mutable_data_ptr(), strides_of(out), g, stream);
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
    gemm(GemmRung::Tiled, dtype, count, g.out_channels, cols, rows, wm,
         Matrix{col.const_data_ptr(), cols, 1, rows * cols}, skip(om, n0, out.element_size()), false, data_or_null(b),
         false, stream);
  }
  return out;
}

at::Tensor atrous_backward_input_cuda(const at::Tensor& grad_output, const at::Tensor& weight,
                                      at::IntArrayRef input_size, at::IntArrayRef stride, at::IntArrayRef padding,
                                      at::IntArrayRef dilation, c10::string_view algo) {
  const ConvGeometry g =
      check_backward_input(kBackwardInput, ConvKind::Dense, grad_output, weight, input_size, stride, padding, dilation);
  check_device(kBackwardInput, grad_output);
  const bool naive = use_naive(kBackwardInput, algo);
  const DeviceGuard guard(grad_output);
  at::Tensor grad_in =
      at::empty(input_size, grad_output.options().memory_format(output_memory_format(grad_output, weight)));
  if (grad_in.numel() == 0) return grad_in;
  const at::Tensor w = weight.contiguous();
  const DType dtype = dtype_of(grad_output);
  const cudaStream_t stream = current_stream();
  if (naive) {
    dense_naive_backward_input(dtype, grad_output.const_data_ptr(), strides_of(grad_output), w.const_data_ptr(),
                               grad_in.mutable_data_ptr(), strides_of(grad_in), g, stream);
    return grad_in;
  }
  if (use_implicit(kBackwardInput, algo) && g.stride_h == 1 && g.stride_w == 1) {
    // grad_in = conv(grad_output, the kernel flipped and transposed) at stride 1 with padding
    // d*(k-1) - p: the forward's geometry with input and output swapped.
    ConvGeometry t = g;
    t.in_channels = g.out_channels, t.out_channels = g.in_channels;
    t.in_h = g.out_h, t.in_w = g.out_w, t.out_h = g.in_h, t.out_w = g.in_w;
    t.pad_h = halo_extent(g.kernel_h, g.dil_h) - g.pad_h;
    t.pad_w = halo_extent(g.kernel_w, g.dil_w) - g.pad_w;
    dense_implicit_forward(dtype, grad_output.const_data_ptr(), strides_of(grad_output), w.const_data_ptr(),
                           /*flip=*/true, nullptr, grad_in.mutable_data_ptr(), strides_of(grad_in), t, stream);
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

// grad_weight (C_out x C*kh*kw) = sum_n grad_output[n] @ col[n]^T, as a deterministic split-K
// over the images: one batched GEMM per group of images writes each image's product to a
// float32 (float64) workspace, and sum_partials adds the N products of each weight in image
// order. Where that workspace would pass 64 MB, image after image accumulating in one buffer
// instead (same order, fewer blocks per launch); the half types are rounded once at the end.
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
  const at::ScalarType acc_type = grad_output.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor go_images = as_image_matrices(grad_output);
  if (g.batch > 1 && g.out_channels * rows * g.batch <= (int64_t{1} << 24)) {
    // partials[(i * rows + j) * N + n]: image n's product, the layout sum_partials reads.
    at::Tensor partials = at::empty({g.out_channels * rows * g.batch}, grad_output.options().dtype(acc_type));
    const MutableMatrix p{partials.mutable_data_ptr(), rows * g.batch, g.batch, 1};
    const int64_t esize = grad_output.element_size(), psize = partials.element_size();
    const Matrix gm = image_matrices(go_images);
    if (is_identity_im2col(g) && images_are_matrices(input)) {
      gemm(GemmRung::Tiled, dtype, g.batch, g.out_channels, rows, cols, gm, transposed(image_matrices(input)), p,
           /*c_float=*/true, nullptr, /*accumulate=*/false, stream);
    } else {
      const int64_t group = images_per_group(g, esize);
      at::Tensor col = at::empty({group * rows * cols}, grad_output.options());
      for (int64_t n0 = 0; n0 < g.batch; n0 += group) {
        const int64_t count = std::min(group, g.batch - n0);
        im2col(dtype, input.const_data_ptr(), strides_of(input), n0, count, col.mutable_data_ptr(), g, stream);
        gemm(GemmRung::Tiled, dtype, count, g.out_channels, rows, cols, skip(gm, n0, esize),
             Matrix{col.const_data_ptr(), 1, cols, rows * cols}, skip(p, n0, psize), /*c_float=*/true, nullptr,
             /*accumulate=*/false, stream);
      }
    }
    at::Tensor grad_w = at::empty(weight_size, grad_output.options());
    sum_partials(dtype, partials.const_data_ptr(), g.out_channels * rows, g.batch, grad_w.mutable_data_ptr(), stream);
    return grad_w;
  }
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

}  // namespace

TORCH_LIBRARY_IMPL(ATROUS_CUDA_LIBRARY, ATROUS_CUDA_KEY, m) {
  m.impl("atrous_conv2d", &atrous_forward_cuda);
  m.impl("atrous_conv2d_backward_input", &atrous_backward_input_cuda);
  m.impl("atrous_conv2d_backward_weight", &atrous_backward_weight_cuda);
}

}  // namespace atrous::cuda
