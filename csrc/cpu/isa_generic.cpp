// The kernel cores for the baseline of the architecture (x86-64: SSE2; ARM64: ARMv8-A): the
// path every machine runs. 16-byte vectors, a 6 x 2-vector GEMM tile for 16 registers.
#include "isa_prelude.h"

// The kernel files are included here, so GCC takes them for headers and would warn that their
// lambdas capture types of an anonymous namespace; every such type stays in this one file.
#pragma GCC diagnostic ignored "-Wsubobject-linkage"

#define ATROUS_ISA_NS isa_generic
#define ATROUS_ISA_VECTOR_BYTES 16
#define ATROUS_GEMM_MR 6
#define ATROUS_GEMM_NV 2
#define ATROUS_GEMM_KC 256
#define ATROUS_ISA_NHWC_PIXELS 6
#include "isa_kernels.inc"
