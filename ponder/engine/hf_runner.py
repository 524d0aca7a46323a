"""The engine's backend for any causal LM outside the Llama family (GPT-2, Phi, ...): the model's own
forward and its own cache, one `DynamicCache` per slot.

Same interface as `LlamaRunner` (forward, and the pool's allocate / copy / release), so the scheduler
and everything above it do not know which backend runs. Correctness first: each running sequence
decodes with its own forward call (batching rows of different lengths through every architecture's
own attention-mask rules is what the lean runner exists to avoid), so it is slower per token; the
engine names the backend it chose in the run's log.
"""

from __future__ import annotations

import copy

import torch
from transformers import DynamicCache


class CachePool:
    """One `DynamicCache` per slot."""

    def __init__(self):
        self.caches: dict[int, DynamicCache] = {}
        self.rows = self.capacity = 0

    def allocate(self, rows: int, capacity: int) -> None:
        self.rows, self.capacity = max(rows, self.rows), max(capacity, self.capacity)

    def release(self, slot: int) -> None:
        self.caches.pop(slot, None)

    def copy(self, src: int, dst: int, length: int) -> None:
        self.caches[dst] = copy.deepcopy(self.caches[src])


class HFRunner:
    name = "the model's own forward (transformers), one cache per sequence"

    def __init__(self, model):
        self.model = model

    def new_pool(self) -> CachePool:
        return CachePool()

    @property
    def device(self):
        return next(self.model.parameters()).device

    def refresh(self) -> None:
        """Nothing to rebuild: the model's own modules read their parameters at every call."""

    @torch.inference_mode()
    def forward(self, pool: CachePool, slots: list[int], chunks: list[list[int]], starts: list[int]) -> torch.Tensor:
        """Each chunk on its slot from `starts[i]` (a new prompt from 0 opens a new cache); logits at
        each chunk's last token."""
        logits = []
        for slot, chunk, start in zip(slots, chunks, starts, strict=True):
            cache = pool.caches[slot] if start else DynamicCache()
            logits.append(self._forward(pool, slot, chunk, start, cache))
        return torch.stack(logits)

    def _forward(self, pool: CachePool, slot: int, ids: list[int], start: int, cache) -> torch.Tensor:
        device = self.device
        positions = torch.arange(start, start + len(ids), device=device)[None]
        out = self.model(
            input_ids=torch.tensor([ids], device=device),
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        )
        pool.caches[slot] = out.past_key_values
        return out.logits[0, -1].float()
