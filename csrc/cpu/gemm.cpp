// The project's own blocked GEMM (CPU) "blocked": packing, register micro-kernel, parallel driver.
//
// Compiled once per instruction set (isa_kernels.inc); the register tile comes from that set's
// wrapper (isa_avx512.cpp, isa_avx2.cpp, ...), sized to its register file.
#include <algorithm>
#include <vector>

#include "gemm.h"
#include "isa_kernels.h"
#include "kernel_support.h"
#include "simd.h"

namespace atrous::cpu::ATROUS_ISA_NS {
namespace {

// Block sizes. The MR x NR tile of C lives in registers: MR rows x NV vectors of sums, plus NV
// vectors of B and one broadcast of A, must fit the register file (8 x 2 of AVX-512's 32
// registers; BLIS's 6 x 2 on AVX2's 16; 8 x 3 of NEON's 32), with enough independent FMAs to
// hide their latency (on Zen 4 a 6 x 1-vector tile reached 65% of the core's peak in isolation,
// 8 x 2 vectors 93%). An MC x KC block of A is reused from L2, KC x NC of B from L3; the
// KC x NR panel of B should sit in L1 (KC is chosen per set so that it is about 32 KB or less;
// at KC = 384 with 64-byte vectors it streams from L2, which measured faster than KC = 256
// with its extra passes over C).
template <typename T>
struct Blocking {
  static constexpr int MR = ATROUS_GEMM_MR, NV = ATROUS_GEMM_NV;
  static constexpr int NR = NV * simd::kLanes<T>;  // AVX-512: 32 floats, 16 doubles
  static constexpr int64_t KC = ATROUS_GEMM_KC;
  // MC and the column group NG of a task are whole tiles (NEON's NR = 12 does not divide 256).
  static constexpr int64_t MC = (96 + MR - 1) / MR * MR, NC = 4096, NG = (256 + NR - 1) / NR * NR;
};

// Packs A(rows, pc:pc+kc) into panels of MR rows: panel p holds, for each k, MR consecutive
// values A(p*MR + 0..MR-1, k). Rows past the edge are zero so the micro-kernel needs no edge code.
template <typename T, int MR>
void pack_a(const MatrixView<T>& A, int64_t row0, int64_t rows, int64_t k0, int64_t kc, T* out) {
  for (int64_t p = 0; p < rows; p += MR) {
    const int64_t mr = std::min<int64_t>(MR, rows - p);
    T* dst = out + p * kc;
    for (int64_t k = 0; k < kc; ++k) {
      const T* src = A.data + (row0 + p) * A.row_stride + (k0 + k) * A.col_stride;
      int64_t i = 0;
      for (; i < mr; ++i) dst[k * MR + i] = src[i * A.row_stride];
      for (; i < MR; ++i) dst[k * MR + i] = T(0);
    }
  }
}

// The K blocks (start, depth) of a product of depth K: at most KC deep, split evenly (K = 512 as
// 256 + 256 rather than 384 + 128, whose short block pays the pass over C for little work).
template <typename T>
std::vector<std::pair<int64_t, int64_t>> k_blocks(int64_t K) {
  const int64_t parts = (K + Blocking<T>::KC - 1) / Blocking<T>::KC;
  std::vector<std::pair<int64_t, int64_t>> blocks;
  for (int64_t part = 0; part < parts; ++part) blocks.emplace_back(part * K / parts, (part + 1) * K / parts - part * K / parts);
  return blocks;
}

// The A packer of multiply_block for a strided matrix A and the K block pc:pc+kc.
template <typename T>
auto matrix_rows(const MatrixView<T>& A, int64_t pc, int64_t kc) {
  return [&A, pc, kc](int64_t ic, int64_t mc, T* out) { pack_a<T, Blocking<T>::MR>(A, ic, mc, pc, kc, out); };
}

// Packs one panel B(k0:k0+kc, col0:col0+NR): for each k, NR consecutive values, zero-padded.
template <typename T, int NR>
void pack_b_panel(const MatrixView<T>& B, int64_t k0, int64_t kc, int64_t col0, int64_t nr,
                  T* dst) {
  if (B.row_stride == 1 && B.col_stride != 1) {
    // B^T is row-major (a weight used transposed): read each column's run of k contiguously.
    for (int64_t j = 0; j < nr; ++j) {
      const T* src = B.data + k0 + (col0 + j) * B.col_stride;
      for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = src[k];
    }
    for (int64_t j = nr; j < NR; ++j)
      for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = T(0);
    return;
  }
  for (int64_t k = 0; k < kc; ++k) {
    const T* src = B.data + (k0 + k) * B.row_stride + col0 * B.col_stride;
    int64_t j = 0;
    if (B.col_stride == 1) {
      for (; j < nr; ++j) dst[k * NR + j] = src[j];
    } else {
      for (; j < nr; ++j) dst[k * NR + j] = src[j * B.col_stride];
    }
    for (; j < NR; ++j) dst[k * NR + j] = T(0);
  }
}

// C tile (mr x nr) (+)= packed A panel (MR x kc) @ packed B panel (kc x NR). The MR x NV
// vectors of sums stay in registers for the whole k loop; A values are broadcast. In the first
// K block the sums start from the bias (row_bias/col_bias point at this tile's rows/columns);
// in the last, ReLU is applied before the store.
template <typename T, int MR, int NV>
void micro_kernel(int64_t kc, const T* __restrict a, const T* __restrict b, T* __restrict c,
                  int64_t rs, const int64_t* row_off, int64_t cs, int64_t mr, int64_t nr, bool accumulate,
                  const T* row_bias, const T* col_bias, bool relu) {
  constexpr int64_t L = simd::kLanes<T>, NR = NV * L;
  simd::Vec<T> acc[MR][NV] = {};
  if (row_bias != nullptr) {
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = simd::broadcast(i < mr ? row_bias[i] : T(0));
  } else if (col_bias != nullptr) {
    T start[NR] = {};  // the tile's columns of the bias, zero past the edge (no over-read)
    for (int64_t j = 0; j < nr; ++j) start[j] = col_bias[j];
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = simd::load(start + v * L);
  }
  for (int64_t k = 0; k < kc; ++k) {
    simd::Vec<T> bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = simd::load(b + k * NR + v * L);
    for (int i = 0; i < MR; ++i) {
      const simd::Vec<T> ai = simd::broadcast(a[k * MR + i]);
      for (int v = 0; v < NV; ++v) acc[i][v] += ai * bv[v];
    }
  }
  const simd::Vec<T> zero{};
  // Row i of the tile starts at c + i * rs, or at c + row_off[i] for a compacted A whose rows are
  // scattered rows of C (the implicit convolution's live pixels).
  if (mr == MR && nr == NR && cs == 1) {  // full tile, contiguous rows: vector stores
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) {
        T* dst = c + (row_off ? row_off[i] : i * rs) + v * L;
        simd::Vec<T> sum = accumulate ? simd::load(dst) + acc[i][v] : acc[i][v];
        if (relu) sum = sum > zero ? sum : zero;
        simd::store(dst, sum);
      }
    return;
  }
  T tile[MR][NR];  // edge tile or strided C: spill, then store what exists
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) simd::store(&tile[i][v * L], acc[i][v]);
  for (int64_t i = 0; i < mr; ++i) {
    T* row = c + (row_off ? row_off[i] : i * rs);
    for (int64_t j = 0; j < nr; ++j) {
      T sum = accumulate ? row[j * cs] + tile[i][j] : tile[i][j];
      row[j * cs] = (relu && sum < T(0)) ? T(0) : sum;
    }
  }
}

