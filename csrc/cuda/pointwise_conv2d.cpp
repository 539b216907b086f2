// CUDA pointwise (1x1) convolution: one batched GEMM per op on the project's CUDA GEMM (host side).
//
// The ladder (kPointwiseCudaAlgorithms): v0 "naive" (one thread per output) and v1 "tiled"
// (shared-memory tiles with register blocks) in gemm_kernels.cu, v2 "mma" (tensor cores) in
// gemm_mma_kernels.cu; "auto" takes mma where it applies (see choose), else tiled. Each image is a
// (C x H*W) matrix through its strides, NCHW or channels_last alike (image_matrices), so
// out[n] = weight (C_out x C) @ input[n] runs on either layout without a copy and writes the
// output in the input's layout.
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "cuda_host.h"

namespace atrous::cuda {
namespace {

constexpr const char* kForward = "atrous.pointwise_conv2d";
constexpr const char* kBackwardInput = "atrous.pointwise_conv2d_backward_input";
constexpr const char* kBackwardWeight = "atrous.pointwise_conv2d_backward_weight";

// "naive" and "tiled" as named; "mma" and "auto" take the tensor cores where the dtype, the device
// and torch's TF32 flag allow (tensor_core_rung_or_tiled), else the exact tiled rung.
GemmRung choose(const char* op, c10::string_view algo, const at::Tensor& t) {
  const int rung = parse_algorithm(op, view(algo), kPointwiseCudaAlgorithms);
  if (rung == 0) return GemmRung::Naive;
  if (rung == 1) return GemmRung::Tiled;
  return tensor_core_rung_or_tiled(t);
}

at::Tensor pointwise_forward_cuda(const at::Tensor& input, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, c10::string_view algo) {
  const ConvGeometry g = check_forward(kForward, ConvKind::Pointwise, input, weight, bias, {}, {}, {});
  check_device(kForward, input);
  const GemmRung rung = choose(kForward, algo, input);
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
  const GemmRung rung = choose(kBackwardInput, algo, grad_output);
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

// Splits of the K terms of a weight-gradient GEMM (M x N outputs): enough to give the GPU about
// 512 blocks of 64 x 64 when the outputs alone are few, each split 4096 terms or more, at most
// 64. It depends only on the shapes (never on the device), so the sums' order is fixed.
int64_t split_k_count(int64_t M, int64_t N, int64_t K) {
  const int64_t tiles = ceil_div(M, 64) * ceil_div(N, 64);
  return std::max<int64_t>(1, std::min({int64_t{64}, 512 / tiles, K / 4096}));
}

// grad_weight = sum_n grad_output[n] (C_out x H*W) @ input[n]^T (H*W x C), deterministic split-K:
// the K = N*H*W terms are cut into S fixed chunks (the images, when they are separate matrices,
// else split_k_count pieces of the one N*H*W matrix), one batched GEMM writes each chunk's
// partial product to a float32 (float64 for double) workspace, and sum_partials adds the S
// partials of each weight in order: no atomics, the same bits every run, and S x more blocks than
// the C_out x C outputs alone would give (a 728 x 728 weight is 144 tiles: about one per SM).
at::Tensor pointwise_backward_weight_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                          c10::string_view algo) {
  const ConvGeometry g = check_pointwise_backward_weight(kBackwardWeight, grad_output, input);
  check_device(kBackwardWeight, grad_output);
  const GemmRung rung = choose(kBackwardWeight, algo, grad_output);
  const DeviceGuard guard(grad_output);
  const std::vector<int64_t> weight_size = {g.out_channels, g.in_channels, 1, 1};
  if (g.batch == 0) return at::zeros(weight_size, grad_output.options());
  const at::Tensor go = as_image_matrices(grad_output);
  const at::Tensor x = as_image_matrices(input);
  const Matrix a = image_matrices(go), b = transposed(image_matrices(x));  // (C_out x HW), (HW x C)
  const int64_t M = g.out_channels, N = g.in_channels, pixels = g.in_h * g.in_w;
  const DType dtype = dtype_of(grad_output);
  const bool double_type = grad_output.scalar_type() == at::kDouble;
  at::Tensor grad_w = at::empty(weight_size, grad_output.options());
  // One matrix over all N*H*W pixels when the images follow each other with the pixel stride
  // (channels_last, or N = 1); otherwise the images are the chunks.
  const bool one_matrix =
      g.batch == 1 || (a.batch_stride == pixels * a.col_stride && b.batch_stride == pixels * b.row_stride);
  int64_t splits, chunk, last;  // `splits` chunks of `chunk` terms, the last one `last` terms
  Matrix as = a, bs = b;
  if (one_matrix) {
    const int64_t K = g.batch * pixels;
    chunk = ceil_div(K, split_k_count(M, N, K));
    splits = ceil_div(K, chunk);
    last = K - (splits - 1) * chunk;
    as.batch_stride = chunk * a.col_stride, bs.batch_stride = chunk * b.row_stride;
  } else if (M * N * g.batch <= (int64_t{1} << 24)) {
    splits = g.batch, chunk = pixels, last = pixels;
  } else {
    // Too many partials to hold (64 MB or more): one GEMM per image accumulating in a float32
    // (float64) buffer, images in order; as deterministic, with fewer blocks per launch.
    at::Tensor acc = at::empty(weight_size, grad_output.options().dtype(double_type ? at::kDouble : at::kFloat));
    const int64_t esize = grad_output.element_size();
    for (int64_t n = 0; n < g.batch; ++n) {
      gemm(rung, dtype, 1, M, N, pixels, skip(a, n, esize), skip(b, n, esize), row_major(acc.mutable_data_ptr(), N),
           /*c_float=*/true, nullptr, /*accumulate=*/n > 0, current_stream());
    }
    return acc.to(grad_output.scalar_type());
  }
  if (splits == 1) {
    gemm(rung, dtype, 1, M, N, chunk, as, bs, row_major(grad_w.mutable_data_ptr(), N), /*c_float=*/false, nullptr,
         /*accumulate=*/false, current_stream());
    return grad_w;
  }
  // partials[(i * N + j) * splits + s]: the layout sum_partials reads (chunks fastest).
  const at::ScalarType acc_type = double_type ? at::kDouble : at::kFloat;
  at::Tensor partials = at::empty({M * N * splits}, grad_output.options().dtype(acc_type));
  const MutableMatrix p{partials.mutable_data_ptr(), N * splits, splits, 1};
  const int64_t full = last == chunk ? splits : splits - 1;  // chunks of `chunk` terms: one batched GEMM
  gemm(rung, dtype, full, M, N, chunk, as, bs, p, /*c_float=*/true, nullptr, /*accumulate=*/false, current_stream());
  if (full < splits) {  // the shorter last chunk
    const int64_t esize = grad_output.element_size(), psize = partials.element_size();
    gemm(rung, dtype, 1, M, N, last, skip(as, full, esize), skip(bs, full, esize), skip(p, full, psize),
         /*c_float=*/true, nullptr, /*accumulate=*/false, current_stream());
  }
  sum_partials(dtype, partials.const_data_ptr(), M * N, splits, grad_w.mutable_data_ptr(), current_stream());
  return grad_w;
}

}  // namespace

TORCH_LIBRARY_IMPL(ATROUS_CUDA_LIBRARY, ATROUS_CUDA_KEY, m) {
  m.impl("pointwise_conv2d", &pointwise_forward_cuda);
  m.impl("pointwise_conv2d_backward_input", &pointwise_backward_input_cuda);
  m.impl("pointwise_conv2d_backward_weight", &pointwise_backward_weight_cuda);
}

}  // namespace atrous::cuda
