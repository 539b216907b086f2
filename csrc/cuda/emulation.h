// A CPU emulator of the small part of CUDA the kernels use, so tests can run them with no GPU.
//
// Compiled only with -DATROUS_CUDA_EMULATION (tests/cuda/cuda_emulation builds it; the real build
// never includes this file). A launch runs the grid's blocks one after another. The threads of a
// block are coroutines (ucontext) run in turn on one OS thread: each runs until it reaches a
// synchronisation point (__syncthreads(), or a warp collective: __syncwarp, a shuffle, mma.sync)
// or ends. A thread waiting at __syncthreads() resumes once every live thread of the block waits
// there; one waiting at a warp collective resumes once every lane named in its mask waits at one.
// Running each thread as far as it can go before the others start is harsh on a missing barrier:
// a thread that reads shared memory another thread has not yet written reads the 0xFF fill (NaN),
// and one that runs ahead overwrites data the others have not read yet.
//
// Warp features, with the semantics of the PTX ISA (PTX ISA 8.x, section numbers of that
// document), so code that is wrong on hardware is wrong here:
//  - warps: lanes are threadIdx.x % 32 (blocks are 1-D); since Volta the lanes of a warp are
//    not in lockstep (independent thread scheduling), and the emulator never runs them in
//    lockstep either: code that shares data between lanes through memory without __syncwarp()
//    or a shuffle (the old "warp-synchronous" idiom) reads stale values here.
//  - shfl.sync (9.7.9.6): idx, up, down and bfly (xor) modes, with CUDA's `width` segments; a
//    lane reads the value its source lane passed to the same collective. A source outside the
//    segment yields the lane's own value (up/down at the segment's ends, CUDA Programming Guide
//    "Warp Shuffle Functions"). Every live lane in the mask must execute it (else: a deadlock error, as on the
//    hardware's behaviour is undefined); a lane that has exited is left out of the mask, as the
//    PTX ISA says, but reading its value is an error (the CUDA guide: undefined).
//  - mma.sync.aligned m16n8k8 .tf32 and m16n8k16 .f16/.bf16 with .f32 accumulators (9.7.14.5.x,
//    "Matrix Fragments for mma.m16n8k8" and "...m16n8k16"): each lane passes its fragment
//    registers; D is computed from the fragments of all 32 lanes placed by the documented
//    layout, so a kernel that loads a fragment in another layout gets wrong results. TF32
//    operands are read like the hardware reads a .b32 register holding an FP32 value: the low
//    13 mantissa bits are ignored (kernels round with cvt.rna.tf32.f32 first).
//  - cp.async (9.7.9.25): cp.async.ca/cg of 4, 8 or 16 bytes with an optional source size (the
//    rest zero-filled), cp.async.commit_group and cp.async.wait_group N. The copies of a thread
//    are performed only when a wait_group retires their group, so reading the destination
//    before the wait (or, for other threads, before the wait and a barrier) reads old data.
// Not emulated: timing, atomics, memory coherence beyond these rules, and 2-D/3-D blocks. Slow,
// so the tests give it small shapes.
#pragma once

#ifdef __CUDACC__
#error "emulation.h is for the CPU emulation build only"
#endif

#include <cuda_bf16.h>  // the half types and their conversions work in host code too
#include <cuda_fp16.h>

#include <ucontext.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
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

constexpr unsigned kWarpSize = 32;
enum class Wait { None, Block, Warp };

// One pending cp.async: `bytes` bytes from src (of which src_bytes are read, the rest zeroed).
struct AsyncCopy {
  void* dst;
  const void* src;
  unsigned bytes, src_bytes;
};

// The coroutines of one block and the scheduler's context.
struct Fiber {
  ucontext_t context;
  std::vector<char> stack;
  bool done = false;
  Wait wait = Wait::None;
  unsigned warp_mask = 0;      // the lanes named by the warp collective it waits at
  unsigned warp_calls = 0;     // warp collectives this lane has entered (selects the exchange buffer)
  std::vector<std::vector<AsyncCopy>> groups{1};  // committed groups, then the open one (last)
};
inline std::vector<Fiber> fibers;
inline ucontext_t scheduler;
inline unsigned current = 0;
inline const std::function<void()>* kernel_body = nullptr;
inline std::string failure;  // set by a thread that broke a rule; the launch then throws it
constexpr size_t kStackBytes = 256 * 1024;

// Per warp, two exchange buffers (alternating between consecutive collectives, so a fast lane
// entering the next collective cannot overwrite what a slow lane has still to read): 32 lanes
// of 64 bytes each: up to 60 bytes of data (an MMA fragment: 4 A words, 2 B words, 4 C floats)
// and a tag naming the collective that wrote it.
constexpr size_t kSlotBytes = 64;
inline std::vector<unsigned char> exchange;

