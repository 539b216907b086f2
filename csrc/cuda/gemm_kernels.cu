// CUDA GEMM of the pointwise and dense atrous convolutions: C (+)= A @ B (+ bias) on strided views.
//
// The ladder (kPointwiseCudaAlgorithms in csrc/common/algorithms.h):
//   v0 naive  one thread per element of C, a dot product straight from global memory: every
//             element of A and B is read N and M times over.
//   v1 tiled  a block computes a 64 x 64 tile of C. Per step of 16 along K it stages a 64 x 16
//             panel of A and a 16 x 64 panel of B in shared memory (each element read from
//             global memory once per block), and each of its 256 threads keeps a 4 x 4 block of
//             C in registers: per step a thread loads 4 + 4 values from shared memory for 16
//             multiply-adds. Thread (tx, ty) owns rows ty + 16*i and columns tx + 16*j, so a
//             warp reads 16 consecutive B values (no bank conflicts) and 2 A values (broadcast);
//             the panels are padded by one element per row so the transposing stores are free of
//             conflicts too. Panels are loaded along whichever axis is contiguous in memory.
//             Products with enough work to fill the GPU twice over use 128 x 128 tiles with 8 x 8
//             per thread instead (same code, other template arguments): 64 multiply-adds per 16
//             loads from shared memory.
// Both: any M, N, K; matrices through (row, column, batch) strides, so transposes and NCHW or
// channels_last images need no copies; each element of C is summed by one thread in a fixed
// order (deterministic, no split-K). Half types are read as float and summed in float.
// The next rung, v2 "mma" (tensor cores, cp.async double buffering, warp tiles), is in
// gemm_mma_kernels.cu; gemm() below hands it the Mma rung.
#include <type_traits>

#include "cuda_common.cuh"

namespace atrous::cuda {
namespace {

// A typed batch of strided matrices (see Matrix in kernels.h).
template <typename P>
struct View {
  P* data;
  int64_t rs, cs, bs;
  __device__ __forceinline__ P& at(int64_t b, int64_t i, int64_t j) const { return data[b * bs + i * rs + j * cs]; }
};

// ---- v0: naive ------------------------------------------------------------------------------

template <typename T, typename TC>
__global__ void gemm_naive_kernel(int64_t batch, int64_t M, int64_t N, int64_t K, View<const T> A, View<const T> B,
                                  View<TC> C, const T* __restrict__ bias, bool accumulate) {
  using Acc = acc_t<T>;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < batch * M * N; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t j = e % N, i = (e / N) % M, b = e / (M * N);  // j fastest: coalesced for row-major C
    Acc sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += to_acc(A.at(b, i, k)) * to_acc(B.at(b, k, j));
    if (bias) sum += load(bias, i);
    if (accumulate) sum += to_acc(C.at(b, i, j));
    C.at(b, i, j) = from_acc<TC>(sum);
  }
}

// ---- v1: tiled ------------------------------------------------------------------------------

constexpr int kThreads = 256;

// Block tile BM x BN of C, K step BK, register block TM x TN per thread: (BM/TM) x (BN/TN) = 256
// threads. Two shapes: 64 x 64 (4 x 4 per thread), and 128 x 128 (8 x 8 per thread: 64 multiply-
// adds per 16 shared-memory loads instead of 16 per 8) for products with enough tiles to fill the
// GPU with the bigger ones.
template <typename T, typename TC, int BM, int BN, int BK, int TM, int TN, int MIN_BLOCKS>
__global__ void __launch_bounds__(kThreads, MIN_BLOCKS)
gemm_tiled_kernel(int64_t batch, int64_t M, int64_t N, int64_t K, View<const T> A, View<const T> B, View<TC> C,
                  const T* __restrict__ bias, bool accumulate) {
  static_assert((BM / TM) * (BN / TN) == kThreads, "one register block per thread");
  static_assert(BM * BK % kThreads == 0 && BK * BN % kThreads == 0, "panels load in whole rounds");
  using Acc = acc_t<T>;
  __shared__ Acc As[BK][BM + 1];  // As[k][m]: the A panel, transposed; +1: no bank conflicts
  __shared__ Acc Bs[BK][BN + 1];  // Bs[k][n]
  const int tid = threadIdx.x, tx = tid % (BN / TN), ty = tid / (BN / TN);
  const int64_t tiles_m = ceil_div(M, BM), tiles_n = ceil_div(N, BN);
  // Load along the contiguous axis of each operand: k for a row-major A, m otherwise; n for a
  // row-major B, k otherwise.
  const bool a_along_k = A.cs == 1, b_along_n = B.cs == 1;

  for (int64_t block = blockIdx.x; block < batch * tiles_m * tiles_n; block += gridDim.x) {
    // Column tiles vary fastest: consecutive blocks share A's row panel in the L2 cache.
    const int64_t tn = block % tiles_n, tm = (block / tiles_n) % tiles_m, b = block / (tiles_n * tiles_m);
    const int64_t m0 = tm * BM, n0 = tn * BN;
    Acc acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = Acc(0);

    for (int64_t k0 = 0; k0 < K; k0 += BK) {
#pragma unroll
      for (int l = 0; l < BM * BK / kThreads; ++l) {
        const int idx = tid + l * kThreads;
        const int mm = a_along_k ? idx / BK : idx % BM, kk = a_along_k ? idx % BK : idx / BM;
        const int64_t gm = m0 + mm, gk = k0 + kk;
        As[kk][mm] = (gm < M && gk < K) ? to_acc(A.at(b, gm, gk)) : Acc(0);
      }
#pragma unroll
      for (int l = 0; l < BK * BN / kThreads; ++l) {
        const int idx = tid + l * kThreads;
        const int nn = b_along_n ? idx % BN : idx / BK, kk = b_along_n ? idx / BN : idx % BK;
        const int64_t gn = n0 + nn, gk = k0 + kk;
        Bs[kk][nn] = (gn < N && gk < K) ? to_acc(B.at(b, gk, gn)) : Acc(0);
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        Acc a[TM], bv[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i) a[i] = As[kk][ty + i * (BM / TM)];
#pragma unroll
        for (int j = 0; j < TN; ++j) bv[j] = Bs[kk][tx + j * (BN / TN)];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * bv[j];
      }
      __syncthreads();  // the next step overwrites the panels
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int64_t gm = m0 + ty + i * (BM / TM);
      if (gm >= M) continue;
      const Acc row_bias = bias ? load(bias, gm) : Acc(0);
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int64_t gn = n0 + tx + j * (BN / TN);
        if (gn >= N) continue;
        Acc v = acc[i][j] + row_bias;
        if (accumulate) v += to_acc(C.at(b, gm, gn));
        C.at(b, gm, gn) = from_acc<TC>(v);
      }
    }
  }
}

