// The "implicit" rung of the CUDA dense atrous convolution: implicit GEMM, no im2col buffer.
//
// v2 implicit (kDenseCudaAlgorithms) out[n] (C_out x Ho*Wo) = W (C_out x C*kh*kw) @ col[n], where
//          col[n] is never written: the B-panel loader gathers each element from the input. Per
//          step of 16 along K the block tabulates the 16 taps k = (c, i, j) once in shared memory
//          (the channel's offset c*stride_c and the tap's shifts i*d_h, j*d_w: the per-k offset
//          table), and each thread keeps the (oh*s_h - p_h, ow*s_w - p_w) of the one output
//          column it loads, so an element of the panel costs two compares and one load. The
//          rest is the tiled GEMM's: 64 x 64 tiles of C, 4 x 4 per thread, sums in float (double
//          for double), every element summed by one thread in a fixed order. The input
//          gradient at stride 1 is this forward on grad_output with the kernel flipped and
//          transposed (C x C_out) and padding d*(k-1) - p; the weight gradient still uses
//          im2col (conv_gemm_kernels.cu).
// It saves the 9x column buffer's write and read (a 3x3 kernel), the dominant memory traffic of
// the im2col rung; the gather itself is read from L1/L2, each input element by up to 9 taps.
#include "cuda_common.cuh"

namespace atrous::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int BM = 64, BN = 64, BK = 16, TM = 4, TN = 4;

template <typename T>
__global__ void __launch_bounds__(kThreads)
conv_implicit_kernel(const T* __restrict__ x, Strides4 xs, const T* __restrict__ w, bool flip,
                     const T* __restrict__ bias, T* __restrict__ y, Strides4 ys, ConvGeometry g) {
  using Acc = acc_t<T>;
  __shared__ Acc As[BK][BM + 1];  // As[k][m]: the weight panel, transposed
  __shared__ Acc Bs[BK][BN + 1];  // Bs[k][n]: the gathered input panel
  __shared__ int64_t k_offset[BK];  // c * xs.c of tap k, or -1 past K
  __shared__ int64_t k_dh[BK], k_dw[BK];  // i * dil_h, j * dil_w
  const int tid = threadIdx.x, tx = tid % (BN / TN), ty = tid / (BN / TN);
  const int64_t taps = g.kernel_h * g.kernel_w, K = g.in_channels * taps;
  const int64_t M = g.out_channels, P = g.out_h * g.out_w;
  const int64_t tiles_m = ceil_div(M, BM), tiles_n = ceil_div(P, BN);

  for (int64_t block = blockIdx.x; block < g.batch * tiles_m * tiles_n; block += gridDim.x) {
    const int64_t tn = block % tiles_n, tm = (block / tiles_n) % tiles_m, n = block / (tiles_n * tiles_m);
    const int64_t m0 = tm * BM, p0 = tn * BN;
    // The output column this thread loads (256 threads, 64 columns: the same one every round).
    const int nn = tid % BN;
    const int64_t p = p0 + nn, oh = p / g.out_w, ow = p % g.out_w;
    const bool column = p < P;
    const int64_t h0 = oh * g.stride_h - g.pad_h, w0 = ow * g.stride_w - g.pad_w;
    const T* xn = x + n * xs.n;
    Acc acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = Acc(0);

    for (int64_t k0 = 0; k0 < K; k0 += BK) {
      if (tid < BK) {  // the per-k offset table of this step
        const int64_t k = k0 + tid, c = k / taps, t = k % taps, i = t / g.kernel_w, j = t % g.kernel_w;
        k_offset[tid] = k < K ? c * xs.c : -1;
        k_dh[tid] = i * g.dil_h;
        k_dw[tid] = j * g.dil_w;
      }
      // The weight panel: element (m, k) of W, or of the flipped, transposed kernel.
#pragma unroll
      for (int l = 0; l < BM * BK / kThreads; ++l) {
        const int idx = tid + l * kThreads, mm = idx / BK, kk = idx % BK;
        const int64_t gm = m0 + mm, gk = k0 + kk;
        Acc v = Acc(0);
        if (gm < M && gk < K) {
          if (flip) {  // W'[m][(c, i, j)] = W[c][m][kh-1-i][kw-1-j]: W is (C' x M x kh x kw)
            const int64_t c = gk / taps, t = gk % taps;
            v = to_acc(w[(c * M + gm) * taps + (taps - 1 - t)]);
          } else {
            v = to_acc(w[gm * K + gk]);
          }
        }
        As[kk][mm] = v;
      }
      __syncthreads();  // the offset table is ready
#pragma unroll
      for (int l = 0; l < BK * BN / kThreads; ++l) {
        const int kk = (tid + l * kThreads) / BN;
        const int64_t ih = h0 + k_dh[kk], iw = w0 + k_dw[kk];
        const bool inside = column && k_offset[kk] >= 0 && ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w;
        Bs[kk][nn] = inside ? to_acc(xn[k_offset[kk] + ih * xs.h + iw * xs.w]) : Acc(0);
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
      __syncthreads();  // the next step overwrites the panels and the table
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int64_t gm = m0 + ty + i * (BM / TM);
      if (gm >= M) continue;
      const Acc row_bias = bias ? to_acc(bias[gm]) : Acc(0);
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int64_t gp = p0 + tx + j * (BN / TN);
        if (gp >= P) continue;
        const int64_t yh = gp / g.out_w, yw = gp % g.out_w;
        y[n * ys.n + gm * ys.c + yh * ys.h + yw * ys.w] = from_acc<T>(acc[i][j] + row_bias);
      }
    }
  }
}

}  // namespace

void dense_implicit_forward(DType dtype, const void* x, Strides4 xs, const void* w, bool flip, const void* bias,
                            void* y, Strides4 ys, const ConvGeometry& g, cudaStream_t stream) {
  if (g.batch * g.out_channels * g.out_h * g.out_w == 0) return;
  ATROUS_CUDA_DISPATCH(dtype, {
    const int64_t tiles = g.batch * ceil_div(g.out_channels, BM) * ceil_div(g.out_h * g.out_w, BN);
    launch(conv_implicit_kernel<T>, std::min(tiles, kMaxBlocks), kThreads, 0, stream, static_cast<const T*>(x), xs,
           static_cast<const T*>(w), flip, static_cast<const T*>(bias), static_cast<T*>(y), ys, g);
  });
}

}  // namespace atrous::cuda
