// Stand-in for the CUDA toolkit's cuda_bf16.h, for the CPU emulator only (notebook 5, no toolkit needed).
//
// bfloat16 is the top 16 bits of a float32: converting back is a shift, converting to it rounds the
// lower 16 bits away to nearest even (NaN kept a NaN). Never used by the real (nvcc) build.
#pragma once

#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
  std::uint16_t bits = 0;
};

inline float __bfloat162float(__nv_bfloat16 b) {
  const std::uint32_t x = std::uint32_t(b.bits) << 16;
  float f;
  std::memcpy(&f, &x, sizeof f);
  return f;
}

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  __nv_bfloat16 b;
  if ((x & 0x7fffffffu) > 0x7f800000u) {
    b.bits = std::uint16_t((x >> 16) | 0x40u);  // NaN: keep it quiet
  } else {
    b.bits = std::uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
  }
  return b;
}
