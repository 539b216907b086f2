// The kernel cores for ARM64 NEON (Advanced SIMD, in every ARMv8-A core, so no target region):
// 16-byte vectors, an 8 x 12-float GEMM tile (24 of the 32 registers hold sums).
#if defined(__aarch64__)
#include "isa_prelude.h"

// The kernel files are included here, so GCC takes them for headers and would warn that their
// lambdas capture types of an anonymous namespace; every such type stays in this one file.
#pragma GCC diagnostic ignored "-Wsubobject-linkage"

#define ATROUS_ISA_NS isa_neon
#define ATROUS_ISA_VECTOR_BYTES 16
#define ATROUS_GEMM_MR 8
#define ATROUS_GEMM_NV 3
#define ATROUS_GEMM_KC 256
#define ATROUS_ISA_NHWC_PIXELS 8
#include "isa_kernels.inc"
#endif
