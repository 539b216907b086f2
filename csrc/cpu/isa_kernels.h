// The entry points of one instruction set's copy of the kernel cores, in namespace
// atrous::cpu::ATROUS_ISA_NS (isa_generic, isa_avx2, isa_avx512, isa_neon).
//
// No include guard on purpose: cpu_dispatch.cpp includes this once per instruction set, with
// ATROUS_ISA_NS defined to each namespace in turn; the kernel files include it for their own.
#ifndef ATROUS_ISA_NS
#error "define ATROUS_ISA_NS (the instruction set's namespace) before including isa_kernels.h"
#endif

#include <cstdint>
#include <vector>

#include "../common/conv_index.h"
#include "depthwise_rungs.h"
#include "gemm.h"

namespace atrous::cpu::ATROUS_ISA_NS {

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, MatrixView<T> A, MatrixView<T> B, MutableMatrixView<T> C,
          bool accumulate, Epilogue<T> epilogue);
template <typename T>
void pack_b(int64_t K, int64_t N, MatrixView<T> B, PackedB<T>& out);
template <typename T>
void gemm_packed(int64_t M, MatrixView<T> A, const PackedB<T>& B, MutableMatrixView<T> C, bool accumulate,
                 Epilogue<T> epilogue);

// Dense convolution by implicit GEMM on NHWC images (gemm.h).
template <typename T>
void conv_gemm(const T* x, const T* w, T* y, const ConvGeometry& g, ConvTaps taps, Epilogue<T> epilogue);

namespace depthwise {
ATROUS_DEPTHWISE_RUNG(naive)
ATROUS_DEPTHWISE_RUNG(rows)
ATROUS_DEPTHWISE_RUNG(stencil)
ATROUS_DEPTHWISE_RUNG(nhwc)
ATROUS_DEPTHWISE_NHWC_PIECES
}  // namespace depthwise

}  // namespace atrous::cpu::ATROUS_ISA_NS
