// Host-side helpers of the CUDA operators (csrc/cuda/*.cpp, compiled by g++): device, stream,
// dtype, strides, matrix views of images, and the ladder names.
//
// The host side of each op (checks, output allocation, strides, rung choice, launches) is one
// file named like its CPU twin: csrc/cuda/depthwise_conv2d.cpp mirrors csrc/cpu/depthwise_conv2d.cpp.
// Separate files, not one unity file: each costs a parse of the torch headers, about 9 s of g++
// against 10 s for the former single host file, so a clean build takes about 35 s more CPU time
// (about 17 s on 2 cores), while an edit to one op recompiles only that op. Inputs of any layout
// are read through their strides; outputs follow the layout rule (checks.h).
//
// The host files register with TORCH_LIBRARY_IMPL(ATROUS_CUDA_LIBRARY, ATROUS_CUDA_KEY, m), which
// is (atrous, CUDA). The CPU emulation build of the tests (tests/cuda/cuda_emulation) compiles the very
// same files with -DATROUS_CUDA_EMULATION, which makes it (atrous_emu, CPU): every line of host
// and kernel code then runs on CPU tensors.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <ATen/Context.h>

#ifndef ATROUS_CUDA_EMULATION
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <optional>
#include <string_view>

#include "../common/algorithms.h"
#include "../common/checks.h"
#include "kernels.h"

#ifdef ATROUS_CUDA_EMULATION
#define ATROUS_CUDA_LIBRARY atrous_emu
#define ATROUS_CUDA_KEY CPU
#else
#define ATROUS_CUDA_LIBRARY atrous
#define ATROUS_CUDA_KEY CUDA
#endif

namespace atrous::cuda {

// The dispatcher picks this kernel when any argument is on a CUDA device; the shared checks
// already require every tensor on the first one's device. This names a CPU-only call anyway.
inline void check_device(const char* op, const at::Tensor& t) {
#ifdef ATROUS_CUDA_EMULATION
  TORCH_CHECK(t.device().is_cpu(), op, ": the emulated CUDA kernel got a tensor on ", t.device());
#else
  TORCH_CHECK(t.device().is_cuda(), op, ": the CUDA kernel got a tensor on ", t.device());
#endif
}

// Makes t's device current for the kernel launches and allocations of one op.
class DeviceGuard {
 public:
  explicit DeviceGuard(const at::Tensor& t)
#ifndef ATROUS_CUDA_EMULATION
      : guard_(t.device())
#endif
  {
    (void)t;
  }

 private:
#ifndef ATROUS_CUDA_EMULATION
  c10::cuda::CUDAGuard guard_;
#endif
};

// The current stream of the current device: kernels queue behind PyTorch's own work.
inline cudaStream_t current_stream() {
#ifdef ATROUS_CUDA_EMULATION
  return nullptr;
#else
  return c10::cuda::getCurrentCUDAStream().stream();
#endif
}

inline DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::Float;
    case at::kDouble: return DType::Double;
    case at::kHalf: return DType::Half;
    case at::kBFloat16: return DType::BFloat16;
    default: TORCH_CHECK(false, "atrous: no CUDA kernel for dtype ", t.scalar_type());  // checked before
  }
  return DType::Float;
}

inline bool is_half_type(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

inline Strides4 strides_of(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

// An optional bias made contiguous, or an undefined tensor; and its data or null.
inline at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->contiguous() : at::Tensor();
}
inline const void* data_or_null(const at::Tensor& t) { return t.defined() ? t.const_data_ptr() : nullptr; }

// A scratch buffer of `bytes` bytes on t's device (nothing when bytes is 0).
inline at::Tensor workspace(const at::Tensor& t, int64_t bytes) {
  return at::empty({bytes}, t.options().dtype(at::kByte));
}

// Each image of a (N, C, H, W) tensor as a (C x H*W) matrix, when its strides allow it: the H*W
// pixels must have one stride (p = h*W + w at p * stride), true for NCHW, channels_last and
// whenever H or W is 1.
inline bool images_are_matrices(const at::Tensor& t) {
  return t.size(2) == 1 || t.size(3) == 1 || t.stride(2) == t.size(3) * t.stride(3);
}

inline Matrix image_matrices(const at::Tensor& t) {
  const int64_t pixel_stride = t.size(3) == 1 ? t.stride(2) : t.stride(3);
  return {t.const_data_ptr(), t.stride(1), pixel_stride, t.stride(0)};
}

inline MutableMatrix image_matrices_mut(at::Tensor& t) {
  const int64_t pixel_stride = t.size(3) == 1 ? t.stride(2) : t.stride(3);
  return {t.mutable_data_ptr(), t.stride(1), pixel_stride, t.stride(0)};
}

// The same view without copying when possible, else an NCHW-contiguous copy.
inline at::Tensor as_image_matrices(const at::Tensor& t) {
  return images_are_matrices(t) ? t : t.contiguous();
}

// The batch of matrices starting at item b (the same strides).
inline Matrix skip(Matrix m, int64_t b, int64_t element_size) {
  return {static_cast<const char*>(m.data) + b * m.batch_stride * element_size, m.row_stride, m.col_stride,
          m.batch_stride};
}
inline MutableMatrix skip(MutableMatrix m, int64_t b, int64_t element_size) {
  return {static_cast<char*>(m.data) + b * m.batch_stride * element_size, m.row_stride, m.col_stride,
          m.batch_stride};
}

// A contiguous row-major (rows x cols) matrix, shared by every item of a batch.
inline Matrix row_major(const void* data, int64_t cols) { return {data, cols, 1, 0}; }
inline MutableMatrix row_major(void* data, int64_t cols) { return {data, cols, 1, 0}; }

inline Matrix transposed(Matrix m) { return {m.data, m.col_stride, m.row_stride, m.batch_stride}; }

inline std::string_view view(c10::string_view s) { return {s.data(), s.size()}; }

// The GEMM rung for t's dtype and device when the tensor-core rung (GemmRung::Mma) is asked for
// (or "auto" would take it): mma.sync needs compute capability 8.0 (the emulator has it); float32
// uses TF32 operands, so it goes there only when torch allows TF32 in convolutions
// (torch.backends.cudnn.allow_tf32, on by default: what F.conv2d does); double never does.
inline GemmRung tensor_core_rung_or_tiled(const at::Tensor& t) {
#ifdef ATROUS_CUDA_EMULATION
  const bool capable = true;
#else
  // (not ATen/cuda/CUDAContext.h: it includes cuSPARSE's and cuBLAS's headers, which a
  // minimal toolkit lacks)
  int major = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, t.get_device()));
  const bool capable = major >= 8;
#endif
  if (!capable || t.scalar_type() == at::kDouble) return GemmRung::Tiled;
  if (t.scalar_type() == at::kFloat && !at::globalContext().allowTF32CuDNN(at::Float32Op::CONV)) return GemmRung::Tiled;
  return GemmRung::Mma;
}

}  // namespace atrous::cuda
