"""Rollouts as training tensors, and the per-token log-probs of a policy on them.

A row is prompt + completion, right-padded. Every (B, T) tensor is aligned with the *targets*
`input_ids[:, 1:]`: column j is the prediction of token j + 1. `mask` is 1 only on completion
tokens the model wrote (the engine's mask), so prompt, forced tokens and padding never train.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import torch

from ponder.engine import Rollout


@dataclass
class RolloutBatch:
    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    mask: torch.Tensor  # (B, L-1) 1 where the target token was written by the model
    old_logprobs: torch.Tensor  # (B, L-1) the sampler's log-probs of the targets
    ref_logprobs: torch.Tensor | None = None  # (B, L-1) a frozen reference's, when KL is on
    old_values: torch.Tensor | None = None  # PPO only
    advantages: torch.Tensor | None = None  # PPO only (GAE)
    returns: torch.Tensor | None = None  # PPO only
    is_weights: torch.Tensor | None = None  # (B, L-1) truncated importance weights, when correction is on

    @classmethod
    def build(cls, rollouts: list[Rollout], device) -> RolloutBatch:
        rows = [r.prompt_ids + r.token_ids for r in rollouts]
        width = max(len(r) for r in rows)
        B = len(rows)
        input_ids = torch.zeros(B, width, dtype=torch.long)
        attention = torch.zeros(B, width, dtype=torch.long)
        mask = torch.zeros(B, width - 1)
        old = torch.zeros(B, width - 1)
        for i, (row, r) in enumerate(zip(rows, rollouts, strict=True)):
            input_ids[i, : len(row)] = torch.tensor(row)
            attention[i, : len(row)] = 1
            start = len(r.prompt_ids) - 1  # column predicting the first completion token
            mask[i, start : start + r.num_tokens] = torch.tensor(r.mask, dtype=torch.float)
            old[i, start : start + r.num_tokens] = torch.tensor(r.logprobs)
        return cls(input_ids.to(device), attention.to(device), mask.to(device), old.to(device))

    def select(self, rows: torch.Tensor) -> RolloutBatch:
        picked = {
            f.name: getattr(self, f.name).index_select(0, rows)
            for f in fields(self)
            if getattr(self, f.name) is not None
        }
        return replace(self, **picked)

    def minibatches(self, count: int) -> list[torch.Tensor]:
        """Row indices of `count` contiguous minibatches (advantages are computed before the split)."""
        rows = torch.arange(self.input_ids.shape[0], device=self.input_ids.device)
        return [chunk for chunk in rows.tensor_split(count) if len(chunk)]


class PolicyOutput(NamedTuple):
    logprobs: torch.Tensor  # (B, L-1) log-prob of each target token
    hidden: torch.Tensor  # (B, L-1, H) the last hidden state that predicted it (for a value head)
    entropy: torch.Tensor  # scalar, mean entropy over masked tokens (detached)


def token_logprobs(
    model, batch: RolloutBatch, temperature: float = 1.0, with_entropy: bool = False, chunk: int = 16
) -> PolicyOutput:
    """Log-probs of the target tokens under `model` at `temperature`.

    The vocabulary projection runs `chunk` rows at a time, so the (B, T, vocab) float32 logits of a
    large-vocabulary model never exist whole (the out-of-memory users of other trainers report)."""
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    hidden = model.model(**inputs, use_cache=False).last_hidden_state  # no KV cache in training
    hidden = hidden[:, :-1]
    targets = batch.input_ids[:, 1:]
    logprobs, entropy_sum = [], hidden.new_zeros((), dtype=torch.float)
    for start in range(0, hidden.shape[0], chunk):
        logits = model.lm_head(hidden[start : start + chunk]).float() / temperature
        logp = torch.log_softmax(logits, dim=-1)
        logprobs.append(logp.gather(-1, targets[start : start + chunk, :, None]).squeeze(-1))
        if with_entropy:
            with torch.no_grad():
                ent = -(logp.exp() * logp).sum(-1)
                entropy_sum = entropy_sum + (ent * batch.mask[start : start + chunk]).sum()
    entropy = entropy_sum / batch.mask.sum().clamp(min=1)
    return PolicyOutput(torch.cat(logprobs), hidden, entropy.detach())
