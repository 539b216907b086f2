// The dispatchers: each public kernel entry point (gemm.h, depthwise_rungs.h) calls the copy of
// the kernel cores compiled for the active instruction set (isa.h). Compiled for the baseline.
#include <c10/util/Exception.h>

#include "depthwise_rungs.h"
#include "gemm.h"
#include "isa.h"

// The declarations of every compiled set's copy (isa_kernels.h has no include guard).
#define ATROUS_ISA_NS isa_generic
#include "isa_kernels.h"
#undef ATROUS_ISA_NS
#if defined(__x86_64__) || defined(_M_X64)
#define ATROUS_ISA_NS isa_avx2
#include "isa_kernels.h"
#undef ATROUS_ISA_NS
#define ATROUS_ISA_NS isa_avx512
#include "isa_kernels.h"
#undef ATROUS_ISA_NS
#define ATROUS_HAVE_X86_ISAS 1
#endif
#if defined(__aarch64__)
#define ATROUS_ISA_NS isa_neon
#include "isa_kernels.h"
#undef ATROUS_ISA_NS
#define ATROUS_HAVE_NEON_ISA 1
#endif

namespace atrous::cpu {
namespace {

// return isa_<set>::CALL for the instruction set `isa`.
#if defined(ATROUS_HAVE_X86_ISAS)
#define ATROUS_ISA_SWITCH(isa, ...)                              \
  switch (isa) {                                                 \
    case Isa::avx512: return isa_avx512::__VA_ARGS__;            \
    case Isa::avx2: return isa_avx2::__VA_ARGS__;                \
    default: return isa_generic::__VA_ARGS__;                    \
  }
#elif defined(ATROUS_HAVE_NEON_ISA)
#define ATROUS_ISA_SWITCH(isa, ...)                              \
  switch (isa) {                                                 \
    case Isa::neon: return isa_neon::__VA_ARGS__;                \
    default: return isa_generic::__VA_ARGS__;                    \
  }
#else
#define ATROUS_ISA_SWITCH(isa, ...) return isa_generic::__VA_ARGS__;
#endif

}  // namespace

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, MatrixView<T> A, MatrixView<T> B, MutableMatrixView<T> C,
          bool accumulate, Epilogue<T> epilogue) {
  ATROUS_ISA_SWITCH(active_isa(), gemm<T>(M, N, K, A, B, C, accumulate, epilogue))
}

template <typename T>
void conv_gemm(const T* x, const T* w, T* y, const ConvGeometry& g, ConvTaps taps, Epilogue<T> epilogue) {
  ATROUS_ISA_SWITCH(active_isa(), conv_gemm<T>(x, w, y, g, taps, epilogue))
}

template <typename T>
PackedB<T> pack_b(int64_t K, int64_t N, MatrixView<T> B) {
  PackedB<T> out;
  const Isa isa = active_isa();
  out.isa = static_cast<int>(isa);
  [&] { ATROUS_ISA_SWITCH(isa, pack_b<T>(K, N, B, out)) }();
  return out;
}

template <typename T>
void gemm_packed(int64_t M, MatrixView<T> A, const PackedB<T>& B, MutableMatrixView<T> C, bool accumulate,
                 Epilogue<T> epilogue) {
  TORCH_CHECK(C.col_stride == 1, "gemm_packed: C must have unit column stride");
  // The set that packed B: its panels have that set's shape, whatever is active now.
  ATROUS_ISA_SWITCH(static_cast<Isa>(B.isa), gemm_packed<T>(M, A, B, C, accumulate, epilogue))
}

namespace depthwise {

#define ATROUS_DISPATCH_RUNG(NS)                                                               \
  namespace NS {                                                                               \
  template <typename T>                                                                        \
  void forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g) {           \
    ATROUS_ISA_SWITCH(active_isa(), depthwise::NS::forward<T>(x, w, bias, y, g))               \
  }                                                                                            \
  template <typename T>                                                                        \
  void backward_input(const T* gy, const T* w, T* gx, const ConvGeometry& g) {                 \
    ATROUS_ISA_SWITCH(active_isa(), depthwise::NS::backward_input<T>(gy, w, gx, g))            \
  }                                                                                            \
  template <typename T>                                                                        \
  void backward_weight(const T* gy, const T* x, T* gw, const ConvGeometry& g) {                \
    ATROUS_ISA_SWITCH(active_isa(), depthwise::NS::backward_weight<T>(gy, x, gw, g))           \
  }                                                                                            \
  }

ATROUS_DISPATCH_RUNG(naive)
ATROUS_DISPATCH_RUNG(rows)
ATROUS_DISPATCH_RUNG(stencil)
ATROUS_DISPATCH_RUNG(nhwc)
#undef ATROUS_DISPATCH_RUNG

namespace nhwc {
template <typename T>
std::vector<T> transpose_weight(const T* w, int64_t channels, int64_t taps) {
  ATROUS_ISA_SWITCH(active_isa(), depthwise::nhwc::transpose_weight<T>(w, channels, taps))
}
template <typename T>
void forward_pixels(const T* x, const T* wt, const T* bias, const ConvGeometry& g, const std::vector<Range>& cols,
                    int64_t n, int64_t q0, int64_t q1, T* out, int64_t ldo, bool relu) {
  ATROUS_ISA_SWITCH(active_isa(), depthwise::nhwc::forward_pixels<T>(x, wt, bias, g, cols, n, q0, q1, out, ldo, relu))
}
}  // namespace nhwc

ATROUS_INSTANTIATE_DEPTHWISE_RUNG(naive)
ATROUS_INSTANTIATE_DEPTHWISE_RUNG(rows)
ATROUS_INSTANTIATE_DEPTHWISE_RUNG(stencil)
ATROUS_INSTANTIATE_DEPTHWISE_RUNG(nhwc)
template std::vector<float> nhwc::transpose_weight<float>(const float*, int64_t, int64_t);
template std::vector<double> nhwc::transpose_weight<double>(const double*, int64_t, int64_t);
template void nhwc::forward_pixels<float>(const float*, const float*, const float*, const ConvGeometry&,
                                          const std::vector<Range>&, int64_t, int64_t, int64_t, float*,
                                          int64_t, bool);
template void nhwc::forward_pixels<double>(const double*, const double*, const double*, const ConvGeometry&,
                                           const std::vector<Range>&, int64_t, int64_t, int64_t, double*,
                                           int64_t, bool);

}  // namespace depthwise

template void gemm<float>(int64_t, int64_t, int64_t, MatrixView<float>, MatrixView<float>,
                          MutableMatrixView<float>, bool, Epilogue<float>);
template void gemm<double>(int64_t, int64_t, int64_t, MatrixView<double>, MatrixView<double>,
                           MutableMatrixView<double>, bool, Epilogue<double>);
template void conv_gemm<float>(const float*, const float*, float*, const ConvGeometry&, ConvTaps, Epilogue<float>);
template void conv_gemm<double>(const double*, const double*, double*, const ConvGeometry&, ConvTaps,
                                Epilogue<double>);
template PackedB<float> pack_b<float>(int64_t, int64_t, MatrixView<float>);
template PackedB<double> pack_b<double>(int64_t, int64_t, MatrixView<double>);
template void gemm_packed<float>(int64_t, MatrixView<float>, const PackedB<float>&, MutableMatrixView<float>, bool,
                                 Epilogue<float>);
template void gemm_packed<double>(int64_t, MatrixView<double>, const PackedB<double>&, MutableMatrixView<double>,
                                  bool, Epilogue<double>);

}  // namespace atrous::cpu
