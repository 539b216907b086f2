// Correctness driver of the CPU kernel cores without torch: every compiled instruction set's
// GEMM and depthwise rungs against plain loops, on the shapes that catch bugs (dilation,
// stride, odd sizes, vector tails, depth multiplier). Built with -DATROUS_STANDALONE together
// with csrc/cpu/isa_<set>.cpp; test_arm64_driver.py cross-compiles it for ARM64 and runs it
// under qemu-user, so the NEON path is checked on a machine without ARM hardware.
// Prints one line per failure and "ok: <n> checks" at the end; exit status 1 on any failure.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "../../csrc/cpu/isa_prelude.h"

#define ATROUS_ISA_NS isa_generic
#include "../../csrc/cpu/isa_kernels.h"
#undef ATROUS_ISA_NS
#if defined(__aarch64__)
#define ATROUS_ISA_NS isa_neon
#include "../../csrc/cpu/isa_kernels.h"
#undef ATROUS_ISA_NS
#elif defined(__x86_64__)
#define ATROUS_ISA_NS isa_avx2
#include "../../csrc/cpu/isa_kernels.h"
#undef ATROUS_ISA_NS
#endif

namespace {

using atrous::ConvGeometry;
using atrous::cpu::MatrixView;
using atrous::cpu::MutableMatrixView;

int g_checks = 0, g_failures = 0;

template <typename T>
void expect_close(const std::vector<T>& got, const std::vector<double>& want, const std::string& what) {
  ++g_checks;
  const double tol = sizeof(T) == 4 ? 1e-4 : 1e-10;
  for (size_t i = 0; i < want.size(); ++i) {
    const double scale = 1.0 + std::fabs(want[i]);
    if (!(std::fabs(static_cast<double>(got[i]) - want[i]) <= tol * scale)) {
      std::printf("FAIL %s: element %zu is %.9g, expected %.9g\n", what.c_str(), i, double(got[i]), want[i]);
      ++g_failures;
      return;
    }
  }
}

template <typename T>
std::vector<T> random_vector(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(u(rng));
  return v;
}

ConvGeometry geometry(int64_t n, int64_t c, int64_t m, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p,
                      int64_t d) {
  ConvGeometry g{};
  g.batch = n, g.in_channels = c, g.out_channels = c * m, g.in_h = h, g.in_w = w;
  g.kernel_h = g.kernel_w = k, g.stride_h = g.stride_w = s, g.pad_h = g.pad_w = p, g.dil_h = g.dil_w = d;
  g.out_h = atrous::conv_output_size(h, k, s, p, d);
  g.out_w = atrous::conv_output_size(w, k, s, p, d);
  return g;
}

// The definition of a depthwise convolution on NCHW (or NHWC) buffers, in double.
template <typename T>
std::vector<double> depthwise_reference(const std::vector<T>& x, const std::vector<T>& w, const std::vector<T>& b,
                                        const ConvGeometry& g, bool nhwc) {
  const int64_t m = g.out_channels / g.in_channels;
  std::vector<double> y(g.batch * g.out_channels * g.out_h * g.out_w);
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t oc = 0; oc < g.out_channels; ++oc)
      for (int64_t oh = 0; oh < g.out_h; ++oh)
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          double sum = b[oc];
          for (int64_t i = 0; i < g.kernel_h; ++i)
            for (int64_t j = 0; j < g.kernel_w; ++j) {
              const int64_t ih = oh * g.stride_h - g.pad_h + i * g.dil_h, iw = ow * g.stride_w - g.pad_w + j * g.dil_w;
              if (ih < 0 || ih >= g.in_h || iw < 0 || iw >= g.in_w) continue;
              const int64_t c = oc / m;
              const int64_t xi = nhwc ? ((n * g.in_h + ih) * g.in_w + iw) * g.in_channels + c
                                      : ((n * g.in_channels + c) * g.in_h + ih) * g.in_w + iw;
              sum += double(w[(oc * g.kernel_h + i) * g.kernel_w + j]) * double(x[xi]);
            }
          const int64_t yi = nhwc ? ((n * g.out_h + oh) * g.out_w + ow) * g.out_channels + oc
                                  : ((n * g.out_channels + oc) * g.out_h + oh) * g.out_w + ow;
          y[yi] = sum;
        }
  return y;
}