// C(:, jc:jc+nc) (+)= A(:, pc:pc+kc) @ B block, with the B block already packed in bp;
// pack_a_rows(ic, mc, out) packs rows ic:ic+mc of A's current K block into MR-row panels (pack_a
// above, or the gather of an implicit convolution). Parallel over (row block, column group) tasks
// in row-block-major order, so a thread running consecutive tasks reuses the A block it packed.
// row_map (optional): A's row r is row row_map[r] of C.
template <typename T, typename PackA>
void multiply_block(int64_t M, const PackA& pack_a_rows, int64_t kc, const T* bp, int64_t jc, int64_t nc,
                    const MutableMatrixView<T>& C, bool acc, const Epilogue<T>& ep, bool first, bool last,
                    const int64_t* row_map = nullptr) {
  using Bk = Blocking<T>;
  constexpr int MR = Bk::MR, NR = Bk::NR, NV = Bk::NV;
  // Row blocks of whole MR tiles, at most MC rows each, split evenly and balanced over the threads.
  const int64_t n_groups = (nc + Bk::NG - 1) / Bk::NG, tiles = (M + MR - 1) / MR;
  const int64_t n_mc = balanced_pieces((tiles + Bk::MC / MR - 1) / (Bk::MC / MR), tiles, n_groups);
  parallel_for(0, n_mc * n_groups, 1, [&](int64_t begin, int64_t end) {
    thread_local ScratchBuffer<T> a_buffer;  // packed fully before it is read: no zero-fill
    T* a_packed = a_buffer.get(Bk::MC * kc);
    int64_t packed_ic = -1;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t block = t / n_groups;
      const int64_t ic = block * tiles / n_mc * MR;
      const int64_t mc = std::min(M, (block + 1) * tiles / n_mc * MR) - ic;
      if (ic != packed_ic) {
        pack_a_rows(ic, mc, a_packed);
        packed_ic = ic;
      }
      const int64_t j0 = (t % n_groups) * Bk::NG;
      const int64_t j1 = std::min(nc, j0 + Bk::NG);
      for (int64_t jr = j0; jr < j1; jr += NR) {
        const int64_t nr = std::min<int64_t>(NR, nc - jr);
        for (int64_t ir = 0; ir < mc; ir += MR) {
          const int64_t mr = std::min<int64_t>(MR, mc - ir);
          int64_t row_off[MR];
          if (row_map) {
            for (int64_t i = 0; i < mr; ++i) row_off[i] = row_map[ic + ir + i] * C.row_stride;
          }
          T* c = C.data + (row_map ? 0 : (ic + ir) * C.row_stride) + (jc + jr) * C.col_stride;
          micro_kernel<T, MR, NV>(kc, a_packed + ir * kc, bp + (jr / NR) * kc * NR, c, C.row_stride,
                                  row_map ? row_off : nullptr, C.col_stride, mr, nr, acc, first && ep.row_bias ? ep.row_bias + ic + ir : nullptr,
                                  first && ep.col_bias ? ep.col_bias + jc + jr : nullptr, last && ep.relu);
        }
      }
    }
  });
}

