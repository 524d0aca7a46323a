"""`reasoning_effort`: named presets of test-time compute, declared once here.

    effort = resolve_effort("high")
    outcomes = run_effort(engine, problems, effort)

The library, `ponder scale --effort` and the server all read `EFFORT_PRESETS`; the table in
docs/test-time-compute.md is `effort_table()` pasted verbatim (a test keeps them equal).

low / medium / high are thinking budgets, as reasoning_effort is for OpenAI's reasoning models:
low answers at once (thinking off), medium thinks within 64 tokens, high as long as it likes.
medium and high turn thinking on (`force_thinking`): ponder's base model was trained both to answer
at once and to work problems out, and left to itself it often answers at once where working it out
is right (docs/test-time-compute.md has it measured: 53.6% greedy, 67.4% with thinking on). auto is
the other axis: after the greedy answer, samples one at a time until their vote is confident.

OpenAI's clients also send none / minimal / xhigh / max. ponder maps them to the nearest preset
(`ALIASES`): none and minimal -> low (thinking off), xhigh and max -> high (the largest preset).
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
    force_thinking: bool  # the model may not skip its thinking (see SamplingParams)
    summary: str

    def params(self, seed: int | None = None) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            max_thinking_tokens=self.max_thinking_tokens,
            force_thinking=self.force_thinking,
            seed=seed,
        )


EFFORT_PRESETS: dict[str, Effort] = {
    "low": Effort("low", "budget_forcing", 1, 1, 96, 0.0, False, "greedy, thinking off: answers at once"),
    "medium": Effort("medium", "budget_forcing", 1, 64, 160, 0.0, True, "greedy, thinks, at most 64 tokens"),
    "high": Effort("high", "budget_forcing", 1, None, 256, 0.0, True, "greedy, thinks as long as it wants"),
    "auto": Effort(
        "auto",
        "auto_effort",
        16,
        None,
        256,
        1.0,
        False,
        "greedy answer (thinking on), then one sample at a time until 2 answers agree and hold 70% of the votes",
    ),
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
            engine,
            problems,
            max_thinking_tokens=effort.max_thinking_tokens,
            params=params,
            progress=progress,
            force_thinking=effort.force_thinking,
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
        "| reasoning_effort | strategy | samples | thinking | thinking budget | max tokens | temperature "
        "| what it does |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in EFFORT_PRESETS.values():
        budget = "none" if e.max_thinking_tokens is None else str(e.max_thinking_tokens)
        thinking = "off" if e.max_thinking_tokens == 1 else "on" if e.force_thinking else "model's choice"
        rows.append(
            f"| {e.name} | {e.strategy} | {e.samples} | {thinking} | {budget} | {e.max_tokens} | {e.temperature:g} "
            f"| {e.summary} |"
        )
    aliases = ", ".join(f"{a} -> {b}" for a, b in ALIASES.items())
    return "\n".join(rows) + f"\n\nAlso accepted (OpenAI names): {aliases}.\n"
