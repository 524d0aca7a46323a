// ponder's compiled CPU forward pass for the decode loop: a flat batch of tokens, each at its own
// (row, position) of the runner's pool of KV-cache slots (ponder/engine/runner.py), through every
// layer of a Llama-family decoder. A decode step is one token per running sequence; a joining
// prompt or a tool's output is several tokens of one row; one call runs both together.
//
// Why our own: at decode time a small model's step is not its matmuls. For the shipped base (4
// layers, 64 rows) the torch version of the step ran about 25 ATen calls per layer from Python, and
// the calls between the matmuls (norms, RoPE, the cache writes, SiLU, their dispatch) cost more
// than the matmuls; the batched matmuls of attention read the cache at a third of the machine's
// bandwidth. Here the whole step is one call: the matmuls are ours (gemm.h, on weights the runner
// packs once per weight version; oneDNN's or ATen's where this CPU has no AVX-512) and everything
// between them is a loop over the tokens.
//
//   x = embed[tokens]
//   per layer:  h = rms(x) ; qkv = h W_qkv ; rope(q), rope(k) ; k, v -> pool[row, :, position]
//               x += attention(q, pool[row, :, :position + 1]) W_o
//               x += (silu(rms(x) W_gate) * rms(x) W_up) W_down
//   return head(rms(x[last]))    (or rms(x[last]) alone, for a head the runner runs itself)
//
// Every token's key is written before any token attends, and a token attends to its row's keys
// [0, its position] only: so the tokens of one prompt attend causally, with no mask to build.
// Attention reads each (token, kv head)'s keys and values once, in blocks (an online softmax, as
// flash decoding does), and prefetches the next (token, head)'s while it computes this one. Built
// on first use by torch.utils.cpp_extension (kernels.py); where it cannot be built, the runner's
// torch version of the same step runs.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include "gemm.h"
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t BLOCK = 32;  // keys per block of the online softmax

