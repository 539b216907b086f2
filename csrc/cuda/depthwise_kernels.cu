// CUDA kernels of the depthwise atrous convolution: the kernel ladder and its backward passes.
//
// The ladder (kDepthwiseCudaAlgorithms in csrc/common/algorithms.h), forward:
//   v0 naive  one thread per output: reads global memory with a bounds check per tap. The
//             definition, as on the CPU, and what PyTorch's own kernel does.
//   v1 tiled  one block per 2-D output tile of one (n, c) plane. The block stages the input
//             tile plus its halo, d*(k-1) rows and columns sized by the dilation, in shared
//             memory, zero-filled where it falls in the padding, so the sums need no bounds
//             checks. Each thread computes several outputs. 3x3 and 5x5 kernels are unrolled
//             at compile time with their weights in registers; other sizes loop at run time.
//             When the halo is too large for shared memory even for a one-row tile (a huge
//             dilation), it runs v0 instead.
// Backward input, gx[n, c, ih, iw] = sum over the taps that read (ih, iw):
//   naive  a gather: one thread per input element sums the outputs whose tap lands on it
//          (with stride s only taps with (ih + p - i*d) % s == 0 do). One writer per element:
//          deterministic, no atomics.
//   tiled  at stride 1 the gather is itself a depthwise convolution of grad_output with the
//          flipped kernel and padding d*(k-1) - p, summing the m output channels of each input
//          channel, so v1's tiled kernel runs it. Other strides use the gather.
// Backward weight, a reduction over N * H_out * W_out per weight, never with float atomics:
//   naive  one thread per weight element sums its terms in order, in float64.
//   tiled  two passes. Pass 1: blocks of (channel, tap group, chunk of the reduction); each
//          thread accumulates every tap of its group for its share of the chunk in registers,
//          then a shared-memory tree sums the threads in a fixed order. Pass 2 sums each
//          weight's chunk partials in order. The chunking depends only on the shapes, so the
//          result is bit-identical from run to run.
// Layouts: every kernel reads and writes through the tensors' strides, so NCHW, channels_last
// and strided views need no copy (channels_last is correct but not coalesced: a warp reads one
// channel of 32 pixels).
#include "cuda_common.cuh"

namespace atrous::cuda {
namespace {

// ---- v0: naive ------------------------------------------------------------------------------

template <typename T>
__global__ void depthwise_naive_forward_kernel(const T* __restrict__ x, Strides4 xs, const T* __restrict__ w,
                                               const T* __restrict__ bias, T* __restrict__ y, Strides4 ys,
                                               ConvGeometry g, bool relu) {
  using Acc = acc_t<T>;
  const int64_t total = g.batch * g.out_channels * g.out_h * g.out_w;
  const int64_t m = g.out_channels / g.in_channels;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t ow = e % g.out_w, oh = (e / g.out_w) % g.out_h;
    const int64_t oc = (e / (g.out_w * g.out_h)) % g.out_channels, n = e / (g.out_w * g.out_h * g.out_channels);
    const T* plane = x + n * xs.n + (oc / m) * xs.c;
    Acc sum = bias ? load(bias, oc) : Acc(0);
    for (int64_t i = 0; i < g.kernel_h; ++i) {
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const int64_t ih = input_index(oh, i, g.stride_h, g.pad_h, g.dil_h);
        const int64_t iw = input_index(ow, j, g.stride_w, g.pad_w, g.dil_w);
        if (ih < 0 || ih >= g.in_h || iw < 0 || iw >= g.in_w) continue;  // zero padding
        sum += load(w, (oc * g.kernel_h + i) * g.kernel_w + j) * load(plane, ih * xs.h + iw * xs.w);
      }
    }
    if (relu && sum < Acc(0)) sum = Acc(0);
    y[n * ys.n + oc * ys.c + oh * ys.h + ow * ys.w] = from_acc<T>(sum);
  }
}