template <typename T, typename Forward>
void check_depthwise(const char* isa, const char* rung, bool nhwc, Forward forward, std::mt19937& rng) {
  struct Case { int64_t n, c, m, h, w, k, s, p, d; };
  const Case cases[] = {{1, 3, 1, 9, 11, 3, 1, 1, 1},   {2, 5, 2, 13, 17, 3, 1, 2, 2},  {1, 19, 1, 33, 33, 3, 1, 6, 6},
                        {1, 40, 1, 17, 19, 3, 2, 2, 2}, {1, 8, 1, 7, 7, 5, 1, 24, 12},  {1, 37, 1, 1, 23, 3, 1, 1, 1},
                        {2, 64, 1, 12, 10, 3, 1, 18, 18}, {1, 33, 1, 16, 16, 1, 1, 0, 1}, {1, 17, 1, 9, 9, 7, 2, 3, 1}};
  for (const Case& c : cases) {
    const ConvGeometry g = geometry(c.n, c.c, c.m, c.h, c.w, c.k, c.s, c.p, c.d);
    const auto x = random_vector<T>(g.batch * g.in_channels * g.in_h * g.in_w, rng);
    const auto w = random_vector<T>(g.out_channels * g.kernel_h * g.kernel_w, rng);
    const auto b = random_vector<T>(g.out_channels, rng);
    std::vector<T> y(g.batch * g.out_channels * g.out_h * g.out_w);
    forward(x.data(), w.data(), b.data(), y.data(), g);
    char what[160];
    std::snprintf(what, sizeof(what), "%s depthwise %s %s C=%ld m=%ld %ldx%ld k=%ld s=%ld d=%ld", isa, rung,
                  sizeof(T) == 4 ? "float" : "double", long(c.c), long(c.m), long(c.h), long(c.w), long(c.k),
                  long(c.s), long(c.d));
    expect_close(y, depthwise_reference(x, w, b, g, nhwc), what);
  }
}

template <typename T, typename Gemm>
void check_gemm(const char* isa, Gemm gemm, std::mt19937& rng) {
  // bias: 0 none, 1 per row of C, 2 per column; relu: max(C, 0) in the epilogue.
  struct Case { int64_t m, n, k; bool trans_a, col_major_c, accumulate; int bias; bool relu; };
  const Case cases[] = {{1, 1, 1, false, false, false, 0, false},   {7, 13, 5, false, false, false, 1, true},
                        {33, 65, 17, true, false, true, 2, false},  {96, 130, 400, false, false, false, 1, false},
                        {50, 37, 777, true, true, false, 2, true},  {129, 31, 64, false, true, true, 1, true},
                        {19, 23, 0, false, false, false, 2, true},  {64, 48, 513, false, true, false, 0, false},
                        {20, 600, 30, false, false, false, 2, false}};  // several column groups
  for (const Case& c : cases) {
    const auto a = random_vector<T>(c.m * c.k, rng), b = random_vector<T>(c.k * c.n, rng);
    const auto row_bias = random_vector<T>(c.m, rng), col_bias = random_vector<T>(c.n, rng);
    auto out = random_vector<T>(c.m * c.n, rng);
    std::vector<double> want(c.m * c.n);
    const MatrixView<T> A = c.trans_a ? MatrixView<T>{a.data(), 1, c.m} : MatrixView<T>{a.data(), c.k, 1};
    const MutableMatrixView<T> C = c.col_major_c ? MutableMatrixView<T>{out.data(), 1, c.m}
                                                 : MutableMatrixView<T>{out.data(), c.n, 1};
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j) {
        double sum = c.accumulate ? double(out[i * C.row_stride + j * C.col_stride]) : 0.0;
        sum += c.bias == 1 ? double(row_bias[i]) : c.bias == 2 ? double(col_bias[j]) : 0.0;
        for (int64_t p = 0; p < c.k; ++p) sum += double(A.data[i * A.row_stride + p * A.col_stride]) * b[p * c.n + j];
        want[i * C.row_stride + j * C.col_stride] = c.relu && sum < 0 ? 0.0 : sum;
      }
    const atrous::cpu::Epilogue<T> epilogue{c.bias == 1 ? row_bias.data() : nullptr,
                                            c.bias == 2 ? col_bias.data() : nullptr, c.relu};
    gemm(c.m, c.n, c.k, A, MatrixView<T>{b.data(), c.n, 1}, C, c.accumulate, epilogue);
    char what[120];
    std::snprintf(what, sizeof(what), "%s gemm %s %ldx%ldx%ld bias %d relu %d", isa,
                  sizeof(T) == 4 ? "float" : "double", long(c.m), long(c.n), long(c.k), c.bias, int(c.relu));
    expect_close(out, want, what);
  }
}

