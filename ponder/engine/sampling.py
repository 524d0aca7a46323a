"""Sampling parameters and the per-step token choice (temperature, top-k, top-p)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ponder.errors import PonderError


@dataclass
class SamplingParams:
    """How to sample one request. Defaults mirror OpenAI's: temperature 1, top_p 1, n 1."""

    max_tokens: int = 256  # generated tokens at most, thinking included
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0  # nucleus sampling; 1 = off
    top_k: int = 0  # 0 = off
    n: int = 1  # samples per prompt; they share one prefill
    stop: list[str] = field(default_factory=list)  # stop strings (not included in the text)
    seed: int | None = None  # None = a fresh random seed
    # Budget forcing (s1): cap the thinking at `max_thinking_tokens` by writing "</think>" for the
    # model; if it tries to close its thinking before `min_thinking_tokens`, write "wait," instead.
    max_thinking_tokens: int | None = None
    min_thinking_tokens: int = 0
    # Thinking on: the model may not skip its thinking (close it before writing a thinking token);
    # the end of thinking is masked at the first token, so a two-mode model must work the problem.
    force_thinking: bool = False

    def __post_init__(self):
        checks = [
            ("max_tokens", self.max_tokens >= 1, "an integer >= 1"),
            ("temperature", 0 <= self.temperature <= 10, "a number in [0, 10]"),
            ("top_p", 0 < self.top_p <= 1, "a number in (0, 1]"),
            ("top_k", self.top_k >= 0, "an integer >= 0 (0 = off)"),
            ("n", self.n >= 1, "an integer >= 1"),
            ("min_thinking_tokens", self.min_thinking_tokens >= 0, "an integer >= 0"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise PonderError(f"SamplingParams.{name} must be {allowed}, got {getattr(self, name)!r}")
        if self.max_thinking_tokens is not None and self.max_thinking_tokens < 1:
            raise PonderError(f"max_thinking_tokens must be >= 1 or None, got {self.max_thinking_tokens}")
        if isinstance(self.stop, str):
            self.stop = [self.stop]


def choose_tokens(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row of `logits` (B, V); return (tokens, their log-probs).

    The log-prob is under the tempered distribution softmax(logits / T) before top-k / top-p
    truncation (T = 1 for greedy): the behaviour policy an RL update compares against."""
    temperature = params.temperature if params.temperature > 0 else 1.0
    logprobs = torch.log_softmax(logits / temperature, dim=-1)
    if params.temperature == 0:
        tokens = logits.argmax(dim=-1)
    else:
        probs = _truncate(logprobs.exp(), params.top_k, params.top_p)
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return tokens, logprobs.gather(-1, tokens[:, None]).squeeze(-1)


def _truncate(probs: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if top_k and top_k < probs.shape[-1]:
        kth = probs.topk(top_k, dim=-1).values[:, -1:]
        probs = probs.masked_fill(probs < kth, 0.0)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token is always kept)
        drop = sorted_p.cumsum(-1) - sorted_p > top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return probs
