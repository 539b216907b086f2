// A CPU emulator of the small part of CUDA the kernels use, so tests can run them with no GPU.
//
// Compiled only with -DATROUS_CUDA_EMULATION (tests/cuda_emulation builds it; the real build
// never includes this file). A launch runs the grid's blocks one after another; each block runs
// as blockDim.x real threads, so __syncthreads() is a real barrier and shared memory really is
// shared by the threads of a block. What it does not emulate: warps, timing, memory coherence
// beyond what the barrier gives, and anything the kernels do not use (atomics, shuffles).
// Slow (a thread per CUDA thread), so the tests give it small shapes.
#pragma once

#ifdef __CUDACC__
#error "emulation.h is for the CPU emulation build only"
#endif

#include <cuda_bf16.h>  // the half types and their conversions work in host code too
#include <cuda_fp16.h>

#include <barrier>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

// CUDA's qualifiers mean nothing on the CPU; __shared__ variables become statics, shared by the
// threads of the one block that runs at a time.
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __forceinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __forceinline__ inline
#define __launch_bounds__(...)

namespace atrous::emulation {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

inline thread_local Dim3 thread_idx;
inline thread_local Dim3 block_idx;
inline Dim3 block_dim, grid_dim;
inline std::barrier<>* block_barrier = nullptr;
inline std::vector<unsigned char> dynamic_smem;

// Runs body() as a grid of `grid` blocks of `block` threads with `smem` bytes of dynamic shared
// memory, which starts filled with 0xFF bytes (NaN for floats) so a read of an element no thread
// wrote shows up in the results.
inline void launch(unsigned grid, unsigned block, size_t smem, const std::function<void()>& body) {
  std::barrier<> barrier(block);
  block_barrier = &barrier;
  block_dim = Dim3{block};
  grid_dim = Dim3{grid};
  dynamic_smem.assign(smem + 16, 0xFF);
  std::vector<std::thread> threads;
  threads.reserve(block);
  for (unsigned t = 0; t < block; ++t) {
    threads.emplace_back([&, t] {
      thread_idx = Dim3{t};
      for (unsigned b = 0; b < grid; ++b) {
        block_idx = Dim3{b};
        body();
        barrier.arrive_and_wait();  // the next block reuses the shared memory
      }
    });
  }
  for (auto& thread : threads) thread.join();
  block_barrier = nullptr;
}

}  // namespace atrous::emulation

#define threadIdx (::atrous::emulation::thread_idx)
#define blockIdx (::atrous::emulation::block_idx)
#define blockDim (::atrous::emulation::block_dim)
#define gridDim (::atrous::emulation::grid_dim)
#define __syncthreads() (::atrous::emulation::block_barrier->arrive_and_wait())
