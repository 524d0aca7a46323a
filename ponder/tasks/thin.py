"""Thin traces for tasks whose source gives no worked solution (reasoning-gym datasets, user JSONL).

These traces state the answer and nothing more: they teach the output format, not the reasoning. With
`mistake=True` and an integer answer they first state a nearby wrong integer and then correct it, so the
backtracking pattern still appears; a non-integer answer gets no mistake (there is no generic way to
write a plausible wrong one).
"""

from __future__ import annotations

import random
from collections.abc import Callable


def thin_trace(answer: str, rng: random.Random, mistake: bool, is_correct: Callable[[str], bool]) -> str:
    """'The answer is X.', optionally preceded by a wrong integer guess and an explicit correction."""
    final = f"The answer is {answer}."
    wrong = _wrong_integer(answer, rng, is_correct) if mistake else None
    if wrong is None:
        return final
    return f"My first guess is {wrong}.\nWait, let me recheck: {wrong} is not right.\n{final}"


def _wrong_integer(answer: str, rng: random.Random, is_correct: Callable[[str], bool]) -> str | None:
    """A nearby integer that the verifier rejects, or None when the answer is not an integer."""
    try:
        value = int(answer.strip())
    except ValueError:
        return None
    for _ in range(10):
        candidate = str(value + rng.choice([-3, -2, -1, 1, 2, 3]))
        if not is_correct(candidate):
            return candidate
    return None
