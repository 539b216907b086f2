// Depthwise ladder v2 "stencil": a padded polyphase copy of the plane in cache, so that every
// tap becomes a constant shift of one flat array, summed in registers.
//
// Step 1, the plane buffer. The input plane is copied once, zero-padded left and right, into a
// thread-local buffer whose rows all have the same pitch. With stride s the columns (and rows)
// are split into s phases, column c of phase p holding padded column c*s + p, so a strided
// tap still reads consecutive elements.
// Step 2, flat indexing. Output (oh, ow) is computed at flat index q = oh * pitch + ow; tap
// (i, j) then reads the buffer at q + offset(i, j): the whole kernel is a sum of shifted
// copies of one array. Columns ow >= Wo are computed and thrown away; the zero padding
// makes taps that leave the image left or right contribute nothing.
// Step 3, vertical validity. Output rows are split into segments within which the same taps
// stay inside the image vertically; only those taps are summed (no padding rows needed).
// Step 4, registers. Each chunk of V outputs keeps its V sums in vector registers over all
// taps, then is stored once (v1 read and wrote each output row once per tap).
//
// Backward-input at stride 1 is the same stencil run on grad_output with the flipped kernel
// (summing the m output channels of an input plane); other strides use v1's scatter.
// Backward-weight runs one dot product per tap over the flat arrays.
#include <algorithm>
#include <vector>

#include "kernel_support.h"
#include "isa_kernels.h"
#include "simd.h"

namespace atrous::cpu::ATROUS_ISA_NS::depthwise::stencil {
namespace {

// Vectors of running sums per chunk of outputs (4 x 8 floats or 4 x 4 doubles with AVX).
constexpr int kVectors = 4;
constexpr int kVB = simd::kNarrowBytes;
template <typename T>
constexpr int kChunk = kVectors * simd::kLanes<T, kVB>;

// At most 32-byte vectors here: the tap loads are unaligned by construction, and 32-byte ones
// cross cache lines half as often as 64-byte ones (15% faster on Zen 4, see simd.h).
template <typename T>
using V = simd::Vec<T, kVB>;

// floor(a / b) and a mod b for b > 0 (the mod is non-negative).
inline int64_t pmod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }

// How one plane is laid out in the polyphase buffer, and where each tap reads.
struct PlaneLayout {
  int64_t in_h, in_w, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;  // pad may be < 0
  int64_t rows;        // rows per row phase
  int64_t pitch;       // columns per column phase: the flat row pitch of buffer and outputs
  int64_t phase_size;  // elements per phase, with slack for the over-reads of the last chunk
  int64_t size;        // elements per plane buffer

  PlaneLayout(int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
              int64_t pw, int64_t dh, int64_t dwl, int64_t chunk)
      : in_h(h), in_w(w), kernel_h(kh), kernel_w(kw), stride_h(sh), stride_w(sw), pad_h(ph),
        pad_w(pw), dil_h(dh), dil_w(dwl) {
    out_h = conv_output_size(h, kh, sh, ph, dh);
    out_w = conv_output_size(w, kw, sw, pw, dwl);
    rows = ceil_div(h, sh);
    pitch = std::max(ceil_div(w + 2 * pw, sw), out_w);
    // The last chunk of the last row reads up to pitch + chunk + max column shift past the end.
    phase_size = (rows + 2) * pitch + 2 * chunk + (kw - 1) * dwl / sw + 1;
    size = sh * sw * phase_size;
  }

  // Buffer offset of tap (i, j) for output flat index 0 (may be negative; q is added).
  int64_t tap_offset(int64_t i, int64_t j) const {
    const int64_t t = i * dil_h - pad_h;  // row shift of the tap
    const int64_t u = j * dil_w;          // column shift, in padded coordinates
    const int64_t phase = pmod(t, stride_h) * stride_w + u % stride_w;
    return phase * phase_size + floor_div(t, stride_h) * pitch + u / stride_w;
  }

