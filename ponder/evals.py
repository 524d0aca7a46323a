"""Held-out evaluation: accuracy per task, tokens per answer, how often the model thinks, wall time.

    report = evaluate(engine, mix.eval_set(per_cell=20), SamplingParams(temperature=0))
    report.overall, report.by_task["countdown"].accuracy, report.to_json()

Problems come from the eval split only (disjoint from training by construction, see
tasks/base.py). Scores are the tasks' own verifiers applied to the whole completion.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ponder.engine import Engine, Rollout, SamplingParams
from ponder.tasks import Problem, get_task
from ponder.tasks.base import score_safely

log = logging.getLogger(__name__)


@dataclass
class TaskScore:
    task: str
    problems: int = 0
    correct: float = 0.0
    tokens: int = 0
    thought: float = 0.0  # answers with non-empty thinking (a model trained on both modes may skip it)

    @property
    def accuracy(self) -> float:
        return self.correct / self.problems if self.problems else 0.0

    @property
    def tokens_per_answer(self) -> float:
        return self.tokens / self.problems if self.problems else 0.0

    @property
    def thinking_share(self) -> float:
        return self.thought / self.problems if self.problems else 0.0


@dataclass
class EvalReport:
    by_task: dict[str, TaskScore]
    wall_s: float
    samples: list[dict] = field(default_factory=list)  # one record per problem, for inspection

    @property
    def problems(self) -> int:
        return sum(t.problems for t in self.by_task.values())

    @property
    def overall(self) -> float:
        """Mean of the per-task accuracies (each task weighs the same, whatever its count)."""
        scores = [t.accuracy for t in self.by_task.values()]
        return sum(scores) / len(scores) if scores else 0.0

    @property
    def tokens(self) -> int:
        return sum(t.tokens for t in self.by_task.values())

    @property
    def thinking_share(self) -> float:
        """Share of all answers that worked it out (pooled over problems, not averaged per task)."""
        return sum(t.thought for t in self.by_task.values()) / max(1, self.problems)

    def to_json(self) -> dict:
        return {
            "overall_accuracy": self.overall,
            "problems": self.problems,
            "tokens": self.tokens,
            "thinking_share": self.thinking_share,
            "wall_s": round(self.wall_s, 3),
            "by_task": {
                name: {
                    **asdict(t),
                    "accuracy": t.accuracy,
                    "tokens_per_answer": t.tokens_per_answer,
                    "thinking_share": t.thinking_share,
                }
                for name, t in self.by_task.items()
            },
        }


def score_rollout(problem: Problem, rollout: Rollout) -> float:
    """The verifier's score; a verifier that raises scores 0 (logged), as in RL rewards."""
    value, error = score_safely(get_task(problem.task), problem, rollout.text)
    if error is not None:
        log.warning("verifier %s raised during eval (scored 0): %r", problem.task, error)
    return value


def evaluate(
    engine: Engine,
    problems: list[Problem],
    params: SamplingParams | None = None,
    progress: Callable[[int], None] | None = None,
) -> EvalReport:
    """Greedy (by default) accuracy of `engine`'s model on `problems`, grouped by task."""
    params = params or SamplingParams(temperature=0.0, max_tokens=256)
    started = time.perf_counter()
    groups = engine.generate([engine.format.prompt(p.prompt) for p in problems], params, progress=progress)
    by_task: dict[str, TaskScore] = defaultdict(lambda: TaskScore(""))
    samples = []
    for problem, group in zip(problems, groups, strict=True):
        score = sum(score_rollout(problem, r) for r in group) / len(group)
        t = by_task[problem.task]
        t.task, t.problems, t.correct = problem.task, t.problems + 1, t.correct + score
        t.tokens += sum(r.num_tokens for r in group) // len(group)
        t.thought += sum(bool(r.parsed.thinking) for r in group) / len(group)
        samples.append(
            {
                "task": problem.task,
                "difficulty": problem.difficulty,
                "prompt": problem.prompt,
                "answer": problem.answer,
                "completion": group[0].text,
                "score": score,
                "thought": bool(group[0].parsed.thinking),
            }
        )
    return EvalReport(dict(sorted(by_task.items())), time.perf_counter() - started, samples)
