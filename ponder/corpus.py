"""The training corpus: worked traces of task problems in the chat format.

Example i of a mix is problem i of the train split, solved step by step by its task's trace
writer; a `mistake_rate` share of them contain a wrong step followed by "wait, ... let me
recheck", so backtracking exists in what the model learns from.

A `direct_rate` share skip the working: empty thinking, then the (correct) answer, the way most
text on the web states results without deriving them. A model pretrained on such a mix can answer
in either mode; for a small model guessing directly is far less reliable than working it out, and
reinforcement learning has to discover that thinking pays (response length grows as it does).
"""

from __future__ import annotations

from dataclasses import dataclass

from ponder.format import render_completion, render_prompt
from ponder.tasks.base import _rng
from ponder.tasks.mix import TaskMix


@dataclass(frozen=True)
class Example:
    prompt: str  # rendered in ponder's own format, ending inside <think> (tokenizer training, overlap)
    completion: str  # thinking, </think>, answer, end token
    question: str = ""  # the parts, for rendering through any model's chat format (ChatFormat)
    thinking: str = ""
    answer: str = ""


def example(mix: TaskMix, i: int, mistake_rate: float, seed: int = 0, direct_rate: float = 0.0) -> Example:
    problem = mix.problem("train", i, seed)
    task = mix.task_of(problem)
    rng = _rng("style", seed, i)
    if rng.random() < direct_rate:
        thinking = ""
    else:
        mistake = rng.random() < mistake_rate
        thinking = task.trace(problem, task.trace_rng(problem, seed), mistake=mistake)
    return Example(
        render_prompt(problem.prompt),
        render_completion(thinking, problem.answer),
        problem.prompt,
        thinking,
        problem.answer,
    )


def examples(
    mix: TaskMix, start: int, count: int, mistake_rate: float, seed: int = 0, direct_rate: float = 0.0
) -> list[Example]:
    return [example(mix, i, mistake_rate, seed, direct_rate) for i in range(start, start + count)]
