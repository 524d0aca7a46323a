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

import copy
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ponder.errors import PonderError

SUPPORTED = ("llama", "qwen2", "qwen3", "mistral")


class _Layer(NamedTuple):
    """One decoder layer's tensors, gathered once per `refresh` (no module calls in the hot loop)."""

    ln1: torch.nn.Module
    qkv: torch.Tensor
    qkv_bias: torch.Tensor | None
    o: torch.Tensor
    o_bias: torch.Tensor | None
    ln2: torch.nn.Module
    gate_up: torch.Tensor
    down: torch.Tensor
    q_norm: torch.nn.Module | None
    k_norm: torch.nn.Module | None
    scale: float  # what is left of the attention scale after folding it into the queries


class KVCache:
    """Per-layer key/value tensors (B, kv_heads, capacity, head_dim) and a key-validity mask."""

    def __init__(self, layers: int, batch: int, kv_heads: int, capacity: int, head_dim: int, like):
        shape = (batch, kv_heads, capacity, head_dim)
        self.k = [torch.zeros(shape, dtype=like.dtype, device=like.device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=like.dtype, device=like.device) for _ in range(layers)]
        self.valid = torch.zeros(batch, capacity, dtype=torch.bool, device=like.device)
        # the same, as an additive attention bias (0 or -inf), kept up to date as slots fill
        self.bias = torch.full((batch, capacity), float("-inf"), dtype=like.dtype, device=like.device)
        self.length = 0  # slots filled so far (the same for every row: rows are left-padded)

    @property
    def capacity(self) -> int:
        return self.valid.shape[1]

    def select(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (compacting finished sequences away, or fanning a prefill out to n)."""
        self.k = [k.index_select(0, rows) for k in self.k]
        self.v = [v.index_select(0, rows) for v in self.v]
        self.valid = self.valid.index_select(0, rows)
        self.bias = self.bias.index_select(0, rows)

    # Row surgery for a running batch (engine/live.py). Slots can move: a row's positions, and so
    # its RoPE, were fixed when its keys were written, so padding slots never changes what it sees.

    def take(self, rows: list[int]) -> KVCache:
        """A new cache of just `rows` (this one is left as it is)."""
        out = copy.copy(self)
        out.select(torch.tensor(rows, device=self.valid.device))
        return out

    def pad_left(self, n: int) -> None:
        """`n` empty slots before every row's first one (to line rows up with a longer batch)."""
        self._pad(n, left=True)
        self.length += n

    def grow_right(self, n: int) -> None:
        """`n` more free slots at the end (room for more tokens)."""
        self._pad(n, left=False)

    def trim_left(self) -> None:
        """Drop the leading slots no row uses any more (left there by a longer row that has left),
        so a long-running batch does not attend over ever more padding."""
        used = self.valid[:, : self.length].any(0).nonzero()
        first = int(used[0]) if len(used) else self.length
        if first:
            self.k = [k[:, :, first:] for k in self.k]
            self.v = [v[:, :, first:] for v in self.v]
            self.valid, self.bias = self.valid[:, first:], self.bias[:, first:]
            self.length -= first

    def stack(self, other: KVCache) -> KVCache:
        """This cache's rows, then `other`'s (the same length and capacity)."""
        if (self.length, self.capacity) != (other.length, other.capacity):
            raise ValueError("stack: caches must be padded to the same length and capacity first")
        out = copy.copy(self)
        out.k = [torch.cat(pair) for pair in zip(self.k, other.k, strict=True)]
        out.v = [torch.cat(pair) for pair in zip(self.v, other.v, strict=True)]
        out.valid = torch.cat([self.valid, other.valid])
        out.bias = torch.cat([self.bias, other.bias])
        return out

    def _pad(self, n: int, left: bool) -> None:
        def pad(t: torch.Tensor, value, dim: int) -> torch.Tensor:
            shape = list(t.shape)
            shape[dim] = n
            filler = torch.full(shape, value, dtype=t.dtype, device=t.device)
            return torch.cat([filler, t] if left else [t, filler], dim=dim)

        self.k = [pad(k, 0.0, 2) for k in self.k]
        self.v = [pad(v, 0.0, 2) for v in self.v]
        self.valid = pad(self.valid, False, 1)
        self.bias = pad(self.bias, float("-inf"), 1)


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
        """Rebuild the fused weights from the model's current parameters (call after an update).

        Besides fusing QKV and gate/up into one matmul each, the attention scale is folded into the
        query rows (RoPE is linear, so scaling before it is the same as after), saving one op per
        layer per step; not for Qwen3, whose per-head q_norm would undo it."""
        self.layers = []
        for layer in self.core.layers:
            a, m = layer.self_attn, layer.mlp
            fold = 1.0 if hasattr(a, "q_norm") else self.scaling
            qkv_w = torch.cat([a.q_proj.weight * fold, a.k_proj.weight, a.v_proj.weight])
            qkv_b = None
            if a.q_proj.bias is not None:
                qkv_b = torch.cat([a.q_proj.bias * fold, a.k_proj.bias, a.v_proj.bias])
            gate_up = torch.cat([m.gate_proj.weight, m.up_proj.weight])
            self.layers.append(
                _Layer(
                    layer.input_layernorm, qkv_w, qkv_b, a.o_proj.weight, a.o_proj.bias,
                    layer.post_attention_layernorm, gate_up, m.down_proj.weight,
                    getattr(a, "q_norm", None), getattr(a, "k_norm", None), self.scaling / fold,
                )
            )  # fmt: skip

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        like = self.core.embed_tokens.weight
        cache = KVCache(len(self.core.layers), batch, self.kv_heads, capacity, self.head_dim, like)
        self.set_rope(cache)
        return cache

    def set_rope(self, cache: KVCache) -> None:
        """RoPE tables for every position the cache can hold, computed once by the model's own
        rotary module and then only indexed: cheaper than recomputing them every step. (A row's
        positions never exceed its slots, so tables as long as the capacity cover every row.)"""
        like = self.core.embed_tokens.weight
        positions = torch.arange(cache.capacity, device=like.device)[None]
        cos, sin = self.core.rotary_emb(like[:1, None], positions)
        half = self.head_dim // 2
        cache.cos = cos[0]  # (capacity, head_dim)
        cache.sin_signed = torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1)

    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache, new_valid: torch.Tensor):
        """Run `tokens` (B, T) at `positions` (B, T), appending to `cache`; logits of the last step.

        `new_valid` (B, T) marks real tokens (False = left padding, never attended to)."""
        B, T = tokens.shape
        start = cache.length
        end = start + T
        cache.valid[:, start:end] = new_valid
        cache.bias[:, start:end].masked_fill_(new_valid, 0.0)
        x = self.core.embed_tokens(tokens)  # (B, T, H)
        # RoPE as x * cos + roll(x) * sin_signed: the half-rotation's sign lives in the table
        cos, sin = cache.cos[positions].unsqueeze(2), cache.sin_signed[positions].unsqueeze(2)  # (B, T, 1, hd)
        # decode: an additive (B, 1, 1, end) bias shared by every layer; prefill: a boolean mask
        mask = cache.bias[:, None, None, :end] if T == 1 else self._mask(cache.valid[:, :end], start, T)
        for w, k_cache, v_cache in zip(self.layers, cache.k, cache.v, strict=True):
            x += self._attention(w, x, cos, sin, k_cache, v_cache, start, end, mask)
            gate, up = F.linear(_rms_norm(w.ln2, x), w.gate_up).chunk(2, dim=-1)
            x += F.linear(F.silu(gate, inplace=True).mul_(up), w.down)
        cache.length = end
        last = _rms_norm(self.core.norm, x[:, -1])  # only the last position is sampled from
        return self.model.lm_head(last).float()  # (B, vocab)

    def _attention(self, w: _Layer, x, cos, sin, k_cache, v_cache, start, end, mask):
        B, T, _ = x.shape
        H, KV, D = self.heads, self.kv_heads, self.head_dim
        qkv = F.linear(_rms_norm(w.ln1, x), w.qkv, w.qkv_bias).view(B, T, H + 2 * KV, D)
        qk, v = qkv[:, :, : H + KV], qkv[:, :, H + KV :]
        if w.q_norm is not None:  # Qwen3 normalises q and k per head before RoPE
            qk = torch.cat([w.q_norm(qk[:, :, :H]), w.k_norm(qk[:, :, H:])], dim=2)
        qk = torch.addcmul(qk * cos, qk.roll(D // 2, dims=-1), sin)  # RoPE on q and k at once
        q, k = qk[:, :, :H].transpose(1, 2), qk[:, :, H:].transpose(1, 2)  # (B, heads, T, D)
        k_cache[:, :, start:end] = k
        v_cache[:, :, start:end] = v.transpose(1, 2)
        out = self._attend(q, k_cache[:, :, :end], v_cache[:, :, :end], mask, w.scale)
        # (B, heads, T, D) -> (B, T, heads * D); with T == 1 that is a free view, no copy
        out = out.view(B, T, H * D) if T == 1 else out.transpose(1, 2).reshape(B, T, H * D)
        return F.linear(out, w.o, w.o_bias)

    def _attend(self, q, k, v, mask, scale: float):
        if q.shape[2] > 1:  # prefill: the fused kernel wins on long queries
            gqa = self.kv_heads != self.heads
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)
        # decode: one query per row; two small matmuls beat the CPU flash kernel's set-up cost.
        # Each kv head serves a group of query heads: (B, kv, group, D) @ (B, kv, D, L).
        B, _, L, D = k.shape
        scores = q.view(B, self.kv_heads, -1, D) @ k.transpose(-1, -2)
        if scale != 1.0:
            scores.mul_(scale)
        scores = scores.add_(mask).softmax(-1)  # mask is additive here: 0 or -inf
        return (scores @ v).view(B, self.heads, 1, D)

    @staticmethod
    def _mask(valid: torch.Tensor, start: int, T: int) -> torch.Tensor:
        """(B, 1, T, end) boolean: causal, no padding keys; each query may always see itself, so a
        padding row never has an empty softmax (its output is garbage, but finite and unused)."""
        end = valid.shape[1]
        q_pos = torch.arange(start, end, device=valid.device)[:, None]
        k_pos = torch.arange(end, device=valid.device)[None, :]
        causal = k_pos <= q_pos  # (T, end)
        mask = causal[None] & valid[:, None, :]
        return (mask | (k_pos == q_pos)[None]).unsqueeze(1)


def _rms_norm(norm, x: torch.Tensor) -> torch.Tensor:
    """The HF RMSNorm module's math in one fused op (same weight, same epsilon)."""
    eps = getattr(norm, "variance_epsilon", None) or getattr(norm, "eps", 1e-6)
    return F.rms_norm(x, (x.shape[-1],), norm.weight, eps)
