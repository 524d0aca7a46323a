// ponder's small-batch matrix multiply for the decode loop: y = x W^T (+ bias) (+= into y), float32,
// AVX-512. Included by decode.cpp.
//
// Why our own: a decode step multiplies a few to a few tens of rows by each weight. On the 2-core
// EPYC this was measured on, MKL (behind F.linear) runs its AVX2 code on AMD and peaks near
// 100 GFLOP/s; oneDNN reaches 200 but spends about 10 us setting up each call, more than a
// 14-row product takes. This kernel is the textbook register-blocked loop: the weight packed once
// (per weight version) into panels of 16 output columns, laid out [panel][k][16], and a tile of up
// to 6 rows x 4 panels (24 accumulators in registers) swept over k, one broadcast of x and one
// weight vector per multiply-add row. At 14 rows it runs at about 210 GFLOP/s with no set-up cost
// (the 128 -> 384 projection: 7 us, against 18 for oneDNN and 19 for MKL). Without AVX-512 the
// packing returns an empty tensor and the callers keep oneDNN / F.linear.
#pragma once
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cstdint>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace gemm {

constexpr int64_t PANEL = 16;        // output columns per panel: one AVX-512 vector of floats
constexpr int64_t TILE_PANELS = 4;   // panels per tile
constexpr int64_t TILE_ROWS = 6;     // rows per tile: 6 x 4 accumulators + 4 weights + 1 broadcast <= 32 registers
constexpr int64_t SERIAL_MACS = 2'000'000;  // below this many multiply-adds one thread does it all

// W (N, K) -> (ceil(N / 16), K, 16), zero-padded; an empty tensor where this build has no AVX-512.
inline at::Tensor pack(const at::Tensor& weight) {
#if defined(__AVX512F__)
    TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == at::kFloat, "pack_linear: a 2-d float32 weight");
    const auto w = weight.contiguous();
    const int64_t N = w.size(0), K = w.size(1), panels = (N + PANEL - 1) / PANEL;
    auto out = at::zeros({panels, K, PANEL}, w.options());
    const float* src = w.data_ptr<float>();
    float* dst = out.data_ptr<float>();
    for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k) dst[((n / PANEL) * K + k) * PANEL + n % PANEL] = src[n * K + k];
    return out;
#else
    return at::empty({0}, weight.options());
#endif
}

#if defined(__AVX512F__)
// One tile: MR rows of x (row stride K) by NP panels; `cols` output columns are real from the
// tile's first (the last panel may be partial). y = acc + bias, or y += acc + bias.
template <int MR, int NP>
inline void tile(const float* x, int64_t K, const float* panels, float* y, int64_t ldy, const float* bias,
                 bool accumulate, int64_t cols) {
    __m512 acc[MR][NP];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int p = 0; p < NP; ++p) acc[r][p] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
        __m512 w[NP];
#pragma GCC unroll 4
        for (int p = 0; p < NP; ++p) w[p] = _mm512_loadu_ps(panels + (p * K + k) * PANEL);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
            const __m512 b = _mm512_set1_ps(x[r * K + k]);
#pragma GCC unroll 4
            for (int p = 0; p < NP; ++p) acc[r][p] = _mm512_fmadd_ps(b, w[p], acc[r][p]);
        }
    }
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) {
        const int64_t left = cols - p * PANEL;
        const __mmask16 m = left >= PANEL ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
        const __m512 b = bias != nullptr ? _mm512_maskz_loadu_ps(m, bias + p * PANEL) : _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
            float* out = y + r * ldy + p * PANEL;
            __m512 v = _mm512_add_ps(acc[r][p], b);
            if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, out));
            _mm512_mask_storeu_ps(out, m, v);
        }
    }
}

template <int MR>
inline void tile_of(int64_t np, const float* x, int64_t K, const float* panels, float* y, int64_t ldy,
                    const float* bias, bool accumulate, int64_t cols) {
    switch (np) {
        case 4: return tile<MR, 4>(x, K, panels, y, ldy, bias, accumulate, cols);
        case 3: return tile<MR, 3>(x, K, panels, y, ldy, bias, accumulate, cols);
        case 2: return tile<MR, 2>(x, K, panels, y, ldy, bias, accumulate, cols);
        default: return tile<MR, 1>(x, K, panels, y, ldy, bias, accumulate, cols);
    }
}
#endif

// y (M, N) = x (M, K) W^T + bias, or y += that (`accumulate`: a residual connection). x and y
// contiguous; `packed` from `pack`. Tiles of panels go to torch's threads when the product is big.
inline void multiply(const float* x, int64_t M, int64_t K, const float* packed, int64_t N, const float* bias,
                     float* y, bool accumulate) {
#if defined(__AVX512F__)
    const int64_t panels = (N + PANEL - 1) / PANEL, columns = (panels + TILE_PANELS - 1) / TILE_PANELS;
    const int64_t grain = M * N * K < SERIAL_MACS ? columns : 1;
    at::parallel_for(0, columns, grain, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) {  // a column of tiles: its weights stay in cache over the rows
            const int64_t p0 = c * TILE_PANELS, np = std::min(TILE_PANELS, panels - p0), cols = N - p0 * PANEL;
            const float* w = packed + p0 * K * PANEL;
            const float* b = bias != nullptr ? bias + p0 * PANEL : nullptr;
            for (int64_t m0 = 0; m0 < M; m0 += TILE_ROWS) {
                const float* xm = x + m0 * K;
                float* ym = y + m0 * N + p0 * PANEL;
                switch (std::min(TILE_ROWS, M - m0)) {
                    case 6: tile_of<6>(np, xm, K, w, ym, N, b, accumulate, cols); break;
                    case 5: tile_of<5>(np, xm, K, w, ym, N, b, accumulate, cols); break;
                    case 4: tile_of<4>(np, xm, K, w, ym, N, b, accumulate, cols); break;
                    case 3: tile_of<3>(np, xm, K, w, ym, N, b, accumulate, cols); break;
                    case 2: tile_of<2>(np, xm, K, w, ym, N, b, accumulate, cols); break;
                    default: tile_of<1>(np, xm, K, w, ym, N, b, accumulate, cols); break;
                }
            }
        }
    });
#else
    TORCH_CHECK(false, "ponder's matrix multiply needs AVX-512; pack() returned no weights here");
#endif
}

}  // namespace gemm
