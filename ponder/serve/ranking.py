"""Choosing among a request's samples: by vote, by a task's verifier, or by a learned ranker.

    ranking = ranking_for(request.ponder, user_text, rankers)    # 400 for a task or ranker it lacks
    order = await ranking.order(rollouts, prompt_text)            # sample indices, best first

The first choice is exactly what the test-time strategies would pick (`ttc.answers`: `plurality`
for a vote, `top_score` for scores, answers without a readable key never win), so a server request
and `ponder scale` share one rule; the others follow by score, then by votes, then draw order.

Votes compare answer keys: the task's own `answer_key` when the request names a task ("73" and
"73.0" agree, two countdown expressions reaching the target agree), else the normalised answer
text. The task verifier checks the answer (the model's own chat format parses it) against the
problem: one the server regenerates from `ponder.problem` (the user message must be its prompt), or
the user message with the reference `ponder.answer`. Learned rankers are pluggable: anything with
`score_texts(texts) -> list[float]` (the learned verifier of ttc/verifier.py today, a reward model
later) scores "prompt + completion" texts in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from ponder.engine import Rollout
from ponder.errors import PonderError
from ponder.serve.protocol_common import PonderOptions, bad_request
from ponder.tasks import Problem, Task, get_task
from ponder.ttc.answers import plurality, sample_key, top_score
from ponder.ttc.questions import text_key


class TextRanker(Protocol):
    def score_texts(self, texts: Sequence[str]) -> list[float]: ...


class LockedRanker:
    """A learned ranker shared by concurrent requests: one scoring call at a time."""

    def __init__(self, ranker: TextRanker):
        self.ranker = ranker
        self.lock = threading.Lock()

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        with self.lock:
            return [float(s) for s in self.ranker.score_texts(list(texts))]


def load_ranker(path: str | Path) -> TextRanker:
    """A learned ranker from a directory: a verifier (`ponder scale`, verifier.json) or a reward model
    (`ponder reward-model`, reward_model.json); both score texts."""
    from ponder.ttc import verifier

    path = Path(path)
    if (path / verifier.META_FILE).is_file():
        return LockedRanker(verifier.Verifier.load(path))
    if (path / "reward_model.json").is_file():
        from ponder.rlhf.reward_model import RewardModel

        return LockedRanker(RewardModel.load(path))
    raise PonderError(
        f"{path} holds no ranker: expected {verifier.META_FILE} (a verifier saved by ponder scale) or "
        "reward_model.json (a reward model saved by ponder reward-model)"
    )


@dataclasses.dataclass
class Ranking:
    """How one request's samples vote and are scored."""

    rank: str  # vote | verifier | reward_model
    key: Callable[[Rollout], str]
    task: Task | None = None
    problem: Problem | None = None
    ranker: TextRanker | None = None

    async def order(self, rollouts: Sequence[Rollout], prompt_text: str) -> list[int]:
        """Sample indices, best first."""
        keys = [self.key(r) for r in rollouts]
        scores = await self.scores(rollouts, prompt_text)
        first = plurality(keys) if scores is None else top_score(keys, scores)
        votes = Counter(k for k in keys if k)
        rest = sorted(
            (i for i in range(len(rollouts)) if i != first),
            key=lambda i: (-(scores[i] if scores else 0.0), -votes.get(keys[i], 0), i),
        )
        return [first, *rest]

    async def scores(self, rollouts: Sequence[Rollout], prompt_text: str) -> list[float] | None:
        if self.rank == "vote" or len(rollouts) == 1:
            return None
        if self.ranker is None:
            return [verify(self.task, self.problem, r) for r in rollouts]
        texts = [prompt_text + r.text for r in rollouts]
        return await asyncio.to_thread(self.ranker.score_texts, texts)


def ranking_for(options: PonderOptions, user_text: str, rankers: dict[str, TextRanker]) -> Ranking:
    """The ranking a request asks for; 400 for an unknown task, a mismatched problem, a missing ranker."""
    task = problem = None
    if options.task:
        try:
            task = get_task(options.task)
        except PonderError as e:
            raise bad_request(str(e), "ponder.task")
        problem = task_problem(task, options, user_text)
    elif options.answer is not None or options.problem is not None:
        raise bad_request(
            "ponder.answer and ponder.problem need ponder.task (the verifier to check with)", "ponder.task"
        )
    ranker = None
    if options.rank == "reward_model" or (options.rank == "verifier" and task is None):
        ranker = rankers.get(options.rank)
        if ranker is None:
            flag = "--reward-model" if options.rank == "reward_model" else "--verifier"
            raise bad_request(
                f"rank {options.rank!r} needs a learned {options.rank.replace('_', ' ')}, and this server has "
                f"none: start it with {flag} DIR"
                + (", or name a task (ponder.task) to rank by its verifier" if options.rank == "verifier" else ""),
                "ponder.rank",
            )
    key = (lambda r: sample_key(task, problem, r)) if task else text_key
    return Ranking(options.rank, key, task, problem, ranker)


def task_problem(task: Task, options: PonderOptions, user_text: str) -> Problem:
    """The problem the verifier checks against: regenerated from `ponder.problem`, or the user
    message with `ponder.answer` as the reference (tasks that read the prompt need neither)."""
    if options.problem is None:
        return Problem(task.name, user_text, options.answer or "", difficulty=0, split="eval", index=-1)
    ref = options.problem
    try:
        problem = task.problem(ref.split, ref.index, ref.difficulty, ref.seed)
    except (ValueError, RuntimeError) as e:
        raise bad_request(f"ponder.problem cannot be regenerated: {e}", "ponder.problem")
    if problem.prompt.strip() != user_text.strip():
        raise bad_request(
            f"the last user message is not the prompt of {task.name} problem {ref.split}/{ref.index} "
            f"(difficulty {ref.difficulty}, seed {ref.seed}), which is {problem.prompt!r}",
            "ponder.problem",
        )
    return problem if options.answer is None else dataclasses.replace(problem, answer=options.answer)


def verify(task: Task, problem: Problem, rollout: Rollout) -> float:
    """1.0 if the task's verifier accepts the answer; a sample without one, or a verifier that
    raises, scores 0 (as RL rewards do)."""
    parsed = rollout.parsed
    if not parsed.closed_thinking:
        return 0.0
    try:
        return 1.0 if task.check(problem, parsed.answer) else 0.0
    except Exception:  # noqa: BLE001 - a verifier bug costs this sample, never the request
        return 0.0
