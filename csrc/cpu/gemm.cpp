// The project's own blocked GEMM (CPU): packing, register micro-kernel, parallel driver.
#include "gemm.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <vector>

#include "simd.h"

namespace atrous::cpu {
namespace {

// Block sizes. The MR x NR tile of C lives in registers: 8 rows x 2 vectors = 16 AVX-512
// registers of sums, enough independent FMAs to hide their latency (a 6 x 1-vector tile
// reached 65% of the core's peak in isolation, 8 x 2 vectors 93%). An MC x KC block of A and a
// KC x NR panel of B (48 KB at KC = 384, more than Zen 4's 32 KB L1: it streams from L2, which
// measured faster than KC = 256 with its extra passes over C) are reused from L2, KC x NC of B
// from L3.
template <typename T>
struct Blocking {
  static constexpr int MR = 8, NV = 2;
  static constexpr int NR = NV * simd::kLanes<T>;  // 32 floats, 16 doubles
  static constexpr int64_t KC = 384, MC = 96, NC = 4096, NG = 256;
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

// Packs one panel B(k0:k0+kc, col0:col0+NR): for each k, NR consecutive values, zero-padded.
template <typename T, int NR>
void pack_b_panel(const MatrixView<T>& B, int64_t k0, int64_t kc, int64_t col0, int64_t nr,
                  T* dst) {
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
// vectors of sums stay in registers for the whole k loop; A values are broadcast.
template <typename T, int MR, int NV>
void micro_kernel(int64_t kc, const T* __restrict a, const T* __restrict b, T* __restrict c,
                  int64_t rs, int64_t cs, int64_t mr, int64_t nr, bool accumulate) {
  constexpr int64_t L = simd::kLanes<T>, NR = NV * L;
  simd::Vec<T> acc[MR][NV] = {};
  for (int64_t k = 0; k < kc; ++k) {
    simd::Vec<T> bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = simd::load(b + k * NR + v * L);
    for (int i = 0; i < MR; ++i) {
      const simd::Vec<T> ai = simd::broadcast(a[k * MR + i]);
      for (int v = 0; v < NV; ++v) acc[i][v] += ai * bv[v];
    }
  }
  if (mr == MR && nr == NR && cs == 1) {  // full tile, contiguous rows: vector stores
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) {
        T* dst = c + i * rs + v * L;
        simd::store(dst, accumulate ? simd::load(dst) + acc[i][v] : acc[i][v]);
      }
    return;
  }
  T tile[MR][NR];  // edge tile or strided C: spill, then store what exists
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) simd::store(&tile[i][v * L], acc[i][v]);
  for (int64_t i = 0; i < mr; ++i) {
    T* row = c + i * rs;
    for (int64_t j = 0; j < nr; ++j) row[j * cs] = accumulate ? row[j * cs] + tile[i][j] : tile[i][j];
  }
}

// C(:, jc:jc+nc) (+)= A(:, pc:pc+kc) @ B block, with the B block already packed in bp.
// Parallel over (row block, column group) tasks in row-block-major order, so a thread running
// consecutive tasks reuses the A block it packed.
template <typename T>
void multiply_block(int64_t M, const MatrixView<T>& A, int64_t pc, int64_t kc, const T* bp, int64_t jc,
                    int64_t nc, const MutableMatrixView<T>& C, bool acc) {
  using Bk = Blocking<T>;
  constexpr int MR = Bk::MR, NR = Bk::NR, NV = Bk::NV;
  const int64_t n_mc = (M + Bk::MC - 1) / Bk::MC;
  const int64_t n_groups = (nc + Bk::NG - 1) / Bk::NG;
  at::parallel_for(0, n_mc * n_groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> a_packed(Bk::MC * kc);
    int64_t packed_ic = -1;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t ic = (t / n_groups) * Bk::MC;
      const int64_t mc = std::min(Bk::MC, M - ic);
      if (ic != packed_ic) {
        pack_a<T, MR>(A, ic, mc, pc, kc, a_packed.data());
        packed_ic = ic;
      }
      const int64_t j0 = (t % n_groups) * Bk::NG;
      const int64_t j1 = std::min(nc, j0 + Bk::NG);
      for (int64_t jr = j0; jr < j1; jr += NR) {
        const int64_t nr = std::min<int64_t>(NR, nc - jr);
        for (int64_t ir = 0; ir < mc; ir += MR) {
          const int64_t mr = std::min<int64_t>(MR, mc - ir);
          T* c = C.data + (ic + ir) * C.row_stride + (jc + jr) * C.col_stride;
          micro_kernel<T, MR, NV>(kc, a_packed.data() + ir * kc, bp + (jr / NR) * kc * NR, c,
                                  C.row_stride, C.col_stride, mr, nr, acc);
        }
      }
    }
  });
}