// Gather: each input element sums w * gy over the (output channel, tap) pairs that read it.
template <typename T>
__global__ void depthwise_gather_backward_input_kernel(const T* __restrict__ gy, Strides4 gys,
                                                       const T* __restrict__ w, T* __restrict__ gx,
                                                       Strides4 gxs, ConvGeometry g) {
  using Acc = acc_t<T>;
  const int64_t total = g.batch * g.in_channels * g.in_h * g.in_w;
  const int64_t m = g.out_channels / g.in_channels;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t iw = e % g.in_w, ih = (e / g.in_w) % g.in_h;
    const int64_t c = (e / (g.in_w * g.in_h)) % g.in_channels, n = e / (g.in_w * g.in_h * g.in_channels);
    Acc sum = 0;
    for (int64_t k = 0; k < m; ++k) {
      const int64_t oc = c * m + k;
      const T* plane = gy + n * gys.n + oc * gys.c;
      for (int64_t i = 0; i < g.kernel_h; ++i) {
        const int64_t oh = tap_source_output(ih, i, g.stride_h, g.pad_h, g.dil_h, g.out_h);
        if (oh < 0) continue;
        for (int64_t j = 0; j < g.kernel_w; ++j) {
          const int64_t ow = tap_source_output(iw, j, g.stride_w, g.pad_w, g.dil_w, g.out_w);
          if (ow < 0) continue;
          sum += load(w, (oc * g.kernel_h + i) * g.kernel_w + j) * load(plane, oh * gys.h + ow * gys.w);
        }
      }
    }
    gx[n * gxs.n + c * gxs.c + ih * gxs.h + iw * gxs.w] = from_acc<T>(sum);
  }
}

// One thread per weight element, summing in order in float64 (the reduction has N*Ho*Wo terms).
template <typename T>
__global__ void depthwise_naive_backward_weight_kernel(const T* __restrict__ gy, Strides4 gys,
                                                       const T* __restrict__ x, Strides4 xs, T* __restrict__ gw,
                                                       ConvGeometry g) {
  const int64_t taps = g.kernel_h * g.kernel_w;
  const int64_t m = g.out_channels / g.in_channels;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < g.out_channels * taps;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t oc = e / taps, i = (e % taps) / g.kernel_w, j = e % g.kernel_w;
    double sum = 0;
    for (int64_t n = 0; n < g.batch; ++n) {
      const T* gplane = gy + n * gys.n + oc * gys.c;
      const T* xplane = x + n * xs.n + (oc / m) * xs.c;
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        const int64_t ih = input_index(oh, i, g.stride_h, g.pad_h, g.dil_h);
        if (ih < 0 || ih >= g.in_h) continue;
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          const int64_t iw = input_index(ow, j, g.stride_w, g.pad_w, g.dil_w);
          if (iw < 0 || iw >= g.in_w) continue;
          sum += static_cast<double>(load(gplane, oh * gys.h + ow * gys.w)) *
                 static_cast<double>(load(xplane, ih * xs.h + iw * xs.w));
        }
      }
    }
    gw[e] = from_acc<T>(static_cast<acc_t<T>>(sum));
  }
}

// ---- v1: tiled ------------------------------------------------------------------------------

constexpr int kTiledMaxThreads = 256;
constexpr int kOutputsPerThread = 8;  // a tile has at most kTiledMaxThreads * 8 outputs
constexpr int64_t kMaxTileH = 32, kMaxTileW = 64, kMinTileW = 8;
constexpr int64_t kTileSmemBytes = 40 * 1024;  // under the 48 KB a block gets by default

// One depthwise convolution from a source tensor to a destination tensor, as the tiled kernel
// sees it. Forward: source x, destination y, destination channel c reads source channel c / m
// with weights row c. Transposed (backward input at stride 1): source gy, destination gx,
// destination channel c sums source channels c*m + k (k < m), each with its own weights
// flipped; the padding is then d*(k-1) - p, which can be negative.
struct TiledParams {
  int64_t batch, dst_channels, multiplier;
  int64_t src_h, src_w, dst_h, dst_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  Strides4 src, dst;
  TileAxis rows, cols;
  bool transposed, relu;
};

