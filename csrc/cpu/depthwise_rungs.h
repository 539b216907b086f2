// The rungs of the CPU depthwise kernel ladder (see csrc/common/algorithms.h), one file each.
//
// Every rung computes the same three functions on raw pointers. NCHW rungs take contiguous
// (N, C, H, W) input, (C*m, 1, kh, kw) weight and (N, C*m, Ho, Wo) output; the nhwc rung
// takes channels_last buffers. Output channel oc reads input channel oc / m.
//   forward:         y = depthwise(x, w) + bias (bias may be null)
//   backward_input:  gx = adjoint of forward applied to gy (every element of gx is written)
//   backward_weight: gw = sum over the batch and plane of gy * shifted x (written, not added)
#pragma once

#include <vector>

#include "../common/conv_index.h"

namespace atrous::cpu::depthwise {

#define ATROUS_DEPTHWISE_RUNG(NS)                                                            \
  namespace NS {                                                                             \
  template <typename T>                                                                      \
  void forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g);          \
  template <typename T>                                                                      \
  void backward_input(const T* gy, const T* w, T* gx, const ConvGeometry& g);                \
  template <typename T>                                                                      \
  void backward_weight(const T* gy, const T* x, T* gw, const ConvGeometry& g);               \
  }

// Pieces of the nhwc rung that the fused separable operator reuses.
#define ATROUS_DEPTHWISE_NHWC_PIECES                                                         \
  namespace nhwc {                                                                           \
  /* (C*m, kh*kw) -> (kh*kw, C*m): each tap's weights contiguous across channels. */         \
  template <typename T>                                                                      \
  std::vector<T> transpose_weight(const T* w, int64_t channels, int64_t taps);               \
  /* Depthwise outputs (+ bias, then ReLU if relu) of the flat output pixels [q0, q1)        \
     (q = oh*Wo + ow) of image n of the NHWC input x, pixel after pixel into out with a      \
     pitch of ldo. wt is the transposed weight; cols the column interval of each tap. */     \
  template <typename T>                                                                      \
  void forward_pixels(const T* x, const T* wt, const T* bias, const ConvGeometry& g,         \
                      const std::vector<Range>& cols, int64_t n, int64_t q0, int64_t q1,     \
                      T* out, int64_t ldo, bool relu);                                       \
  }

// Here the dispatchers (cpu_dispatch.cpp), which call the active instruction set's copy of
// each rung (isa_kernels.h).
ATROUS_DEPTHWISE_RUNG(naive)    // depthwise_v0_naive.cpp
ATROUS_DEPTHWISE_RUNG(rows)     // depthwise_v1_rows.cpp
ATROUS_DEPTHWISE_RUNG(stencil)  // depthwise_v2_stencil.cpp
ATROUS_DEPTHWISE_RUNG(nhwc)     // depthwise_v3_nhwc.cpp
ATROUS_DEPTHWISE_NHWC_PIECES

// Explicit instantiation for float and double, at the end of each rung's file.
#define ATROUS_INSTANTIATE_DEPTHWISE_RUNG(NS)                                                    \
  template void NS::forward<float>(const float*, const float*, const float*, float*,             \
                                   const ConvGeometry&);                                         \
  template void NS::forward<double>(const double*, const double*, const double*, double*,        \
                                    const ConvGeometry&);                                        \
  template void NS::backward_input<float>(const float*, const float*, float*, const ConvGeometry&); \
  template void NS::backward_input<double>(const double*, const double*, double*,                \
                                           const ConvGeometry&);                                 \
  template void NS::backward_weight<float>(const float*, const float*, float*, const ConvGeometry&); \
  template void NS::backward_weight<double>(const double*, const double*, double*,               \
                                            const ConvGeometry&);

}  // namespace atrous::cpu::depthwise