// Dense convolution by implicit GEMM (conv_gemm) against the definition, with a bias epilogue.
template <typename T, typename ConvGemm>
void check_dense(const char* isa, ConvGemm conv_gemm, std::mt19937& rng) {
  struct Case { int64_t c, co, h, w, k, s, p, d; };
  const Case cases[] = {{3, 5, 9, 11, 3, 1, 1, 1}, {8, 17, 13, 17, 3, 1, 2, 2}, {16, 40, 33, 33, 3, 1, 6, 6},
                        {5, 7, 17, 19, 3, 2, 2, 2}, {4, 9, 12, 10, 3, 1, 18, 18}, {6, 33, 9, 9, 5, 2, 4, 2}};
  for (const Case& c : cases) {
    ConvGeometry g = geometry(1, c.c, 1, c.h, c.w, c.k, c.s, c.p, c.d);
    g.out_channels = c.co;
    const auto x = random_vector<T>(c.c * c.h * c.w, rng);
    const auto w = random_vector<T>(c.co * c.c * c.k * c.k, rng);
    const auto b = random_vector<T>(c.co, rng);
    std::vector<double> want(c.co * g.out_h * g.out_w);
    for (int64_t o = 0; o < c.co; ++o)
      for (int64_t oh = 0; oh < g.out_h; ++oh)
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          double sum = b[o];
          for (int64_t ci = 0; ci < c.c; ++ci)
            for (int64_t i = 0; i < c.k; ++i)
              for (int64_t j = 0; j < c.k; ++j) {
                const int64_t ih = oh * c.s - c.p + i * c.d, iw = ow * c.s - c.p + j * c.d;
                if (ih < 0 || ih >= c.h || iw < 0 || iw >= c.w) continue;
                sum += double(w[((o * c.c + ci) * c.k + i) * c.k + j]) * x[(ci * c.h + ih) * c.w + iw];
              }
          want[(o * g.out_h + oh) * g.out_w + ow] = sum;
        }
    // Every tap passed (a tap in the padding only adds zeros). The kernel works on NHWC: the image
    // and the output transposed, the weight in (o, tap, c) order.
    std::vector<int64_t> all_taps(c.k * c.k);
    for (int64_t t = 0; t < c.k * c.k; ++t) all_taps[t] = t;
    const atrous::cpu::ConvTaps taps{all_taps.data(), c.k * c.k};
    const atrous::cpu::Epilogue<T> bias{b.data(), nullptr, false};
    std::vector<T> x_nhwc(x.size()), w_otc(w.size()), y_nhwc(want.size());
    std::vector<double> want_nhwc(want.size());
    const int64_t taps_n = c.k * c.k, pixels = g.out_h * g.out_w;
    for (int64_t ci = 0; ci < c.c; ++ci)
      for (int64_t q = 0; q < c.h * c.w; ++q) x_nhwc[q * c.c + ci] = x[ci * c.h * c.w + q];
    for (int64_t o = 0; o < c.co; ++o)
      for (int64_t ci = 0; ci < c.c; ++ci)
        for (int64_t t = 0; t < taps_n; ++t) w_otc[(o * taps_n + t) * c.c + ci] = w[(o * c.c + ci) * taps_n + t];
    for (int64_t o = 0; o < c.co; ++o)
      for (int64_t q = 0; q < pixels; ++q) want_nhwc[q * c.co + o] = want[o * pixels + q];
    conv_gemm(x_nhwc.data(), w_otc.data(), y_nhwc.data(), g, taps, bias);
    char what[120];
    std::snprintf(what, sizeof(what), "%s implicit-GEMM conv NHWC %s C=%ld->%ld %ldx%ld k=%ld s=%ld d=%ld", isa,
                  sizeof(T) == 4 ? "float" : "double", long(c.c), long(c.co), long(c.h), long(c.w), long(c.k),
                  long(c.s), long(c.d));
    expect_close(y_nhwc, want_nhwc, what);
  }
}

// Every kernel core of one instruction set's namespace NS.
#define ATROUS_CHECK_ISA(NS)                                                                       \
  do {                                                                                             \
    namespace dw = atrous::cpu::NS::depthwise;                                                     \
    check_gemm<float>(#NS, atrous::cpu::NS::gemm<float>, rng);                                     \
    check_gemm<double>(#NS, atrous::cpu::NS::gemm<double>, rng);                                   \
    check_dense<float>(#NS, atrous::cpu::NS::conv_gemm<float>, rng);                               \
    check_dense<double>(#NS, atrous::cpu::NS::conv_gemm<double>, rng);                             \
    check_depthwise<float>(#NS, "rows", false, dw::rows::forward<float>, rng);                     \
    check_depthwise<float>(#NS, "stencil", false, dw::stencil::forward<float>, rng);               \
    check_depthwise<double>(#NS, "stencil", false, dw::stencil::forward<double>, rng);             \
    check_depthwise<float>(#NS, "nhwc", true, dw::nhwc::forward<float>, rng);                      \
    check_depthwise<double>(#NS, "nhwc", true, dw::nhwc::forward<double>, rng);                    \
  } while (0)

}  // namespace

int main() {
  std::mt19937 rng(15);
  ATROUS_CHECK_ISA(isa_generic);
#if defined(__aarch64__)
  ATROUS_CHECK_ISA(isa_neon);
#elif defined(__x86_64__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ATROUS_CHECK_ISA(isa_avx2);
#endif
  std::printf("%s: %d checks, %d failures\n", g_failures ? "FAILED" : "ok", g_checks, g_failures);
  return g_failures ? 1 : 0;
}
