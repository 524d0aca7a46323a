"""A lean forward pass for Llama-family decoders over a pool of KV-cache slots.

Hugging Face's forward is general (cache classes, mask builders, hooks); at tiny model sizes and in
the decode loop that generality costs more than the matmuls. This runner reads the *same*
parameter tensors as the HF module (no copy, so an RL update is visible at once; only the fused
QKV / gate-up weights and the linears' oneDNN-packed copies (linear.py) are rebuilt, once per
weight version) and does just the math:

    x = embed(tokens)
    for each layer:  x += o(attn(rope(q), rope(k), v))  ;  x += down(silu(gate) * up)
    logits = lm_head(norm(x[last real token]))        # only what sampling needs

The KV cache is a pool of slots: row r of every layer's (rows, kv_heads, capacity + 1, head_dim)
tensor belongs to one sequence, its keys at their own positions 0, 1, 2, ... A sequence joining or
leaving writes or frees its own row and moves no other row (no left padding, no concatenation).
Decode runs rows [0, hi) of the pool as one batch; rows that are free or paused this step write to
the spare slot at index `capacity`, which no one attends to.

Supported: the Llama layout (q/k/v/o_proj, gate/up/down_proj, two RMSNorms), which covers Llama,
Qwen2 / Qwen2.5 (QKV bias), Qwen3 (q_norm / k_norm) and Mistral; LoRA adapters through `peft` are
folded into the fused weights. Rotary embeddings come from the model's own `rotary_emb`, so every
RoPE scaling type the checkpoint declares is honoured.
"""

from __future__ import annotations

import bisect
import itertools
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ponder.engine.kernels import decode_kernels
from ponder.engine.linear import PACKED_MIN_MACS, Linear, or_empty

SUPPORTED = ("llama", "qwen2", "qwen3", "mistral")
EVERY_TOKEN = torch.empty(0, dtype=torch.long)  # the compiled forward's `last`: logits at every token


class _Layer(NamedTuple):
    """One decoder layer's tensors, gathered once per weight version (no module calls in the hot loop)."""

    ln1: torch.nn.Module
    qkv: Linear
    o: Linear
    ln2: torch.nn.Module
    gate_up: Linear
    down: Linear
    q_norm: torch.nn.Module | None
    k_norm: torch.nn.Module | None
    scale: float  # what is left of the attention scale after folding it into the queries