  // Copies plane (in_h x in_w) into buf, whose padding and slack are already zero. Each input
  // row is visited once and split into its column phases while it is in L1.
  template <typename T>
  void fill(const T* __restrict plane, T* __restrict buf) const {
    for (int64_t ih = 0; ih < in_h; ++ih) {
      const int64_t rp = ih % stride_h, r = ih / stride_h;
      for (int64_t cp = 0; cp < stride_w; ++cp) {
        T* dst = buf + (rp * stride_w + cp) * phase_size + r * pitch;
        // Phase columns c whose padded column c*sw + cp is a real column of the image.
        const int64_t c0 = std::max<int64_t>(0, ceil_div(pad_w - cp, stride_w));
        const int64_t c1 = std::min(pitch, ceil_div(in_w + pad_w - cp, stride_w));
        const T* src = plane + ih * in_w + (cp - pad_w);
        if (stride_w == 1) {
          simd::copy(src + c0, dst + c0, c1 - c0);
        } else if (stride_w == 2) {  // a compile-time stride lets the compiler vectorise the deinterleave
          for (int64_t c = c0; c < c1; ++c) dst[c] = src[2 * c];
        } else {
          for (int64_t c = c0; c < c1; ++c) dst[c] = src[c * stride_w];
        }
      }
    }
  }


