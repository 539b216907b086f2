// The kernel cores for AVX2 + FMA (x86-64 since Haswell / Zen): 32-byte vectors, BLIS's
// 6 x 16-float GEMM tile (12 of the 16 ymm registers hold sums).
#if defined(__x86_64__) || defined(_M_X64)
#include "isa_prelude.h"

// The kernel files are included here, so GCC takes them for headers and would warn that their
// lambdas capture types of an anonymous namespace; every such type stays in this one file.
#pragma GCC diagnostic ignored "-Wsubobject-linkage"

#define ATROUS_ISA_NS isa_avx2
#define ATROUS_ISA_VECTOR_BYTES 32
#define ATROUS_GEMM_MR 6
#define ATROUS_GEMM_NV 2
#define ATROUS_GEMM_KC 384
#define ATROUS_ISA_NHWC_PIXELS 6

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,bmi,bmi2,f16c,popcnt"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi,bmi2,f16c,popcnt")
#endif
#include "isa_kernels.inc"
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