inline void fiber_main() {
  (*kernel_body)();
  fibers[current].done = true;  // then uc_link returns to the scheduler
}

inline void fail(const std::string& what) {
  if (failure.empty()) {
    failure = what + " (block " + std::to_string(block_idx.x) + ", thread " + std::to_string(current) + ")";
  }
}

// __syncthreads(): hand control back; the scheduler resumes this thread once every other live
// thread of the block waits at a barrier too.
inline void sync_threads() {
  fibers[current].wait = Wait::Block;
  swapcontext(&fibers[current].context, &scheduler);
}

inline unsigned lane_id() { return thread_idx.x % kWarpSize; }
inline unsigned warp_id() { return thread_idx.x / kWarpSize; }

// The lane's slot in the exchange buffer of its warp's current collective.
inline unsigned char* slot(unsigned lane, unsigned calls) {
  const size_t warps = (block_dim.x + kWarpSize - 1) / kWarpSize;
  const size_t buffer = calls % 2;
  return exchange.data() + ((buffer * warps + warp_id()) * kWarpSize + lane) * kSlotBytes;
}

// A warp collective: deposit `bytes` of this lane's data, wait until every lane of `mask` has
// arrived, and return the buffer of this collective (read the other lanes' slots from it).
inline unsigned warp_collective(unsigned mask, const void* data, size_t bytes) {
  Fiber& self = fibers[current];
  const unsigned lane = lane_id();
  if (!(mask >> lane & 1u)) fail("a warp collective's mask must name the calling lane");
  const unsigned calls = self.warp_calls++;
  if (bytes) std::memcpy(slot(lane, calls), data, bytes);
  const uint32_t tag = calls + 1;  // says which collective wrote the slot
  std::memcpy(slot(lane, calls) + kSlotBytes - 4, &tag, 4);
  self.wait = Wait::Warp;
  self.warp_mask = mask;
  swapcontext(&self.context, &scheduler);
  return calls;
}

// Runs the ready threads until each waits or ends, then releases whichever group can go on:
// first any warp whose named lanes all wait at a collective, else (every live thread at
// __syncthreads) the whole block. Anything else is a deadlock on hardware: an error here.
inline void run_block(unsigned block) {
  for (;;) {
    for (unsigned t = 0; t < block; ++t) {
      if (fibers[t].done || fibers[t].wait != Wait::None) continue;
      current = t;
      thread_idx = Dim3{t};
      swapcontext(&scheduler, &fibers[t].context);
    }
    bool released = false;
    for (unsigned w0 = 0; w0 < block; w0 += kWarpSize) {
      const unsigned lanes = std::min(block - w0, kWarpSize);
      unsigned mask = 0, waiting = 0, live = 0;
      for (unsigned l = 0; l < lanes; ++l) {
        const Fiber& f = fibers[w0 + l];
        live |= f.done ? 0u : 1u << l;
        if (f.wait == Wait::Warp) {
          mask |= f.warp_mask;
          waiting |= 1u << l;
        }
      }
      if (waiting == 0) continue;
      mask &= live;  // "all non-exited threads corresponding to membermask" (shfl.sync, bar.warp.sync)
      if (waiting == mask) {  // every named lane has arrived (each waiting lane is in its own mask)
        for (unsigned l = 0; l < lanes; ++l) {
          if (waiting >> l & 1u) fibers[w0 + l].wait = Wait::None;
        }
        released = true;
      }
    }
    if (!failure.empty()) return;
    if (released) continue;
    unsigned at_block = 0, live = 0;
    for (unsigned t = 0; t < block; ++t) {
      if (fibers[t].done) continue;
      ++live;
      at_block += fibers[t].wait == Wait::Block;
    }
    if (live == 0) return;
    if (at_block != live) {
      fail("deadlock: some threads wait at __syncthreads() and others at a warp collective");
      return;
    }
    for (unsigned t = 0; t < block; ++t) fibers[t].wait = Wait::None;
  }
}

