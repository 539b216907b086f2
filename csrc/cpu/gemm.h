// The project's own blocked GEMM (CPU): C (+)= A @ B on strided matrix views.
#pragma once

#include <cstdint>
#include <vector>

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

// C(M x N) = A(M x K) @ B(K x N), or C += A @ B when accumulate is true.
// Goto/BLIS structure: B and A are packed into contiguous panels (which absorbs any strides),
// and a register-blocked micro-kernel computes MR x NR tiles of C. Parallel over tiles of C
// with at::parallel_for; each element of C is summed in the same order whatever the number
// of threads, so results are deterministic. Calling it inside a parallel region runs serially.
template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, MatrixView<T> A, MatrixView<T> B,
          MutableMatrixView<T> C, bool accumulate);

// B packed once for many products with the same right operand: the fused separable operator
// multiplies every pixel tile by the same pointwise weight.
template <typename T>
struct PackedB {
  PackedB(int64_t K, int64_t N, MatrixView<T> B);
  int64_t K, N;
  std::vector<T> data;
  std::vector<int64_t> offsets;  // start of each (column block, depth block) in data
};

// C (M x N) (+)= A (M x K) @ B with B prepacked; C must have unit column stride.
template <typename T>
void gemm_packed(int64_t M, MatrixView<T> A, const PackedB<T>& B, MutableMatrixView<T> C, bool accumulate);

extern template void gemm<float>(int64_t, int64_t, int64_t, MatrixView<float>,
                                 MatrixView<float>, MutableMatrixView<float>, bool);
extern template void gemm<double>(int64_t, int64_t, int64_t, MatrixView<double>,
                                  MatrixView<double>, MutableMatrixView<double>, bool);

}  // namespace atrous::cpu