  // Output row segments [begin, end) in which the same row taps stay inside the image.
  std::vector<std::pair<Range, Range>> segments() const {
    std::vector<int64_t> cuts = {0, out_h};
    for (int64_t i = 0; i < kernel_h; ++i) {
      const Range r = tap_output_range(in_h, out_h, stride_h, pad_h, dil_h, i);
      cuts.push_back(r.begin);
      cuts.push_back(r.end);
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    std::vector<std::pair<Range, Range>> out;  // (output rows, taps)
    for (size_t k = 0; k + 1 < cuts.size(); ++k) {
      if (cuts[k] < 0 || cuts[k + 1] > out_h || cuts[k] >= cuts[k + 1]) continue;
      const Range taps = output_tap_range(in_h, kernel_h, stride_h, pad_h, dil_h, cuts[k]);
      if (taps.size() > 0) out.push_back({Range{cuts[k], cuts[k + 1]}, taps});
    }
    return out;
  }
};

// dst[0:kChunk) = init + sum_t weights[t] * src[offsets[t] + q + 0:kChunk): one chunk of
// outputs, its sums held in kVectors registers across all taps.
template <typename T>
inline void shifted_chunk(const T* __restrict src, const int64_t* offsets, const T* weights, int64_t taps,
                          T init, int64_t q, T* __restrict dst) {
  constexpr int64_t L = simd::kLanes<T, kVB>;
  V<T> acc[kVectors];
  for (int k = 0; k < kVectors; ++k) acc[k] = simd::broadcast<T, kVB>(init);
  for (int64_t t = 0; t < taps; ++t) {
    const T* s = src + offsets[t] + q;
    const V<T> w = simd::broadcast<T, kVB>(weights[t]);
    for (int k = 0; k < kVectors; ++k) acc[k] += w * simd::load<T, kVB>(s + k * L);
  }
  for (int k = 0; k < kVectors; ++k) simd::store<T, kVB>(dst + k * L, acc[k]);
}

// sum over q in [q0, q1) of a[q] * b[q]: vector partial sums, then a fixed-order reduction.
template <typename T>
double dot(const T* __restrict a, const T* __restrict b, int64_t q0, int64_t q1) {
  constexpr int64_t L = simd::kLanes<T>;
  simd::Vec<T> acc[2] = {};
  int64_t q = q0;
  for (; q + 2 * L <= q1; q += 2 * L) {
    acc[0] += simd::load(a + q) * simd::load(b + q);
    acc[1] += simd::load(a + q + L) * simd::load(b + q + L);
  }
  double sum = simd::reduce<T>(acc[0] + acc[1]);
  for (; q < q1; ++q) sum += static_cast<double>(a[q]) * b[q];
  return sum;
}

// The taps of every segment, worked out once per call: where each reads in the buffer (plane s
// of `sources` sits at s * layout.size) and which weight it takes (index into the s-th
// kh x kw block). Rows that no tap reaches (padding larger than the kernel) are marked.
struct StencilPlan {
  struct Segment {
    int64_t q0, q1;  // flat output range
    std::vector<int64_t> offsets, weight_index, source;
  };
  std::vector<Segment> segments;
  std::vector<uint8_t> covered;  // per output row
};

StencilPlan make_plan(const PlaneLayout& layout, int64_t sources) {
  StencilPlan plan;
  plan.covered.assign(layout.out_h, 0);
  for (const auto& [rows, taps] : layout.segments()) {
    StencilPlan::Segment seg{rows.begin * layout.pitch, rows.end * layout.pitch, {}, {}, {}};
    for (int64_t s = 0; s < sources; ++s)
      for (int64_t i = taps.begin; i < taps.end; ++i)
        for (int64_t j = 0; j < layout.kernel_w; ++j) {
          seg.offsets.push_back(s * layout.size + layout.tap_offset(i, j));
          seg.weight_index.push_back(i * layout.kernel_w + j);
          seg.source.push_back(s);
        }
    for (int64_t oh = rows.begin; oh < rows.end; ++oh) plan.covered[oh] = 1;
    plan.segments.push_back(std::move(seg));
  }
  return plan;
}

// Runs the planned stencil over the planes in `buf` with weights[s] (kh x kw) for source s,
// into the output plane `out` (Ho x Wo): chunk after chunk across row ends into the pitched
// scratch plane, then the Wo valid columns of each row are copied out. (Writing wide rows
// straight into the output, the last chunk of a row shifted to end at the row's end, measured
// no faster: the extra chunks per row cost what the copy saves.)
template <typename T>
void stencil_plane(const PlaneLayout& layout, const StencilPlan& plan, const T* buf,
                   const T* const* weights, T init, T* pitched, T* out, std::vector<T>& tap_weights) {
  constexpr int64_t C = kChunk<T>;
  for (const auto& seg : plan.segments) {
    const int64_t taps = static_cast<int64_t>(seg.offsets.size());
    tap_weights.resize(taps);
    for (int64_t t = 0; t < taps; ++t) tap_weights[t] = weights[seg.source[t]][seg.weight_index[t]];
    // May write up to C - 1 past q1: into slack, or the next segment's rows (rewritten later).
    for (int64_t q = seg.q0; q < seg.q1; q += C)
      shifted_chunk<T>(buf, seg.offsets.data(), tap_weights.data(), taps, init, q, pitched + q);
  }
  for (int64_t oh = 0; oh < layout.out_h; ++oh) {
    T* dst = out + oh * layout.out_w;
    if (plan.covered[oh]) {
      simd::copy(pitched + oh * layout.pitch, dst, layout.out_w);
    } else {
      std::fill(dst, dst + layout.out_w, init);
    }
  }
}

PlaneLayout forward_layout(const ConvGeometry& g, int64_t chunk) {
  return PlaneLayout(g.in_h, g.in_w, g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_h,
                     g.pad_w, g.dil_h, g.dil_w, chunk);
}

}  // namespace

template <typename T>
void forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g) {
  const int64_t m = g.out_channels / g.in_channels;
  const PlaneLayout layout = forward_layout(g, kChunk<T>);
  const StencilPlan plan = make_plan(layout, 1);
  const int64_t work = m * g.out_h * g.out_w * g.kernel_h * g.kernel_w;
  // Parallel over input planes: each is copied into the buffer once and feeds its m outputs.
  parallel_for(0, g.batch * g.in_channels, grain_for(work), [&](int64_t begin, int64_t end) {
    std::vector<T> buf(layout.size, T(0));
    std::vector<T> pitched(g.out_h * layout.pitch + 2 * kChunk<T>);
    std::vector<T> tap_weights;
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / g.in_channels, c = p % g.in_channels;
      layout.fill(x + p * g.in_h * g.in_w, buf.data());
      for (int64_t k = 0; k < m; ++k) {
        const int64_t oc = c * m + k;
        const T* wk = w + oc * g.kernel_h * g.kernel_w;
        stencil_plane(layout, plan, buf.data(), &wk, bias ? bias[oc] : T(0), pitched.data(),
                      y + (n * g.out_channels + oc) * g.out_h * g.out_w, tap_weights);
      }
    }
  });
}

