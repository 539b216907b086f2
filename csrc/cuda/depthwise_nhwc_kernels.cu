// The "nhwc" rung of the CUDA depthwise convolution: channels_last, vectorised across channels.
//
// v2 nhwc  (kDepthwiseCudaAlgorithms) for channels_last tensors (channels contiguous) with one
//          output per input channel: a thread owns a 16-byte vector of channels (4 floats, 8
//          halves) and a strip of kStrip output pixels along W. The weights are transposed on
//          the host to [kh][kw][C], so a tap's weights for the vector are one 16-byte load too;
//          a warp reads 32 consecutive vectors (512 contiguous bytes) per load, where the tiled
//          rung, written for NCHW planes, read 32 pixels of one channel with a stride of C.
//          Dilation only moves the addresses: no staging, nothing grows with the rate, and every
//          input vector is read from L1/L2 by the kernel-width neighbours of its strip. Sums in
//          float (double for double). Backward input (stride 1) is the same kernel on the output
//          gradient with the taps flipped and padding d*(k-1) - p.
// Falls back (returns false, the host runs "tiled") for other layouts, depth multipliers, or
// channel counts that are not a multiple of the vector.
#include "cuda_common.cuh"

namespace atrous::cuda {
namespace {

constexpr int kNhwcThreads = 256;
constexpr int kStrip = 4;  // output pixels along W per thread: each weight vector is used 4 times

// 16 bytes of T through one 128-bit access.
template <typename T>
struct alignas(16) Pack {
  static constexpr int V = 16 / sizeof(T);
  T v[V];
};

template <typename T>
__device__ __forceinline__ Pack<T> load16(const T* p) {
  return *reinterpret_cast<const Pack<T>*>(p);
}

template <typename T>
__global__ void __launch_bounds__(kNhwcThreads)
depthwise_nhwc_kernel(const T* __restrict__ x, Strides4 xs, const T* __restrict__ wt, const T* __restrict__ bias,
                      T* __restrict__ y, Strides4 ys, ConvGeometry g, bool relu, bool flip) {
  using Acc = acc_t<T>;
  constexpr int V = Pack<T>::V;
  const int64_t vectors = g.out_channels / V, strips = ceil_div(g.out_w, kStrip);
  const int64_t total = g.batch * g.out_h * strips * vectors;
  for (int64_t item = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; item < total;
       item += int64_t{gridDim.x} * blockDim.x) {
    // The channel vector varies fastest: a warp covers consecutive channels of one strip.
    const int64_t cv = item % vectors, rest = item / vectors;
    const int64_t strip = rest % strips, row = rest / strips;
    const int64_t oh = row % g.out_h, n = row / g.out_h;
    const int64_t c0 = cv * V, ow0 = strip * kStrip;
    Acc acc[kStrip][V];
    {
      Acc b[V];
#pragma unroll
      for (int v = 0; v < V; ++v) b[v] = bias ? to_acc(bias[c0 + v]) : Acc(0);
#pragma unroll
      for (int p = 0; p < kStrip; ++p)
#pragma unroll
        for (int v = 0; v < V; ++v) acc[p][v] = b[v];
    }
    const T* xn = x + n * xs.n + c0;
    for (int64_t i = 0; i < g.kernel_h; ++i) {
      const int64_t ih = oh * g.stride_h - g.pad_h + i * g.dil_h;
      if (ih < 0 || ih >= g.in_h) continue;
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const int64_t ti = flip ? g.kernel_h - 1 - i : i, tj = flip ? g.kernel_w - 1 - j : j;
        const Pack<T> w = load16(wt + (ti * g.kernel_w + tj) * g.out_channels + c0);
#pragma unroll
        for (int p = 0; p < kStrip; ++p) {
          const int64_t ow = ow0 + p, iw = ow * g.stride_w - g.pad_w + j * g.dil_w;
          if (ow >= g.out_w || iw < 0 || iw >= g.in_w) continue;
          const Pack<T> in = load16(xn + ih * xs.h + iw * xs.w);
#pragma unroll
          for (int v = 0; v < V; ++v) acc[p][v] += to_acc(in.v[v]) * to_acc(w.v[v]);
        }
      }
    }
#pragma unroll
    for (int p = 0; p < kStrip; ++p) {
      const int64_t ow = ow0 + p;
      if (ow >= g.out_w) break;
      Pack<T> out;
#pragma unroll
      for (int v = 0; v < V; ++v) {
        const Acc r = relu && acc[p][v] < Acc(0) ? Acc(0) : acc[p][v];
        out.v[v] = from_acc<T>(r);
      }
      *reinterpret_cast<Pack<T>*>(y + n * ys.n + oh * ys.h + ow * ys.w + c0) = out;
    }
  }
}

// Whether the nhwc kernel applies: channels contiguous in both tensors, one output channel per
// input channel, and every pixel's channel vector 16-byte aligned.
template <typename T>
bool nhwc_applies(const void* x, Strides4 xs, const void* y, Strides4 ys, const void* wt, int64_t channels,
                  int64_t in_channels) {
  constexpr int64_t V = Pack<T>::V;
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return channels == in_channels && channels % V == 0 && xs.c == 1 && ys.c == 1 && xs.n % V == 0 &&
         xs.h % V == 0 && xs.w % V == 0 && ys.n % V == 0 && ys.h % V == 0 && ys.w % V == 0 && aligned(x) &&
         aligned(y) && aligned(wt);
}

}  // namespace

bool depthwise_nhwc(DType dtype, const void* x, Strides4 xs, const void* wt, const void* bias, void* y,
                    Strides4 ys, const ConvGeometry& g, bool relu, bool flip, cudaStream_t stream) {
  bool done = false;
  ATROUS_CUDA_DISPATCH(dtype, {
    if (nhwc_applies<T>(x, xs, y, ys, wt, g.out_channels, g.in_channels)) {
      const int64_t work = g.batch * g.out_h * ceil_div(g.out_w, kStrip) * (g.out_channels / Pack<T>::V);
      launch(depthwise_nhwc_kernel<T>, blocks_for(work, kNhwcThreads), kNhwcThreads, 0, stream,
             static_cast<const T*>(x), xs, static_cast<const T*>(wt), static_cast<const T*>(bias), static_cast<T*>(y),
             ys, g, relu, flip);
      done = true;
    }
  });
  return done;
}

}  // namespace atrous::cuda
