// ponder's CPU decode attention: one query per (row, query head) over its row of the KV pool.
//
// Why our own: at decode time each (row, head) is a 1 x D by D x L product. torch runs them as a
// batched matmul (MKL), which on a 2-core EPYC read the cache at 13-20 GB/s while a plain read of
// the same tensors ran at 60 GB/s; attention was 37% of a 64-row decode step. This kernel reads each
// row's keys and values once, in blocks (an online softmax, as flash decoding does), and prefetches
// the next (row, head) block while it computes this one: 2.5-3.7x the batched matmuls on this
// machine. Built on first use by torch.utils.cpp_extension (ponder/engine/kernels.py); where it
// cannot be built, the engine keeps the batched matmuls.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#include <algorithm>

// e^x for x <= 0 (a softmax's shifted scores): Cephes' expf polynomial, branch-free so the loop
// that calls it vectorizes; within 2 ulp of expf. Below -87.3 it returns 0, as expf underflows.
static inline float exp_nonpositive(float x) {
    const float keep = x > -87.3f ? 1.f : 0.f;
    x = x > -87.3f ? x : -87.3f;
    const float n = std::floor(x * 1.44269504088896341f + 0.5f);
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.f;
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return y * scale * keep;
}

// One query per (row, query head) over keys [0, L) of its row: softmax(scale * q.K^T + mask) V.
// q: (B, KV, G, D); k, v: (B, KV, L, D) views with unit stride over D; mask: (B, L), 0 or -inf.
torch::Tensor decode_attention(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor mask, double scale) {
    TORCH_CHECK(q.scalar_type() == at::kFloat && k.scalar_type() == at::kFloat && v.scalar_type() == at::kFloat
                && mask.scalar_type() == at::kFloat, "decode_attention: float32 tensors only");
    TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4 && mask.dim() == 2, "decode_attention: bad ranks");
    TORCH_CHECK(k.stride(3) == 1 && v.stride(3) == 1 && mask.stride(1) == 1, "decode_attention: D must be contiguous");
    q = q.contiguous();
    const int64_t B = q.size(0), KV = q.size(1), G = q.size(2), D = q.size(3), L = k.size(2);
    auto out = torch::empty_like(q);
    const float* qp = q.data_ptr<float>();
    const float* kp = k.data_ptr<float>();
    const float* vp = v.data_ptr<float>();
    const float* mp = mask.data_ptr<float>();
    float* op = out.data_ptr<float>();
    const int64_t ks0 = k.stride(0), ks1 = k.stride(1), ks2 = k.stride(2);
    const int64_t vs0 = v.stride(0), vs1 = v.stride(1), vs2 = v.stride(2);
    const int64_t ms0 = mask.stride(0);
    const float s = static_cast<float>(scale);
    constexpr int64_t BLOCK = 32;
    at::parallel_for(0, B * KV, 1, [&](int64_t begin, int64_t end) {
        std::vector<float> acc(D);
        float e[BLOCK];
        for (int64_t bh = begin; bh < end; ++bh) {
            const int64_t b = bh / KV, h = bh % KV;
            const float* kb = kp + b * ks0 + h * ks1;
            const float* vb = vp + b * vs0 + h * vs1;
            const float* mb = mp + b * ms0;
            // the next (row, head) block's keys and values, fetched while this one is computed
            const int64_t nb = (bh + 1) / KV, nh = (bh + 1) % KV;
            const bool more = bh + 1 < end;
            const float* kn = kp + nb * ks0 + nh * ks1;
            const float* vn = vp + nb * vs0 + nh * vs1;
            for (int64_t g = 0; g < G; ++g) {
                const float* qv = qp + ((b * KV + h) * G + g) * D;
                float* a = acc.data();
                for (int64_t d = 0; d < D; ++d) a[d] = 0.f;
                float best = -INFINITY, total = 0.f;
                // online softmax over blocks of keys: K and V of a block are read together
                for (int64_t l0 = 0; l0 < L; l0 += BLOCK) {
                    const int64_t n = std::min(BLOCK, L - l0);
                    float block_best = -INFINITY;
                    for (int64_t j = 0; j < n; ++j) {
                        const float* kl = kb + (l0 + j) * ks2;
                        if (more && g == 0) {
                            __builtin_prefetch(kn + (l0 + j) * ks2);
                            __builtin_prefetch(kn + (l0 + j) * ks2 + 16);
                        }
                        float dot = 0.f;
                        for (int64_t d = 0; d < D; ++d) dot += qv[d] * kl[d];
                        e[j] = dot * s + mb[l0 + j];
                        block_best = e[j] > block_best ? e[j] : block_best;
                    }
                    if (block_best == -INFINITY) continue;  // every key of the block is masked
                    if (block_best > best) {  // rescale what was summed under the old maximum
                        const float shrink = best == -INFINITY ? 0.f : exp_nonpositive(best - block_best);
                        for (int64_t d = 0; d < D; ++d) a[d] *= shrink;
                        total *= shrink;
                        best = block_best;
                    }
                    for (int64_t j = 0; j < n; ++j) {
                        e[j] = exp_nonpositive(e[j] - best);
                        total += e[j];
                    }
                    for (int64_t j = 0; j < n; ++j) {
                        const float p = e[j];
                        const float* vl = vb + (l0 + j) * vs2;
                        if (more && g == 0) {
                            __builtin_prefetch(vn + (l0 + j) * vs2);
                            __builtin_prefetch(vn + (l0 + j) * vs2 + 16);
                        }
                        for (int64_t d = 0; d < D; ++d) a[d] += p * vl[d];
                    }
                }
                float* o = op + ((b * KV + h) * G + g) * D;
                const float inv = 1.f / total;
                for (int64_t d = 0; d < D; ++d) o[d] = a[d] * inv;
            }
        }
    });
    return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("decode_attention", &decode_attention, "softmax(scale * q.K^T + mask) V, one query per (row, head)");
}
