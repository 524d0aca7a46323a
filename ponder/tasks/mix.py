"""A task mix: which tasks at which difficulties, written as one string.

    "arithmetic:1-2,countdown:1,sudoku:1-2"      task:difficulties (a range or one level)
    "letters"                                    every difficulty of the task

Problem i of a mix is deterministic: the mix cycles through its (task, difficulty) cells, so a
batch always covers the whole mix evenly, and `eval_set` gives the same held-out problems to
every model and every run.
"""

from __future__ import annotations

from dataclasses import dataclass

from ponder.errors import PonderError
from ponder.tasks import Problem, Task, get_task

# Pretraining covers difficulties 1-3 of every family; RL, evals and test-time compute run on levels
# 2-3. Held-out problems never occur in the corpus (the split is a hash of the prompt text, see
# tasks/base.py); levels 4-5 are left for measuring how far reasoning reaches past what was taught.
CORPUS_MIX = "arithmetic:1-3,countdown:1-3,sudoku:1-3,letters:1-3,decimals:1-3"
DEFAULT_MIX = "arithmetic:2-3,countdown:2-3,sudoku:2-3,letters:2-3,decimals:2-3"


@dataclass(frozen=True)
class Cell:
    task: Task
    difficulty: int


class TaskMix:
    def __init__(self, spec: str = DEFAULT_MIX):
        self.spec = spec
        self.cells = parse_mix(spec)
        self.tasks = {c.task.name: c.task for c in self.cells}

    def problem(self, split: str, i: int, seed: int = 0) -> Problem:
        cell = self.cells[i % len(self.cells)]
        return cell.task.problem(split, i // len(self.cells), cell.difficulty, seed=seed)

    def problems(self, split: str, start: int, count: int, seed: int = 0) -> list[Problem]:
        return [self.problem(split, i, seed) for i in range(start, start + count)]

    def eval_set(self, per_cell: int, seed: int = 0) -> list[Problem]:
        """`per_cell` held-out problems for every (task, difficulty) of the mix."""
        return self.problems("eval", 0, per_cell * len(self.cells), seed)

    def task_of(self, problem: Problem) -> Task:
        return self.tasks[problem.task]


def parse_mix(spec: str) -> list[Cell]:
    cells = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, levels = part.rpartition(":") if _has_levels(part) else (part, "", "")
        task = get_task(name)
        for level in _levels(levels, task, part):
            cells.append(Cell(task, level))
    if not cells:
        raise PonderError(f"task mix {spec!r} is empty: write e.g. {DEFAULT_MIX!r}")
    return cells


def _has_levels(part: str) -> bool:
    tail = part.rpartition(":")[2]
    return bool(tail) and tail.replace("-", "").isdigit()


def _levels(levels: str, task: Task, part: str) -> list[int]:
    if not levels:
        return list(task.difficulties)
    lo, _, hi = levels.partition("-")
    wanted = list(range(int(lo), int(hi or lo) + 1))
    bad = [d for d in wanted if d not in task.difficulties]
    if bad or not wanted:
        raise PonderError(f"{part!r}: task {task.name!r} has difficulties {list(task.difficulties)}, not {levels!r}")
    return wanted