class KVPool:
    """Slots of KV cache, one row per sequence: (rows, kv_heads, capacity + 1, head_dim) per layer,
    plus an additive key bias (0 = a key this row may see, -inf = not). Index `capacity` is the
    spare slot that idle rows write to and no one reads."""

    def __init__(self, runner: LlamaRunner):
        self.runner = runner
        self.rows = self.capacity = 0
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        # the compiled step reads only keys that a sequence wrote, so its pool can be left
        # uninitialised: the OS maps a page on its first write, and slots no sequence reaches cost
        # address space, not memory. torch's step reads whole views of the pool (masked), so zeros.
        self.lazy = runner.step_args is not None

    def bytes_for(self, rows: int, capacity: int) -> int:
        """The keys and values of `rows` slots of `capacity` tokens, every layer."""
        r = self.runner
        element = r.core.embed_tokens.weight.element_size()
        return 2 * len(r.core.layers) * rows * r.kv_heads * (capacity + 1) * r.head_dim * element

    @torch.inference_mode()
    def allocate(self, rows: int, capacity: int) -> None:
        """Make room for `rows` sequences of `capacity` tokens each, keeping what the pool holds
        (a rare reallocation: callers grow it geometrically)."""
        rows, capacity = max(rows, self.rows), max(capacity, self.capacity)
        if (rows, capacity) == (self.rows, self.capacity):
            return
        r = self.runner
        like = r.core.embed_tokens.weight
        shape = (rows, r.kv_heads, capacity + 1, r.head_dim)  # + 1: the spare slot
        make = torch.empty if self.lazy else torch.zeros
        k = [make(shape, dtype=like.dtype, device=like.device) for _ in r.core.layers]
        v = [make(shape, dtype=like.dtype, device=like.device) for _ in r.core.layers]
        bias = torch.full((rows, capacity + 1), float("-inf"), dtype=like.dtype, device=like.device)
        bias[:, 0] = 0.0  # a free row attends to slot 0 (garbage, but no empty softmax, no NaN)
        if self.rows:
            old_r, old_c = self.rows, self.capacity
            for new, old in zip(k + v, self.k + self.v, strict=True):
                new[:old_r, :, :old_c] = old[:, :, :old_c]
            bias[:old_r, :old_c] = self.bias[:, :old_c]
        self.k, self.v, self.bias = k, v, bias
        self.rows, self.capacity = rows, capacity
        positions = torch.arange(capacity + 1, device=like.device)[None]
        cos, sin = r.core.rotary_emb(like[:1, None], positions)
        half = r.head_dim // 2
        self.cos = cos[0]  # (capacity + 1, head_dim): RoPE tables made once, then only indexed
        self.sin_signed = torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1)

    @torch.inference_mode()
    def release(self, slot: int) -> None:
        """Forget a slot's keys (it is free for the next sequence)."""
        self.bias[slot] = float("-inf")
        self.bias[slot, 0] = 0.0

    @torch.inference_mode()
    def copy(self, src: int, dst: int, length: int) -> None:
        """Give slot `dst` the first `length` keys of slot `src` (n samples sharing one prefill)."""
        for t in self.k + self.v:
            t[dst, :, :length] = t[src, :, :length]
        self.bias[dst] = self.bias[src]


