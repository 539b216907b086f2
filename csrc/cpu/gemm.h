// The project's own blocked GEMM (CPU): C (+)= A @ B on strided matrix views.
#pragma once

#include <cstdint>
#include <vector>

#include "../common/conv_index.h"

namespace atrous::cpu {

// A matrix seen through strides: element (i, j) is data[i * row_stride + j * col_stride].
// Strides express transposes and NCHW/NHWC images without copies: an NCHW image is the
// (C x H*W) view {data, H*W, 1}; the same image channels_last is {data, 1, C}.
template <typename T>
struct MatrixView {
  const T* data;
  int64_t row_stride;
  int64_t col_stride;
  MatrixView<T> transposed() const { return {data, col_stride, row_stride}; }
};

template <typename T>
struct MutableMatrixView {
  T* data;
  int64_t row_stride;
  int64_t col_stride;
};

// What the micro-kernel does besides the product: a bias in the accumulators' start (no pass
// over C of its own) and a ReLU before the last store. C(i, j) gets row_bias[i] or col_bias[j].
template <typename T>
struct Epilogue {
  const T* row_bias = nullptr;
  const T* col_bias = nullptr;
  bool relu = false;
};

// C(M x N) = A(M x K) @ B(K x N), or C += A @ B when accumulate is true; plus the epilogue.
// Goto/BLIS structure: B and A are packed into contiguous panels (which absorbs any strides),
// and a register-blocked micro-kernel computes MR x NR tiles of C. Parallel over tiles of C
// with at::parallel_for; each element of C is summed in the same order whatever the number
// of threads, so results are deterministic. Calling it inside a parallel region runs serially.
template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, MatrixView<T> A, MatrixView<T> B,
          MutableMatrixView<T> C, bool accumulate, Epilogue<T> epilogue = {});

// B packed once for many products with the same right operand: the fused separable operator
// multiplies every pixel tile by the same pointwise weight. The panel shape depends on the
// instruction set's register tile, so the packing remembers which set packed it.
template <typename T>
struct PackedB {
  int64_t K = 0, N = 0;
  int isa = 0;  // the atrous::cpu::Isa whose kernels packed (and must multiply) it
  std::vector<T> data;
  std::vector<int64_t> offsets;  // start of each (column block, depth block) in data
};

// The taps of a dense convolution that the implicit GEMM sums, as indices i * kernel_w + j: those
// that read at least one input pixel for some output. A tap that lies in the zero padding for every
// output adds nothing (an ASPP rate at or above the feature size leaves only the centre tap).
struct ConvTaps {
  const int64_t* index;
  int64_t count;
};

// Dense convolution by implicit GEMM on NHWC images, the dilated taps gathered while A is packed
// (no im2col buffer), plus the epilogue (row_bias: one value per output channel): x (N, H, W, C)
// and y (N, Ho, Wo, C_out) in memory, the whole batch one product y = im2col(x)^T @ w^T with w
// (C_out x taps.count*C) in (tap, c) order, as a channels_last weight stores it. Needs C > 0.
template <typename T>
void conv_gemm(const T* x, const T* w, T* y, const ConvGeometry& g, ConvTaps taps, Epilogue<T> epilogue);

// Packs B (K x N) with the kernels of the active instruction set.
template <typename T>
PackedB<T> pack_b(int64_t K, int64_t N, MatrixView<T> B);

// C (M x N) (+)= A (M x K) @ B with B prepacked, plus the epilogue; C must have unit column stride.
template <typename T>
void gemm_packed(int64_t M, MatrixView<T> A, const PackedB<T>& B, MutableMatrixView<T> C, bool accumulate,
                 Epilogue<T> epilogue = {});

// The dispatchers above (cpu_dispatch.cpp) call the copy of the kernels compiled for the active
// instruction set (isa.h); isa_kernels.h declares those copies.
extern template void gemm<float>(int64_t, int64_t, int64_t, MatrixView<float>,
                                 MatrixView<float>, MutableMatrixView<float>, bool, Epilogue<float>);
extern template void gemm<double>(int64_t, int64_t, int64_t, MatrixView<double>,
                                  MatrixView<double>, MutableMatrixView<double>, bool, Epilogue<double>);

}  // namespace atrous::cpu