// Packs the B block (pc:pc+kc, jc:jc+nc) into NR-column panels at bp.
template <typename T>
void pack_b_block(const MatrixView<T>& B, int64_t pc, int64_t kc, int64_t jc, int64_t nc, T* bp) {
  constexpr int NR = Blocking<T>::NR;
  const int64_t n_panels = (nc + NR - 1) / NR;
  at::parallel_for(0, n_panels, 4, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      pack_b_panel<T, NR>(B, pc, kc, jc + p * NR, std::min<int64_t>(NR, nc - p * NR), bp + p * kc * NR);
    }
  });
}

}  // namespace

template <typename T>
PackedB<T>::PackedB(int64_t k, int64_t n, MatrixView<T> B) : K(k), N(n) {
  using Bk = Blocking<T>;
  constexpr int64_t NR = Bk::NR;
  for (int64_t jc = 0; jc < N; jc += Bk::NC) {
    const int64_t nc = std::min(Bk::NC, N - jc);
    for (int64_t pc = 0; pc < K; pc += Bk::KC) {
      offsets.push_back(static_cast<int64_t>(data.size()));
      data.resize(data.size() + std::min(Bk::KC, K - pc) * ((nc + NR - 1) / NR) * NR);
    }
  }
  int64_t block = 0;
  for (int64_t jc = 0; jc < N; jc += Bk::NC)
    for (int64_t pc = 0; pc < K; pc += Bk::KC, ++block)
      pack_b_block(B, pc, std::min(Bk::KC, K - pc), jc, std::min(Bk::NC, N - jc), data.data() + offsets[block]);
}

template <typename T>
void gemm_packed(int64_t M, MatrixView<T> A, const PackedB<T>& B, MutableMatrixView<T> C, bool accumulate) {
  using Bk = Blocking<T>;
  TORCH_CHECK(C.col_stride == 1, "gemm_packed: C must have unit column stride");
  if (M == 0 || B.N == 0) return;
  int64_t block = 0;
  for (int64_t jc = 0; jc < B.N; jc += Bk::NC)
    for (int64_t pc = 0; pc < B.K; pc += Bk::KC, ++block)
      multiply_block(M, A, pc, std::min(Bk::KC, B.K - pc), B.data.data() + B.offsets[block], jc,
                     std::min(Bk::NC, B.N - jc), C, accumulate || pc > 0);
}

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, MatrixView<T> A, MatrixView<T> B,
          MutableMatrixView<T> C, bool accumulate) {
  using Bk = Blocking<T>;
  constexpr int MR = Bk::MR, NR = Bk::NR, NV = Bk::NV;
  if (M == 0 || N == 0) return;
  if (C.col_stride != 1 && C.row_stride == 1) {
    // C is column-major (e.g. a channels_last image): compute C^T = B^T @ A^T instead, so the
    // micro-kernel writes contiguous rows.
    gemm<T>(N, M, K, B.transposed(), A.transposed(), {C.data, C.col_stride, C.row_stride},
            accumulate);
    return;
  }
  if (K == 0) {  // empty sum: C = 0 (or unchanged when accumulating)
    if (!accumulate) {
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) C.data[i * C.row_stride + j * C.col_stride] = T(0);
    }
    return;
  }
  std::vector<T> b_packed(Bk::KC * ((std::min(N, Bk::NC) + NR - 1) / NR) * NR);
  for (int64_t jc = 0; jc < N; jc += Bk::NC) {
    const int64_t nc = std::min(Bk::NC, N - jc);
    for (int64_t pc = 0; pc < K; pc += Bk::KC) {
      const int64_t kc = std::min(Bk::KC, K - pc);
      pack_b_block(B, pc, kc, jc, nc, b_packed.data());
      multiply_block(M, A, pc, kc, b_packed.data(), jc, nc, C, accumulate || pc > 0);
    }
  }
}

template void gemm<float>(int64_t, int64_t, int64_t, MatrixView<float>, MatrixView<float>,
                          MutableMatrixView<float>, bool);
template void gemm<double>(int64_t, int64_t, int64_t, MatrixView<double>, MatrixView<double>,
                           MutableMatrixView<double>, bool);
template struct PackedB<float>;
template struct PackedB<double>;
template void gemm_packed<float>(int64_t, MatrixView<float>, const PackedB<float>&, MutableMatrixView<float>, bool);
template void gemm_packed<double>(int64_t, MatrixView<double>, const PackedB<double>&, MutableMatrixView<double>,
                                  bool);

}  // namespace atrous::cpu
