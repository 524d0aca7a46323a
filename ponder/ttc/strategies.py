"""Test-time strategies: ways to turn more generated tokens into better answers.

    outcomes = majority(engine, problems, n=16, params=SamplingParams(temperature=1.0))
    accuracy = sum(o.correct for o in outcomes) / len(outcomes)
    tokens = sum(o.tokens for o in outcomes)  # every sample counted, not only the chosen one

Every strategy is `(engine, problems, ...) -> list[Outcome]` and batches across problems: one
`engine.generate` call per round with n samples per prompt, never a loop over problems. A "problem"
is a task `Problem` (votes by the task's answer key, the verifier scores the chosen answer *after*
choosing) or a `Question` (any chat request: votes by the normalised answer text, or a key function
it brings; nothing to score), so the same vote, best-of-n or auto effort serves an eval and a chat
or server request. The verifier is never used to choose, except by the `oracle` ranker of best-of-n
(the upper bound a perfect verifier would give).

    greedy          temperature 0, one sample
    sample          one sample at the given temperature
    majority        n samples, plurality of answer keys (self-consistency; maj@n)
    best_of_n       n samples, the one a ranker scores highest (oracle or learned verifier)
    weighted_vote   n samples, answer keys weighted by the ranker's summed scores
    budget_forcing  s1, thinking on: cap the thinking at a token budget (close </think>), or extend it
                    with "wait,"
    revision        sequential: the model sees its previous answer and tries again
    auto_effort     greedy (thinking on) first, then samples in rounds until the leading answer is
                    confident
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ponder.engine import Rollout, SamplingParams
from ponder.tasks import Problem
from ponder.ttc.answers import leader, plurality, top_score, weighted
from ponder.ttc.questions import Question, key_of, prompt_ids, score_of

# scores for each problem's rollouts, higher = more likely correct
Ranker = Callable[[Sequence[Problem], Sequence[Sequence[Rollout]]], list[list[float]]]
Progress = Callable[[int], None] | None

DEFAULT_PARAMS = SamplingParams(temperature=1.0, max_tokens=256)
REVISION_TEMPLATE = "{prompt} Your previous answer was {answer}. Check it and answer again."


@dataclass
class Outcome:
    """One problem's result under a strategy."""

    problem: Problem | Question
    answer: str  # the chosen answer text (after </think>)
    key: str  # its voting key ("" = no readable answer)
    correct: bool  # the task verifier on the chosen rollout, after choosing (a Question: False)
    tokens: int  # tokens generated for this problem, all samples and rounds included
    samples: int  # rollouts drawn for this problem
    rollout: Rollout | None = None  # the chosen one


def accuracy(outcomes: Sequence[Outcome]) -> float:
    return sum(o.correct for o in outcomes) / len(outcomes) if outcomes else 0.0


def total_tokens(outcomes: Sequence[Outcome]) -> int:
    return sum(o.tokens for o in outcomes)


# ---------------------------------------------------------------------------------------------------
# shared machinery


def draw(engine, problems: Sequence[Problem | Question], params: SamplingParams, progress: Progress = None):
    """`params.n` rollouts per problem, in one batched engine call."""
    return engine.generate([prompt_ids(engine, p) for p in problems], params, progress=progress)


def keys_of(problem: Problem | Question, group: Sequence[Rollout]) -> list[str]:
    return [key_of(problem, r) for r in group]


def outcome(problem: Problem | Question, group: Sequence[Rollout], chosen: int, tokens: int | None = None) -> Outcome:
    """Score the chosen rollout with the task verifier (after the choice was made)."""
    r = group[chosen]
    return Outcome(
        problem=problem,
        answer=r.parsed.answer,
        key=key_of(problem, r),
        correct=score_of(problem, r) > 0.5,
        tokens=sum(x.num_tokens for x in group) if tokens is None else tokens,
        samples=len(group),
        rollout=r,
    )


def oracle_ranker(problems: Sequence[Problem], groups: Sequence[Sequence[Rollout]]) -> list[list[float]]:
    """The task verifier as a ranker: best-of-n with it is pass@n, the ceiling for any verifier."""
    return [[score_of(p, r) for r in g] for p, g in zip(problems, groups, strict=True)]


def _params(params: SamplingParams | None, **changes) -> SamplingParams:
    return dataclasses.replace(params or DEFAULT_PARAMS, **changes)


def _round_seed(params: SamplingParams, round_index: int) -> int | None:
    """Rounds must not repeat each other's draws: a fixed seed moves on with the round."""
    return None if params.seed is None else params.seed + 1_000_003 * round_index


# ---------------------------------------------------------------------------------------------------
# one-shot strategies


