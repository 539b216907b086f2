// Portable SIMD for the CPU kernels: GCC/Clang vector extensions of 32 or 64 bytes.
//
// `Vec<T, Bytes>` holds Bytes / sizeof(T) lanes. The compiler maps it onto whatever the target
// has (AVX-512, AVX2, NEON registers, split as needed), so one source serves x86-64 and ARM64
// with no ISA-specific code. Plain loops were tried first: GCC did not keep the sums of a
// runtime-length tap loop in registers (it spilled them and used gathers), 7x slower.
// A kernel picks its width: unaligned 32-byte loads cross cache lines half as often as 64-byte
// ones, which paid 15% in an isolated stencil test on Zen 4, but 64 bytes measured faster in
// the kernels as a whole so far.
#pragma once

#include <cstdint>
#include <cstring>

#if !defined(__GNUC__) && !defined(__clang__)
#error "atrous's CPU kernels use GCC/Clang vector extensions; build with GCC or Clang"
#endif

namespace atrous::cpu::simd {

inline constexpr int kBytes = 64;  // the default width

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

template <typename T, int Bytes = kBytes>
inline Vec<T, Bytes> broadcast(T x) {
  return Vec<T, Bytes>{} + x;
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

}  // namespace atrous::cpu::simd
