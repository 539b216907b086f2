// The kernel ladder of each op: the algorithm names a caller can select with algo="...".
//
// Names are listed in teaching order, from the readable first version to the fastest. "auto"
// (the default) lets the op choose. Each device has its own ladder (CPU first, then CUDA). The
// Python side reads these lists from atrous._C, so this file is the single source of truth.
#pragma once

#include <c10/util/Exception.h>

#include <array>
#include <string>
#include <string_view>

namespace atrous {

inline constexpr std::array<std::string_view, 4> kDepthwiseAlgorithms = {
    "naive",    // v0: one output at a time, a bounds check per tap, one thread
    "rows",     // v1: per-tap column intervals (no bounds checks), parallel over planes
    "stencil",  // v2: padded polyphase plane in cache, taps summed in registers
    "nhwc",     // v3: channels_last, vectorised across channels
};

inline constexpr std::array<std::string_view, 2> kPointwiseAlgorithms = {
    "naive",    // v0: the textbook triple loop
    "blocked",  // v1: packed panels + register micro-kernel (gemm.cpp)
};

inline constexpr std::array<std::string_view, 2> kDenseAlgorithms = {
    "naive",   // v0: direct convolution loops, a bounds check per tap
    "im2col",  // v1: dilated im2col + the blocked GEMM
};

// The CUDA ladders (csrc/cuda/): a GPU has its own sequence of teaching steps. On a CUDA tensor
// algo must name one of these; atrous.ops.algorithms(name, "cuda") lists them.
inline constexpr std::array<std::string_view, 2> kDepthwiseCudaAlgorithms = {
    "naive",  // v0: one thread per output, a bounds check per tap, global memory only
    "tiled",  // v1: shared-memory input tile with a dilation-sized halo, several outputs per thread
};

inline constexpr std::array<std::string_view, 2> kPointwiseCudaAlgorithms = {
    "naive",  // v0: one thread per output element of the GEMM
    "tiled",  // v1: shared-memory tiles with 4x4 register blocks per thread (gemm_kernels.cu)
};

inline constexpr std::array<std::string_view, 2> kDenseCudaAlgorithms = {
    "naive",   // v0: one thread per output, direct loops over channels and taps
    "im2col",  // v1: dilated im2col + the tiled GEMM
};

// Index of `algo` in `names`, or -1 for "auto"; anything else is an error naming the choices.
template <size_t N>
int parse_algorithm(const char* op, std::string_view algo,
                    const std::array<std::string_view, N>& names) {
  if (algo == "auto") return -1;
  for (size_t i = 0; i < N; ++i) {
    if (names[i] == algo) return static_cast<int>(i);
  }
  std::string choices = "'auto'";
  for (auto name : names) choices += ", '" + std::string(name) + "'";
  TORCH_CHECK(false, op, ": expected algo to be one of ", choices, ", got '", std::string(algo), "'");
  return -1;
}

}  // namespace atrous