// Runs body() as a grid of `grid` blocks of `block` threads with `smem` bytes of dynamic shared
// memory, which starts filled with 0xFF bytes (NaN for floats) so a read of an element no thread
// wrote shows up in the results. A thread that breaks a rule above makes it throw.
inline void launch(unsigned grid, unsigned block, size_t smem, const std::function<void()>& body) {
  kernel_body = &body;
  block_dim = Dim3{block};
  grid_dim = Dim3{grid};
  failure.clear();
  dynamic_smem.assign(smem + 16, 0xFF);
  exchange.assign(2 * ((block + kWarpSize - 1) / kWarpSize) * kWarpSize * kSlotBytes, 0);
  fibers.resize(block);
  for (unsigned b = 0; b < grid && failure.empty(); ++b) {
    block_idx = Dim3{b};
    for (unsigned t = 0; t < block; ++t) {
      Fiber& f = fibers[t];
      f.stack.resize(kStackBytes);
      f.done = false;
      f.wait = Wait::None;
      f.warp_calls = 0;
      f.groups.assign(1, {});
      getcontext(&f.context);
      f.context.uc_stack.ss_sp = f.stack.data();
      f.context.uc_stack.ss_size = f.stack.size();
      f.context.uc_link = &scheduler;
      makecontext(&f.context, fiber_main, 0);
    }
    run_block(block);
  }
  kernel_body = nullptr;
  if (!failure.empty()) throw std::runtime_error("CUDA emulation: " + failure);
}

// ---- warp shuffles (shfl.sync) --------------------------------------------------------------
enum class Shfl { Idx, Up, Down, Xor };

template <typename T>
T shfl(unsigned mask, T v, int arg, int width, Shfl mode) {
  static_assert(sizeof(T) <= kSlotBytes - 4, "shuffle of a value bigger than a slot");
  if (width <= 0 || width > 32 || (width & (width - 1))) fail("shuffle width must be a power of two <= 32");
  const unsigned calls = warp_collective(mask, &v, sizeof(T));
  const int lane = static_cast<int>(lane_id()), base = lane & ~(width - 1);
  int src = lane;
  switch (mode) {
    case Shfl::Idx: src = base + (arg & (width - 1)); break;
    case Shfl::Up: src = lane - arg >= base ? lane - arg : lane; break;
    case Shfl::Down: src = lane + arg < base + width ? lane + arg : lane; break;
    case Shfl::Xor: src = (lane ^ arg) < base + width ? (lane ^ arg) : lane; break;
  }
  // CUDA Programming Guide: "If the target thread is inactive, the retrieved value is undefined."
  uint32_t tag;
  std::memcpy(&tag, slot(static_cast<unsigned>(src), calls) + kSlotBytes - 4, 4);
  if (!(mask >> src & 1u) || tag != calls + 1) fail("a shuffle reads a lane that did not take part in it");
  T out;
  std::memcpy(&out, slot(static_cast<unsigned>(src), calls), sizeof(T));
  return out;
}

// ---- mma.sync (tensor cores) ----------------------------------------------------------------
// The value a .b32 register holding an FP32 number has as a TF32 operand: the low 13 mantissa
// bits are not read.
inline float tf32_operand(uint32_t bits) {
  bits &= 0xFFFFE000u;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// cvt.rna.tf32.f32: round to the nearest TF32 value, ties away from zero (9.7.9.21).
inline uint32_t cvt_rna_tf32(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if ((bits & 0x7F800000u) == 0x7F800000u) return bits;  // inf and NaN pass through
  bits += 0x1000u;                                          // half of the dropped 13 bits
  return bits & 0xFFFFE000u;
}

inline float half_operand(uint16_t bits, bool bf16) {
  if (bf16) {
    const uint32_t w = uint32_t{bits} << 16;
    float f;
    std::memcpy(&f, &w, 4);
    return f;
  }
  __half h;
  std::memcpy(&h, &bits, 2);
  return __half2float(h);
}

struct MmaFragment {
  uint32_t a[4];
  uint32_t b[2];
  float c[4];
};

// D = A @ B + C for one 16 x 8 tile; kind 0: m16n8k8 tf32, 1: m16n8k16 f16, 2: m16n8k16 bf16.
// Each lane returns its four D elements. Layouts (groupID g = lane / 4, t = lane % 4):
//   m16n8k8 tf32: a_i = A[g + 8*(i%2)][t + 4*(i/2)], b_i = B[t + 4*i][g]
//   m16n8k16 16-bit: the 8 halves h_j of a (h_{2r}, h_{2r+1} in a[r], low half first) are
//     A[g + 8*((j/2)%2)][2t + j%2 + 8*(j/4)]; the 4 halves of b are B[2t + j%2 + 8*(j/2)][g]
//   C and D (f32): c_i = C[g + 8*(i/2)][2t + i%2]
inline void mma(int kind, float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
  MmaFragment mine;
  std::memcpy(mine.a, a, sizeof mine.a);
  std::memcpy(mine.b, b, sizeof mine.b);
  std::memcpy(mine.c, c, sizeof mine.c);
  const unsigned calls = warp_collective(0xFFFFFFFFu, &mine, sizeof mine);
  for (unsigned lane = 0; lane < 32; ++lane) {  // .aligned: all 32 lanes execute the same mma
    uint32_t tag;
    std::memcpy(&tag, slot(lane, calls) + kSlotBytes - 4, 4);
    if (tag != calls + 1) fail("mma.sync.aligned executed by fewer than 32 lanes");
  }
  const int K = kind == 0 ? 8 : 16;
  float A[16][16], B[16][8], C[16][8];
  for (unsigned lane = 0; lane < 32; ++lane) {
    MmaFragment f;
    std::memcpy(&f, slot(lane, calls), sizeof f);
    const int g = lane / 4, t = lane % 4;
    if (kind == 0) {
      for (int i = 0; i < 4; ++i) A[g + 8 * (i % 2)][t + 4 * (i / 2)] = tf32_operand(f.a[i]);
      for (int i = 0; i < 2; ++i) B[t + 4 * i][g] = tf32_operand(f.b[i]);
    } else {
      for (int j = 0; j < 8; ++j) {
        const uint16_t h = static_cast<uint16_t>(f.a[j / 2] >> (16 * (j % 2)));
        A[g + 8 * ((j / 2) % 2)][2 * t + j % 2 + 8 * (j / 4)] = half_operand(h, kind == 2);
      }
      for (int j = 0; j < 4; ++j) {
        const uint16_t h = static_cast<uint16_t>(f.b[j / 2] >> (16 * (j % 2)));
        B[2 * t + j % 2 + 8 * (j / 2)][g] = half_operand(h, kind == 2);
      }
    }
    for (int i = 0; i < 4; ++i) C[g + 8 * (i / 2)][2 * t + i % 2] = f.c[i];
  }
  const int g = static_cast<int>(lane_id()) / 4, t = static_cast<int>(lane_id()) % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + 8 * (i / 2), col = 2 * t + i % 2;
    // The products of TF32 and 16-bit operands are exact in FP32; the hardware's order of the
    // additions is unspecified: here, C first, then k in order.
    float sum = C[row][col];
    for (int k = 0; k < K; ++k) sum += A[row][k] * B[k][col];
    d[i] = sum;
  }
}