// Packs the B block (pc:pc+kc, jc:jc+nc) into NR-column panels at bp; pack_panel(col0, nr, dst)
// packs one panel (B rows pc:pc+kc, columns col0:col0+nr, zero-padded to NR).
template <typename T, typename PackPanel>
void pack_b_panels(int64_t kc, int64_t jc, int64_t nc, T* bp, const PackPanel& pack_panel) {
  constexpr int NR = Blocking<T>::NR;
  const int64_t n_panels = (nc + NR - 1) / NR;
  parallel_for(0, n_panels, 4, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) pack_panel(jc + p * NR, std::min<int64_t>(NR, nc - p * NR), bp + p * kc * NR);
  });
}

template <typename T>
void pack_b_block(const MatrixView<T>& B, int64_t pc, int64_t kc, int64_t jc, int64_t nc, T* bp) {
  pack_b_panels<T>(kc, jc, nc, bp, [&](int64_t col0, int64_t nr, T* dst) {
    pack_b_panel<T, Blocking<T>::NR>(B, pc, kc, col0, nr, dst);
  });
}

// Implicit GEMM ("implicit" rung of the dense convolution): rows row0:row0+rows of A = im2col(x)^T
// for an NHWC image (one row per output pixel
// of the whole batch, or per pixel of row_map; columns k = (live tap t, c)), packed into MR-row
// panels as pack_a does. A pixel's C values of one tap are contiguous in NHWC, so each (pixel,
// tap) is one run of copies.
template <typename T, int MR>
void pack_conv_rows_nhwc(const T* __restrict x, const ConvGeometry& g, ConvTaps taps, const int64_t* row_map,
                         int64_t row0, int64_t rows, int64_t k0, int64_t kc, T* __restrict out) {
  const int64_t C = g.in_channels, plane = g.out_h * g.out_w;
  for (int64_t p = 0; p < rows; p += MR) {
    const int64_t mr = std::min<int64_t>(MR, rows - p);
    T* dst = out + p * kc;
    int64_t n[MR], ih0[MR], iw0[MR];
    for (int64_t m = 0; m < mr; ++m) {
      const int64_t q = row_map ? row_map[row0 + p + m] : row0 + p + m, r = q % plane;
      n[m] = q / plane;
      ih0[m] = (r / g.out_w) * g.stride_h - g.pad_h;
      iw0[m] = (r % g.out_w) * g.stride_w - g.pad_w;
    }
    // The usual panel: MR neighbours along one output row, so one tap reads MR pixels of one input
    // row, stride_w apart; where all lie inside, the panel is copied without per-pixel checks.
    bool one_row = mr == MR;
    for (int64_t m = 1; m < mr && one_row; ++m)
      one_row = n[m] == n[0] && ih0[m] == ih0[0] && iw0[m] == iw0[0] + m * g.stride_w;
    const int64_t step = g.stride_w * C;
    for (int64_t k = 0; k < kc;) {
      const int64_t r = k0 + k, c0 = r % C, len = std::min(C - c0, kc - k);
      const int64_t t = taps.index[r / C], i = t / g.kernel_w, j = t % g.kernel_w;
      if (one_row) {
        const int64_t ih = ih0[0] + i * g.dil_h, iw = iw0[0] + j * g.dil_w;
        if (static_cast<uint64_t>(ih) < static_cast<uint64_t>(g.in_h) && iw >= 0 &&
            iw + (MR - 1) * g.stride_w < g.in_w) {
          const T* src = x + ((n[0] * g.in_h + ih) * g.in_w + iw) * C + c0;
          T* d = dst + k * MR;
          for (int64_t c = 0; c < len; ++c)
            for (int64_t m = 0; m < MR; ++m) d[c * MR + m] = src[m * step + c];
          k += len;
          continue;
        }
      }
      for (int64_t m = 0; m < MR; ++m) {
        T* d = dst + k * MR + m;
        const int64_t ih = m < mr ? ih0[m] + i * g.dil_h : -1, iw = m < mr ? iw0[m] + j * g.dil_w : -1;
        if (static_cast<uint64_t>(ih) < static_cast<uint64_t>(g.in_h) &&
            static_cast<uint64_t>(iw) < static_cast<uint64_t>(g.in_w)) {
          const T* src = x + ((n[m] * g.in_h + ih) * g.in_w + iw) * C + c0;
          for (int64_t c = 0; c < len; ++c) d[c * MR] = src[c];
        } else {
          for (int64_t c = 0; c < len; ++c) d[c * MR] = T(0);
        }
      }
      k += len;
    }
  }
}

}  // namespace

