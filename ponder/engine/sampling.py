"""Sampling parameters and the per-step token choice, one rule per row.

Every row of a batch samples under its own request's rule (temperature, top-k, top-p) and from its
own random stream: the uniform number that picks row r's token is a hash of (r's seed, how many
tokens r has), so a request with a seed gets the same tokens alone or among any batch mates, and no
shared `torch.Generator` ties rows together. The token is drawn by inverting the cumulative
distribution (one uniform per row), which is exact sampling from the (truncated) distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ponder.errors import PonderError

MASK32 = 0xFFFFFFFF


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
    # Pause when the model closes a tool call (the tool loop runs the tool and resumes it).
    tools: bool = False

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

    @property
    def has_budget(self) -> bool:
        return self.max_thinking_tokens is not None or self.min_thinking_tokens > 0


def mix_seed(*parts: int) -> int:
    """A 32-bit seed from several integers (splitmix64 steps): sample j of prompt i of a call seeded s
    gets mix_seed(s, i, j), so n samples differ and every one is reproducible."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 29)) & MASK32


def uniforms(seeds: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """One uniform in (0, 1) per row from (seed, counter): murmur3's 32-bit finaliser, vectorised.
    int64 products wrap around and only their low 32 bits are kept, as in unsigned arithmetic."""
    x = (seeds * 0x9E3779B1 + counters * 0x85EBCA77 + 0x165667B1) & MASK32
    x = x ^ (x >> 16)
    x = (x * 0x85EBCA6B) & MASK32
    x = x ^ (x >> 13)
    x = (x * 0xC2B2AE35) & MASK32
    x = x ^ (x >> 16)
    return (x.double() + 0.5) / 2.0**32


@dataclass
class RowRules:
    """The sampling rules of a batch's rows, as tensors (built once per batch composition)."""

    temperature: torch.Tensor  # (B, 1); greedy rows hold 1 (their log-probs are untempered)
    greedy: torch.Tensor  # (B,) bool
    top_k: torch.Tensor  # (B, 1) long; 0 = off
    top_p: torch.Tensor  # (B, 1)
    seeds: torch.Tensor  # (B,) long
    truncate: bool  # some row uses top-k or top-p
    all_greedy: bool

    @staticmethod
    def of(params: list[SamplingParams], seeds: list[int], device) -> RowRules:
        temps = [p.temperature if p.temperature > 0 else 1.0 for p in params]
        greedy = [p.temperature == 0 for p in params]
        return RowRules(
            temperature=torch.tensor(temps, device=device)[:, None],
            greedy=torch.tensor(greedy, device=device),
            top_k=torch.tensor([p.top_k for p in params], device=device)[:, None],
            top_p=torch.tensor([p.top_p for p in params], device=device)[:, None],
            seeds=torch.tensor(seeds, dtype=torch.long, device=device),
            truncate=any(p.top_k > 0 or p.top_p < 1 for p in params if p.temperature > 0),
            all_greedy=all(greedy),
        )


def choose_tokens(logits: torch.Tensor, rules: RowRules, counters: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row of `logits` (B, V) and its log-prob.

    The log-prob is under the tempered distribution softmax(logits / T) before top-k / top-p
    truncation (T = 1 for greedy): the behaviour policy an RL update compares against."""
    logprobs = torch.log_softmax(logits / rules.temperature, dim=-1)
    if rules.all_greedy:
        tokens = logits.argmax(dim=-1)
    else:
        tokens = _sample(logprobs, rules, uniforms(rules.seeds, counters))
        if rules.greedy.any():
            tokens = torch.where(rules.greedy, logits.argmax(dim=-1), tokens)
    return tokens, logprobs.gather(-1, tokens[:, None]).squeeze(-1)


def _sample(logprobs: torch.Tensor, rules: RowRules, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling, in sorted order when a row truncates (top-k / top-p)."""
    probs = logprobs.exp()
    order = None
    if rules.truncate:
        probs, order = probs.sort(dim=-1, descending=True)
        rank = torch.arange(probs.shape[-1], device=probs.device)[None]
        keep = (rules.top_k == 0) | (rank < rules.top_k)
        # nucleus: keep the smallest prefix whose mass reaches top_p (the first token always stays)
        keep &= (probs.cumsum(-1) - probs) <= rules.top_p
        probs = probs * keep
    cdf = probs.double().cumsum(-1)
    target = (u * cdf[:, -1])[:, None]
    index = torch.searchsorted(cdf, target, right=True).clamp(max=probs.shape[-1] - 1)
    return (order.gather(-1, index) if order is not None else index).squeeze(-1)
