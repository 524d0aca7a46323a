"""Voting keys and the rules that pick one answer out of n samples.

Two samples vote together iff their answers share a key (`Task.answer_key`: "73" and "73.0" do;
two different countdown expressions that both reach the target do). An empty key means the sample
gave no readable answer (or never closed its thinking): it never wins a vote, and is only returned
when no sample has an answer at all.

The choosers are pure functions of (keys, scores) so that the strategies, the scaling sweep (which
re-selects from subsets of one draw) and the server share exactly the same rule. Ties go to the key
seen first, which keeps every rule deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

from ponder.engine import Rollout
from ponder.tasks import Problem, Task


def sample_key(task: Task, problem: Problem, rollout: Rollout) -> str:
    """The voting key of one rollout; "" if it never closed its thinking (no answer was given)."""
    parsed = rollout.parsed
    if not parsed.closed_thinking:
        return ""
    return task.answer_key(problem, parsed.answer)


def plurality(keys: Sequence[str]) -> int:
    """Index of a sample holding the most frequent non-empty key (first seen wins ties); 0 if none."""
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key:
            counts[key] = counts.get(key, 0) + 1
            first.setdefault(key, i)
    if not counts:
        return 0
    best = max(counts, key=lambda k: (counts[k], -first[k]))
    return first[best]


def top_score(keys: Sequence[str], scores: Sequence[float]) -> int:
    """Index of the best-scored sample with a non-empty key (best-of-n); 0 if none has an answer."""
    live = [i for i, key in enumerate(keys) if key]
    if not live:
        return 0
    return max(live, key=lambda i: (scores[i], -i))


def weighted(keys: Sequence[str], scores: Sequence[float]) -> int:
    """Verifier-weighted vote: the key with the largest summed score; index of its best sample."""
    totals: dict[str, float] = {}
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key:
            totals[key] = totals.get(key, 0.0) + float(scores[i])
            first.setdefault(key, i)
    if not totals:
        return 0
    best = max(totals, key=lambda k: (totals[k], -first[k]))
    return top_score([k if k == best else "" for k in keys], scores)


def leader(keys: Sequence[str]) -> tuple[str, int, float]:
    """(leading key, its count, its share of all samples so far) — auto effort's stopping signal.
    Empty keys count in the denominator: samples without an answer are disagreement too."""
    if not keys:
        return "", 0, 0.0
    key = keys[plurality(keys)]
    if not key:
        return "", 0, 0.0
    count = sum(1 for k in keys if k == key)
    return key, count, count / len(keys)
