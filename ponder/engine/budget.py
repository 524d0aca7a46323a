"""How many sequences the engine decodes at once: the KV cache sized to the device.

On a CPU the engine keeps its fixed row limit (`Engine.max_batch`, 256): host memory is rarely
what binds there, time is. On a GPU the limit is also what fits in the free memory at the moment
of a call, so a large model, long completions or an optimizer's states already resident never
push the pool past the card:

    bytes per row = layers x 2 (keys, values) x kv_heads x head_dim x dtype bytes x (length + 1)
                  + vocab x SAMPLER_BYTES_PER_VOCAB         (the row's logits and the sampler's copies)
    rows          = min(limit, floor(free x KV_MEMORY_FRACTION / bytes per row)), at least 1

`+ 1`: the pool keeps one spare slot per row (runner.KVPool). The sampler term covers the float32
logits, log-probs and probabilities, a float64 CDF and, with top-k / top-p, a sort's values and
indices: about 32 bytes per vocabulary entry per row. `KV_MEMORY_FRACTION` leaves the rest of the
free memory to the prefill's activations and the allocator's fragmentation.

`rows_that_fit` is a pure function of its numbers (tested on any machine); `cuda_free_bytes` is the
one call that reads the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KV_MEMORY_FRACTION = 0.9
SAMPLER_BYTES_PER_VOCAB = 32
CPU_MAX_BATCH = 256  # the engine's row limit on a CPU (unchanged from before sizing existed)
GPU_MAX_BATCH = 1024  # the most rows a GPU decodes at once, memory permitting


@dataclass(frozen=True)
class KVShape:
    """What one cached token and one sampled row cost: read from a model's config and dtype."""

    layers: int
    kv_heads: int
    head_dim: int
    dtype_bytes: int
    vocab: int

    @classmethod
    def of(cls, model) -> KVShape:
        hf = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft
        config = hf.config
        heads = config.num_attention_heads
        return cls(
            layers=config.num_hidden_layers,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            dtype_bytes=next(hf.parameters()).element_size(),
            vocab=config.vocab_size,
        )

    @property
    def bytes_per_token(self) -> int:
        return kv_bytes_per_token(self.layers, self.kv_heads * self.head_dim, self.dtype_bytes)

    def bytes_per_row(self, length: int) -> int:
        return self.bytes_per_token * (length + 1) + self.vocab * SAMPLER_BYTES_PER_VOCAB


def kv_bytes_per_token(layers: int, kv_dim: int, dtype_bytes: int) -> int:
    """Keys and values of one token in every layer; kv_dim = kv_heads x head_dim."""
    return layers * 2 * kv_dim * dtype_bytes


def rows_that_fit(
    free_bytes: int, shape: KVShape, length: int, limit: int, fraction: float = KV_MEMORY_FRACTION
) -> int:
    """Rows of `length` tokens whose KV cache and sampler fit in `fraction` of `free_bytes`, at most
    `limit`; at least 1 (a single row that does not fit fails in the allocator, not silently here)."""
    return max(1, min(limit, int(free_bytes * fraction) // shape.bytes_per_row(length)))


def default_max_batch(device: torch.device) -> int:
    return GPU_MAX_BATCH if device.type == "cuda" else CPU_MAX_BATCH


def cuda_free_bytes(device: torch.device) -> int:
    """Free memory on a GPU as this process can use it: what the driver reports free, plus what
    PyTorch's caching allocator holds reserved but unused (after a training step that is most of
    the activations' memory, which the driver counts as taken)."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
