// Small helpers shared by the CPU kernels: device check, parallel grain, output layout.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <vector>

#include "../common/checks.h"
#include "../common/conv_index.h"

namespace atrous::cpu {

inline void check_cpu(const char* op, const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu(), op, ": the CPU kernel got a tensor on ", t.device());
}

// at::parallel_for grain (minimum iterations per task) for iterations of `work` multiply-adds
// each, so tiny planes are batched into one task instead of paying a thread hand-off each.
// 32768 is ATen's own grain size for elementwise loops.
inline int64_t grain_for(int64_t work) {
  constexpr int64_t kGrain = 32768;
  return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, work));
}

// Kernels compute NCHW; this applies the documented output layout rule (checks.h).
inline at::Tensor to_output_format(const at::Tensor& out, const at::Tensor& ref) {
  const auto format = output_memory_format(ref);
  return format == at::MemoryFormat::Contiguous ? out : out.contiguous(format);
}

// Column interval of every horizontal tap j (see tap_output_range).
inline std::vector<Range> tap_column_ranges(const ConvGeometry& g) {
  std::vector<Range> ranges(g.kernel_w);
  for (int64_t j = 0; j < g.kernel_w; ++j) {
    ranges[j] = tap_output_range(g.in_w, g.out_w, g.stride_w, g.pad_w, g.dil_w, j);
  }
  return ranges;
}

}  // namespace atrous::cpu