// e^x for x <= 0: Cephes' expf polynomial, branch-free so the loops that call it vectorize; within
// 2 ulp of expf. Below -87.3 it returns 0, as expf underflows.
inline float exp_nonpositive(float x) {
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

// out[i] = x[i] * w[i] / sqrt(mean(x^2) + eps): the RMSNorm of Llama's layers (float32 throughout)
inline void rms_norm_row(const float* x, const float* w, float eps, int64_t n, float* out) {
    float sum = 0.f;
    for (int64_t i = 0; i < n; ++i) sum += x[i] * x[i];
    const float inv = 1.f / std::sqrt(sum / static_cast<float>(n) + eps);
    for (int64_t i = 0; i < n; ++i) out[i] = w[i] * (x[i] * inv);
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
    const int64_t B = x.size(0), H = x.size(1);
    auto out = at::empty_like(x);
    const float *xp = x.data_ptr<float>(), *wp = w.data_ptr<float>();
    float* op = out.data_ptr<float>();
    for (int64_t b = 0; b < B; ++b) rms_norm_row(xp + b * H, wp, static_cast<float>(eps), H, op + b * H);
    return out;
}

// RoPE with the half-rotation's sign in the table: out = x * cos + rotate_half(x) * sin, where
// sin_signed holds -sin in its first half and rotate_half(x) = [x[D/2:], x[:D/2]].
inline void rope_row(const float* x, const float* cos, const float* sin_signed, int64_t D, float* out) {
    const int64_t half = D / 2;
    for (int64_t i = 0; i < half; ++i) out[i] = x[i] * cos[i] + x[i + half] * sin_signed[i];
    for (int64_t i = half; i < D; ++i) out[i] = x[i] * cos[i] + x[i - half] * sin_signed[i];
}

// A linear layer's tensors, in the order the runner lists them: the weight (N, K), oneDNN's packed
// copy, ours (gemm.h), the bias; an empty tensor for each one it has not.
struct Linear {
    const at::Tensor *weight, *onednn, *ours, *bias;
    explicit Linear(const at::Tensor* t) : weight(t), onednn(t + 1), ours(t + 2), bias(t + 3) {}
};
constexpr int64_t LINEAR_TENSORS = 4;

// x W^T + bias: our kernel where the weight is packed for it; else oneDNN's op on its packed weight
// from `min_macs` multiply-adds up (its call costs about 10 us of set-up, which only a large enough
// product repays); else at::linear.
at::Tensor linear(const at::Tensor& x, const Linear& w, int64_t min_macs) {
    const bool has_bias = w.bias->numel() > 0;
    const int64_t M = x.size(0), N = w.weight->size(0), K = w.weight->size(1);
    if (w.ours->numel() > 0) {
        auto y = at::empty({M, N}, x.options());
        gemm::multiply(x.data_ptr<float>(), M, K, w.ours->data_ptr<float>(), N,
                       has_bias ? w.bias->data_ptr<float>() : nullptr, y.data_ptr<float>(), false);
        return y;
    }
    if (w.onednn->numel() > 0 && M * N * K >= min_macs) {
        static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
        std::vector<c10::IValue> stack{x, *w.onednn, has_bias ? c10::IValue(*w.bias) : c10::IValue(),
                                       std::string("none"), c10::List<std::optional<at::Scalar>>(), std::string("")};
        op.callBoxed(&stack);
        return stack[0].toTensor();
    }
    return has_bias ? at::linear(x, *w.weight, *w.bias) : at::linear(x, *w.weight);
}

// out += x W^T + bias (a residual connection), written in place by our kernel where it runs.
void linear_add(const at::Tensor& x, const Linear& w, at::Tensor& out, int64_t min_macs) {
    if (w.ours->numel() == 0) {
        out.add_(linear(x, w, min_macs));
        return;
    }
    const int64_t N = w.weight->size(0), K = w.weight->size(1);
    gemm::multiply(x.data_ptr<float>(), x.size(0), K, w.ours->data_ptr<float>(), N,
                   w.bias->numel() > 0 ? w.bias->data_ptr<float>() : nullptr, out.data_ptr<float>(), true);
}

struct Shape {
    int64_t heads, kv_heads, head_dim;
};

// q, k (per head RMSNorm where the model has one: Qwen3), RoPE at each row's position; the keys
// and values written into the row's slot of the pool. Returns the rotated queries (B, heads * D).
at::Tensor rope_and_write(const at::Tensor& qkv, const Shape& s, const int64_t* rows, const int64_t* positions,
                          const at::Tensor& cos, const at::Tensor& sin_signed, at::Tensor& k_pool,
                          at::Tensor& v_pool, const at::Tensor& q_norm, const at::Tensor& k_norm, double qk_eps) {
    const int64_t B = qkv.size(0), H = s.heads, KV = s.kv_heads, D = s.head_dim, W = (H + 2 * KV) * D;
    auto q = at::empty({B, H * D}, qkv.options());
    const float *src = qkv.data_ptr<float>(), *cp = cos.data_ptr<float>(), *sp = sin_signed.data_ptr<float>();
    const float* qn = q_norm.numel() > 0 ? q_norm.data_ptr<float>() : nullptr;
    const float* kn = k_norm.numel() > 0 ? k_norm.data_ptr<float>() : nullptr;
    float *qp = q.data_ptr<float>(), *kp = k_pool.data_ptr<float>(), *vp = v_pool.data_ptr<float>();
    const int64_t ks0 = k_pool.stride(0), ks1 = k_pool.stride(1), ks2 = k_pool.stride(2);
    const int64_t vs0 = v_pool.stride(0), vs1 = v_pool.stride(1), vs2 = v_pool.stride(2);
    std::vector<float> normed(D);
    for (int64_t b = 0; b < B; ++b) {
        const float* row = src + b * W;
        const float *c = cp + positions[b] * D, *sn = sp + positions[b] * D;
        for (int64_t h = 0; h < H + KV; ++h) {
            const float* x = row + h * D;
            const float* norm = h < H ? qn : kn;
            if (norm != nullptr) {
                rms_norm_row(x, norm, static_cast<float>(qk_eps), D, normed.data());
                x = normed.data();
            }
            float* out = h < H ? qp + (b * H + h) * D : kp + rows[b] * ks0 + (h - H) * ks1 + positions[b] * ks2;
            rope_row(x, c, sn, D, out);
        }
        for (int64_t h = 0; h < KV; ++h)
            std::memcpy(vp + rows[b] * vs0 + h * vs1 + positions[b] * vs2, row + (H + KV + h) * D, D * sizeof(float));
    }
    return q;
}

// softmax(scale * q.K^T + bias) V for one query per (row, query head), over keys [0, position] of
// the row's slot. q: (B, heads * D), query head j served by kv head j / (heads / kv_heads).
at::Tensor attention(const at::Tensor& q, const Shape& s, const int64_t* rows, const int64_t* positions,
                     const at::Tensor& k_pool, const at::Tensor& v_pool, const at::Tensor& bias, double scale) {
    const int64_t B = q.size(0), KV = s.kv_heads, G = s.heads / s.kv_heads, D = s.head_dim;
    auto out = at::empty_like(q);
    const float *qp = q.data_ptr<float>(), *kp = k_pool.data_ptr<float>(), *vp = v_pool.data_ptr<float>();
    const float* mp = bias.data_ptr<float>();
    float* op = out.data_ptr<float>();
    const int64_t ks0 = k_pool.stride(0), ks1 = k_pool.stride(1), ks2 = k_pool.stride(2);
    const int64_t vs0 = v_pool.stride(0), vs1 = v_pool.stride(1), vs2 = v_pool.stride(2);
    const int64_t ms0 = bias.stride(0);
    const float sc = static_cast<float>(scale);
    at::parallel_for(0, B * KV, 1, [&](int64_t begin, int64_t end) {
        std::vector<float> acc(D);
        float e[BLOCK];
        for (int64_t bh = begin; bh < end; ++bh) {
            const int64_t b = bh / KV, h = bh % KV, L = positions[b] + 1;
            const float* kb = kp + rows[b] * ks0 + h * ks1;
            const float* vb = vp + rows[b] * vs0 + h * vs1;
            const float* mb = mp + rows[b] * ms0;
            // the next (row, head)'s keys and values, fetched while this one is computed
            const bool more = bh + 1 < end;
            const int64_t nb = more ? (bh + 1) / KV : b, nh = (bh + 1) % KV;
            const float* kn = kp + rows[nb] * ks0 + nh * ks1;
            const float* vn = vp + rows[nb] * vs0 + nh * vs1;
            for (int64_t g = 0; g < G; ++g) {
                const float* qv = qp + (b * KV + h) * G * D + g * D;
                float* a = acc.data();
                std::fill(a, a + D, 0.f);
                float best = -INFINITY, total = 0.f;
                for (int64_t l0 = 0; l0 < L; l0 += BLOCK) {  // online softmax: a block's K and V read together
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
                        e[j] = dot * sc + mb[l0 + j];
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
                float* o = op + (b * KV + h) * G * D + g * D;
                const float inv = 1.f / total;
                for (int64_t d = 0; d < D; ++d) o[d] = a[d] * inv;
            }
        }
    });
    return out;
}

// silu(gate) * up, the halves of the fused gate-up projection: (B, 2I) -> (B, I)
at::Tensor silu_mul(const at::Tensor& gate_up) {
    const int64_t B = gate_up.size(0), I = gate_up.size(1) / 2;
    auto out = at::empty({B, I}, gate_up.options());
    const float* src = gate_up.data_ptr<float>();
    float* op = out.data_ptr<float>();
    for (int64_t b = 0; b < B; ++b) {
        const float *g = src + b * 2 * I, *u = g + I;
        float* o = op + b * I;
        for (int64_t i = 0; i < I; ++i) {  // sigmoid through e^-|g|, so the exponent never overflows
            const float e = exp_nonpositive(-std::fabs(g[i]));
            const float sigmoid = (g[i] >= 0.f ? 1.f : e) / (1.f + e);
            o[i] = g[i] * sigmoid * u[i];
        }
    }
    return out;
}

void check_rows(const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.scalar_type() == at::kLong && t.dim() == 1 && t.is_contiguous(), name, ": a 1-d int64 tensor");
}

}  // namespace

