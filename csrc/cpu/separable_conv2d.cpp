// CPU fused separable convolution (inference): depthwise -> bias -> ReLU -> pointwise -> bias.
//
// Unfused, the depthwise output (N x C x H x W) is written to memory and read back by the
// pointwise GEMM. Here each thread takes a tile of output pixels, computes their depthwise
// outputs for all channels into a buffer sized to stay in its L2 cache (the nhwc rung's pixel
// loop), and multiplies that tile by the pointwise weight right away (the blocked GEMM, run
// serially inside the tile). The intermediate never exists in full. Channels_last internally;
// the output follows the input's layout like every op.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <vector>

#include "../common/checks.h"
#include "conv_gemm.h"
#include "cpu_utils.h"
#include "depthwise_rungs.h"
#include "gemm.h"
#include "kernel_support.h"

namespace atrous::cpu {
namespace {

constexpr const char* kOp = "atrous.separable_conv2d";

// Output pixels per tile: the depthwise tile (pixels x channels) should fit in about 256 KB,
// half of a typical per-core L2, leaving room for the GEMM's packed panels.
int64_t tile_pixels(int64_t channels, int64_t elem_size) {
  const int64_t budget = 256 * 1024 / elem_size;
  return std::clamp<int64_t>(budget / channels / 16 * 16, 16, 512);
}

at::Tensor separable_forward(const at::Tensor& input, const at::Tensor& dw_weight,
                             const std::optional<at::Tensor>& dw_bias, const at::Tensor& pw_weight,
                             const std::optional<at::Tensor>& pw_bias, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation,
                             c10::string_view activation) {
  const ConvGeometry g = check_separable(kOp, input, dw_weight, dw_bias, pw_weight, pw_bias, stride,
                                         padding, dilation, std::string_view(activation.data(), activation.size()));
  check_cpu(kOp, input);
  const bool relu = activation == "relu";
  const int64_t mid = g.out_channels, out_channels = pw_weight.size(0);
  const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);  // (N, H, W, C) in memory
  const at::Tensor dw = dw_weight.contiguous();                            // (C*m, 1, kh, kw)
  const at::Tensor pw = pw_weight.contiguous();                            // (C_out, C*m, 1, 1)
  const bool has_dw_bias = dw_bias.has_value() && dw_bias->defined();
  const bool has_pw_bias = pw_bias.has_value() && pw_bias->defined();
  const at::Tensor db = has_dw_bias ? dw_bias->contiguous() : at::Tensor();
  const at::Tensor pb = has_pw_bias ? pw_bias->contiguous() : at::Tensor();
  at::Tensor out = at::empty({g.batch, out_channels, g.out_h, g.out_w},
                             x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const std::vector<Range> cols = tap_column_ranges(g);
  const int64_t pixels = g.out_h * g.out_w;

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "separable_conv2d_cpu", [&] {
    using T = scalar_t;
    const std::vector<T> wt = depthwise::nhwc::transpose_weight(dw.const_data_ptr<T>(), mid, g.kernel_h * g.kernel_w);
    // Tiles of at most tile_pixels, evenly sized and balanced over the threads.
    const int64_t most = tile_pixels(mid, sizeof(T));
    const int64_t tiles_per_image = balanced_pieces((pixels + most - 1) / most, pixels, g.batch);
    const int64_t tile = tiles_per_image > 0 ? (pixels + tiles_per_image - 1) / tiles_per_image : 0;
    const T* xp = x.const_data_ptr<T>();
    const T* pwp = pw.const_data_ptr<T>();
    const T* pbp = has_pw_bias ? pb.const_data_ptr<T>() : nullptr;
    T* op = out.mutable_data_ptr<T>();
    // W^T as the GEMM's B (C*m x C_out), packed once for all tiles: element (k, j) = pw[j, k].
    const PackedB<T> pw_t = pack_b<T>(mid, out_channels, MatrixView<T>{pwp, mid, 1}.transposed());
    at::parallel_for(0, g.batch * tiles_per_image, 1, [&](int64_t begin, int64_t end) {
      std::vector<T> mid_tile(tile * mid);  // (pixels, C*m): the intermediate, in cache
      for (int64_t task = begin; task < end; ++task) {
        const int64_t n = task / tiles_per_image;
        const int64_t t = task % tiles_per_image;  // pixels t*P/T .. (t+1)*P/T: at most `tile`
        const int64_t q0 = t * pixels / tiles_per_image, q1 = (t + 1) * pixels / tiles_per_image;
        depthwise::nhwc::forward_pixels(xp, wt.data(), has_dw_bias ? db.const_data_ptr<T>() : nullptr, g,
                                        cols, n, q0, q1, mid_tile.data(), mid, relu);
        T* dst = op + (n * pixels + q0) * out_channels;  // (pixels, C_out) rows of the NHWC output
        // Inside this parallel region the GEMM runs on this thread alone. The pointwise bias (one
        // per output channel, a column of this tile) starts its sums.
        gemm_packed<T>(q1 - q0, {mid_tile.data(), mid, 1}, pw_t, {dst, out_channels, 1}, /*accumulate=*/false,
                       Epilogue<T>{nullptr, pbp, false});
      }
    });
  });
  return out.contiguous(output_memory_format(input, pw_weight));
}

}  // namespace

TORCH_LIBRARY_IMPL(atrous, CPU, m) {
  m.impl("separable_conv2d", &separable_forward);
}

}  // namespace atrous::cpu
