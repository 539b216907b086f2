// The kernel ladder of each op: the algorithm names a caller can select with algo="...", and
// the file that implements each rung.
//
// Names are listed in teaching order, from the readable first version to the fastest. "auto"
// (the default) lets the op choose. Each device has its own ladder (CPU first, then CUDA). The
// Python side reads these lists from atrous._C (csrc/module.cpp), so this file is the single
// source of truth. Files are relative to the repository root; the op's host file (checks, rung
// choice, registration) is csrc/cpu/<op>.cpp or csrc/cuda/<op>.cpp.
#pragma once

#include <c10/util/Exception.h>

#include <array>
#include <string>
#include <string_view>

namespace atrous {

// One rung of a ladder: the name algo="..." selects and the file holding its kernel.
struct LadderRung {
  std::string_view name;
  std::string_view file;
};

// ---- CPU ---------------------------------------------------------------------------------------

inline constexpr std::array<LadderRung, 4> kDepthwiseAlgorithms = {{
    // v0: one output at a time, a bounds check per tap, one thread
    {"naive", "csrc/cpu/depthwise_v0_naive.cpp"},
    // v1: per-tap column intervals (no bounds checks), parallel over planes
    {"rows", "csrc/cpu/depthwise_v1_rows.cpp"},
    // v2: padded polyphase plane in cache, taps summed in registers
    {"stencil", "csrc/cpu/depthwise_v2_stencil.cpp"},
    // v3: channels_last, vectorised across channels
    {"nhwc", "csrc/cpu/depthwise_v3_nhwc.cpp"},
}};

inline constexpr std::array<LadderRung, 2> kPointwiseAlgorithms = {{
    // v0: the textbook triple loop
    {"naive", "csrc/cpu/pointwise_conv2d.cpp"},
    // v1: packed panels + register micro-kernel
    {"blocked", "csrc/cpu/gemm.cpp"},
}};

inline constexpr std::array<LadderRung, 3> kDenseAlgorithms = {{
    // v0: direct convolution loops, a bounds check per tap
    {"naive", "csrc/cpu/atrous_conv2d.cpp"},
    // v1: dilated im2col (conv_gemm.h) + the blocked GEMM (gemm.cpp)
    {"im2col", "csrc/cpu/conv_gemm.h"},
    // v2: implicit GEMM: the dilated taps gathered from an NHWC image while packing the GEMM's A
    // panels, no im2col buffer; taps that read only padding left out (NCHW via channels_last copies)
    {"implicit", "csrc/cpu/gemm.cpp"},
}};

// ---- CUDA (csrc/cuda/) -------------------------------------------------------------------------
// A GPU has its own sequence of teaching steps. On a CUDA tensor algo must name one of these;
// atrous.ops.algorithms(name, "cuda") lists them. The ladders are listed (and exported to Python)
// even in a CPU-only build.

inline constexpr std::array<LadderRung, 3> kDepthwiseCudaAlgorithms = {{
    // v0: one thread per output, a bounds check per tap, global memory only
    {"naive", "csrc/cuda/depthwise_kernels.cu"},
    // v1: shared-memory input tile with a dilation-sized halo, several outputs per thread
    {"tiled", "csrc/cuda/depthwise_kernels.cu"},
    // v2: channels_last, 16-byte channel vectors per thread, weights as [kh][kw][C]
    {"nhwc", "csrc/cuda/depthwise_nhwc_kernels.cu"},
}};

inline constexpr std::array<LadderRung, 3> kPointwiseCudaAlgorithms = {{
    // v0: one thread per output element of the GEMM
    {"naive", "csrc/cuda/gemm_kernels.cu"},
    // v1: shared-memory tiles with 4x4 register blocks per thread (exact float32)
    {"tiled", "csrc/cuda/gemm_kernels.cu"},
    // v2: tensor cores (mma.sync: fp16/bf16, TF32 when torch allows it), cp.async double buffering
    {"mma", "csrc/cuda/gemm_mma_kernels.cu"},
}};

inline constexpr std::array<LadderRung, 3> kDenseCudaAlgorithms = {{
    // v0: one thread per output, direct loops over channels and taps
    {"naive", "csrc/cuda/conv_gemm_kernels.cu"},
    // v1: dilated im2col (conv_gemm_kernels.cu) + the tiled GEMM (gemm_kernels.cu)
    {"im2col", "csrc/cuda/conv_gemm_kernels.cu"},
    // v2: implicit GEMM: the B-panel loader gathers dilated taps through a per-k offset table
    {"implicit", "csrc/cuda/conv_implicit_kernels.cu"},
}};

// Index of `algo` in `ladder`, or -1 for "auto"; anything else is an error naming the choices.
template <size_t N>
int parse_algorithm(const char* op, std::string_view algo, const std::array<LadderRung, N>& ladder) {
  if (algo == "auto") return -1;
  for (size_t i = 0; i < N; ++i) {
    if (ladder[i].name == algo) return static_cast<int>(i);
  }
  std::string choices = "'auto'";
  for (const LadderRung& rung : ladder) choices += ", '" + std::string(rung.name) + "'";
  TORCH_CHECK(false, op, ": expected algo to be one of ", choices, ", got '", std::string(algo), "'");
  return -1;
}

}  // namespace atrous