template <typename T>
void backward_input(const T* gy, const T* w, T* gx, const ConvGeometry& g) {
  if (g.stride_h != 1 || g.stride_w != 1) {  // the transposed strided stencil is v1's scatter
    rows::backward_input(gy, w, gx, g);
    return;
  }
  const int64_t m = g.out_channels / g.in_channels;
  // grad_input = stencil over grad_output with the flipped kernel and padding k_eff - 1 - p
  // (negative padding crops), summed over the m output channels of each input channel.
  const int64_t pad_h = effective_kernel_size(g.kernel_h, g.dil_h) - 1 - g.pad_h;
  const int64_t pad_w = effective_kernel_size(g.kernel_w, g.dil_w) - 1 - g.pad_w;
  const PlaneLayout layout(g.out_h, g.out_w, g.kernel_h, g.kernel_w, 1, 1, pad_h, pad_w, g.dil_h,
                           g.dil_w, kChunk<T>);
  const StencilPlan plan = make_plan(layout, m);
  const int64_t taps = g.kernel_h * g.kernel_w;
  // Flipped weights: flipped[oc][i][j] = w[oc][kh-1-i][kw-1-j].
  std::vector<T> flipped(g.out_channels * taps);
  for (int64_t oc = 0; oc < g.out_channels; ++oc)
    for (int64_t t = 0; t < taps; ++t) flipped[oc * taps + t] = w[oc * taps + (taps - 1 - t)];
  parallel_for(0, g.batch * g.in_channels, grain_for(m * g.in_h * g.in_w * taps), [&](int64_t begin, int64_t end) {
    std::vector<T> buf(m * layout.size, T(0));
    std::vector<T> pitched(g.in_h * layout.pitch + 2 * kChunk<T>);
    std::vector<T> tap_weights;
    std::vector<const T*> weights(m);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / g.in_channels, c = p % g.in_channels;
      for (int64_t k = 0; k < m; ++k) {
        const int64_t oc = c * m + k;
        layout.fill(gy + (n * g.out_channels + oc) * g.out_h * g.out_w, buf.data() + k * layout.size);
        weights[k] = flipped.data() + oc * taps;
      }
      stencil_plane(layout, plan, buf.data(), weights.data(), T(0), pitched.data(),
                    gx + p * g.in_h * g.in_w, tap_weights);
    }
  });
}

template <typename T>
void backward_weight(const T* gy, const T* x, T* gw, const ConvGeometry& g) {
  const int64_t m = g.out_channels / g.in_channels;
  const PlaneLayout layout = forward_layout(g, kChunk<T>);
  const int64_t taps = g.kernel_h * g.kernel_w;
  std::vector<Range> tap_rows(g.kernel_h);
  for (int64_t i = 0; i < g.kernel_h; ++i)
    tap_rows[i] = tap_output_range(g.in_h, g.out_h, g.stride_h, g.pad_h, g.dil_h, i);
  // One thread owns each input channel (all its m output channels) and sums over the batch in
  // order: deterministic whatever the thread count.
  parallel_for(0, g.in_channels, grain_for(g.batch * m * g.out_h * g.out_w * taps), [&](int64_t begin, int64_t end) {
    std::vector<T> buf(layout.size, T(0));
    std::vector<T> pitched(g.out_h * layout.pitch + 2 * kChunk<T>, T(0));
    std::vector<double> acc(m * taps);
    for (int64_t c = begin; c < end; ++c) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t n = 0; n < g.batch; ++n) {
        layout.fill(x + (n * g.in_channels + c) * g.in_h * g.in_w, buf.data());
        for (int64_t k = 0; k < m; ++k) {
          const int64_t oc = c * m + k;
          // grad_output in the pitched layout; the columns past Wo stay zero so the garbage
          // outputs of the flat indexing contribute nothing.
          const T* go = gy + (n * g.out_channels + oc) * g.out_h * g.out_w;
          for (int64_t oh = 0; oh < g.out_h; ++oh)
            simd::copy(go + oh * g.out_w, pitched.data() + oh * layout.pitch, g.out_w);
          for (int64_t i = 0; i < g.kernel_h; ++i) {
            const int64_t q0 = tap_rows[i].begin * layout.pitch, q1 = tap_rows[i].end * layout.pitch;
            for (int64_t j = 0; j < g.kernel_w; ++j) {
              acc[k * taps + i * g.kernel_w + j] +=
                  dot<T>(pitched.data(), buf.data() + layout.tap_offset(i, j), q0, q1);
            }
          }
        }
      }
      for (int64_t t = 0; t < m * taps; ++t) gw[c * m * taps + t] = static_cast<T>(acc[t]);
    }
  });
}

}  // namespace atrous::cpu::ATROUS_ISA_NS::depthwise::stencil

namespace atrous::cpu::ATROUS_ISA_NS::depthwise {
ATROUS_INSTANTIATE_DEPTHWISE_RUNG(stencil)
}