def greedy(engine, problems, params: SamplingParams | None = None, progress: Progress = None) -> list[Outcome]:
    groups = draw(engine, problems, _params(params, temperature=0.0, n=1), progress)
    return [outcome(p, g, 0) for p, g in zip(problems, groups, strict=True)]


def sample(engine, problems, params: SamplingParams | None = None, progress: Progress = None) -> list[Outcome]:
    groups = draw(engine, problems, _params(params, n=1), progress)
    return [outcome(p, g, 0) for p, g in zip(problems, groups, strict=True)]


def majority(
    engine, problems, n: int = 8, params: SamplingParams | None = None, progress: Progress = None
) -> list[Outcome]:
    """Self-consistency: the most frequent answer key among n samples."""
    groups = draw(engine, problems, _params(params, n=n), progress)
    return [outcome(p, g, plurality(keys_of(p, g))) for p, g in zip(problems, groups, strict=True)]


def best_of_n(
    engine,
    problems,
    n: int = 8,
    ranker: Ranker = oracle_ranker,
    params: SamplingParams | None = None,
    progress: Progress = None,
) -> list[Outcome]:
    """The sample the ranker scores highest (among those with an answer)."""
    return _ranked(engine, problems, n, ranker, params, progress, top_score)


def weighted_vote(
    engine,
    problems,
    n: int = 8,
    ranker: Ranker = oracle_ranker,
    params: SamplingParams | None = None,
    progress: Progress = None,
) -> list[Outcome]:
    """Verifier-weighted vote: answer keys ranked by the sum of their samples' scores."""
    return _ranked(engine, problems, n, ranker, params, progress, weighted)


def _ranked(engine, problems, n, ranker, params, progress, choose) -> list[Outcome]:
    """n samples per problem, scored by `ranker`; `choose(keys, scores)` picks the sample."""
    groups = draw(engine, problems, _params(params, n=n), progress)
    scores = ranker(problems, groups)
    return [outcome(p, g, choose(keys_of(p, g), s)) for p, g, s in zip(problems, groups, scores, strict=True)]


def budget_forcing(
    engine,
    problems,
    max_thinking_tokens: int | None = 64,
    min_thinking_tokens: int = 0,
    params: SamplingParams | None = None,
    progress: Progress = None,
    force_thinking: bool = True,
) -> list[Outcome]:
    """s1 budget forcing, greedy by default: the engine writes "</think>" once the thinking reaches
    `max_thinking_tokens`, and "wait," when the model tries to close it before `min_thinking_tokens`.
    A budget is spent on thinking, so by default the model may not skip it (`force_thinking`: a
    two-mode model that would answer at once works the problem instead); a budget of 1 token is
    thinking off whatever this says. Forced tokens are counted in `tokens` (they occupy the context)."""
    base = params or dataclasses.replace(DEFAULT_PARAMS, temperature=0.0)
    p = _params(
        base,
        n=1,
        max_thinking_tokens=max_thinking_tokens,
        min_thinking_tokens=min_thinking_tokens,
        force_thinking=force_thinking,
    )
    # room for the answer after a capped or extended thinking
    p.max_tokens = max(p.max_tokens, max(max_thinking_tokens or 0, min_thinking_tokens) + 64)
    groups = draw(engine, problems, p, progress)
    return [outcome(q, g, 0) for q, g in zip(problems, groups, strict=True)]


# ---------------------------------------------------------------------------------------------------
# multi-round strategies


def revision(
    engine, problems, rounds: int = 2, params: SamplingParams | None = None, progress: Progress = None
) -> list[Outcome]:
    """Sequential revision: attempt, then show the model its answer and ask it to check and answer
    again, `rounds` attempts in all. The last readable answer is kept; every attempt's tokens count."""
    base = params or dataclasses.replace(DEFAULT_PARAMS, temperature=0.0)
    tokens = [0] * len(problems)
    results: list[Outcome | None] = [None] * len(problems)
    prompts = [prompt_ids(engine, p) for p in problems]
    for r in range(rounds):
        groups = engine.generate(prompts, _params(base, n=1, seed=_round_seed(base, r)), progress=progress)
        for i, (p, g) in enumerate(zip(problems, groups, strict=True)):
            tokens[i] += g[0].num_tokens
            attempt = outcome(p, g, 0, tokens=tokens[i])
            if attempt.key or results[i] is None:
                results[i] = attempt
            results[i].tokens, results[i].samples = tokens[i], r + 1
        prompts = [
            engine.format.prompt(REVISION_TEMPLATE.format(prompt=p.prompt, answer=o.answer or "empty"))
            for p, o in zip(problems, results, strict=True)
        ]
    return list(results)


