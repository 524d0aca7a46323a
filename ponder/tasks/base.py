"""What a task is: a deterministic problem generator that owns its verifier and its worked traces.

The generator-verifier gap is the point: a problem is hard to solve and easy to check. Every task

- generates a `Problem` from (seed, split, index, difficulty), deterministically;
- scores a model's completion with `score(problem, completion) -> float in [0, 1]`, accepting every
  correct answer in any reasonable surface form (subclasses implement `check` on the answer text);
- writes a worked step-by-step `trace` for the pretraining / SFT corpus, sometimes with a mistake
  followed by an explicit correction, so backtracking exists in the data.

Train and eval problems are disjoint by construction: a problem belongs to the split its prompt
hashes to (`split_of`), and `problem()` redraws until the hash lands in the requested split.
"""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from ponder.format import parse_completion
from ponder.tasks.answers import answer_key as _default_answer_key

SPLITS = ("train", "eval")
EVAL_FRACTION = 0.2  # share of the prompt-hash space reserved for held-out problems


@dataclass(frozen=True)
class Problem:
    task: str  # the task's registry name
    prompt: str  # the user message
    answer: str  # one reference answer (there may be others: only `Task.check` decides)
    difficulty: int
    split: str
    index: int
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Draft:
    """What a task's `draw` returns: a problem before it is given its split and index."""

    prompt: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)


def split_of(prompt: str) -> str:
    """The split a prompt belongs to, from a hash of its text alone: the same text, the same split."""
    bucket = int.from_bytes(hashlib.blake2b(prompt.encode(), digest_size=8).digest(), "big") % 1000
    return "eval" if bucket < EVAL_FRACTION * 1000 else "train"


def _rng(*parts: object) -> random.Random:
    """A private RNG seeded from a stable hash of its parts (Python's `hash` is salted per process)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


class Task(ABC):
    """A family of problems. Subclasses set `name`, `difficulties` and implement the three methods."""

    name: str = ""
    description: str = ""
    difficulties: tuple[int, ...] = (1, 2, 3, 4, 5)

    # --- what a family implements ----------------------------------------------------------------

    @abstractmethod
    def draw(self, rng: random.Random, difficulty: int) -> Draft:
        """Draw one problem of this difficulty using only `rng` (for determinism)."""

    @abstractmethod
    def check(self, problem: Problem, answer: str) -> bool:
        """Is `answer` (the text after </think>) a correct answer? Must not raise on any string."""

    @abstractmethod
    def trace(self, problem: Problem, rng: random.Random, mistake: bool = False) -> str:
        """A worked step-by-step solution ending at `problem.answer`. With `mistake=True`, include one
        wrong step followed by an explicit correction ("wait, ... let me recheck")."""

    # --- shared machinery ------------------------------------------------------------------------

    def problem(self, split: str, index: int, difficulty: int, seed: int = 0) -> Problem:
        """Problem number `index` of a split: deterministic in (seed, split, index, difficulty)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if difficulty not in self.difficulties:
            raise ValueError(f"task {self.name!r} has difficulties {list(self.difficulties)}, got {difficulty!r}")
        for attempt in range(10_000):
            draft = self.draw(_rng(self.name, seed, split, index, difficulty, attempt), difficulty)
            if split_of(draft.prompt) == split:
                return Problem(self.name, draft.prompt, draft.answer, difficulty, split, index, draft.meta)
        raise RuntimeError(f"task {self.name!r} could not draw a {split} problem: is its space tiny?")

    def score(self, problem: Problem, completion: str) -> float:
        """Reward in [0, 1] for a whole completion: 1 if the answer after </think> is correct."""
        parsed = parse_completion(completion)
        if not parsed.closed_thinking:
            return 0.0
        # Exceptions propagate: the RL reward layer turns them into a 0 and a counted warning.
        return 1.0 if self.check(problem, parsed.answer) else 0.0

    def answer_key(self, problem: Problem, answer: str) -> str:
        """What votes are counted by: two answers (the text after </think>) share a key iff `check` takes
        them for the same answer, so a vote never splits one answer across its spellings and never merges
        a right answer with a wrong one (a false statement that contains the right number included).
        Families get this by reading an answer once, for both `check` and the key. A key must not use
        `problem.answer`: it would let a vote see the reference. Default: the cleaned text, numbers
        canonical ("73", "73.0", "\\boxed{73}" -> "73"). "" means unparseable or empty, and never wins a
        vote. Total: any string in, never an exception."""
        return _default_answer_key(answer)

    def trace_rng(self, problem: Problem, seed: int = 0) -> random.Random:
        return _rng("trace", self.name, seed, problem.split, problem.index, problem.difficulty)


def score_safely(task: Task, problem: Problem, completion: str) -> tuple[float, Exception | None]:
    """`task.score`, except that a verifier that raises scores 0 and hands back its exception, so
    one bad sample or one verifier bug costs that sample, never a run or an eval."""
    try:
        return float(task.score(problem, completion)), None
    except Exception as e:  # noqa: BLE001 - any verifier failure is contained here
        return 0.0, e
