// Portable SIMD for the CPU kernels: GCC/Clang vector extensions, 64 bytes per vector.
//
// `Vec<T>` holds 16 floats or 8 doubles. The compiler maps it onto whatever the target has
// (one AVX-512 register, two AVX2 registers, four NEON registers), so one source serves x86-64
// and ARM64 with no ISA-specific code. Plain loops were tried first: GCC did not keep the
// sums of a runtime-length tap loop in registers (it spilled them and used gathers), 7x slower.
#pragma once

#include <cstdint>
#include <cstring>

#if !defined(__GNUC__) && !defined(__clang__)
#error "atrous's CPU kernels use GCC/Clang vector extensions; build with GCC or Clang"
#endif

namespace atrous::cpu::simd {

inline constexpr int kBytes = 64;

// Spelled per type: GCC ignores vector_size on a dependent alias template.
template <typename T>
struct VecType;
template <>
struct VecType<float> {
  typedef float type __attribute__((vector_size(kBytes)));
};
template <>
struct VecType<double> {
  typedef double type __attribute__((vector_size(kBytes)));
};

template <typename T>
using Vec = typename VecType<T>::type;

template <typename T>
inline constexpr int64_t kLanes = kBytes / sizeof(T);

// Unaligned load/store; memcpy compiles to a single vector move.
template <typename T>
inline Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
inline void store(T* p, Vec<T> v) {
  std::memcpy(p, &v, sizeof(v));
}

template <typename T>
inline Vec<T> broadcast(T x) {
  return Vec<T>{} + x;
}

// dst[0:n) = src[0:n) with vector moves; the last vector overlaps the one before it rather than
// falling back to a call to memmove, which costs more than the copy for rows of a few dozen.
template <typename T>
inline void copy(const T* __restrict src, T* __restrict dst, int64_t n) {
  constexpr int64_t L = kLanes<T>;
  if (n < L) {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
    return;
  }
  int64_t i = 0;
  for (; i + L <= n; i += L) store(dst + i, load(src + i));
  if (i < n) store(dst + n - L, load(src + n - L));
}

// Sum of the lanes in a fixed order (deterministic).
template <typename T>
inline double reduce(Vec<T> v) {
  double sum = 0;
  for (int64_t i = 0; i < kLanes<T>; ++i) sum += v[i];
  return sum;
}

}  // namespace atrous::cpu::simd
