// The "mma" rung of the CUDA GEMM: tensor cores through mma.sync, cp.async double buffering, warp tiles.
//
// v2 mma   (kPointwiseCudaAlgorithms) a block of 4 warps computes a 64 x 64 tile of C; each warp
//          owns a 32 x 32 sub-tile: 2 x 4 MMA tiles of 16 x 8, 32 float accumulators per thread.
//          Per step of 16 along K the block stages a 64 x 16 panel of A (stored [m][k]) and of B
//          (stored [n][k]: both k-contiguous, so every fragment register is one 32-bit shared
//          load for the 16-bit types). Float16 and bfloat16 run mma.m16n8k16 with float32
//          accumulators; float32 runs mma.m16n8k8 on TF32 operands (rounded with cvt.rna), which
//          the host selects only when torch allows TF32 for convolutions
//          (torch.backends.cudnn.allow_tf32; otherwise float32 stays on the exact "tiled" rung).
//          Panels whose rows are contiguous and 16-byte aligned along k are copied with 16-byte
//          cp.async (zero-filled past the edges); others are gathered element by element
//          (coalesced along their contiguous axis). Two panel buffers: the copies of step s + 1
//          are in flight while step s computes, one barrier per step.
// Like the lower rungs: any M, N, K, strided matrices, each element of C summed in a fixed order
// by one thread (deterministic, no atomics), bias and accumulate in the epilogue.
// Next steps (not taken): ldmatrix, swizzled panels instead of padding, 3-4 stage pipelines,
// 128 x 128 block tiles for large products.
#include <type_traits>

#include "cuda_common.cuh"
#include "warp_ops.cuh"

namespace atrous::cuda {
namespace {

template <typename P>
struct View {
  P* data;
  int64_t rs, cs, bs;
  __device__ __forceinline__ P* ptr(int64_t b, int64_t i, int64_t j) const { return data + b * bs + i * rs + j * cs; }
};

constexpr int kMmaThreads = 128;  // 4 warps, 2 x 2 over the block tile
constexpr int BM = 64, BN = 64, BK = 16;

// A panel row: BK elements plus padding that keeps rows 16-byte aligned (cp.async) and moves
// consecutive rows to other banks (8 halves or 4 floats: 48 or 80 bytes a row).
template <typename T>
constexpr int kRow = BK + 16 / static_cast<int>(sizeof(T));

// Whether `v`'s panels along k can be copied in 16-byte pieces: unit stride along k, the other
// strides and K multiples of the piece, an aligned base.
template <typename T>
__device__ __forceinline__ bool vector_along_k(const View<const T>& v, int64_t k_stride, int64_t other_stride,
                                               int64_t K) {
  constexpr int V = 16 / sizeof(T);
  return k_stride == 1 && other_stride % V == 0 && v.bs % V == 0 && K % V == 0 &&
         reinterpret_cast<uintptr_t>(v.data) % 16 == 0;
}

// Stages rows [r0, r0 + 64) x k [k0, k0 + BK) of a matrix into panel[r][k]. `at(r, k)` is the
// element's address; rows past `rows` and k past K read as 0. `k_fast`: the matrix is
// contiguous along k (else along r), which decides how threads walk the panel.
template <typename T, typename At>
__device__ __forceinline__ void stage_panel(T* panel, bool vector, bool k_fast, int64_t r0, int64_t rows,
                                            int64_t k0, int64_t K, At at) {
  const int tid = threadIdx.x;
  if (vector) {
    constexpr int V = 16 / sizeof(T), pieces = BM * BK / V;
    for (int p = tid; p < pieces; p += kMmaThreads) {
      const int r = p / (BK / V), kk = (p % (BK / V)) * V;
      const bool inside = r0 + r < rows && k0 + kk < K;
      // A zero-filled piece still needs a valid address: the matrix's first element.
      cp_async_16(panel + r * kRow<T> + kk, inside ? at(r0 + r, k0 + kk) : at(0, 0), inside ? 16 : 0);
    }
    return;
  }
  for (int e = tid; e < BM * BK; e += kMmaThreads) {
    const int r = k_fast ? e / BK : e % BM, kk = k_fast ? e % BK : e / BM;
    const bool inside = r0 + r < rows && k0 + kk < K;
    panel[r * kRow<T> + kk] = inside ? *at(r0 + r, k0 + kk) : from_acc<T>(acc_t<T>(0));
  }
}

template <typename T, typename TC>
__global__ void __launch_bounds__(kMmaThreads)
gemm_mma_kernel(int64_t batch, int64_t M, int64_t N, int64_t K, View<const T> A, View<const T> B, View<TC> C,
                const T* __restrict__ bias, bool accumulate) {
  constexpr bool kTf32 = std::is_same_v<T, float>;
  constexpr int R = kRow<T>;
  __shared__ __align__(16) T As[2][BM * R];
  __shared__ __align__(16) T Bs[2][BN * R];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;  // the warp's sub-tile in the block tile
  const int64_t tiles_m = ceil_div(M, BM), tiles_n = ceil_div(N, BN), steps = ceil_div(K, BK);
  const bool a_vec = vector_along_k(A, A.cs, A.rs, K), b_vec = vector_along_k(B, B.rs, B.cs, K);
  const bool a_kfast = A.cs == 1, b_kfast = B.rs == 1;

  for (int64_t block = blockIdx.x; block < batch * tiles_m * tiles_n; block += gridDim.x) {
    const int64_t tn = block % tiles_n, tm = (block / tiles_n) % tiles_m, b = block / (tiles_n * tiles_m);
    const int64_t m0 = tm * BM, n0 = tn * BN;
    auto a_at = [&](int64_t m, int64_t k) { return A.ptr(b, m, k); };
    auto b_at = [&](int64_t n, int64_t k) { return B.ptr(b, k, n); };
    auto stage = [&](int buf, int64_t k0) {
      stage_panel<T>(As[buf], a_vec, a_kfast, m0, M, k0, K, a_at);
      stage_panel<T>(Bs[buf], b_vec, b_kfast, n0, N, k0, K, b_at);
      cp_async_commit();
    };

    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;

    stage(0, 0);
    for (int64_t s = 0; s < steps; ++s) {
      const int buf = static_cast<int>(s % 2);
      if (s + 1 < steps) {
        stage(buf ^ 1, (s + 1) * BK);  // the buffer step s - 1 read; the barrier below ended that
        cp_async_wait<1>();            // this thread's copies of step s have landed...
      } else {
        cp_async_wait<0>();
      }
      __syncthreads();  // ...and everyone's
      const T* as = As[buf];
      const T* bs = Bs[buf];
#pragma unroll
      for (int ks = 0; ks < BK; ks += kTf32 ? 8 : 16) {
        uint32_t fa[2][4], fb[4][2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const T* rows = as + (wm + i * 16 + g) * R + ks;
          if constexpr (kTf32) {  // a_r = A[g + 8(r%2)][t + 4(r/2)]
#pragma unroll
            for (int r = 0; r < 4; ++r) fa[i][r] = to_tf32(rows[(r % 2) * 8 * R + t + 4 * (r / 2)]);
          } else {  // a_r = A[g + 8(r%2)][2t + 8(r/2) + {0, 1}]
#pragma unroll
            for (int r = 0; r < 4; ++r) {
              const T* p = rows + (r % 2) * 8 * R + 2 * t + 8 * (r / 2);
              fa[i][r] = pack2(p[0], p[1]);
            }
          }
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const T* col = bs + (wn + j * 8 + g) * R + ks;  // column g of B, along k
          if constexpr (kTf32) {  // b_r = B[t + 4r][g]
            fb[j][0] = to_tf32(col[t]);
            fb[j][1] = to_tf32(col[t + 4]);
          } else {  // b_r = B[2t + 8r + {0, 1}][g]
            fb[j][0] = pack2(col[2 * t], col[2 * t + 1]);
            fb[j][1] = pack2(col[2 * t + 8], col[2 * t + 9]);
          }
        }
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            if constexpr (kTf32) {
              mma_tf32_m16n8k8(acc[i][j], fa[i], fb[j], acc[i][j]);
            } else {
              mma_16bit_m16n8k16<T>(acc[i][j], fa[i], fb[j], acc[i][j]);
            }
          }
      }
      __syncthreads();  // the next step's copies overwrite the other buffer, read one step later
    }

    // c_r = C[g + 8(r/2)][2t + r%2] of each 16 x 8 tile.
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int r2 = 0; r2 < 2; ++r2) {
        const int64_t gm = m0 + wm + i * 16 + g + 8 * r2;
        if (gm >= M) continue;
        const float row_bias = bias ? to_acc(bias[gm]) : 0.0f;
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int r1 = 0; r1 < 2; ++r1) {
            const int64_t gn = n0 + wn + j * 8 + 2 * t + r1;
            if (gn >= N) continue;
            TC* out = C.ptr(b, gm, gn);
            float v = acc[i][j][r2 * 2 + r1] + row_bias;
            if (accumulate) v += to_acc(*out);
            *out = from_acc<TC>(v);
          }
      }
  }
}