// ---- cp.async -------------------------------------------------------------------------------
inline void cp_async(void* dst, const void* src, unsigned bytes, unsigned src_bytes) {
  if (bytes != 4 && bytes != 8 && bytes != 16) fail("cp.async copies 4, 8 or 16 bytes");
  if (src_bytes > bytes) fail("cp.async source size larger than the copy");
  if (reinterpret_cast<uintptr_t>(dst) % bytes || (src_bytes && reinterpret_cast<uintptr_t>(src) % bytes)) {
    fail("cp.async addresses must be aligned to the copy size");
  }
  fibers[current].groups.back().push_back({dst, src, bytes, src_bytes});
}

inline void cp_async_commit() { fibers[current].groups.emplace_back(); }

// Performs every committed group but the newest n (uncommitted copies stay pending, as on hardware
// where wait_group only covers committed groups).
inline void cp_async_wait(unsigned n) {
  auto& groups = fibers[current].groups;
  const size_t committed = groups.size() - 1;
  const size_t retire = committed > n ? committed - n : 0;
  for (size_t g = 0; g < retire; ++g) {
    for (const AsyncCopy& c : groups[g]) {
      std::memcpy(c.dst, c.src, c.src_bytes);
      std::memset(static_cast<char*>(c.dst) + c.src_bytes, 0, c.bytes - c.src_bytes);
    }
  }
  groups.erase(groups.begin(), groups.begin() + static_cast<std::ptrdiff_t>(retire));
}

}  // namespace atrous::emulation

#define threadIdx (::atrous::emulation::thread_idx)
#define blockIdx (::atrous::emulation::block_idx)
#define blockDim (::atrous::emulation::block_dim)
#define gridDim (::atrous::emulation::grid_dim)
#define __syncthreads() (::atrous::emulation::sync_threads())
constexpr int warpSize = 32;

inline void __syncwarp(unsigned mask = 0xFFFFFFFFu) { ::atrous::emulation::warp_collective(mask, nullptr, 0); }
template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  return ::atrous::emulation::shfl(mask, v, src, width, ::atrous::emulation::Shfl::Idx);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::atrous::emulation::shfl(mask, v, static_cast<int>(delta), width, ::atrous::emulation::Shfl::Up);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::atrous::emulation::shfl(mask, v, static_cast<int>(delta), width, ::atrous::emulation::Shfl::Down);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return ::atrous::emulation::shfl(mask, v, lane_mask, width, ::atrous::emulation::Shfl::Xor);
}
