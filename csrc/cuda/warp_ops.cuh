// Warp-level building blocks of the tensor-core kernels: mma.sync, cp.async, TF32 rounding.
//
// On a GPU each is one PTX instruction (inline asm, sm_80+; older targets get a trap, and the
// host never selects these kernels there); in the CPU emulation build (ATROUS_CUDA_EMULATION)
// each calls its stand-in in emulation.h, which implements the PTX ISA's semantics and fragment
// layouts, so the same kernel source is checked on the CPU.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#ifdef ATROUS_CUDA_EMULATION
#include "emulation.h"
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace atrous::cuda {

#if !defined(ATROUS_CUDA_EMULATION) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define ATROUS_HAS_MMA 1
#endif

// The TF32 value nearest to x (ties away from zero), in a .b32 register: cvt.rna.tf32.f32.
__device__ __forceinline__ uint32_t to_tf32(float x) {
#ifdef ATROUS_CUDA_EMULATION
  return emulation::cvt_rna_tf32(x);
#elif defined(ATROUS_HAS_MMA)
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
#else
  return __float_as_uint(x);
#endif
}

// Two 16-bit values in one .b32 register, lo in the low half (the order mma fragments use).
template <typename T>
__device__ __forceinline__ uint32_t pack2(T lo, T hi) {
  uint16_t l, h;
  static_assert(sizeof(T) == 2, "pack2 packs 16-bit types");
  std::memcpy(&l, &lo, 2);
  std::memcpy(&h, &hi, 2);
  return uint32_t{l} | (uint32_t{h} << 16);
}

// d = a @ b + c on one 16 x 8 x 8 tile, TF32 operands, FP32 accumulators (per-lane fragments
// of mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32; layouts in emulation.h).
__device__ __forceinline__ void mma_tf32_m16n8k8(float d[4], const uint32_t a[4], const uint32_t b[2],
                                                 const float c[4]) {
#ifdef ATROUS_CUDA_EMULATION
  emulation::mma(0, d, a, b, c);
#elif defined(ATROUS_HAS_MMA)
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
#else
  __trap();
#endif
}

// d = a @ b + c on one 16 x 8 x 16 tile of float16 (T = __half) or bfloat16 operands.
template <typename T>
__device__ __forceinline__ void mma_16bit_m16n8k16(float d[4], const uint32_t a[4], const uint32_t b[2],
                                                   const float c[4]) {
  constexpr bool bf16 = !std::is_same_v<T, __half>;
#ifdef ATROUS_CUDA_EMULATION
  emulation::mma(bf16 ? 2 : 1, d, a, b, c);
#elif defined(ATROUS_HAS_MMA)
  if constexpr (bf16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
          "f"(c[3]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
          "f"(c[3]));
  }
#else
  (void)bf16;
  __trap();
#endif
}

// cp.async.cg.shared.global of 16 bytes (L2 only), of which src_bytes (0 or 16) are read and the
// rest zero-filled: a tile edge costs no branch around the copy.
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src, unsigned src_bytes) {
#ifdef ATROUS_CUDA_EMULATION
  emulation::cp_async(smem_dst, gmem_src, 16, src_bytes);
#elif defined(ATROUS_HAS_MMA)
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(gmem_src), "r"(src_bytes));
#else
  (void)smem_dst, (void)gmem_src, (void)src_bytes;
  __trap();
#endif
}

// cp.async.commit_group: closes the group of the copies issued since the last commit.
__device__ __forceinline__ void cp_async_commit() {
#ifdef ATROUS_CUDA_EMULATION
  emulation::cp_async_commit();
#elif defined(ATROUS_HAS_MMA)
  asm volatile("cp.async.commit_group;");
#endif
}

// cp.async.wait_group N: waits until at most N of this thread's committed groups are pending.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#ifdef ATROUS_CUDA_EMULATION
  emulation::cp_async_wait(N);
#elif defined(ATROUS_HAS_MMA)
  asm volatile("cp.async.wait_group %0;" ::"n"(N));
#endif
}

}  // namespace atrous::cuda
