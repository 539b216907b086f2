// CUDA kernels of the deterministic reductions: the bias gradient and the partial-sum pass.
//
//   v0 (the only version) two passes, no atomics. Pass 1: one block per (channel, chunk of the
//   N*H*W terms) sums its chunk in a fixed order (a strided loop per thread, then a shared-memory
//   tree). Pass 2 (sum_partials, shared with the depthwise weight gradient): one thread per
//   output sums its chunks in order. The chunking depends only on the shapes, so two runs give
//   the same bits.
#include "cuda_common.cuh"

namespace atrous::cuda {
namespace {

constexpr int kThreads = 256;  // a power of two (block_sum)

// partials[c * chunks + chunk] = the sum of gy[n, c, h, w] over the chunk's (n, h, w).
template <typename T>
__global__ void __launch_bounds__(kThreads)
bias_partials_kernel(const T* __restrict__ gy, Strides4 s, int64_t batch, int64_t channels, int64_t h,
                     int64_t w, acc_t<T>* __restrict__ partials, int64_t chunks, int64_t chunk_len) {
  using Acc = acc_t<T>;
  __shared__ Acc scratch[kThreads];
  const int64_t plane = h * w, total = batch * plane;
  for (int64_t block = blockIdx.x; block < channels * chunks; block += gridDim.x) {
    const int64_t chunk = block % chunks, c = block / chunks;
    Acc sum = 0;
    const int64_t end = imin(total, (chunk + 1) * chunk_len);
    for (int64_t e = chunk * chunk_len + threadIdx.x; e < end; e += blockDim.x) {
      const int64_t n = e / plane, y = (e % plane) / w, x = e % w;
      sum += load(gy, n * s.n + c * s.c + y * s.h + x * s.w);
    }
    sum = block_sum(sum, scratch);
    if (threadIdx.x == 0) partials[c * chunks + chunk] = sum;
  }
}

template <typename T>
__global__ void sum_partials_kernel(const acc_t<T>* __restrict__ partials, int64_t count, int64_t chunks,
                                    T* __restrict__ out) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < count; e += int64_t{gridDim.x} * blockDim.x) {
    acc_t<T> sum = 0;
    for (int64_t k = 0; k < chunks; ++k) sum += partials[e * chunks + k];
    out[e] = from_acc<T>(sum);
  }
}

}  // namespace

void sum_partials(DType dtype, const void* partials, int64_t count, int64_t chunks, void* out,
                  cudaStream_t stream) {
  ATROUS_CUDA_DISPATCH(dtype, {
    launch(sum_partials_kernel<T>, blocks_for(count, 128), 128, 0, stream,
           static_cast<const acc_t<T>*>(partials), count, chunks, static_cast<T*>(out));
  });
}

int64_t backward_bias_workspace(DType dtype, int64_t batch, int64_t channels, int64_t h, int64_t w) {
  return channels * reduction_chunks(batch * h * w).chunks * acc_bytes(dtype);
}

void backward_bias(DType dtype, const void* gy, Strides4 gys, int64_t batch, int64_t channels,
                   int64_t h, int64_t w, void* gb, void* workspace, cudaStream_t stream) {
  const int64_t total = batch * h * w;
  if (total == 0 || channels == 0) return;  // the caller zero-fills gb
  const Chunking c = reduction_chunks(total);
  ATROUS_CUDA_DISPATCH(dtype, {
    launch(bias_partials_kernel<T>, std::min(channels * c.chunks, kMaxBlocks), kThreads, 0, stream,
           static_cast<const T*>(gy), gys, batch, channels, h, w, static_cast<acc_t<T>*>(workspace), c.chunks,
           c.chunk_len);
  });
  sum_partials(dtype, workspace, channels, c.chunks, gb, stream);
}

}  // namespace atrous::cuda