template <typename T, int KH, int KW>  // KH = KW = 0: kernel size known at run time only
__global__ void __launch_bounds__(kTiledMaxThreads)
depthwise_tiled_kernel(const T* __restrict__ src, const T* __restrict__ w, const T* __restrict__ bias,
                       T* __restrict__ dst, TiledParams p) {
  using Acc = acc_t<T>;
  ATROUS_DYNAMIC_SMEM(Acc, smem);
  const int kh = KH > 0 ? KH : static_cast<int>(p.kernel_h);
  const int kw = KW > 0 ? KW : static_cast<int>(p.kernel_w);
  const int taps = kh * kw;
  const int sh = static_cast<int>(p.stride_h), sw = static_cast<int>(p.stride_w);
  const int dh = static_cast<int>(p.dil_h), dw = static_cast<int>(p.dil_w);
  Acc* weights = smem;       // [taps]: the taps of the current source channel
  Acc* tile = smem + taps;   // [in_h][in_w]: input tile + halo, zeros in the padding
  const int tid = threadIdx.x, threads = blockDim.x;
  const int64_t tiles = p.rows.count * p.cols.count;
  const int64_t group = p.transposed ? p.multiplier : 1;  // source channels per destination channel

  for (int64_t block = blockIdx.x; block < p.batch * p.dst_channels * tiles; block += gridDim.x) {
    const int64_t plane = block / tiles, t = block % tiles;
    const int64_t n = plane / p.dst_channels, c = plane % p.dst_channels;
    const Range rows = tile_range(t / p.cols.count, p.rows.size, p.dst_h);
    const Range cols = tile_range(t % p.cols.count, p.cols.size, p.dst_w);
    const int th = static_cast<int>(rows.size()), tw = static_cast<int>(cols.size());
    const int in_h = static_cast<int>(input_tile_extent(th, kh, sh, dh));
    const int in_w = static_cast<int>(input_tile_extent(tw, kw, sw, dw));
    const int64_t ih0 = input_index(rows.begin, 0, sh, p.pad_h, dh);  // the tile's top-left input
    const int64_t iw0 = input_index(cols.begin, 0, sw, p.pad_w, dw);

    Acc acc[kOutputsPerThread];
#pragma unroll
    for (int r = 0; r < kOutputsPerThread; ++r) acc[r] = Acc(0);

    for (int64_t k = 0; k < group; ++k) {
      const int64_t sc = p.transposed ? c * p.multiplier + k : c / p.multiplier;  // source channel
      const int64_t wrow = p.transposed ? sc : c;
      for (int q = tid; q < taps; q += threads) {
        weights[q] = load(w, wrow * taps + (p.transposed ? taps - 1 - q : q));  // flipped: (kh-1-i, kw-1-j)
      }
      // Stage the tile: consecutive threads load consecutive columns (coalesced for NCHW).
      const T* splane = src + n * p.src.n + sc * p.src.c;
      for (int q = tid; q < in_h * in_w; q += threads) {
        const int r = q / in_w, col = q - r * in_w;
        const int64_t ih = ih0 + r, iw = iw0 + col;
        tile[q] = (ih >= 0 && ih < p.src_h && iw >= 0 && iw < p.src_w) ? load(splane, ih * p.src.h + iw * p.src.w)
                                                                       : Acc(0);
      }
      __syncthreads();

      // Output q of the tile is (q / tw, q % tw); tap (i, j) reads the tile at a constant
      // offset i*dh*in_w + j*dw from the output's corner: no bounds checks.
      if constexpr (KH > 0) {
        Acc wr[KH * KW];
#pragma unroll
        for (int q = 0; q < KH * KW; ++q) wr[q] = weights[q];
#pragma unroll
        for (int r = 0; r < kOutputsPerThread; ++r) {
          const int q = tid + r * threads;
          if (q < th * tw) {
            const int orow = q / tw, ocol = q - orow * tw;
            const Acc* corner = tile + orow * sh * in_w + ocol * sw;
            Acc sum = acc[r];
#pragma unroll
            for (int i = 0; i < KH; ++i) {
#pragma unroll
              for (int j = 0; j < KW; ++j) sum += wr[i * KW + j] * corner[i * dh * in_w + j * dw];
            }
            acc[r] = sum;
          }
        }
      } else {
#pragma unroll
        for (int r = 0; r < kOutputsPerThread; ++r) {
          const int q = tid + r * threads;
          if (q < th * tw) {
            const int orow = q / tw, ocol = q - orow * tw;
            const Acc* corner = tile + orow * sh * in_w + ocol * sw;
            Acc sum = acc[r];
            for (int i = 0; i < kh; ++i) {
              for (int j = 0; j < kw; ++j) sum += weights[i * kw + j] * corner[i * dh * in_w + j * dw];
            }
            acc[r] = sum;
          }
        }
      }
      __syncthreads();  // the next source channel, or the next tile, overwrites shared memory
    }

    const Acc b = bias ? load(bias, c) : Acc(0);
    T* dplane = dst + n * p.dst.n + c * p.dst.c;
#pragma unroll
    for (int r = 0; r < kOutputsPerThread; ++r) {
      const int q = tid + r * threads;
      if (q < th * tw) {
        const int orow = q / tw, ocol = q - orow * tw;
        Acc v = acc[r] + b;
        if (p.relu && v < Acc(0)) v = Acc(0);
        dplane[(rows.begin + orow) * p.dst.h + (cols.begin + ocol) * p.dst.w] = from_acc<T>(v);
      }
    }
  }
}

