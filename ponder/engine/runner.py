"""A lean forward pass for Llama-family decoders over a preallocated KV cache.

Hugging Face's forward is general (cache classes, mask builders, hooks); at tiny model sizes and in
the decode loop that generality costs more than the matmuls. This runner reads the *same*
parameter tensors as the HF module (no copy, so an RL update is visible at once; only the fused
QKV / gate-up weights are rebuilt by `refresh()`) and does just the math:

    x = embed(tokens)
    for each layer:  x += o(attn(rope(q), rope(k), v))  ;  x += down(silu(gate) * up)
    logits = lm_head(norm(x[:, -1]))          # only the last position: that is all sampling needs

Supported: the Llama layout (q/k/v/o_proj, gate/up/down_proj, two RMSNorms), which covers Llama,
Qwen2 / Qwen2.5 (QKV bias), Qwen3 (q_norm / k_norm) and Mistral. Rotary embeddings come from the
model's own `rotary_emb`, so every RoPE scaling type the checkpoint declares is honoured.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ponder.errors import PonderError

SUPPORTED = ("llama", "qwen2", "qwen3", "mistral")


class KVCache:
    """Per-layer key/value tensors (B, kv_heads, capacity, head_dim) and a key-validity mask."""

    def __init__(self, layers: int, batch: int, kv_heads: int, capacity: int, head_dim: int, like):
        shape = (batch, kv_heads, capacity, head_dim)
        self.k = [torch.zeros(shape, dtype=like.dtype, device=like.device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=like.dtype, device=like.device) for _ in range(layers)]
        self.valid = torch.zeros(batch, capacity, dtype=torch.bool, device=like.device)
        self.length = 0  # slots filled so far (the same for every row: rows are left-padded)

    def select(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (compacting finished sequences away, or fanning a prefill out to n)."""
        self.k = [k.index_select(0, rows) for k in self.k]
        self.v = [v.index_select(0, rows) for v in self.v]
        self.valid = self.valid.index_select(0, rows)