template <typename T>
void pack_b(int64_t K, int64_t N, MatrixView<T> B, PackedB<T>& out) {
  using Bk = Blocking<T>;
  constexpr int64_t NR = Bk::NR;
  out.K = K;
  out.N = N;
  out.data.clear();
  out.offsets.clear();
  int64_t size = 0;
  const auto blocks = k_blocks<T>(K);
  for (int64_t jc = 0; jc < N; jc += Bk::NC) {
    const int64_t nc = std::min(Bk::NC, N - jc);
    for (const auto& [pc, kc] : blocks) {
      out.offsets.push_back(size);
      size += kc * ((nc + NR - 1) / NR) * NR;
    }
  }
  out.data.resize(size);
  int64_t block = 0;
  for (int64_t jc = 0; jc < N; jc += Bk::NC)
    for (const auto& [pc, kc] : blocks)
      pack_b_block(B, pc, kc, jc, std::min(Bk::NC, N - jc), out.data.data() + out.offsets[block++]);
}

template <typename T>
void gemm_packed(int64_t M, MatrixView<T> A, const PackedB<T>& B, MutableMatrixView<T> C, bool accumulate,
                 Epilogue<T> epilogue) {
  using Bk = Blocking<T>;
  if (M == 0 || B.N == 0) return;
  int64_t block = 0;
  for (int64_t jc = 0; jc < B.N; jc += Bk::NC)
    for (const auto& [pc, kc] : k_blocks<T>(B.K))
      multiply_block(M, matrix_rows(A, pc, kc), kc, B.data.data() + B.offsets[block++], jc,
                     std::min(Bk::NC, B.N - jc), C, accumulate || pc > 0, epilogue, pc == 0, pc + kc == B.K);
}

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, MatrixView<T> A, MatrixView<T> B,
          MutableMatrixView<T> C, bool accumulate, Epilogue<T> epilogue) {
  using Bk = Blocking<T>;
  constexpr int NR = Bk::NR;
  if (M == 0 || N == 0) return;
  if (C.col_stride != 1 && C.row_stride == 1) {
    // C is column-major (e.g. a channels_last image): compute C^T = B^T @ A^T instead, so the
    // micro-kernel writes contiguous rows.
    // Qualified: argument-dependent lookup would also find the dispatcher atrous::cpu::gemm.
    ATROUS_ISA_NS::gemm<T>(N, M, K, B.transposed(), A.transposed(), {C.data, C.col_stride, C.row_stride},
                           accumulate, {epilogue.col_bias, epilogue.row_bias, epilogue.relu});
    return;
  }
  if (K == 0) {  // empty sum: C = bias (or C + bias when accumulating), then the activation
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        T& cij = C.data[i * C.row_stride + j * C.col_stride];
        T sum = (accumulate ? cij : T(0)) + (epilogue.row_bias ? epilogue.row_bias[i] : T(0)) +
                (epilogue.col_bias ? epilogue.col_bias[j] : T(0));
        cij = (epilogue.relu && sum < T(0)) ? T(0) : sum;
      }
    return;
  }
  // Every panel is packed in full (zero-padded past the edge) before it is read: no zero-fill.
  thread_local ScratchBuffer<T> b_buffer;
  T* b_packed = b_buffer.get(Bk::KC * ((std::min(N, Bk::NC) + NR - 1) / NR) * NR);
  for (int64_t jc = 0; jc < N; jc += Bk::NC) {
    const int64_t nc = std::min(Bk::NC, N - jc);
    for (const auto& [pc, kc] : k_blocks<T>(K)) {
      pack_b_block(B, pc, kc, jc, nc, b_packed);
      multiply_block(M, matrix_rows(A, pc, kc), kc, b_packed, jc, nc, C, accumulate || pc > 0, epilogue, pc == 0,
                     pc + kc == K);
    }
  }
}