class LlamaRunner:
    name = "lean Llama-family runner"

    def __init__(self, model):
        self.model = model
        self.hf = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft
        self.core = self.hf.model
        cfg = self.hf.config
        attn = self.core.layers[0].self_attn
        self.head_dim = attn.head_dim
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.scaling = attn.scaling
        self.context = getattr(cfg, "max_position_embeddings", None)  # the longest a pool needs to be, usually
        # ponder's compiled CPU decode step (kernels.py, csrc/decode.cpp); None: the torch step below
        self.compiled = decode_kernels() if self.device.type == "cpu" else None
        self.version = None
        self.refresh()

    @property
    def device(self):
        return self.core.embed_tokens.weight.device

    # --- weights ------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Rebuild the fused weights if the parameters changed since the last build (an optimizer step
        or `load_state_dict` bumps a tensor's version counter): once per weight version, not per call."""
        version = tuple(p._version for p in self.model.parameters())
        if version != self.version:
            self._fuse()
            self.version = version

    @torch.no_grad()
    def _fuse(self) -> None:
        """Fuse QKV and gate/up into one matmul each, and fold the attention scale into the query rows
        (RoPE is linear, so scaling before it is the same as after); not for Qwen3, whose per-head
        q_norm would undo it."""
        self.layers = []
        for layer in self.core.layers:
            a, m = layer.self_attn, layer.mlp
            fold = 1.0 if hasattr(a, "q_norm") else self.scaling
            q, k, v = (_weight(p) for p in (a.q_proj, a.k_proj, a.v_proj))
            qkv_w = torch.cat([q * fold, k, v])
            qkv_b = None
            if _bias(a.q_proj) is not None:
                qkv_b = torch.cat([_bias(a.q_proj) * fold, _bias(a.k_proj), _bias(a.v_proj)])
            gate_up = torch.cat([_weight(m.gate_proj), _weight(m.up_proj)])
            self.layers.append(
                _Layer(
                    layer.input_layernorm, self._linear(qkv_w, qkv_b), self._linear_of(a.o_proj),
                    layer.post_attention_layernorm, self._linear(gate_up), self._linear_of(m.down_proj),
                    getattr(a, "q_norm", None), getattr(a, "k_norm", None), self.scaling / fold,
                )
            )  # fmt: skip
        head = self.hf.lm_head  # a plain (or LoRA) linear layer; any other head module runs as it is
        linear_head = isinstance(head, torch.nn.Linear) or hasattr(head, "base_layer")
        self.head = self._linear_of(head) if linear_head else head
        self.step_args = self._compiled_step_args()

    def _linear(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Linear:
        return Linear(weight, bias, pack=True, kernels=self.compiled)

    def _linear_of(self, module) -> Linear:
        """A model's linear layer (LoRA folded in) as the decode loop runs it."""
        return self._linear(_weight(module), _bias(module))

    def _compiled_step_args(self) -> tuple | None:
        """The compiled step's per-layer tensors (csrc/decode.cpp's order; an empty tensor for none),
        epsilons and attention scales; None where the torch step runs (no kernels, not float32)."""
        if self.compiled is None or self.core.embed_tokens.weight.dtype != torch.float32:
            return None
        tensors, eps, scales = [], [], []
        for w in self.layers:
            for item in (w.ln1, w.qkv, w.o, w.ln2, w.gate_up, w.down):
                if isinstance(item, Linear):
                    tensors += item.compiled_args()
                else:
                    tensors.append(item.weight.detach().contiguous())
            tensors += [or_empty(norm.weight if norm is not None else None) for norm in (w.q_norm, w.k_norm)]
            eps += [_eps(w.ln1), _eps(w.ln2), _eps(w.q_norm) if w.q_norm is not None else 0.0]
            scales.append(w.scale)
        assert len(tensors) == self.compiled.LAYER_TENSORS * len(self.layers)
        # the head runs inside the compiled call when it is a linear layer; any other module after it
        head = self.head.compiled_args() if isinstance(self.head, Linear) else []
        norm = self.core.norm
        return tensors, eps, scales, norm.weight.detach(), _eps(norm), head

    def new_pool(self, lazy: bool | None = None) -> KVPool:
        """A pool for `forward`; `lazy=False` zeroes it, as `prefill` and `decode` called directly
        (torch's step) need."""
        pool = KVPool(self)
        pool.lazy = pool.lazy if lazy is None else lazy
        return pool

    # --- forward ------------------------------------------------------------------------------------

    @torch.inference_mode()
    def forward(self, pool: KVPool, slots: list[int], chunks: list[list[int]], starts: list[int]) -> torch.Tensor:
        """Run each chunk of tokens on its slot from position `starts[i]`: a running sequence's one new
        token, a joining prompt (from 0), a tool's output (from the paused sequence's length). Logits
        (len(chunks), vocab) at each chunk's last token.

        On a CPU in float32 all chunks run as one flat batch of tokens through the compiled step
        (decode and prefill share its matmuls); elsewhere the one-token chunks run as `decode` and
        the longer ones as `prefill`, torch's versions of the same step."""
        if self.step_args is not None:
            return self._compiled_forward(pool, slots, chunks, starts)
        if pool.lazy:  # made for the compiled step (the weights changed dtype since): torch's reads it all
            for t in pool.k + pool.v:
                t.nan_to_num_(0.0, 0.0, 0.0)
            pool.lazy = False
        one = [i for i, chunk in enumerate(chunks) if len(chunk) == 1]
        many = [i for i, chunk in enumerate(chunks) if len(chunk) > 1]
        if not many:
            return self.decode(pool, slots, [chunk[0] for chunk in chunks], starts)
        if not one:
            return self.prefill(pool, slots, chunks, starts)
        decoded = self.decode(pool, [slots[i] for i in one], [chunks[i][0] for i in one], [starts[i] for i in one])
        prefilled = self.prefill(pool, [slots[i] for i in many], [chunks[i] for i in many], [starts[i] for i in many])
        logits = torch.cat([decoded, prefilled])
        return logits.index_copy(0, torch.tensor(one + many, device=logits.device), logits)  # chunk order

    def _compiled_forward(self, pool: KVPool, slots: list[int], chunks: list[list[int]], starts: list[int]):
        """Every chunk's tokens as one flat batch, each at its (slot, position), through
        csrc/decode.cpp; logits at each chunk's last token. A token attends to its own row's
        keys [0, its position]: the keys of the tokens before it in its chunk are written in the
        same call, so a prompt's attention is causal with no mask to build."""
        tensors, eps, scales, norm, norm_eps, head = self.step_args
        if all(len(chunk) == 1 for chunk in chunks):  # a decode step: one token per row
            tokens, rows, positions, last = [chunk[0] for chunk in chunks], slots, starts, EVERY_TOKEN
        else:
            tokens = [token for chunk in chunks for token in chunk]
            rows = [slot for slot, chunk in zip(slots, chunks, strict=True) for _ in chunk]
            positions = [start + i for start, chunk in zip(starts, chunks, strict=True) for i in range(len(chunk))]
            last = torch.tensor(list(itertools.accumulate(map(len, chunks)))) - 1
        out = self.compiled.forward_tokens(
            torch.tensor(tokens), torch.tensor(rows), torch.tensor(positions), self.core.embed_tokens.weight,
            tensors, pool.k, pool.v, pool.bias, pool.cos, pool.sin_signed, self.heads, self.kv_heads, eps, scales,
            last, norm, norm_eps, head, PACKED_MIN_MACS,
        )  # fmt: skip
        return out if head else self.head(out).float()

    @torch.inference_mode()
    def prefill(self, pool: KVPool, slots: list[int], chunks: list[list[int]], starts: list[int]) -> torch.Tensor:
        """torch's step for chunks of tokens (see `forward`): padded to the longest, attention by SDPA
        over the rows' gathered keys; logits (J, vocab) at each chunk's last token."""
        device, C = self.device, pool.capacity
        T = max(map(len, chunks))
        tokens = torch.tensor([c + [0] * (T - len(c)) for c in chunks], device=device)
        real = torch.tensor([[t < len(c) for t in range(T)] for c in chunks], device=device)
        positions = torch.tensor(starts, device=device)[:, None] + torch.arange(T, device=device)[None]
        writes = positions.masked_fill(~real, C)  # padding writes to the spare slot
        rows = torch.tensor(slots, device=device)
        end = max(s + len(c) for s, c in zip(starts, chunks, strict=True))
        for slot, start, chunk in zip(slots, starts, chunks, strict=True):
            pool.bias[slot, start : start + len(chunk)] = 0.0
        # a query sees every key of its own row up to its position (the row's prefix is all valid);
        # additive (0 / -inf) like decode's, since a chunk of one token runs decode's attention
        visible = (torch.arange(end, device=device)[None, None, :] <= positions[:, :, None]).unsqueeze(1)
        mask = torch.zeros(visible.shape, dtype=pool.bias.dtype, device=device).masked_fill_(~visible, float("-inf"))
        x = self._run(pool, tokens, writes, rows, end, mask)
        last = torch.tensor([len(c) - 1 for c in chunks], device=device)
        return self._logits(x[torch.arange(len(chunks), device=device), last])

    @torch.inference_mode()
    def decode(self, pool: KVPool, slots: list[int], tokens: list[int], positions: list[int]) -> torch.Tensor:
        """torch's step for one token per running slot, at its position (see `forward`); logits
        (len(slots), vocab).

        When the running slots fill most of rows [0, hi), those rows run as one batch of views of
        the pool (a free or paused row in between runs token 0 into the spare slot; its output is
        dropped). When fewer than half do (a group's long tail), only the running rows run and their
        keys are gathered: a copy no larger than the attention's own reads, instead of computing
        every empty row below the highest running one."""
        device, hi, end = self.device, max(slots) + 1, max(positions) + 1
        index = torch.tensor(slots, device=device)
        sparse = len(slots) * 2 <= hi
        in_order = slots == list(range(hi))  # exactly rows [0, hi), in order: views need no scatter
        if sparse or in_order:
            rows, token_t = index, torch.tensor(tokens, device=device)
            position_t = torch.tensor(positions, device=device)
        else:
            rows = torch.arange(hi, device=device)
            tokens_t = torch.tensor(tokens, device=device)  # on the pool's device: index_put_ takes no CPU values
            token_t = torch.zeros(hi, dtype=torch.long, device=device).index_put_((index,), tokens_t)
            position_t = torch.full((hi,), pool.capacity, device=device).index_put_(
                (index,), torch.tensor(positions, device=device)
            )
        pool.bias[rows, position_t] = 0.0
        mask = (pool.bias[rows] if sparse else pool.bias[:hi])[:, None, None, :end]  # additive: 0 or -inf
        split = None if sparse else _long_rows(_row_lengths(slots, positions, hi), end, device)
        x = self._run(pool, token_t[:, None], position_t[:, None], rows, end, mask, views=not sparse, split=split)
        logits = self._logits(x[:, 0])
        return logits if sparse or in_order else logits.index_select(0, index)

    def _run(self, pool: KVPool, tokens, writes, rows, end, mask, views: bool = False, split=None) -> torch.Tensor:
        """The layers over `tokens` (B, T), each written to `writes` (B, T) of its row in `rows`.
        `views`: rows are exactly [0, B), so decode reads the pool through views, not a gather.
        `split` (decode): (cut, long rows): see `_long_rows`."""
        x = self.core.embed_tokens(tokens)  # (B, T, H)
        # RoPE as x * cos + roll(x) * sin_signed: the half-rotation's sign lives in the table
        cos, sin = pool.cos[writes].unsqueeze(2), pool.sin_signed[writes].unsqueeze(2)  # (B, T, 1, hd)
        for w, k_pool, v_pool in zip(self.layers, pool.k, pool.v, strict=True):
            x += self._attention(w, x, cos, sin, k_pool, v_pool, writes, rows, end, mask, views, split)
            gate, up = w.gate_up(_rms_norm(w.ln2, x)).chunk(2, dim=-1)
            x += w.down(F.silu(gate, inplace=True).mul_(up))
        return x

    def _logits(self, last: torch.Tensor) -> torch.Tensor:
        return self.head(_rms_norm(self.core.norm, last)).float()  # (B, vocab)

    def _attention(self, w: _Layer, x, cos, sin, k_pool, v_pool, writes, rows, end, mask, views: bool, split=None):
        B, T, _ = x.shape
        H, KV, D = self.heads, self.kv_heads, self.head_dim
        qkv = w.qkv(_rms_norm(w.ln1, x)).view(B, T, H + 2 * KV, D)
        qk, v = qkv[:, :, : H + KV], qkv[:, :, H + KV :]
        if w.q_norm is not None:  # Qwen3 normalises q and k per head before RoPE
            qk = torch.cat([w.q_norm(qk[:, :, :H]), w.k_norm(qk[:, :, H:])], dim=2)
        qk = torch.addcmul(qk * cos, qk.roll(D // 2, dims=-1), sin)  # RoPE on q and k at once
        q, k = qk[:, :, :H], qk[:, :, H:]  # (B, T, heads, D)
        grid = rows[:, None].expand(B, T)
        k_pool[grid, :, writes] = k  # each token's key into its row, at its position
        v_pool[grid, :, writes] = v
        if T == 1:  # decode: rows [0, B) of the pool as views (no copy), or the running rows gathered
            if split is not None:
                out = self._attend_split(q, k_pool, v_pool, mask, w.scale, end, *split)
            elif views:
                out = self._attend_one(q, k_pool[:B, :, :end], v_pool[:B, :, :end], mask, w.scale)
            else:
                out = self._attend_one(q, k_pool[rows, :, :end], v_pool[rows, :, :end], mask, w.scale)
            return w.o(out.view(B, 1, H * D))
        keys, values = k_pool[rows, :, :end], v_pool[rows, :, :end]  # prefill: gather the rows once
        gqa = KV != H
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), keys, values, attn_mask=mask, scale=w.scale, enable_gqa=gqa
        )
        return w.o(out.transpose(1, 2).reshape(B, T, H * D))

    def _attend_split(self, q, k_pool, v_pool, mask, scale: float, end: int, cut: int, long: torch.Tensor):
        """Rows [0, B) where a few run much longer than the rest: every row attends over keys
        [0, cut) (views), then the long rows again over [0, end) (gathered), their result replacing
        the first. The short rows' keys past `cut` are all masked, so nothing is lost."""
        B = q.shape[0]
        out = self._attend_one(q, k_pool[:B, :, :cut], v_pool[:B, :, :cut], mask[..., :cut], scale)
        out[long] = self._attend_one(q[long], k_pool[long, :, :end], v_pool[long, :, :end], mask[long], scale)
        return out

    def _attend_one(self, q, k, v, mask, scale: float):
        # one query per row. Each kv head serves a group of query heads: (B, kv, group, D) by (B, kv, L, D).
        # two small matmuls, which beat the flash kernel's set-up cost at one query
        B, D = q.shape[0], self.head_dim
        q = q.view(B, self.kv_heads, -1, D)
        scores = q @ k.transpose(-1, -2)
        if scale != 1.0:
            scores.mul_(scale)
        scores = scores.add_(mask).softmax(-1)
        return scores @ v  # (B, kv, group, D)


def _row_lengths(slots: list[int], positions: list[int], rows: int) -> list[int]:
    """The keys each row [0, rows) reads at this step: a running row up to its position, a free one
    slot 0 only."""
    lengths = [1] * rows
    for slot, position in zip(slots, positions, strict=True):
        lengths[slot] = position + 1
    return lengths


def _long_rows(lengths: list[int], end: int, device=None) -> tuple[int, torch.Tensor] | None:
    """Where a running batch's rows differ much in length (a server's requests: most short, a few
    long), attending every row over the longest one's keys wastes most of the reads. Returns the cut
    that minimises the keys read when all rows read [0, cut) and the rows longer than it read
    [0, end) once more (gathered: counted twice), and those rows; None when one pass is cheapest."""
    ordered = sorted(lengths)
    rows = len(ordered)
    one_pass = best_cost = rows * end
    if ordered[0] >= 0.8 * one_pass / rows:  # every cost is at least rows x the shortest: no gain
        return None
    best = None
    for cut in sorted(set(ordered)):
        longer = rows - bisect.bisect_right(ordered, cut)  # rows strictly longer than cut
        cost = rows * cut + 2 * longer * end
        if longer and cost < best_cost:
            best_cost, best = cost, cut
    if best is None or best_cost > 0.8 * one_pass:  # not worth a second pass
        return None
    return best, torch.tensor([row for row, length in enumerate(lengths) if length > best], device=device)


def _weight(linear) -> torch.Tensor:
    """A linear layer's effective weight: with a `peft` LoRA adapter active, base + B @ A * scale."""
    if hasattr(linear, "base_layer") and hasattr(linear, "get_delta_weight"):
        weight = linear.base_layer.weight
        if not getattr(linear, "merged", False) and not getattr(linear, "disable_adapters", False):
            for name in linear.active_adapters:
                if name in linear.lora_A:
                    weight = weight + linear.get_delta_weight(name)
        return weight
    return linear.weight


def _bias(linear) -> torch.Tensor | None:
    return linear.base_layer.bias if hasattr(linear, "base_layer") else linear.bias


def _rms_norm(norm, x: torch.Tensor) -> torch.Tensor:
    """The HF RMSNorm module's math in one fused op (same weight, same epsilon)."""
    return F.rms_norm(x, (x.shape[-1],), norm.weight, _eps(norm))


def _eps(norm) -> float:
    return getattr(norm, "variance_epsilon", None) or getattr(norm, "eps", 1e-6)