// The per-layer tensors, in this order (an empty tensor where the model has none): ln1, the QKV
// linear (LINEAR_TENSORS: weight, oneDNN's, ours, bias), the o linear, ln2, the gate-up linear, the
// down linear, q_norm, k_norm
enum : int64_t { LN1 = 0, QKV = 1, O = 5, LN2 = 9, GATE_UP = 10, DOWN = 14, Q_NORM = 18, K_NORM = 19 };
constexpr int64_t LAYER_TENSORS = 20;

// The forward pass of B tokens: tokens[b] at positions[b] of pool row rows[b]. Returns the logits
// at the tokens `last` (all when empty): the final norm, then the head (LINEAR_TENSORS tensors;
// none: the normed hidden states, for a head the runner runs itself). eps: per layer [ln1, ln2, q/k norm];
// scales: per layer, the attention scale left after the runner folded the rest into W_q.
at::Tensor forward_tokens(at::Tensor tokens, at::Tensor rows, at::Tensor positions, at::Tensor embed,
                       std::vector<at::Tensor> layers, std::vector<at::Tensor> k_pools,
                       std::vector<at::Tensor> v_pools, at::Tensor bias, at::Tensor cos, at::Tensor sin_signed,
                       int64_t heads, int64_t kv_heads, std::vector<double> eps, std::vector<double> scales,
                       at::Tensor last, at::Tensor norm, double norm_eps, std::vector<at::Tensor> head,
                       int64_t min_macs) {
    check_rows(tokens, "tokens"), check_rows(rows, "rows"), check_rows(positions, "positions");
    const int64_t n_layers = static_cast<int64_t>(k_pools.size());
    TORCH_CHECK(static_cast<int64_t>(layers.size()) == n_layers * LAYER_TENSORS && v_pools.size() == k_pools.size()
                && static_cast<int64_t>(eps.size()) == 3 * n_layers && static_cast<int64_t>(scales.size()) == n_layers,
                "forward_tokens: per-layer arguments do not match the number of layers");
    TORCH_CHECK(embed.scalar_type() == at::kFloat && bias.scalar_type() == at::kFloat, "forward_tokens: float32 only");
    const Shape s{heads, kv_heads, k_pools[0].size(3)};
    const int64_t *rp = rows.data_ptr<int64_t>(), *pp = positions.data_ptr<int64_t>();
    float* bp = bias.data_ptr<float>();
    for (int64_t b = 0; b < tokens.size(0); ++b) bp[rp[b] * bias.stride(0) + pp[b]] = 0.f;  // the new key is visible
    auto x = embed.index_select(0, tokens);
    for (int64_t i = 0; i < n_layers; ++i) {
        const at::Tensor* w = layers.data() + i * LAYER_TENSORS;
        auto qkv = linear(rms_norm(x, w[LN1], eps[3 * i]), Linear(w + QKV), min_macs);
        auto q = rope_and_write(qkv, s, rp, pp, cos, sin_signed, k_pools[i], v_pools[i], w[Q_NORM], w[K_NORM],
                                eps[3 * i + 2]);
        linear_add(attention(q, s, rp, pp, k_pools[i], v_pools[i], bias, scales[i]), Linear(w + O), x, min_macs);
        auto gate_up = linear(rms_norm(x, w[LN2], eps[3 * i + 1]), Linear(w + GATE_UP), min_macs);
        linear_add(silu_mul(gate_up), Linear(w + DOWN), x, min_macs);
    }
    if (last.numel() > 0) x = x.index_select(0, last);  // only the tokens whose next token is wanted
    x = rms_norm(x, norm, norm_eps);
    return head.empty() ? x : linear(x, Linear(head.data()), min_macs);
}

