// CUDA kernels of the dense atrous convolution: dilated im2col, col2im as a gather, naive rung.
//
// The ladder (kDenseCudaAlgorithms in csrc/common/algorithms.h):
//   v0 naive   direct convolution: one thread per output element of each op, looping over
//              channels and taps with a bounds check per tap (this file).
//   v1 im2col  im2col with dilation (this file), then the tiled GEMM of gemm_kernels.cu; the
//              input gradient goes back through col2im, written as a gather (one thread per input
//              element sums the column entries that read it), so it needs no atomics.
// All kernels use the shared index helpers (input_index, tap_source_output) and read the
// images through their strides.
#include "cuda_common.cuh"

namespace atrous::cuda {
namespace {

template <typename T>
__device__ __forceinline__ T zero() { return from_acc<T>(acc_t<T>(0)); }

template <typename T>
__global__ void im2col_kernel(const T* __restrict__ x, Strides4 xs, int64_t n0, int64_t images, T* __restrict__ col,
                              ConvGeometry g) {
  const int64_t taps = g.kernel_h * g.kernel_w, rows = g.in_channels * taps, cols = g.out_h * g.out_w;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < images * rows * cols;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t q = e % cols, r = (e / cols) % rows, b = e / (cols * rows);
    const int64_t ow = q % g.out_w, oh = q / g.out_w;
    const int64_t c = r / taps, i = (r % taps) / g.kernel_w, j = r % g.kernel_w;
    const int64_t ih = input_index(oh, i, g.stride_h, g.pad_h, g.dil_h);
    const int64_t iw = input_index(ow, j, g.stride_w, g.pad_w, g.dil_w);
    col[e] = (ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w)
                 ? x[(n0 + b) * xs.n + c * xs.c + ih * xs.h + iw * xs.w]
                 : zero<T>();
  }
}

template <typename T>
__global__ void col2im_kernel(const T* __restrict__ col, int64_t n0, int64_t images, T* __restrict__ gx, Strides4 gxs,
                              ConvGeometry g) {
  using Acc = acc_t<T>;
  const int64_t taps = g.kernel_h * g.kernel_w, rows = g.in_channels * taps, cols = g.out_h * g.out_w;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < images * g.in_channels * g.in_h * g.in_w;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t iw = e % g.in_w, ih = (e / g.in_w) % g.in_h;
    const int64_t c = (e / (g.in_w * g.in_h)) % g.in_channels, b = e / (g.in_w * g.in_h * g.in_channels);
    const T* image = col + b * rows * cols;
    Acc sum = 0;
    for (int64_t i = 0; i < g.kernel_h; ++i) {
      const int64_t oh = tap_source_output(ih, i, g.stride_h, g.pad_h, g.dil_h, g.out_h);
      if (oh < 0) continue;
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const int64_t ow = tap_source_output(iw, j, g.stride_w, g.pad_w, g.dil_w, g.out_w);
        if (ow < 0) continue;
        sum += load(image, (c * taps + i * g.kernel_w + j) * cols + oh * g.out_w + ow);
      }
    }
    gx[(n0 + b) * gxs.n + c * gxs.c + ih * gxs.h + iw * gxs.w] = from_acc<T>(sum);
  }
}

// ---- v0: naive ------------------------------------------------------------------------------

template <typename T>
__global__ void dense_naive_forward_kernel(const T* __restrict__ x, Strides4 xs, const T* __restrict__ w,
                                           const T* __restrict__ bias, T* __restrict__ y, Strides4 ys, ConvGeometry g) {
  using Acc = acc_t<T>;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < g.batch * g.out_channels * g.out_h * g.out_w;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t ow = e % g.out_w, oh = (e / g.out_w) % g.out_h;
    const int64_t o = (e / (g.out_w * g.out_h)) % g.out_channels, n = e / (g.out_w * g.out_h * g.out_channels);
    Acc sum = bias ? load(bias, o) : Acc(0);
    for (int64_t c = 0; c < g.in_channels; ++c) {
      for (int64_t i = 0; i < g.kernel_h; ++i) {
        const int64_t ih = input_index(oh, i, g.stride_h, g.pad_h, g.dil_h);
        if (ih < 0 || ih >= g.in_h) continue;
        for (int64_t j = 0; j < g.kernel_w; ++j) {
          const int64_t iw = input_index(ow, j, g.stride_w, g.pad_w, g.dil_w);
          if (iw < 0 || iw >= g.in_w) continue;
          sum += load(w, ((o * g.in_channels + c) * g.kernel_h + i) * g.kernel_w + j) *
                 load(x, n * xs.n + c * xs.c + ih * xs.h + iw * xs.w);
        }
      }
    }
    y[n * ys.n + o * ys.c + oh * ys.h + ow * ys.w] = from_acc<T>(sum);
  }
}