// Runs the tiled kernel if its tile plan fits in shared memory; false if it does not.
template <typename T>
bool launch_tiled(const T* src, const T* w, const T* bias, T* dst, TiledParams p, cudaStream_t stream) {
  const int64_t acc = sizeof(acc_t<T>);
  const int64_t taps = p.kernel_h * p.kernel_w;
  const int64_t budget = kTileSmemBytes / acc - taps;  // elements left for the input tile
  if (budget < 1) return false;
  const DepthwiseTilePlan plan = plan_depthwise_tiles(p.dst_h, p.dst_w, p.kernel_h, p.kernel_w, p.stride_h,
                                                      p.stride_w, p.dil_h, p.dil_w, kMaxTileH, kMaxTileW,
                                                      kMinTileW, budget);
  if (!plan.fits) return false;
  p.rows = plan.rows;
  p.cols = plan.cols;
  // About 4 outputs per thread, in whole warps, 64 to 256 threads (a 32 x 64 tile: 8 each).
  const int64_t outputs = plan.rows.size * plan.cols.size;
  const int64_t threads = std::min<int64_t>(kTiledMaxThreads, std::max<int64_t>(64, (outputs / 4 + 31) / 32 * 32));
  if (outputs > threads * kOutputsPerThread) return false;  // cannot happen with the limits above
  const size_t smem = static_cast<size_t>((taps + plan.in_h * plan.in_w) * acc);
  const int64_t blocks = std::min(p.batch * p.dst_channels * plan.rows.count * plan.cols.count, kMaxBlocks);
  if (p.kernel_h == 3 && p.kernel_w == 3) {
    launch(depthwise_tiled_kernel<T, 3, 3>, blocks, static_cast<int>(threads), smem, stream, src, w, bias, dst, p);
  } else if (p.kernel_h == 5 && p.kernel_w == 5) {
    launch(depthwise_tiled_kernel<T, 5, 5>, blocks, static_cast<int>(threads), smem, stream, src, w, bias, dst, p);
  } else {
    launch(depthwise_tiled_kernel<T, 0, 0>, blocks, static_cast<int>(threads), smem, stream, src, w, bias, dst, p);
  }
  return true;
}

// ---- v1: backward weight, two deterministic passes ------------------------------------------

constexpr int kReduceThreads = 256;  // a power of two (block_sum)
constexpr int kGenericTapGroup = 8;  // taps per block when the kernel size is known at run time

