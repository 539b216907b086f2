// What the kernel cores need besides plain C++: a parallel loop, its grain, scratch buffers.
//
// The kernel cores (isa_kernels.inc) are plain C++ over pointers and strides. Inside the
// extension the loop is at::parallel_for; with ATROUS_STANDALONE (the ARM64 driver of
// tests/extension/, built without torch) it is a serial loop, so the cores compile with any
// C++20 compiler and no torch headers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

#include "../common/conv_index.h"

#ifndef ATROUS_STANDALONE
#include <ATen/Parallel.h>
#endif

namespace atrous::cpu {

// f(begin, end) over chunks of [begin, end) of at least `grain` iterations (in parallel when
// torch is there).
template <typename F>
inline void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
#ifdef ATROUS_STANDALONE
  (void)grain;
  if (begin < end) f(begin, end);
#else
  at::parallel_for(begin, end, grain, f);
#endif
}

// Threads a parallel_for may use here: 1 inside a parallel region (it runs serially there).
inline int64_t max_threads() {
#ifdef ATROUS_STANDALONE
  return 1;
#else
  return at::in_parallel_region() ? 1 : at::get_num_threads();
#endif
}

// How many pieces to cut `items` into, starting from `pieces`: when the tasks (pieces * per_piece)
// are few, more pieces, up to `items`, until the task count is a multiple of the threads, so that
// no thread idles while another finishes (289 GEMM rows in blocks of 96 gave the threads 192 and
// 97 rows).
inline int64_t balanced_pieces(int64_t pieces, int64_t items, int64_t per_piece = 1) {
  const int64_t threads = max_threads();
  if (pieces * per_piece >= 8 * threads) return pieces;
  while (pieces < items && (pieces * per_piece) % threads != 0) ++pieces;
  return pieces;
}

// at::parallel_for grain (minimum iterations per task) for iterations of `work` multiply-adds
// each, so tiny planes are batched into one task instead of paying a thread hand-off each.
// 32768 is ATen's own grain size for elementwise loops.
inline int64_t grain_for(int64_t work) {
  constexpr int64_t kGrain = 32768;
  return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, work));
}

// Column interval of every horizontal tap j (see tap_output_range).
inline std::vector<Range> tap_column_ranges(const ConvGeometry& g) {
  std::vector<Range> ranges(g.kernel_w);
  for (int64_t j = 0; j < g.kernel_w; ++j) {
    ranges[j] = tap_output_range(g.in_w, g.out_w, g.stride_w, g.pad_w, g.dil_w, j);
  }
  return ranges;
}

// Uninitialised, 64-byte aligned scratch memory (a std::vector would zero it on every call, which
// cost the GEMM a pass over its packing buffers). Grows, never shrinks.
template <typename T>
class ScratchBuffer {
 public:
  T* get(int64_t n) {
    if (n > capacity_) {
      const size_t bytes = (static_cast<size_t>(n) * sizeof(T) + 63) / 64 * 64;
      T* p = static_cast<T*>(std::aligned_alloc(64, bytes));
      if (p == nullptr) throw std::bad_alloc();
      data_.reset(p);
      capacity_ = n;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  int64_t capacity_ = 0;
};

}  // namespace atrous::cpu