template <typename T>
__global__ void dense_naive_backward_input_kernel(const T* __restrict__ gy, Strides4 gys, const T* __restrict__ w,
                                                  T* __restrict__ gx, Strides4 gxs, ConvGeometry g) {
  using Acc = acc_t<T>;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < g.batch * g.in_channels * g.in_h * g.in_w;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t iw = e % g.in_w, ih = (e / g.in_w) % g.in_h;
    const int64_t c = (e / (g.in_w * g.in_h)) % g.in_channels, n = e / (g.in_w * g.in_h * g.in_channels);
    Acc sum = 0;
    for (int64_t o = 0; o < g.out_channels; ++o) {
      for (int64_t i = 0; i < g.kernel_h; ++i) {
        const int64_t oh = tap_source_output(ih, i, g.stride_h, g.pad_h, g.dil_h, g.out_h);
        if (oh < 0) continue;
        for (int64_t j = 0; j < g.kernel_w; ++j) {
          const int64_t ow = tap_source_output(iw, j, g.stride_w, g.pad_w, g.dil_w, g.out_w);
          if (ow < 0) continue;
          sum += load(w, ((o * g.in_channels + c) * g.kernel_h + i) * g.kernel_w + j) *
                 load(gy, n * gys.n + o * gys.c + oh * gys.h + ow * gys.w);
        }
      }
    }
    gx[n * gxs.n + c * gxs.c + ih * gxs.h + iw * gxs.w] = from_acc<T>(sum);
  }
}

// One thread per weight element, summing over the batch and the output plane in order, in float64.
template <typename T>
__global__ void dense_naive_backward_weight_kernel(const T* __restrict__ gy, Strides4 gys, const T* __restrict__ x,
                                                   Strides4 xs, T* __restrict__ gw, ConvGeometry g) {
  const int64_t taps = g.kernel_h * g.kernel_w;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < g.out_channels * g.in_channels * taps;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t j = e % g.kernel_w, i = (e / g.kernel_w) % g.kernel_h;
    const int64_t c = (e / taps) % g.in_channels, o = e / (taps * g.in_channels);
    double sum = 0;
    for (int64_t n = 0; n < g.batch; ++n) {
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        const int64_t ih = input_index(oh, i, g.stride_h, g.pad_h, g.dil_h);
        if (ih < 0 || ih >= g.in_h) continue;
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          const int64_t iw = input_index(ow, j, g.stride_w, g.pad_w, g.dil_w);
          if (iw < 0 || iw >= g.in_w) continue;
          sum += static_cast<double>(load(gy, n * gys.n + o * gys.c + oh * gys.h + ow * gys.w)) *
                 static_cast<double>(load(x, n * xs.n + c * xs.c + ih * xs.h + iw * xs.w));
        }
      }
    }
    gw[e] = from_acc<T>(static_cast<acc_t<T>>(sum));
  }
}

}  // namespace

void im2col(DType dtype, const void* x, Strides4 xs, int64_t n0, int64_t images, void* col, const ConvGeometry& g,
            cudaStream_t stream) {
  const int64_t total = images * g.in_channels * g.kernel_h * g.kernel_w * g.out_h * g.out_w;
  ATROUS_CUDA_DISPATCH(dtype, {
    launch(im2col_kernel<T>, blocks_for(total, 256), 256, 0, stream, static_cast<const T*>(x), xs, n0, images,
           static_cast<T*>(col), g);
  });
}

void col2im(DType dtype, const void* col, int64_t n0, int64_t images, void* gx, Strides4 gxs, const ConvGeometry& g,
            cudaStream_t stream) {
  const int64_t total = images * g.in_channels * g.in_h * g.in_w;
  ATROUS_CUDA_DISPATCH(dtype, {
    launch(col2im_kernel<T>, blocks_for(total, 256), 256, 0, stream, static_cast<const T*>(col), n0, images,
           static_cast<T*>(gx), gxs, g);
  });
}

void dense_naive_forward(DType dtype, const void* x, Strides4 xs, const void* w, const void* bias, void* y,
                         Strides4 ys, const ConvGeometry& g, cudaStream_t stream) {
  const int64_t total = g.batch * g.out_channels * g.out_h * g.out_w;
  ATROUS_CUDA_DISPATCH(dtype, {
    launch(dense_naive_forward_kernel<T>, blocks_for(total, 256), 256, 0, stream, static_cast<const T*>(x), xs,
           static_cast<const T*>(w), static_cast<const T*>(bias), static_cast<T*>(y), ys, g);
  });
}

void dense_naive_backward_input(DType dtype, const void* gy, Strides4 gys, const void* w, void* gx, Strides4 gxs,
                                const ConvGeometry& g, cudaStream_t stream) {
  const int64_t total = g.batch * g.in_channels * g.in_h * g.in_w;
  ATROUS_CUDA_DISPATCH(dtype, {
    launch(dense_naive_backward_input_kernel<T>, blocks_for(total, 256), 256, 0, stream, static_cast<const T*>(gy),
           gys, static_cast<const T*>(w), static_cast<T*>(gx), gxs, g);
  });
}

void dense_naive_backward_weight(DType dtype, const void* gy, Strides4 gys, const void* x, Strides4 xs, void* gw,
                                 const ConvGeometry& g, cudaStream_t stream) {
  const int64_t total = g.out_channels * g.in_channels * g.kernel_h * g.kernel_w;
  ATROUS_CUDA_DISPATCH(dtype, {
    launch(dense_naive_backward_weight_kernel<T>, blocks_for(total, 128), 128, 0, stream, static_cast<const T*>(gy),
           gys, static_cast<const T*>(x), xs, static_cast<T*>(gw), g);
  });
}

}  // namespace atrous::cuda
