// The CUDA kernels' launchers: what the host code (csrc/cuda/*.cpp) calls, on raw pointers.
//
// This header has no CUDA syntax, so g++ compiles the host files that include it and nvcc
// compiles only the kernel files (*_kernels.cu), which include nothing from ATen: that keeps
// nvcc fast. Every launcher checks its launches (C10_CUDA_KERNEL_LAUNCH_CHECK), launches nothing
// for empty work, and indexes memory with 64-bit offsets, so tensors past 2^31 elements work.
//
// Tensors are passed as a pointer and the strides of their (N, C, H, W) dims in elements, so
// NCHW, channels_last and other views need no copy; weights and biases are contiguous.
#pragma once

#include <cstdint>

#ifdef ATROUS_CUDA_EMULATION
typedef struct CUstream_st* cudaStream_t;  // the CPU emulator ignores streams
#else
#include <cuda_runtime_api.h>
#endif

#include "../common/conv_index.h"

namespace atrous::cuda {

enum class DType { Float, Double, Half, BFloat16 };

// Element strides of a 4-D (N, C, H, W) tensor.
struct Strides4 {
  int64_t n, c, h, w;
};

// ---- depthwise (depthwise_kernels.cu); the rungs of kDepthwiseCudaAlgorithms ----------------
// Nhwc: depthwise_nhwc_kernels.cu, channels_last only; where it does not apply, Tiled runs.
enum class DepthwiseRung { Naive = 0, Tiled = 1, Nhwc = 2 };

// The nhwc rung (depthwise_nhwc_kernels.cu): y = depthwise(x, w) + bias, ReLU if relu, with the
// weights transposed to [kh][kw][C] in wt; flip reads tap (kh-1-i, kw-1-j) instead of (i, j)
// (backward input as a forward on grad_output; g is then that forward's geometry). Returns false,
// launching nothing, unless both tensors have contiguous 16-byte aligned channel vectors and
// one output channel per input channel.
bool depthwise_nhwc(DType dtype, const void* x, Strides4 xs, const void* wt, const void* bias, void* y,
                    Strides4 ys, const ConvGeometry& g, bool relu, bool flip, cudaStream_t stream);

// y = depthwise(x, w) + bias (bias may be null), then ReLU when relu is set.
void depthwise_forward(DepthwiseRung rung, DType dtype, const void* x, Strides4 xs, const void* w,
                       const void* bias, void* y, Strides4 ys, const ConvGeometry& g, bool relu,
                       cudaStream_t stream);

// gx = the adjoint of the forward applied to gy: a gather, one writer per element of gx.
void depthwise_backward_input(DepthwiseRung rung, DType dtype, const void* gy, Strides4 gys,
                              const void* w, void* gx, Strides4 gxs, const ConvGeometry& g,
                              cudaStream_t stream);

// Bytes of scratch memory depthwise_backward_weight needs (0: none).
int64_t depthwise_backward_weight_workspace(DepthwiseRung rung, DType dtype, const ConvGeometry& g);

// gw (C*m, 1, kh, kw) = sum over N, H_out, W_out of gy * shifted x, in a fixed order.
void depthwise_backward_weight(DepthwiseRung rung, DType dtype, const void* gy, Strides4 gys,
                               const void* x, Strides4 xs, void* gw, void* workspace,
                               const ConvGeometry& g, cudaStream_t stream);

// ---- bias gradient (reduce_kernels.cu) ------------------------------------------------------
// Bytes of scratch memory conv2d_backward_bias needs.
int64_t backward_bias_workspace(DType dtype, int64_t batch, int64_t channels, int64_t h, int64_t w);

// gb[c] = sum over n, h, w of gy[n, c, h, w], in a fixed order (two passes, no atomics).
void backward_bias(DType dtype, const void* gy, Strides4 gys, int64_t batch, int64_t channels,
                   int64_t h, int64_t w, void* gb, void* workspace, cudaStream_t stream);

// out[e] = partials[e * chunks] + ... + partials[e * chunks + chunks - 1], summed in that order,
// for e < count, rounded to dtype; partials hold float64 for Double and float32 otherwise. The
// second pass of the deterministic reductions (bias and depthwise weight gradients).
void sum_partials(DType dtype, const void* partials, int64_t count, int64_t chunks, void* out,
                  cudaStream_t stream);

// ---- GEMM (gemm_kernels.cu); the rungs of kPointwiseCudaAlgorithms --------------------------
// Mma: tensor cores (gemm_mma_kernels.cu) for float16/bfloat16, and TF32 for float32; the host
// picks it for float32 only when torch allows TF32 convolutions. Double runs Tiled instead.
enum class GemmRung { Naive = 0, Tiled = 1, Mma = 2 };

// A batch of matrices seen through strides: element (b, i, j) is
// data[b * batch_stride + i * row_stride + j * col_stride] (batch_stride 0: one shared matrix).
struct Matrix {
  const void* data;
  int64_t row_stride, col_stride, batch_stride;
};
struct MutableMatrix {
  void* data;
  int64_t row_stride, col_stride, batch_stride;
};

// For each b < batch: C[b] (M x N) = A[b] (M x K) @ B[b] (K x N) + bias[i] (bias may be null),
// plus the old C[b] when accumulate is set. A, B (and C, unless c_float) hold `dtype`;
// c_float: C holds float32, for half types accumulating over several calls without rounding.
// Each element of C is summed by one thread in a fixed order: deterministic, no split-K.
void gemm(GemmRung rung, DType dtype, int64_t batch, int64_t M, int64_t N, int64_t K, Matrix A,
          Matrix B, MutableMatrix C, bool c_float, const void* bias, bool accumulate,
          cudaStream_t stream);

// The Mma rung's kernel (gemm_mma_kernels.cu), called by gemm(); same contract, any dtype but Double.
void gemm_mma(DType dtype, int64_t batch, int64_t M, int64_t N, int64_t K, Matrix A, Matrix B, MutableMatrix C,
              bool c_float, const void* bias, bool accumulate, cudaStream_t stream);

// ---- dense atrous convolution (conv_gemm_kernels.cu) ----------------------------------------
// im2col with dilation of `images` images starting at image n0 of x: col[b] is the
// (C*kh*kw x Ho*Wo) matrix of image n0 + b, row (c, i, j) holding x[c, oh*sh - ph + i*dh,
// ow*sw - pw + j*dw] at column (oh, ow), 0 in the padding. col is contiguous.
void im2col(DType dtype, const void* x, Strides4 xs, int64_t n0, int64_t images, void* col,
            const ConvGeometry& g, cudaStream_t stream);

// col2im as a gather, the adjoint of im2col: gx[n0 + b, c, ih, iw] = the sum of col[b] over the
// taps (c, i, j) and outputs that read (ih, iw). One thread per element of gx: no atomics.
void col2im(DType dtype, const void* col, int64_t n0, int64_t images, void* gx, Strides4 gxs,
            const ConvGeometry& g, cudaStream_t stream);

// The "implicit" dense rung (conv_implicit_kernels.cu): y = conv(x, w) + bias as an implicit
// GEMM that gathers the dilated taps itself (no im2col buffer). flip: w is read as the kernel
// of the input gradient, w (C' x C_out' x kh x kw) flipped and transposed, where g is that
// stride-1 convolution's geometry (input = grad_output, output = grad_input).
void dense_implicit_forward(DType dtype, const void* x, Strides4 xs, const void* w, bool flip, const void* bias,
                            void* y, Strides4 ys, const ConvGeometry& g, cudaStream_t stream);

// The "naive" dense rung: direct loops, one thread per output element of each op.
void dense_naive_forward(DType dtype, const void* x, Strides4 xs, const void* w, const void* bias,
                         void* y, Strides4 ys, const ConvGeometry& g, cudaStream_t stream);
void dense_naive_backward_input(DType dtype, const void* gy, Strides4 gys, const void* w, void* gx,
                                Strides4 gxs, const ConvGeometry& g, cudaStream_t stream);
void dense_naive_backward_weight(DType dtype, const void* gy, Strides4 gys, const void* x,
                                 Strides4 xs, void* gw, const ConvGeometry& g, cudaStream_t stream);

}  // namespace atrous::cuda