template <typename T>
void conv_gemm(const T* x, const T* w, T* y, const ConvGeometry& g, ConvTaps taps, Epilogue<T> epilogue) {
  using Bk = Blocking<T>;
  constexpr int MR = Bk::MR, NR = Bk::NR;
  const int64_t K = g.in_channels * taps.count;
  thread_local ScratchBuffer<T> b_buffer;  // every panel packed in full before it is read
  // C^T (N*Ho*Wo x C_out) = im2col(x)^T @ w^T: A gathered from the image, B the weight. A K block
  // holds one deep tap's channels or several shallow taps, and multiplies only the pixels that
  // read the image for its taps (below), so C starts as the bias and every block accumulates.
  const int64_t M = g.batch * g.out_h * g.out_w, N = g.out_channels, C_in = g.in_channels;
  if (M == 0 || N == 0 || K == 0) return;
  const MatrixView<T> B{w, 1, K};         // w is (C_out x K): B(k, o) = w[o * K + k]
  const MutableMatrixView<T> C{y, N, 1};  // (N*Ho*Wo x C_out), NHWC
  parallel_for(0, M, grain_for(N), [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q)
      for (int64_t o = 0; o < N; ++o) y[q * N + o] = epilogue.row_bias ? epilogue.row_bias[o] : T(0);
  });
  T* b_packed = b_buffer.get(Bk::KC * ((std::min(N, Bk::NC) + NR - 1) / NR) * NR);
  // K blocks: a deep tap split evenly into blocks of at most KC, or whole shallow taps grouped.
  std::vector<std::pair<int64_t, int64_t>> blocks;  // (pc, kc)
  if (C_in >= Bk::KC) {
    const int64_t parts = (C_in + Bk::KC - 1) / Bk::KC;
    for (int64_t t = 0; t < taps.count; ++t)
      for (int64_t part = 0; part < parts; ++part)
        blocks.emplace_back(t * C_in + part * C_in / parts, (part + 1) * C_in / parts - part * C_in / parts);
  } else {
    const int64_t group = Bk::KC / C_in;
    for (int64_t t = 0; t < taps.count; t += group)
      blocks.emplace_back(t * C_in, std::min(group, taps.count - t) * C_in);
  }
  // The pixels each K block reads inside the image (a tap at rate 12 on 17x17 reads 5 of 17 rows
  // and columns): A is compacted to them, and the tile's rows are scattered into C. Empty when
  // every pixel is live (no map); a pixel live for no tap of the block is a row left out.
  std::vector<std::vector<int64_t>> block_rows(blocks.size());
  std::vector<char> every_pixel(blocks.size());
  const int64_t plane = g.out_h * g.out_w;
  for (size_t b = 0; b < blocks.size(); ++b) {
    const int64_t t0 = blocks[b].first / C_in, t1 = (blocks[b].first + blocks[b].second - 1) / C_in;
    std::vector<int64_t> in_image;
    for (int64_t q = 0; q < plane; ++q) {
      const int64_t ih0 = (q / g.out_w) * g.stride_h - g.pad_h, iw0 = (q % g.out_w) * g.stride_w - g.pad_w;
      for (int64_t t = t0; t <= t1; ++t) {
        const int64_t ih = ih0 + taps.index[t] / g.kernel_w * g.dil_h, iw = iw0 + taps.index[t] % g.kernel_w * g.dil_w;
        if (static_cast<uint64_t>(ih) < static_cast<uint64_t>(g.in_h) &&
            static_cast<uint64_t>(iw) < static_cast<uint64_t>(g.in_w)) {
          in_image.push_back(q);
          break;
        }
      }
    }
    every_pixel[b] = static_cast<int64_t>(in_image.size()) == plane;
    if (every_pixel[b]) continue;
    for (int64_t n = 0; n < g.batch; ++n)
      for (const int64_t q : in_image) block_rows[b].push_back(n * plane + q);
  }
  for (int64_t jc = 0; jc < N; jc += Bk::NC) {
    const int64_t nc = std::min(Bk::NC, N - jc);
    for (size_t b = 0; b < blocks.size(); ++b) {
      const auto [pc, kc] = blocks[b];
      const int64_t* map = every_pixel[b] ? nullptr : block_rows[b].data();
      const int64_t m_live = every_pixel[b] ? M : static_cast<int64_t>(block_rows[b].size());
      if (m_live == 0) continue;  // the block's taps read only padding
      pack_b_block(B, pc, kc, jc, nc, b_packed);
      const auto rows = [&, pc = pc, kc = kc](int64_t ic, int64_t mc, T* out) {
        pack_conv_rows_nhwc<T, MR>(x, g, taps, map, ic, mc, pc, kc, out);
      };
      multiply_block(m_live, rows, kc, b_packed, jc, nc, C, /*acc=*/true, Epilogue<T>{}, false, false, map);
    }
    if (epilogue.relu) {
      parallel_for(0, M, grain_for(nc), [&](int64_t begin, int64_t end) {
        for (int64_t q = begin; q < end; ++q)
          for (int64_t o = jc; o < jc + nc; ++o) y[q * N + o] = std::max(y[q * N + o], T(0));
      });
    }
  }
}

template void conv_gemm<float>(const float*, const float*, float*, const ConvGeometry&, ConvTaps, Epilogue<float>);
template void conv_gemm<double>(const double*, const double*, double*, const ConvGeometry&, ConvTaps,
                                Epilogue<double>);
template void gemm<float>(int64_t, int64_t, int64_t, MatrixView<float>, MatrixView<float>,
                          MutableMatrixView<float>, bool, Epilogue<float>);
template void gemm<double>(int64_t, int64_t, int64_t, MatrixView<double>, MatrixView<double>,
                           MutableMatrixView<double>, bool, Epilogue<double>);
template void pack_b<float>(int64_t, int64_t, MatrixView<float>, PackedB<float>&);
template void pack_b<double>(int64_t, int64_t, MatrixView<double>, PackedB<double>&);
template void gemm_packed<float>(int64_t, MatrixView<float>, const PackedB<float>&, MutableMatrixView<float>, bool,
                                 Epilogue<float>);
template void gemm_packed<double>(int64_t, MatrixView<double>, const PackedB<double>&, MutableMatrixView<double>,
                                  bool, Epilogue<double>);

}  // namespace atrous::cpu::ATROUS_ISA_NS
