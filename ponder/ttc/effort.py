"""`reasoning_effort`: named presets of test-time compute, declared once here.

    effort = resolve_effort("high")
    outcomes = run_effort(engine, problems, effort)

The library, `ponder scale --effort` and the server all read `EFFORT_PRESETS`; the table in
docs/test-time-compute.md is `effort_table()` pasted verbatim (a test keeps them equal).

low / medium / high are thinking budgets, as reasoning_effort is for OpenAI's reasoning models: the
shipped model's thinking is what solves its problems (its greedy answer with thinking cut at one token
is far worse than with thinking left alone), while voting over samples does not beat its greedy
answer (docs/test-time-compute.md has both measured). auto is the other axis: samples drawn in rounds
until their vote is confident.

OpenAI's clients also send none / minimal / xhigh / max. ponder maps them to the nearest preset
(`ALIASES`): none and minimal -> low (ponder models always think, so "none" cannot mean no thinking;
low is the least thinking on offer), xhigh and max -> high (the largest preset).
"""

from __future__ import annotations

from dataclasses import dataclass

from ponder.engine import SamplingParams
from ponder.errors import PonderError
from ponder.ttc import strategies


@dataclass(frozen=True)
class Effort:
    name: str
    strategy: str  # a key of strategies.STRATEGIES
    samples: int  # samples per question (auto: at most this many)
    max_thinking_tokens: int | None  # thinking budget (None = no cap)
    max_tokens: int  # tokens per sample at most, thinking included
    temperature: float
    summary: str

    def params(self, seed: int | None = None) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            max_thinking_tokens=self.max_thinking_tokens,
            seed=seed,
        )


EFFORT_PRESETS: dict[str, Effort] = {
    "low": Effort("low", "budget_forcing", 1, 1, 96, 0.0, "greedy, answers at once (thinking capped at 1 token)"),
    "medium": Effort("medium", "budget_forcing", 1, 64, 160, 0.0, "greedy, thinking capped at 64 tokens"),
    "high": Effort("high", "greedy", 1, None, 256, 0.0, "greedy, thinks as long as it wants"),
    "auto": Effort("auto", "auto_effort", 16, None, 256, 1.0, "rounds of 4 samples, stop when the vote is confident"),
}
ALIASES = {"none": "low", "minimal": "low", "xhigh": "high", "max": "high"}


def resolve_effort(name: str) -> Effort:
    """The preset for a `reasoning_effort` name (OpenAI's extra names map to the nearest one)."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in EFFORT_PRESETS:
        allowed = ", ".join([*EFFORT_PRESETS, *ALIASES])
        raise PonderError(f"unknown reasoning_effort {name!r}; allowed: {allowed}")
    return EFFORT_PRESETS[key]


def run_effort(engine, problems, effort: Effort | str, seed: int | None = None, progress=None):
    """Answer `problems` at one effort level: list[strategies.Outcome]."""
    effort = resolve_effort(effort) if isinstance(effort, str) else effort
    params = effort.params(seed)
    if effort.strategy == "budget_forcing":
        return strategies.budget_forcing(
            engine, problems, max_thinking_tokens=effort.max_thinking_tokens, params=params, progress=progress
        )
    if effort.strategy in ("greedy", "sample", "revision"):
        return strategies.run_strategy(effort.strategy, engine, problems, params=params, progress=progress)
    if effort.strategy == "auto_effort":
        return strategies.auto_effort(engine, problems, max_n=effort.samples, params=params, progress=progress)
    return strategies.run_strategy(
        effort.strategy, engine, problems, n=effort.samples, params=params, progress=progress
    )


def effort_table() -> str:
    """The presets as a Markdown table (the docs embed exactly this)."""
    rows = [
        "| reasoning_effort | strategy | samples | thinking budget | max tokens | temperature | what it does |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in EFFORT_PRESETS.values():
        budget = "none" if e.max_thinking_tokens is None else str(e.max_thinking_tokens)
        rows.append(
            f"| {e.name} | {e.strategy} | {e.samples} | {budget} | {e.max_tokens} | {e.temperature:g} | {e.summary} |"
        )
    aliases = ", ".join(f"{a} -> {b}" for a, b in ALIASES.items())
    return "\n".join(rows) + f"\n\nAlso accepted (OpenAI names): {aliases}.\n"
