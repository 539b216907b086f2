// Stand-in for the CUDA toolkit's cuda_fp16.h, for the CPU emulator only (notebook 5, no toolkit needed).
//
// The emulated kernels use the half type for storage and convert to and from float around every sum,
// so this is all they need: a 16-bit IEEE binary16 value and the two conversions, rounding to nearest
// even as the real ones do. Never used by the real (nvcc) build.
#pragma once

#include <cstdint>
#include <cstring>

struct __half {
  std::uint16_t bits = 0;
};

inline float __half2float(__half h) {
  const std::uint32_t sign = std::uint32_t(h.bits & 0x8000u) << 16;
  const std::uint32_t exponent = (h.bits >> 10) & 0x1fu;
  std::uint32_t mantissa = h.bits & 0x3ffu;
  std::uint32_t out;
  if (exponent == 0x1fu) {
    out = sign | 0x7f800000u | (mantissa << 13);  // inf or NaN
  } else if (exponent != 0) {
    out = sign | ((exponent + 112u) << 23) | (mantissa << 13);  // 112 = 127 - 15
  } else if (mantissa == 0) {
    out = sign;  // signed zero
  } else {  // subnormal: normalise it
    std::uint32_t e = 113;
    while (!(mantissa & 0x400u)) {
      mantissa <<= 1;
      --e;
    }
    out = sign | (e << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &out, sizeof f);
  return f;
}

inline __half __float2half_rn(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const std::uint16_t sign = std::uint16_t((x >> 16) & 0x8000u);
  const std::uint32_t abs = x & 0x7fffffffu;
  __half h;
  if (abs >= 0x7f800000u) {  // inf or NaN (NaN stays a quiet NaN)
    h.bits = sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u);
  } else if (abs >= 0x477ff000u) {  // rounds to a value beyond 65504: inf
    h.bits = sign | 0x7c00u;
  } else if (abs < 0x38800000u) {  // below the smallest normal half, 2^-14: a subnormal or zero
    const std::uint32_t shift = 126u - (abs >> 23);  // the value is m * 2^-24 after the shift
    if (shift > 24u) {
      h.bits = sign;
    } else {
      const std::uint32_t m = (abs & 0x7fffffu) | 0x800000u;
      std::uint32_t q = m >> shift;
      const std::uint32_t rest = m & ((1u << shift) - 1u), half_way = 1u << (shift - 1u);
      if (rest > half_way || (rest == half_way && (q & 1u))) ++q;
      h.bits = sign | std::uint16_t(q);
    }
  } else {
    std::uint32_t q = abs - 0x38000000u;  // rebias the exponent by 112
    const std::uint32_t rest = q & 0x1fffu;
    q >>= 13;
    if (rest > 0x1000u || (rest == 0x1000u && (q & 1u))) ++q;  // a carry into the exponent is right
    h.bits = sign | std::uint16_t(q);
  }
  return h;
}