// Pass 1: partials[(oc * taps + t) * chunks + chunk] = sum over the chunk's (n, oh, ow) of
// gy[n, oc, oh, ow] * x[n, oc / m, ih, iw] for the taps t of the block's group.
template <typename T, int KH, int KW>
__global__ void __launch_bounds__(kReduceThreads)
depthwise_weight_partials_kernel(const T* __restrict__ gy, Strides4 gys, const T* __restrict__ x, Strides4 xs,
                                 acc_t<T>* __restrict__ partials, ConvGeometry g, int64_t chunks,
                                 int64_t chunk_len) {
  using Acc = acc_t<T>;
  constexpr int G = KH > 0 ? KH * KW : kGenericTapGroup;  // taps summed in registers per block
  constexpr int KWC = KW > 0 ? KW : 1;  // KW as a divisor (unused when KW is 0)
  __shared__ Acc scratch[kReduceThreads];
  // 32-bit index arithmetic (the launcher sends N*H_out*W_out of 2^31 terms or more, and grids
  // of 2^31 blocks or more, to the naive kernel): a 64-bit division is a subroutine call, and
  // with them the kernel spilled registers (python -m atrous.info --cuda-resources).
  const uint32_t taps = static_cast<uint32_t>(g.kernel_h * g.kernel_w);
  const uint32_t groups = KH > 0 ? 1u : (taps + G - 1) / G;
  const uint32_t plane = static_cast<uint32_t>(g.out_h * g.out_w), total = plane * static_cast<uint32_t>(g.batch);
  const uint32_t m = static_cast<uint32_t>(g.out_channels / g.in_channels);
  const uint32_t chunks32 = static_cast<uint32_t>(chunks), chunk_len32 = static_cast<uint32_t>(chunk_len);
  const uint32_t out_w32 = static_cast<uint32_t>(g.out_w);
  for (uint32_t block = blockIdx.x; block < static_cast<uint32_t>(g.out_channels) * groups * chunks32;
       block += gridDim.x) {
    const uint32_t chunk = block % chunks32, group = (block / chunks32) % groups, oc = block / (chunks32 * groups);
    const uint32_t t0 = group * G;
    Acc acc[G];
#pragma unroll
    for (int tt = 0; tt < G; ++tt) acc[tt] = Acc(0);
    const uint32_t base = chunk * chunk_len32, end = std::min(total, base + chunk_len32);
    // e = n * plane + p, walked by blockDim.x: one division per chunk, then n and p advance.
    uint32_t p = base % plane + threadIdx.x, n = base / plane;
    n += p / plane;
    p %= plane;
    for (uint32_t e = base + threadIdx.x; e < end; e += blockDim.x) {
      const uint32_t oh = p / out_w32, ow = p - oh * out_w32;
      const Acc grad = load(gy, n * gys.n + oc * gys.c + oh * gys.h + ow * gys.w);
      const T* xplane = x + n * xs.n + (oc / m) * xs.c;
#pragma unroll
      for (int tt = 0; tt < G; ++tt) {
        const uint32_t t = t0 + tt;
        if (KH == 0 && t >= taps) break;
        const uint32_t kw32 = static_cast<uint32_t>(g.kernel_w);
        const int64_t i = KH > 0 ? tt / KWC : t / kw32, j = KH > 0 ? tt % KWC : t % kw32;
        const int64_t ih = input_index(oh, i, g.stride_h, g.pad_h, g.dil_h);
        const int64_t iw = input_index(ow, j, g.stride_w, g.pad_w, g.dil_w);
        if (ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w) acc[tt] += grad * load(xplane, ih * xs.h + iw * xs.w);
      }
      p += blockDim.x;
      if (p >= plane) {
        n += p / plane;
        p %= plane;
      }
    }
#pragma unroll
    for (int tt = 0; tt < G; ++tt) {
      const Acc sum = block_sum(acc[tt], scratch);
      if (threadIdx.x == 0 && t0 + tt < taps) partials[(int64_t{oc} * taps + t0 + tt) * chunks + chunk] = sum;
    }
  }
}

}  // namespace

// ---- launchers ------------------------------------------------------------------------------

void depthwise_forward(DepthwiseRung rung, DType dtype, const void* x, Strides4 xs, const void* w,
                       const void* bias, void* y, Strides4 ys, const ConvGeometry& g, bool relu,
                       cudaStream_t stream) {
  if (g.batch * g.out_channels * g.out_h * g.out_w == 0) return;
  ATROUS_CUDA_DISPATCH(dtype, {
    const T* xp = static_cast<const T*>(x);
    const T* wp = static_cast<const T*>(w);
    const T* bp = static_cast<const T*>(bias);
    T* yp = static_cast<T*>(y);
    if (rung == DepthwiseRung::Tiled) {
      TiledParams p{};
      p.batch = g.batch;
      p.dst_channels = g.out_channels;
      p.multiplier = g.out_channels / g.in_channels;
      p.src_h = g.in_h, p.src_w = g.in_w, p.dst_h = g.out_h, p.dst_w = g.out_w;
      p.kernel_h = g.kernel_h, p.kernel_w = g.kernel_w;
      p.stride_h = g.stride_h, p.stride_w = g.stride_w, p.pad_h = g.pad_h, p.pad_w = g.pad_w;
      p.dil_h = g.dil_h, p.dil_w = g.dil_w;
      p.src = xs, p.dst = ys;
      p.transposed = false, p.relu = relu;
      if (launch_tiled<T>(xp, wp, bp, yp, p, stream)) return;
    }
    const int64_t total = g.batch * g.out_channels * g.out_h * g.out_w;
    launch(depthwise_naive_forward_kernel<T>, blocks_for(total, 256), 256, 0, stream, xp, xs, wp, bp, yp, ys, g, relu);
  });
}

