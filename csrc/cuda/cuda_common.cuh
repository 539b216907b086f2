// Device-side helpers shared by the kernel files: element types, launches, grid sizes.
//
// Deliberately lean (no ATen): the kernel files include only this, kernels.h and the shared
// index arithmetic, so nvcc compiles them quickly. With -DATROUS_CUDA_EMULATION the same files
// compile as plain C++ against emulation.h, and the tests run the kernels on the CPU.
#pragma once

#ifdef ATROUS_CUDA_EMULATION
#include "emulation.h"
#else
#include <c10/cuda/CUDAException.h>  // C10_CUDA_KERNEL_LAUNCH_CHECK
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>

#include "../common/conv_index.h"
#include "kernels.h"

namespace atrous::cuda {

// Sums run in float for the half types and in the element type otherwise.
template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};
template <typename T>
using acc_t = typename AccType<T>::type;

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

// Rounds a sum to the element type (to nearest even for the half types).
template <typename T>
__device__ __forceinline__ T from_acc(float v);
template <typename T>
__device__ __forceinline__ T from_acc(double v);
template <>
__device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <>
__device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Loads element i of p as an accumulator value.
template <typename T>
__device__ __forceinline__ acc_t<T> load(const T* p, int64_t i) { return to_acc(p[i]); }

// Dynamic shared memory as an array of T (sized by the launch).
#ifdef ATROUS_CUDA_EMULATION
#define ATROUS_DYNAMIC_SMEM(T, name) T* name = reinterpret_cast<T*>(::atrous::emulation::dynamic_smem.data())
#else
#define ATROUS_DYNAMIC_SMEM(T, name)                      \
  extern __shared__ __align__(16) unsigned char name##_raw[]; \
  T* name = reinterpret_cast<T*>(name##_raw)
#endif

// Most blocks a launch asks for; kernels loop over the rest (block-stride loops), so any amount
// of work fits in a 1-D grid and every index stays 64-bit.
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

inline int64_t blocks_for(int64_t work, int64_t per_block) {
  const int64_t blocks = (work + per_block - 1) / per_block;
  return blocks < kMaxBlocks ? blocks : kMaxBlocks;
}

// Streaming multiprocessors of the current device; 132 in the emulator. Cached per device for
// any device index, safe from several host threads at once: the table is sized once by a
// function-local static (initialised exactly once, C++11), and each slot is an atomic that at
// worst two threads fill with the same value.
inline int64_t multiprocessor_count() {
#ifdef ATROUS_CUDA_EMULATION
  return 132;
#else
  static const int device_count = [] {
    int n = 0;
    C10_CUDA_CHECK(cudaGetDeviceCount(&n));
    return n;
  }();
  static const std::unique_ptr<std::atomic<int>[]> counts(new std::atomic<int>[std::max(device_count, 1)]());
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  if (device < 0 || device >= device_count) {  // cannot happen for a valid current device; no cache
    int count = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    return count;
  }
  int count = counts[device].load(std::memory_order_relaxed);
  if (count == 0) {
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    counts[device].store(count, std::memory_order_relaxed);
  }
  return count;
#endif
}

// The chunks of a deterministic two-pass reduction over `total` terms: 4096 or more terms each
// (a block's worth of work), at most 256 chunks (so pass 2 stays short). It depends only on
// `total`, never on the device or timing, so the summation order is fixed.
struct Chunking {
  int64_t chunks, chunk_len;
};
inline Chunking reduction_chunks(int64_t total) {
  if (total <= 0) return {0, 1};
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(256, total / 4096));
  const int64_t len = ceil_div(total, chunks);
  return {ceil_div(total, len), len};
}

// Bytes of one partial sum in a reduction workspace: the accumulator (float32 for the half types).
inline int64_t acc_bytes(DType dtype) { return dtype == DType::Double ? 8 : 4; }

// kernel<<<blocks, threads, smem, stream>>>(args...) and its launch check; nothing for no work.
template <typename... KernelArgs, typename... Args>
void launch(void (*kernel)(KernelArgs...), int64_t blocks, int threads, size_t smem,
            cudaStream_t stream, Args... args) {
  if (blocks <= 0) return;
#ifdef ATROUS_CUDA_EMULATION
  (void)stream;
  emulation::launch(static_cast<unsigned>(blocks), static_cast<unsigned>(threads), smem,
                    [&] { kernel(static_cast<KernelArgs>(args)...); });
#else
  kernel<<<static_cast<unsigned>(blocks), threads, smem, stream>>>(static_cast<KernelArgs>(args)...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
#endif
}

// Runs the statement with T bound to the element type of `dtype`.
#define ATROUS_CUDA_DISPATCH(dtype, ...)              \
  switch (dtype) {                                    \
    case ::atrous::cuda::DType::Float: {              \
      using T = float;                                \
      __VA_ARGS__;                                    \
      break;                                          \
    }                                                 \
    case ::atrous::cuda::DType::Double: {             \
      using T = double;                               \
      __VA_ARGS__;                                    \
      break;                                          \
    }                                                 \
    case ::atrous::cuda::DType::Half: {               \
      using T = __half;                               \
      __VA_ARGS__;                                    \
      break;                                          \
    }                                                 \
    case ::atrous::cuda::DType::BFloat16: {           \
      using T = __nv_bfloat16;                        \
      __VA_ARGS__;                                    \
      break;                                          \
    }                                                 \
  }

// Shared-memory tree sum of one value per thread (blockDim.x a power of two, at most 1024),
// in a fixed order: the same inputs always give the same bits. scratch holds blockDim.x values.
// The result is valid in thread 0; every thread must call it (it synchronises).
template <typename Acc>
__device__ Acc block_sum(Acc v, Acc* scratch) {
  const unsigned tid = threadIdx.x;
  scratch[tid] = v;
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (tid < half) scratch[tid] += scratch[tid + half];
    __syncthreads();
  }
  const Acc sum = scratch[0];
  __syncthreads();  // scratch is reused by the next call
  return sum;
}

}  // namespace atrous::cuda