# Auto effort's stopping rule, chosen on TRAIN-split problems (500, 16 samples each, base and RL model;
# scripts/auto_effort_rule.py, table in docs/test-time-compute.md): the cheapest rule that matched
# maj@16's accuracy on the base.
class AutoRule(NamedTuple):
    round_size: int  # samples per live problem per round
    max_n: int  # answers at most, the greedy anchor included
    min_count: int  # the leader needs this many votes ...
    min_share: float  # ... and this share of all votes to stop


AUTO_RULE = AutoRule(round_size=1, max_n=16, min_count=2, min_share=0.7)


def auto_effort(
    engine,
    problems,
    round_size: int = AUTO_RULE.round_size,
    max_n: int = AUTO_RULE.max_n,
    min_count: int = AUTO_RULE.min_count,
    min_share: float = AUTO_RULE.min_share,
    params: SamplingParams | None = None,
    progress: Progress = None,
) -> list[Outcome]:
    """Adaptive self-consistency anchored on the greedy answer. The first vote is the model's greedy
    answer with thinking on (its best single guess, free of sampling noise); then `round_size` samples
    per live problem per round (`params`: temperature, thinking left to the model). A problem stops
    once its leading answer key has at least `min_count` votes and `min_share` of all votes, or at
    `max_n` answers in all (the anchor included). Easy questions stop when the first sample agrees
    with greedy (two answers); hard ones get more. The answer is the plurality of every vote."""
    base = params or DEFAULT_PARAMS
    groups = [list(g) for g in draw(engine, problems, anchor_params(base), progress)]
    keys = [keys_of(p, g) for p, g in zip(problems, groups, strict=True)]
    live = [i for i in range(len(problems)) if not _stops(keys[i], max_n, min_count, min_share)]
    r = 0
    while live:
        size = min(round_size, max_n - len(groups[live[0]]))
        new = draw(engine, [problems[i] for i in live], _params(base, n=size, seed=_round_seed(base, r)), progress)
        for i, g in zip(live, new, strict=True):
            groups[i] += g
            keys[i] += keys_of(problems[i], g)
        live = [i for i in live if not _stops(keys[i], max_n, min_count, min_share)]
        r += 1
    return [outcome(p, g, plurality(k)) for p, g, k in zip(problems, groups, keys, strict=True)]


def anchor_params(params: SamplingParams) -> SamplingParams:
    """Auto effort's first vote: greedy, thinking on (`force_thinking`), one answer."""
    return _params(params, n=1, temperature=0.0, force_thinking=True)


def _stops(keys: list[str], max_n: int, min_count: int, min_share: float) -> bool:
    """Auto effort's stopping rule: `max_n` answers drawn, or the leading answer is confident."""
    _, count, share = leader(keys)
    return len(keys) >= max_n or (count >= min_count and share >= min_share)


def auto_stop(
    keys: Sequence[str],
    round_size: int = AUTO_RULE.round_size,
    max_n: int = AUTO_RULE.max_n,
    min_count: int = AUTO_RULE.min_count,
    min_share: float = AUTO_RULE.min_share,
    first: int = 1,
) -> int:
    """How many of `keys` auto effort would use before stopping: keys[0] is the anchor's (greedy,
    thinking on), the rest samples in the order drawn; the same rule as `auto_effort`, replayed on
    answers already drawn. Samples are i.i.d., so replaying a random order of an n-sample draw is an
    exact simulation of drawing in rounds; `ponder scale` uses it to compare auto effort with maj@n on
    the same samples (a paired comparison). `first`: answers drawn before the first check (1, the
    anchor; a rule without an anchor, as scripts/auto_effort_rule.py compares, checks after a round)."""
    used = min(first, max_n, len(keys))
    while used < len(keys) and not _stops(list(keys[:used]), max_n, min_count, min_share):
        used = min(used + round_size, max_n, len(keys))
    return used


# ---------------------------------------------------------------------------------------------------
# by name (the effort presets, the CLI and the server pick strategies this way)

STRATEGIES: dict[str, Callable[..., list[Outcome]]] = {
    "greedy": greedy,
    "sample": sample,
    "majority": majority,
    "best_of_n": best_of_n,
    "weighted_vote": weighted_vote,
    "budget_forcing": budget_forcing,
    "revision": revision,
    "auto_effort": auto_effort,
}


def run_strategy(name: str, engine, problems, **kwargs) -> list[Outcome]:
    from ponder.errors import PonderError

    if name not in STRATEGIES:
        raise PonderError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name](engine, problems, **kwargs)