class LlamaRunner:
    def __init__(self, model):
        model_type = getattr(model.config, "model_type", "?")
        if model_type not in SUPPORTED:
            raise PonderError(
                f"the engine runs the Llama family {SUPPORTED}; this checkpoint is {model_type!r}. "
                "Convert it or open an issue naming the architecture."
            )
        self.model = model
        self.core = model.model
        cfg = model.config
        attn = self.core.layers[0].self_attn
        self.head_dim = attn.head_dim
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.scaling = attn.scaling
        self.refresh()

    @property
    def device(self):
        return self.core.embed_tokens.weight.device

    @property
    def dtype(self):
        return self.core.embed_tokens.weight.dtype

    @torch.no_grad()
    def refresh(self) -> None:
        """Rebuild the fused weights from the model's current parameters (call after an update)."""
        self.fused = []
        for layer in self.core.layers:
            a, m = layer.self_attn, layer.mlp
            qkv_w = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
            qkv_b = None
            if a.q_proj.bias is not None:
                qkv_b = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
            gate_up = torch.cat([m.gate_proj.weight, m.up_proj.weight])
            self.fused.append((qkv_w, qkv_b, gate_up))

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        like = self.core.embed_tokens.weight
        cache = KVCache(len(self.core.layers), batch, self.kv_heads, capacity, self.head_dim, like)
        # RoPE tables for every position the cache can hold, computed once by the model's own
        # rotary module and then only indexed: cheaper than recomputing them every step.
        positions = torch.arange(capacity, device=like.device)[None]
        cos, sin = self.core.rotary_emb(like[:1, None], positions)
        cache.cos, cache.sin = cos[0], sin[0]  # (capacity, head_dim)
        return cache

    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache, new_valid: torch.Tensor):
        """Run `tokens` (B, T) at `positions` (B, T), appending to `cache`; logits of the last step.

        `new_valid` (B, T) marks real tokens (False = left padding, never attended to)."""
        B, T = tokens.shape
        start = cache.length
        end = start + T
        cache.valid[:, start:end] = new_valid
        x = self.core.embed_tokens(tokens)  # (B, T, H)
        cos, sin = cache.cos[positions].unsqueeze(1), cache.sin[positions].unsqueeze(1)  # (B, 1, T, hd)
        mask = self._mask(cache.valid[:, :end], start, T)
        for layer, (qkv_w, qkv_b, gate_up), k_cache, v_cache in zip(
            self.core.layers, self.fused, cache.k, cache.v, strict=True
        ):
            x = x + self._attention(layer, qkv_w, qkv_b, x, cos, sin, k_cache, v_cache, start, end, mask)
            h = _rms_norm(layer.post_attention_layernorm, x)
            gate, up = F.linear(h, gate_up).chunk(2, dim=-1)
            x = x + layer.mlp.down_proj(F.silu(gate) * up)
        cache.length = end
        last = _rms_norm(self.core.norm, x[:, -1])  # only the last position is sampled from
        return self.model.lm_head(last).float()  # (B, vocab)

    def _attention(self, layer, qkv_w, qkv_b, x, cos, sin, k_cache, v_cache, start, end, mask):
        a = layer.self_attn
        B, T, _ = x.shape
        qkv = F.linear(_rms_norm(layer.input_layernorm, x), qkv_w, qkv_b)
        q, k, v = qkv.split([self.heads * self.head_dim, *(2 * [self.kv_heads * self.head_dim])], dim=-1)
        q = q.view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, heads, T, hd)
        k = k.view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        if hasattr(a, "q_norm"):  # Qwen3 normalises q and k per head before RoPE
            q, k = a.q_norm(q), a.k_norm(k)
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        k_cache[:, :, start:end] = k
        v_cache[:, :, start:end] = v
        out = self._attend(q, k_cache[:, :, :end], v_cache[:, :, :end], mask)
        return a.o_proj(out.transpose(1, 2).reshape(B, T, self.heads * self.head_dim))

    def _attend(self, q, k, v, mask):
        if q.shape[2] > 1:  # prefill: the fused kernel wins on long queries
            gqa = self.kv_heads != self.heads
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling, enable_gqa=gqa)
        # decode: one query per row; two small matmuls beat the CPU flash kernel's set-up cost
        if self.kv_heads != self.heads:
            B, _, L, D = k.shape
            group = self.heads // self.kv_heads
            q = q.view(B, self.kv_heads, group, D)  # (B, kv, group, D): each kv head serves a group
            scores = (q @ k.transpose(-1, -2)) * self.scaling
            scores = scores.masked_fill(~mask, float("-inf")).softmax(-1)
            return (scores @ v).view(B, self.heads, 1, D)
        scores = (q @ k.transpose(-1, -2)) * self.scaling  # (B, heads, 1, L)
        return scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v

    @staticmethod
    def _mask(valid: torch.Tensor, start: int, T: int) -> torch.Tensor:
        """(B, 1, T, end) boolean: causal, no padding keys; each query may always see itself, so a
        padding row never has an empty softmax (its output is garbage, but finite and unused)."""
        end = valid.shape[1]
        if T == 1:
            return valid[:, None, None, :]
        q_pos = torch.arange(start, end, device=valid.device)[:, None]
        k_pos = torch.arange(end, device=valid.device)[None, :]
        causal = k_pos <= q_pos  # (T, end)
        mask = causal[None] & valid[:, None, :]
        return (mask | (k_pos == q_pos)[None]).unsqueeze(1)


def _rms_norm(norm, x: torch.Tensor) -> torch.Tensor:
    """The HF RMSNorm module's math in one fused op (same weight, same epsilon)."""
    eps = getattr(norm, "variance_epsilon", None) or getattr(norm, "eps", 1e-6)
    return F.rms_norm(x, (x.shape[-1],), norm.weight, eps)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