void depthwise_backward_input(DepthwiseRung rung, DType dtype, const void* gy, Strides4 gys,
                              const void* w, void* gx, Strides4 gxs, const ConvGeometry& g,
                              cudaStream_t stream) {
  if (g.batch * g.in_channels * g.in_h * g.in_w == 0) return;
  ATROUS_CUDA_DISPATCH(dtype, {
    const T* gyp = static_cast<const T*>(gy);
    const T* wp = static_cast<const T*>(w);
    T* gxp = static_cast<T*>(gx);
    if (rung == DepthwiseRung::Tiled && g.stride_h == 1 && g.stride_w == 1) {
      // gx = depthwise(gy, flipped w) with padding d*(k-1) - p, stride 1: see the file comment.
      TiledParams p{};
      p.batch = g.batch;
      p.dst_channels = g.in_channels;
      p.multiplier = g.out_channels / g.in_channels;
      p.src_h = g.out_h, p.src_w = g.out_w, p.dst_h = g.in_h, p.dst_w = g.in_w;
      p.kernel_h = g.kernel_h, p.kernel_w = g.kernel_w;
      p.stride_h = 1, p.stride_w = 1;
      p.pad_h = halo_extent(g.kernel_h, g.dil_h) - g.pad_h;
      p.pad_w = halo_extent(g.kernel_w, g.dil_w) - g.pad_w;
      p.dil_h = g.dil_h, p.dil_w = g.dil_w;
      p.src = gys, p.dst = gxs;
      p.transposed = true, p.relu = false;
      if (launch_tiled<T>(gyp, wp, static_cast<const T*>(nullptr), gxp, p, stream)) return;
    }
    const int64_t total = g.batch * g.in_channels * g.in_h * g.in_w;
    launch(depthwise_gather_backward_input_kernel<T>, blocks_for(total, 256), 256, 0, stream, gyp, gys, wp, gxp,
           gxs, g);
  });
}

int64_t depthwise_backward_weight_workspace(DepthwiseRung rung, DType dtype, const ConvGeometry& g) {
  if (rung == DepthwiseRung::Naive) return 0;
  const Chunking c = reduction_chunks(g.batch * g.out_h * g.out_w);
  return g.out_channels * g.kernel_h * g.kernel_w * c.chunks * acc_bytes(dtype);
}

void depthwise_backward_weight(DepthwiseRung rung, DType dtype, const void* gy, Strides4 gys,
                               const void* x, Strides4 xs, void* gw, void* workspace,
                               const ConvGeometry& g, cudaStream_t stream) {
  // The caller zero-fills gw when the reduction is empty (N = 0).
  if (g.batch * g.out_h * g.out_w == 0 || g.out_channels == 0) return;
  ATROUS_CUDA_DISPATCH(dtype, {
    const T* gyp = static_cast<const T*>(gy);
    const T* xp = static_cast<const T*>(x);
    T* gwp = static_cast<T*>(gw);
    const int64_t taps = g.kernel_h * g.kernel_w;
    // The partials kernel indexes with 32 bits: 2^31 terms or more, or as many blocks, take the
    // naive kernel.
    const Chunking c = reduction_chunks(g.batch * g.out_h * g.out_w);
    const int64_t limit = int64_t{1} << 31;
    if (rung == DepthwiseRung::Naive || g.batch * g.out_h * g.out_w >= limit ||
        g.out_channels * taps * c.chunks >= limit) {
      launch(depthwise_naive_backward_weight_kernel<T>, blocks_for(g.out_channels * taps, 128), 128, 0, stream,
             gyp, gys, xp, xs, gwp, g);
      return;
    }
    using Acc = acc_t<T>;
    Acc* partials = static_cast<Acc*>(workspace);
    if (g.kernel_h == 3 && g.kernel_w == 3) {
      launch(depthwise_weight_partials_kernel<T, 3, 3>, std::min(g.out_channels * c.chunks, kMaxBlocks),
             kReduceThreads, 0, stream, gyp, gys, xp, xs, partials, g, c.chunks, c.chunk_len);
    } else if (g.kernel_h == 5 && g.kernel_w == 5) {
      launch(depthwise_weight_partials_kernel<T, 5, 5>, std::min(g.out_channels * c.chunks, kMaxBlocks),
             kReduceThreads, 0, stream, gyp, gys, xp, xs, partials, g, c.chunks, c.chunk_len);
    } else {
      const int64_t groups = ceil_div(taps, kGenericTapGroup);
      launch(depthwise_weight_partials_kernel<T, 0, 0>, std::min(g.out_channels * groups * c.chunks, kMaxBlocks),
             kReduceThreads, 0, stream, gyp, gys, xp, xs, partials, g, c.chunks, c.chunk_len);
    }
    sum_partials(dtype, partials, g.out_channels * taps, c.chunks, gwp, stream);
  });
}

}  // namespace atrous::cuda
