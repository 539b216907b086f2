// Small kernels that exercise one warp feature of the CPU emulator each, correct and with a planted
// bug: torch.ops.atrous_emu_probes.* (emulation build only; tests/cuda/test_cuda_emulation_warp.py).
//
// Every probe is written as it would be for a GPU, with the same helpers the real kernels use
// (csrc/cuda/warp_ops.cuh); `bug` switches on a mistake that is wrong on hardware, and the
// emulator must turn it into a wrong result or an error.
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cmath>
#include <string>
#include <type_traits>

#include "csrc/cuda/cuda_common.cuh"
#include "csrc/cuda/warp_ops.cuh"

namespace atrous::cuda {
namespace {

// Each warp sums its 32 values. Correct: a butterfly of __shfl_xor_sync. Bug: the pre-Volta
// "warp-synchronous" shared-memory tree with no __syncwarp() between its steps, which relies on
// the lanes running in lockstep.
__global__ void warp_sum_kernel(const float* x, float* out, bool bug) {
  __shared__ float s[64];
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  float v = x[threadIdx.x];
  if (!bug) {
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  } else {
    s[threadIdx.x] = v;
    for (unsigned offset = 16; offset > 0; offset /= 2) {
      if (lane < offset) s[threadIdx.x] += s[threadIdx.x + offset];  // no __syncwarp(): a race
    }
    v = s[warp * 32];
  }
  if (lane == 0) out[warp] = v;
}

at::Tensor warp_sum(const at::Tensor& x, bool bug) {
  TORCH_CHECK(x.numel() == 64 && x.scalar_type() == at::kFloat, "warp_sum: expected 64 float32 values");
  const at::Tensor in = x.contiguous();
  at::Tensor out = at::empty({2}, x.options());
  launch(warp_sum_kernel, 1, 64, 0, nullptr, in.const_data_ptr<float>(), out.mutable_data_ptr<float>(), bug);
  return out;
}

// out[lane] = the value lane `lane` receives from a shuffle of x in the given mode.
__global__ void shuffle_kernel(const float* x, float* out, int mode, int arg, int width) {
  const float v = x[threadIdx.x];
  float r = v;
  if (mode == 0) r = __shfl_sync(0xFFFFFFFFu, v, arg, width);
  if (mode == 1) r = __shfl_up_sync(0xFFFFFFFFu, v, static_cast<unsigned>(arg), width);
  if (mode == 2) r = __shfl_down_sync(0xFFFFFFFFu, v, static_cast<unsigned>(arg), width);
  if (mode == 3) r = __shfl_xor_sync(0xFFFFFFFFu, v, arg, width);
  out[threadIdx.x] = r;
}

at::Tensor shuffle(const at::Tensor& x, c10::string_view mode, int64_t arg, int64_t width) {
  TORCH_CHECK(x.numel() == 32 && x.scalar_type() == at::kFloat, "shuffle: expected 32 float32 values");
  const std::string m(mode);
  const int code = m == "idx" ? 0 : m == "up" ? 1 : m == "down" ? 2 : m == "xor" ? 3 : -1;
  TORCH_CHECK(code >= 0, "shuffle: expected mode idx, up, down or xor, got '", m, "'");
  const at::Tensor in = x.contiguous();
  at::Tensor out = at::empty({32}, x.options());
  launch(shuffle_kernel, 1, 32, 0, nullptr, in.const_data_ptr<float>(), out.mutable_data_ptr<float>(), code,
         static_cast<int>(arg), static_cast<int>(width));
  return out;
}

// Lanes 0..15 shuffle among themselves (mask 0xFFFF, width 16) while lanes 16..31 go straight
// to the barrier. Bug: the mask names the whole warp, so lanes 0..15 wait for lanes that wait at
// __syncthreads(): a deadlock on hardware, an error in the emulator.
__global__ void partial_mask_kernel(float* out, bool bug) {
  const unsigned lane = threadIdx.x;
  if (lane < 16) out[lane] = __shfl_down_sync(bug ? 0xFFFFFFFFu : 0xFFFFu, static_cast<float>(lane), 1, 16);
  __syncthreads();
}

at::Tensor partial_mask(bool bug) {
  at::Tensor out = at::zeros({32}, at::kFloat);
  launch(partial_mask_kernel, 1, 32, 0, nullptr, out.mutable_data_ptr<float>(), bug);
  return out;
}

// One warp computes D (16 x 8) = A (16 x K) @ B (K x 8) + C with one mma.sync, loading its
// fragments from row-major A, B, C by the PTX ISA's layout. Bug: a1 and a2 swapped (rows 8..15
// and columns 4..7 of A trade places), the most common fragment mistake.
template <int Kind>
__global__ void mma_kernel(const float* a, const float* b, const float* c, float* d, bool bug) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  uint32_t fa[4], fb[2];
  float fc[4], fd[4];
  if constexpr (Kind == 0) {  // m16n8k8 tf32: a_i = A[g + 8*(i%2)][t + 4*(i/2)], b_i = B[t + 4i][g]
    for (int i = 0; i < 4; ++i) fa[i] = to_tf32(a[(g + 8 * (i % 2)) * 8 + t + 4 * (i / 2)]);
    for (int i = 0; i < 2; ++i) fb[i] = to_tf32(b[(t + 4 * i) * 8 + g]);
  } else {  // m16n8k16: half j of the a registers is A[g + 8*((j/2)%2)][2t + j%2 + 8*(j/4)]
    using H = std::conditional_t<Kind == 1, __half, __nv_bfloat16>;
    auto h = [](float v) { return from_acc<H>(v); };
    for (int r = 0; r < 4; ++r) {
      const int row = g + 8 * (r % 2), col = 2 * t + 8 * (r / 2);
      fa[r] = pack2(h(a[row * 16 + col]), h(a[row * 16 + col + 1]));
    }
    for (int r = 0; r < 2; ++r) {
      const int row = 2 * t + 8 * r;
      fb[r] = pack2(h(b[row * 8 + g]), h(b[(row + 1) * 8 + g]));
    }
  }
  for (int i = 0; i < 4; ++i) fc[i] = c[(g + 8 * (i / 2)) * 8 + 2 * t + i % 2];
  if (bug) std::swap(fa[1], fa[2]);
  if constexpr (Kind == 0) {
    mma_tf32_m16n8k8(fd, fa, fb, fc);
  } else {
    mma_16bit_m16n8k16<std::conditional_t<Kind == 1, __half, __nv_bfloat16>>(fd, fa, fb, fc);
  }
  for (int i = 0; i < 4; ++i) d[(g + 8 * (i / 2)) * 8 + 2 * t + i % 2] = fd[i];
}

at::Tensor mma(const at::Tensor& a, const at::Tensor& b, const at::Tensor& c, c10::string_view kind, bool bug) {
  const std::string k(kind);
  const int code = k == "tf32" ? 0 : k == "f16" ? 1 : k == "bf16" ? 2 : -1;
  TORCH_CHECK(code >= 0, "mma: expected kind tf32, f16 or bf16, got '", k, "'");
  const int64_t K = code == 0 ? 8 : 16;
  TORCH_CHECK(a.sizes() == at::IntArrayRef({16, K}) && b.sizes() == at::IntArrayRef({K, 8}) &&
                  c.sizes() == at::IntArrayRef({16, 8}) && a.scalar_type() == at::kFloat,
              "mma: expected float32 A (16 x ", K, "), B (", K, " x 8), C (16 x 8)");
  const at::Tensor A = a.contiguous(), B = b.contiguous(), C = c.contiguous();
  at::Tensor D = at::empty({16, 8}, a.options());
  auto* kernel = code == 0 ? mma_kernel<0> : code == 1 ? mma_kernel<1> : mma_kernel<2>;
  launch(kernel, 1, 32, 0, nullptr, A.const_data_ptr<float>(), B.const_data_ptr<float>(), C.const_data_ptr<float>(),
         D.mutable_data_ptr<float>(), bug);
  return D;
}

// 64 threads stage x (n floats, a multiple of 4) in shared memory with 16-byte cp.async copies,
// zero-filling up to 256 floats, then write the tile out rotated by one chunk (thread i writes
// what thread i + 1 copied, so the barrier matters too). bug 1: no wait_group before the
// barrier; bug 2: the wait waits for all groups but one, and the copy is the newest group.
__global__ void cp_async_kernel(const float* x, int n, float* out, int bug) {
  __shared__ __align__(16) float tile[256];
  const int chunk = threadIdx.x;  // 64 chunks of 4 floats
  const bool inside = chunk * 4 < n;
  for (int i = 0; i < 4; ++i) tile[chunk * 4 + i] = NAN;  // what a missing wait would leave
  cp_async_16(&tile[chunk * 4], inside ? x + chunk * 4 : x, inside ? 16 : 0);
  cp_async_commit();
  if (bug == 0) cp_async_wait<0>();
  if (bug == 2) cp_async_wait<1>();
  __syncthreads();
  const int from = (chunk + 1) % 64;
  for (int i = 0; i < 4; ++i) out[chunk * 4 + i] = tile[from * 4 + i];
}

at::Tensor cp_async_copy(const at::Tensor& x, int64_t bug) {
  TORCH_CHECK(x.dim() == 1 && x.numel() % 4 == 0 && x.numel() <= 256 && x.scalar_type() == at::kFloat,
              "cp_async_copy: expected at most 256 float32 values, a multiple of 4");
  const at::Tensor in = x.contiguous();
  at::Tensor out = at::empty({256}, x.options());
  launch(cp_async_kernel, 1, 64, 0, nullptr, in.const_data_ptr<float>(), static_cast<int>(x.numel()),
         out.mutable_data_ptr<float>(), static_cast<int>(bug));
  return out;
}

}  // namespace

TORCH_LIBRARY(atrous_emu_probes, m) {
  m.def("warp_sum(Tensor x, bool bug) -> Tensor", &warp_sum);
  m.def("shuffle(Tensor x, str mode, int arg, int width) -> Tensor", &shuffle);
  m.def("partial_mask(bool bug) -> Tensor", &partial_mask);
  m.def("mma(Tensor a, Tensor b, Tensor c, str kind, bool bug) -> Tensor", &mma);
  m.def("cp_async_copy(Tensor x, int bug) -> Tensor", &cp_async_copy);
}

}  // namespace atrous::cuda