template <typename T, typename TC>
void run_gemm(GemmRung rung, int64_t batch, int64_t M, int64_t N, int64_t K, Matrix A, Matrix B, MutableMatrix C,
              const void* bias, bool accumulate, cudaStream_t stream) {
  const View<const T> a{static_cast<const T*>(A.data), A.row_stride, A.col_stride, A.batch_stride};
  const View<const T> b{static_cast<const T*>(B.data), B.row_stride, B.col_stride, B.batch_stride};
  const View<TC> c{static_cast<TC*>(C.data), C.row_stride, C.col_stride, C.batch_stride};
  const T* bp = static_cast<const T*>(bias);
  if (rung == GemmRung::Naive) {
    launch(gemm_naive_kernel<T, TC>, blocks_for(batch * M * N, 256), 256, 0, stream, batch, M, N, K, a, b, c, bp,
           accumulate);
    return;
  }
  // The big tiles when there are at least two of them per multiprocessor (float sums only: 64
  // doubles per thread would not leave room for two blocks).
  if constexpr (!std::is_same_v<acc_t<T>, double>) {
    const int64_t big_tiles = batch * ceil_div(M, 128) * ceil_div(N, 128);
    if (big_tiles >= 2 * multiprocessor_count()) {
      launch(gemm_tiled_kernel<T, TC, 128, 128, 8, 8, 8, 1>, std::min(big_tiles, kMaxBlocks), kThreads, 0, stream,
             batch, M, N, K, a, b, c, bp, accumulate);
      return;
    }
  }
  const int64_t blocks = std::min(batch * ceil_div(M, 64) * ceil_div(N, 64), kMaxBlocks);
  // Two blocks per multiprocessor cap a thread at 128 registers: enough for float sums, but the
  // double instance spilled under it (tests/cuda/test_cuda_build.py), so it asks for one.
  constexpr int kMinBlocks = std::is_same_v<acc_t<T>, double> ? 1 : 2;
  launch(gemm_tiled_kernel<T, TC, 64, 64, 16, 4, 4, kMinBlocks>, blocks, kThreads, 0, stream, batch, M, N, K, a, b,
         c, bp, accumulate);
}

}  // namespace

void gemm(GemmRung rung, DType dtype, int64_t batch, int64_t M, int64_t N, int64_t K, Matrix A, Matrix B,
          MutableMatrix C, bool c_float, const void* bias, bool accumulate, cudaStream_t stream) {
  if (batch * M * N == 0) return;
  if (rung == GemmRung::Mma) {
    if (dtype != DType::Double) {
      gemm_mma(dtype, batch, M, N, K, A, B, C, c_float, bias, accumulate, stream);
      return;
    }
    rung = GemmRung::Tiled;  // no double tensor cores on the course GPUs
  }
  ATROUS_CUDA_DISPATCH(dtype, {
    if constexpr (sizeof(T) == 2) {  // the half types may write a float32 C
      if (c_float) {
        run_gemm<T, float>(rung, batch, M, N, K, A, B, C, bias, accumulate, stream);
      } else {
        run_gemm<T, T>(rung, batch, M, N, K, A, B, C, bias, accumulate, stream);
      }
    } else {
      run_gemm<T, T>(rung, batch, M, N, K, A, B, C, bias, accumulate, stream);
    }
  });
}

}  // namespace atrous::cuda
