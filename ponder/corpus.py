"""The training corpus: worked traces of task problems in the chat format.

Example i of a mix is problem i of the train split, solved step by step by its task's trace
writer; a `mistake_rate` share of them contain a wrong step followed by "wait, ... let me
recheck", so backtracking exists in what the model learns from.
"""

from __future__ import annotations

from dataclasses import dataclass

from ponder.format import render_completion, render_prompt
from ponder.tasks.base import _rng
from ponder.tasks.mix import TaskMix


@dataclass(frozen=True)
class Example:
    prompt: str  # rendered prompt, ending inside <think>
    completion: str  # thinking, </think>, answer, end token


def example(mix: TaskMix, i: int, mistake_rate: float, seed: int = 0) -> Example:
    problem = mix.problem("train", i, seed)
    task = mix.task_of(problem)
    mistake = _rng("mistake", seed, i).random() < mistake_rate
    thinking = task.trace(problem, task.trace_rng(problem, seed), mistake=mistake)
    return Example(render_prompt(problem.prompt), render_completion(thinking, problem.answer))


def examples(mix: TaskMix, start: int, count: int, mistake_rate: float, seed: int = 0) -> list[Example]:
    return [example(mix, i, mistake_rate, seed) for i in range(start, start + count)]