// A linear layer through ours alone (the runner's head; tests): x (M, K) -> (M, N).
at::Tensor linear_ours(at::Tensor x, at::Tensor packed, int64_t N, at::Tensor bias) {
    TORCH_CHECK(x.scalar_type() == at::kFloat && x.dim() == 2, "linear: a 2-d float32 input");
    x = x.contiguous();
    auto y = at::empty({x.size(0), N}, x.options());
    gemm::multiply(x.data_ptr<float>(), x.size(0), x.size(1), packed.data_ptr<float>(), N,
                   bias.numel() > 0 ? bias.data_ptr<float>() : nullptr, y.data_ptr<float>(), false);
    return y;
}

// The attention alone (for tests against softmax over matmuls): q (B, heads * D) over pool rows
// `rows`, keys [0, positions[b]] each.
at::Tensor decode_attention(at::Tensor q, at::Tensor rows, at::Tensor positions, at::Tensor k_pool,
                            at::Tensor v_pool, at::Tensor bias, int64_t heads, double scale) {
    check_rows(rows, "rows"), check_rows(positions, "positions");
    TORCH_CHECK(q.scalar_type() == at::kFloat && k_pool.scalar_type() == at::kFloat, "decode_attention: float32 only");
    const Shape s{heads, k_pool.size(1), k_pool.size(3)};
    return attention(q.contiguous(), s, rows.data_ptr<int64_t>(), positions.data_ptr<int64_t>(), k_pool, v_pool,
                     bias, scale);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    // without the interpreter lock while they run: the engine process's other thread (reading
    // requests from the pipe) runs meanwhile
    m.def("forward_tokens", &forward_tokens, "a Llama-family decoder's layers over tokens at (row, position) of the KV pool",
          py::call_guard<py::gil_scoped_release>());
    m.def("decode_attention", &decode_attention, "softmax(scale * q.K^T + bias) V over pool rows, one query each",
          py::call_guard<py::gil_scoped_release>());
    m.def("pack_linear", &gemm::pack, "a weight (N, K) packed for `linear`; empty without AVX-512");
    m.def("linear", &linear_ours, "x W^T + bias with a weight from `pack_linear`",
          py::call_guard<py::gil_scoped_release>());
    m.attr("LAYER_TENSORS") = LAYER_TENSORS;
}
