"""Solutions to the exercises of tutorial 3 (writing the CPU kernel); run it to check them.

Exercise 2 compiles a C++ kernel with load_inline (about 15 s on 2 cores).
"""

import tempfile
import warnings

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch.utils.cpp_extension import load_inline

import atrous.ops as ops


def out_size(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def tap_output_range(n_in, n_out, s, p, d, t):
    offset = t * d - p
    begin = min(n_out, max(0, -((offset) // s)))  # ceil(-offset / s) = -floor(offset / s)
    end = min(n_out, (n_in - 1 - offset) // s + 1)
    return begin, max(begin, end)


# 1. W = 12, k = 3, s = 3, p = 4, d = 4: W_out = (12 + 8 - 9) // 3 + 1 = 4.
#    Tap 0 reads 3o - 4: >= 0 for o >= 2, <= 11 for o <= 5, so [2, 4).
#    Tap 1 reads 3o: <= 11 for o <= 3, so [0, 4).
#    Tap 2 reads 3o + 4: <= 11 for o <= 2, so [0, 3).
assert out_size(12, 3, 3, 4, 4) == 4
assert [tap_output_range(12, 4, 3, 4, 4, t) for t in range(3)] == [(2, 4), (0, 4), (0, 3)]
for t in range(3):
    valid = [o for o in range(4) if 0 <= 3 * o - 4 + 4 * t < 12]
    assert valid == list(range(*tap_output_range(12, 4, 3, 4, 4, t)))

# 2. The rows idea in C++: the row taps and the column interval of each tap are computed once per
#    output row / per call, so the inner loop has no branch.
ROWS_KERNEL = r"""
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// [begin, end) of the outputs o in [0, out) whose tap t reads inside [0, in).
std::pair<int64_t, int64_t> tap_range(int64_t in, int64_t out, int64_t s, int64_t p, int64_t d, int64_t t) {
  const int64_t offset = t * d - p;
  const int64_t begin = std::min(out, std::max<int64_t>(0, ceil_div(-offset, s)));
  const int64_t end = std::min(out, floor_div(in - 1 - offset, s) + 1);
  return {begin, std::max(begin, end)};
}

template <typename T>
void forward(const T* x, const T* w, T* y, int64_t n_, int64_t c, int64_t co, int64_t h, int64_t wd,
             int64_t k, int64_t ho, int64_t wo, int64_t s, int64_t p, int64_t d) {
  const int64_t m = co / c;
  std::vector<std::pair<int64_t, int64_t>> rows(k), cols(k);
  for (int64_t t = 0; t < k; ++t) {
    rows[t] = tap_range(h, ho, s, p, d, t);
    cols[t] = tap_range(wd, wo, s, p, d, t);
  }
  for (int64_t n = 0; n < n_; ++n)
    for (int64_t o = 0; o < co; ++o) {
      const T* plane = x + (n * c + o / m) * h * wd;
      T* out = y + (n * co + o) * ho * wo;
      std::fill(out, out + ho * wo, T(0));
      for (int64_t i = 0; i < k; ++i)
        for (int64_t oh = rows[i].first; oh < rows[i].second; ++oh) {
          const T* in_row = plane + (oh * s - p + i * d) * wd;
          for (int64_t j = 0; j < k; ++j) {
            const T wv = w[(o * k + i) * k + j];
            const int64_t offset = j * d - p;
            for (int64_t ow = cols[j].first; ow < cols[j].second; ++ow)  // no bounds check
              out[oh * wo + ow] += wv * in_row[ow * s + offset];
          }
        }
    }
}

at::Tensor depthwise_rows(const at::Tensor& input, const at::Tensor& weight, int64_t s, int64_t p,
                          int64_t d) {
  TORCH_CHECK(input.dim() == 4 && weight.dim() == 4 && weight.size(1) == 1 &&
              weight.size(2) == weight.size(3), "expected input (N, C, H, W) and weight (C*m, 1, k, k)");
  const at::Tensor x = input.contiguous(), w = weight.contiguous();
  const int64_t k = w.size(2), ke = d * (k - 1) + 1;
  const int64_t ho = (x.size(2) + 2 * p - ke) / s + 1, wo = (x.size(3) + 2 * p - ke) / s + 1;
  at::Tensor y = at::empty({x.size(0), w.size(0), ho, wo}, x.options());
  TORCH_CHECK(x.scalar_type() == at::kDouble && w.scalar_type() == at::kDouble, "expected float64");
  forward(x.const_data_ptr<double>(), w.const_data_ptr<double>(), y.mutable_data_ptr<double>(), x.size(0),
          x.size(1), w.size(0), x.size(2), x.size(3), k, ho, wo, s, p, d);
  return y;
}

TORCH_LIBRARY(tutorial02_solutions, m) {
  m.def("depthwise_rows(Tensor input, Tensor weight, int s, int p, int d) -> Tensor");
}
TORCH_LIBRARY_IMPL(tutorial02_solutions, CPU, m) { m.impl("depthwise_rows", &depthwise_rows); }
"""

load_inline("tutorial02_solutions_rows", ROWS_KERNEL, extra_cflags=["-O2"],
            build_directory=tempfile.mkdtemp(prefix="atrous-tutorial02-solutions-"), with_cuda=False,
            is_python_module=False, no_implicit_headers=True, verbose=False)
depthwise_rows = torch.ops.tutorial02_solutions.depthwise_rows


@settings(derandomize=True, max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.filter_too_much])
@given(n=st.integers(0, 2), c=st.integers(1, 3), m=st.integers(1, 2), h=st.integers(1, 12),
       wd=st.integers(1, 12), k=st.integers(1, 5), s=st.integers(1, 3), p=st.integers(0, 6),
       d=st.integers(1, 4), seed=st.integers(0, 2**16))
def rows_matches_pytorch(n, c, m, h, wd, k, s, p, d, seed):
    assume(out_size(h, k, s, p, d) >= 1 and out_size(wd, k, s, p, d) >= 1)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, wd, dtype=torch.float64, generator=gen)
    w = torch.randn(c * m, 1, k, k, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(depthwise_rows(x, w, s, p, d), F.conv2d(x, w, None, s, p, d, groups=c))


rows_matches_pytorch()

# 3. At stride 1 the pitch is W + 2p = 33 + 2r for rate r ("same" padding p = r); W_out = 33 is kept.
waste = {r: 2 * r / (33 + 2 * r) for r in (6, 12, 18)}
assert [round(100 * waste[r]) for r in (6, 12, 18)] == [27, 42, 52]
#    The rows and nhwc rungs compute only the W_out real outputs, and only the taps inside the
#    image (tap intervals); the stencil trades that work for branch-free, constant-shift loads.

# 4. gradcheck in float32 fails: the central difference (y(x + eps) - y(x - eps)) / (2 eps) with
#    eps = 1e-6 is below float32's resolution (about 1.2e-7 relative, so 1e-6 is a few ulps of
#    values of order 1): the numerical Jacobian is mostly rounding error.
x = torch.randn(1, 3, 7, 6, requires_grad=True)
w = torch.randn(3, 1, 3, 2, requires_grad=True)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # gradcheck warns that the inputs are not float64
    assert not torch.autograd.gradcheck(lambda x, w: ops.depthwise_conv2d(x, w, None, 1, 1, 1), (x, w),
                                        raise_exception=False)
assert torch.autograd.gradcheck(lambda x, w: ops.depthwise_conv2d(x, w, None, 1, 1, 1),
                                (x.double().detach().requires_grad_(), w.double().detach().requires_grad_()))
# 5. Design: at rate 40 on a 33x33 map every off-centre tap of every output lands in the padding (the
#    map ends 33 pixels from any output, the tap is 40 away): the layer is a 1x1 conv, the centre weight
#    times the input. `naive` checks the bounds of every tap and skips them; `rows` and `stencil` use
#    tap intervals, so an empty interval skips the whole tap with no per-pixel work. Checked:
x40 = torch.randn(1, 4, 33, 33)
w40 = torch.randn(4, 1, 3, 3)
centre_only = x40 * w40[:, :, 1, 1].view(1, 4, 1, 1)
for algo in ("naive", "rows", "stencil"):
    torch.testing.assert_close(ops.depthwise_conv2d(x40, w40, None, 1, 40, 40, algo=algo), centre_only)
print("all solutions check out")