template <typename T, typename TC>
void run(int64_t batch, int64_t M, int64_t N, int64_t K, Matrix A, Matrix B, MutableMatrix C, const void* bias,
         bool accumulate, cudaStream_t stream) {
  const View<const T> a{static_cast<const T*>(A.data), A.row_stride, A.col_stride, A.batch_stride};
  const View<const T> b{static_cast<const T*>(B.data), B.row_stride, B.col_stride, B.batch_stride};
  const View<TC> c{static_cast<TC*>(C.data), C.row_stride, C.col_stride, C.batch_stride};
  const int64_t blocks = std::min(batch * ceil_div(M, BM) * ceil_div(N, BN), kMaxBlocks);
  launch(gemm_mma_kernel<T, TC>, blocks, kMmaThreads, 0, stream, batch, M, N, K, a, b, c,
         static_cast<const T*>(bias), accumulate);
}

}  // namespace

void gemm_mma(DType dtype, int64_t batch, int64_t M, int64_t N, int64_t K, Matrix A, Matrix B, MutableMatrix C,
              bool c_float, const void* bias, bool accumulate, cudaStream_t stream) {
  if (batch * M * N == 0) return;
  switch (dtype) {
    case DType::Float:
      run<float, float>(batch, M, N, K, A, B, C, bias, accumulate, stream);
      break;
    case DType::Half:
      c_float ? run<__half, float>(batch, M, N, K, A, B, C, bias, accumulate, stream)
              : run<__half, __half>(batch, M, N, K, A, B, C, bias, accumulate, stream);
      break;
    case DType::BFloat16:
      c_float ? run<__nv_bfloat16, float>(batch, M, N, K, A, B, C, bias, accumulate, stream)
              : run<__nv_bfloat16, __nv_bfloat16>(batch, M, N, K, A, B, C, bias, accumulate, stream);
      break;
    case DType::Double:
      break;  // no double tensor cores on the course GPUs: the host never sends double here
  }
}

}  // namespace atrous::cuda
