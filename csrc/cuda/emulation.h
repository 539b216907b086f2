// A CPU emulator of the small part of CUDA the kernels use, so tests can run them with no GPU.
//
// Compiled only with -DATROUS_CUDA_EMULATION (tests/cuda/cuda_emulation builds it; the real build
// never includes this file). A launch runs the grid's blocks one after another. The threads of a
// block are coroutines (ucontext) run in turn on one OS thread: each runs until it reaches
// __syncthreads() or ends, then the next one runs, so a barrier is a real barrier and shared
// memory is shared. Running each thread as far as it can go before the others start is harsh on
// a missing barrier: a thread that reads shared memory another thread has not yet written reads
// the 0xFF fill (NaN), and one that runs ahead overwrites data the others have not read yet.
// Not emulated: warps, timing, and what the kernels do not use (atomics, shuffles). Slow, so the
// tests give it small shapes.
#pragma once

#ifdef __CUDACC__
#error "emulation.h is for the CPU emulation build only"
#endif

#include <cuda_bf16.h>  // the half types and their conversions work in host code too
#include <cuda_fp16.h>

#include <ucontext.h>

#include <cstdint>
#include <cstring>
#include <functional>
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

inline Dim3 thread_idx, block_idx, block_dim, grid_dim;
inline std::vector<unsigned char> dynamic_smem;

// The coroutines of one block and the scheduler's context.
struct Fiber {
  ucontext_t context;
  std::vector<char> stack;
  bool done = false;
};
inline std::vector<Fiber> fibers;
inline ucontext_t scheduler;
inline unsigned current = 0;
inline const std::function<void()>* kernel_body = nullptr;
constexpr size_t kStackBytes = 256 * 1024;

inline void fiber_main() {
  (*kernel_body)();
  fibers[current].done = true;  // then uc_link returns to the scheduler
}

// __syncthreads(): hand control back; the scheduler resumes this thread once every other thread
// of the block has reached the barrier (or ended).
inline void sync_threads() { swapcontext(&fibers[current].context, &scheduler); }

// Runs body() as a grid of `grid` blocks of `block` threads with `smem` bytes of dynamic shared
// memory, which starts filled with 0xFF bytes (NaN for floats) so a read of an element no thread
// wrote shows up in the results.
inline void launch(unsigned grid, unsigned block, size_t smem, const std::function<void()>& body) {
  kernel_body = &body;
  block_dim = Dim3{block};
  grid_dim = Dim3{grid};
  dynamic_smem.assign(smem + 16, 0xFF);
  fibers.resize(block);
  for (unsigned b = 0; b < grid; ++b) {
    block_idx = Dim3{b};
    for (unsigned t = 0; t < block; ++t) {
      Fiber& f = fibers[t];
      f.stack.resize(kStackBytes);
      f.done = false;
      getcontext(&f.context);
      f.context.uc_stack.ss_sp = f.stack.data();
      f.context.uc_stack.ss_size = f.stack.size();
      f.context.uc_link = &scheduler;
      makecontext(&f.context, fiber_main, 0);
    }
    for (bool running = true; running;) {  // one round: every thread up to its next barrier
      running = false;
      for (unsigned t = 0; t < block; ++t) {
        if (fibers[t].done) continue;
        current = t;
        thread_idx = Dim3{t};
        swapcontext(&scheduler, &fibers[t].context);
        running = running || !fibers[t].done;
      }
    }
  }
  kernel_body = nullptr;
}

}  // namespace atrous::emulation

#define threadIdx (::atrous::emulation::thread_idx)
#define blockIdx (::atrous::emulation::block_idx)
#define blockDim (::atrous::emulation::block_dim)
#define gridDim (::atrous::emulation::grid_dim)
#define __syncthreads() (::atrous::emulation::sync_threads())
