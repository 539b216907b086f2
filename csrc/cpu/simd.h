// Portable SIMD for the CPU kernels: GCC/Clang vector extensions of 16, 32 or 64 bytes.
//
// `Vec<T, Bytes>` holds Bytes / sizeof(T) lanes. The compiler maps it onto whatever the target
// has (AVX-512, AVX2, SSE2, NEON registers, split as needed), so one source serves x86-64 and
// ARM64 with no ISA-specific code. This header is compiled once per instruction set, inside
// that set's namespace (isa.h): kBytes is the width of its registers. Plain loops were tried first: GCC did not keep the sums of a
// runtime-length tap loop in registers (it spilled them and used gathers), 7x slower.
// A kernel picks its width: unaligned 32-byte loads cross cache lines half as often as 64-byte
// ones, which paid 15% in an isolated stencil test on Zen 4, but 64 bytes measured faster in
// the kernels as a whole so far.
#pragma once

#include <cstdint>
#include <cstring>

#ifndef ATROUS_ISA_VECTOR_BYTES
#error "simd.h is compiled per instruction set: include it through isa_kernels.inc"
#endif

#if !defined(__GNUC__) && !defined(__clang__)
#error "atrous's CPU kernels use GCC/Clang vector extensions; build with GCC or Clang"
#endif

namespace atrous::cpu::ATROUS_ISA_NS::simd {

// The default width: one register of the instruction set (64 AVX-512, 32 AVX2, 16 SSE2/NEON).
inline constexpr int kBytes = ATROUS_ISA_VECTOR_BYTES;
// At most 32 bytes: for kernels whose loads are unaligned by construction (see above).
inline constexpr int kNarrowBytes = kBytes < 32 ? kBytes : 32;

// Spelled per type and width: GCC ignores vector_size on a dependent alias template.
template <typename T, int Bytes>
struct VecType;
template <>
struct VecType<float, 64> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct VecType<double, 64> {
  typedef double type __attribute__((vector_size(64)));
};
template <>
struct VecType<float, 16> {
  typedef float type __attribute__((vector_size(16)));
};
template <>
struct VecType<double, 16> {
  typedef double type __attribute__((vector_size(16)));
};
template <>
struct VecType<float, 32> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct VecType<double, 32> {
  typedef double type __attribute__((vector_size(32)));
};

template <typename T, int Bytes = kBytes>
using Vec = typename VecType<T, Bytes>::type;

template <typename T, int Bytes = kBytes>
inline constexpr int64_t kLanes = Bytes / sizeof(T);

// Unaligned load/store; memcpy compiles to a single vector move.
template <typename T, int Bytes = kBytes>
inline Vec<T, Bytes> load(const T* p) {
  Vec<T, Bytes> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T, int Bytes = kBytes>
inline void store(T* p, Vec<T, Bytes> v) {
  std::memcpy(p, &v, sizeof(v));
}

// x - 0, not 0 + x: 0 + x is not x for x = -0, so GCC kept a scalar add before the broadcast (an
// extra add and a register shuffle per broadcast in the GEMM's inner loop); x - 0 is x for every x,
// so this compiles to one vbroadcastss from memory. (A lane-by-lane loop gave insert chains.)
template <typename T, int Bytes = kBytes>
inline Vec<T, Bytes> broadcast(T x) {
  return x - Vec<T, Bytes>{};
}

// dst[0:n) = src[0:n) with vector moves; the last vector overlaps the one before it rather than
// a scalar tail. (Built with -fno-tree-loop-distribute-patterns so GCC keeps this a loop: a
// call to memmove costs more than the copy for rows of a few dozen elements.)
template <typename T>
inline void copy(const T* __restrict src, T* __restrict dst, int64_t n) {
  constexpr int64_t L = kLanes<T>;
  if (n < L) {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
    return;
  }
  int64_t i = 0;
  for (; i + L <= n; i += L) store<T>(dst + i, load<T>(src + i));
  if (i < n) store<T>(dst + n - L, load<T>(src + n - L));
}

// Sum of the lanes in a fixed order (deterministic).
template <typename T, int Bytes = kBytes>
inline double reduce(Vec<T, Bytes> v) {
  double sum = 0;
  for (int64_t i = 0; i < kLanes<T, Bytes>; ++i) sum += v[i];
  return sum;
}

}  // namespace atrous::cpu::ATROUS_ISA_NS::simd
