"""Held-out evaluation: accuracy per task, tokens per answer, how often the model thinks, wall time.

    report = evaluate(engine, mix.eval_set(per_cell=20), SamplingParams(temperature=0))
    report.overall, report.by_task["countdown"].accuracy, report.to_json()

Problems come from the eval split only (disjoint from training by construction, see
tasks/base.py). Scores are the tasks' own verifiers applied to the whole completion.

With `tools` (a `ToolLoop`, see `tool_loop`) the model may call tools inside its thinking: the
engine pauses a sequence at "</tool_call>", runs the call and writes the response. With n samples
per problem (`params.n` = k), `pass_rates` gives per task and difficulty pass@k (some sample right)
and pass^k (every sample right: how reliably, not how possibly, the model solves it).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from ponder.corpus import TOOL_CONFIG
from ponder.engine import Engine, Rollout, SamplingParams
from ponder.errors import PonderError
from ponder.tasks import Problem, get_task
from ponder.tasks.base import score_safely
from ponder.tools.loop import ToolLimits, ToolLoop

log = logging.getLogger(__name__)


@dataclass
class TaskScore:
    task: str
    problems: int = 0
    correct: float = 0.0
    tokens: int = 0
    thought: float = 0.0  # answers with non-empty thinking (a model trained on both modes may skip it)
    tool_calls: float = 0.0  # tool calls made, summed over problems (mean over each problem's samples)

    @property
    def accuracy(self) -> float:
        return self.correct / self.problems if self.problems else 0.0

    @property
    def tokens_per_answer(self) -> float:
        return self.tokens / self.problems if self.problems else 0.0

    @property
    def thinking_share(self) -> float:
        return self.thought / self.problems if self.problems else 0.0

    @property
    def calls_per_answer(self) -> float:
        return self.tool_calls / self.problems if self.problems else 0.0


@dataclass(frozen=True)
class PassRates:
    """One (task, difficulty) cell under k samples per problem."""

    problems: int
    k: int
    pass_at_k: float  # share of problems with at least one right sample
    pass_hat_k: float  # share of problems with every sample right (pass^k)


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

    @property
    def calls_per_answer(self) -> float:
        return sum(t.tool_calls for t in self.by_task.values()) / max(1, self.problems)

    def pass_rates(self) -> dict[tuple[str, int], PassRates]:
        """(task, difficulty) -> pass@k and pass^k over the report's problems, k = samples per problem."""
        cells: dict[tuple[str, int], list[dict]] = defaultdict(list)
        for s in self.samples:
            cells[(s["task"], s["difficulty"])].append(s)
        return {
            cell: PassRates(
                problems=len(rows),
                k=rows[0]["samples"],
                pass_at_k=sum(r["right"] > 0 for r in rows) / len(rows),
                pass_hat_k=sum(r["right"] == r["samples"] for r in rows) / len(rows),
            )
            for cell, rows in sorted(cells.items())
        }

    def to_json(self) -> dict:
        return {
            "overall_accuracy": self.overall,
            "problems": self.problems,
            "tokens": self.tokens,
            "thinking_share": self.thinking_share,
            "tool_calls_per_answer": self.calls_per_answer,
            "wall_s": round(self.wall_s, 3),
            "pass_rates": [{"task": t, "difficulty": d, **asdict(r)} for (t, d), r in self.pass_rates().items()],
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


def tool_loop(tools: str, max_calls: int = 4, fault_rate: float = 0.0, seed: int = 0) -> ToolLoop | None:
    """The tool loop for a comma list of tool names ("" = None: no tools), its tools set up as the
    corpus's traces show them (`ponder.corpus.TOOL_CONFIG`), so a model trained on tool traces sees
    at run time the responses it was trained to read."""
    names = [n.strip() for n in tools.split(",") if n.strip()]
    if not names:
        return None
    if max_calls < 1:
        raise PonderError(f"max_tool_calls must be >= 1 with tools on, got {max_calls}")
    if not 0 <= fault_rate <= 1:
        raise PonderError(f"tool_fault_rate must be in [0, 1], got {fault_rate}")
    return ToolLoop.of(names, TOOL_CONFIG, ToolLimits(max_calls=max_calls, fault_rate=fault_rate), seed=seed)


def generate(engine, prompts, params: SamplingParams, tools: ToolLoop | None = None, progress=None):
    """`engine.generate`, with the tool loop when `tools` is given (and `params.tools` set to match)."""
    if tools is None:
        return engine.generate(prompts, params, progress=progress)
    return engine.generate(prompts, replace(params, tools=True), progress=progress, on_tool_call=tools)


class ToolEngine:
    """An engine whose every `generate` may call `tools`: hand it to any test-time strategy (votes,
    budgets, auto effort, the scaling sweep) and the strategy runs with tools, unchanged. Everything
    else (format, tokenizer, model) is the wrapped engine's."""

    def __init__(self, engine: Engine, tools: ToolLoop):
        self.engine, self.tools = engine, tools

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def generate(self, prompts, params: SamplingParams | None = None, progress=None, on_tool_call=None):
        if on_tool_call is not None:
            raise PonderError("this engine already runs its own tool loop; call the wrapped engine for another")
        return generate(self.engine, prompts, params or SamplingParams(), self.tools, progress)


def evaluate(
    engine: Engine,
    problems: list[Problem],
    params: SamplingParams | None = None,
    progress: Callable[[int], None] | None = None,
    tools: ToolLoop | None = None,
) -> EvalReport:
    """Greedy (by default) accuracy of `engine`'s model on `problems`, grouped by task; with `tools`,
    the model may call them. `params.n` samples per problem: accuracy is their mean."""
    params = params or SamplingParams(temperature=0.0, max_tokens=256)
    started = time.perf_counter()
    groups = generate(engine, [engine.format.prompt(p.prompt) for p in problems], params, tools, progress)
    by_task: dict[str, TaskScore] = defaultdict(lambda: TaskScore(""))
    samples = []
    for problem, group in zip(problems, groups, strict=True):
        right = [score_rollout(problem, r) for r in group]
        score = sum(right) / len(group)
        t = by_task[problem.task]
        t.task, t.problems, t.correct = problem.task, t.problems + 1, t.correct + score
        t.tokens += sum(r.num_tokens for r in group) // len(group)
        t.thought += sum(bool(r.parsed.thinking) for r in group) / len(group)
        t.tool_calls += sum(r.tool_calls for r in group) / len(group)
        samples.append(
            {
                "task": problem.task,
                "difficulty": problem.difficulty,
                "prompt": problem.prompt,
                "answer": problem.answer,
                "completion": group[0].text,
                "score": score,
                "right": sum(v > 0.5 for v in right),
                "samples": len(group),
                "tool_calls": group[0].tool_calls,
                "thought": bool(group[0].parsed.thinking),
            }
        )
    return EvalReport(dict(sorted(by_task.items())), time.perf_counter() - started, samples)
