"""Any reasoning-gym dataset as a ponder task: `get_task("gym:basic_arithmetic")`.

Problems come from `reasoning_gym` itself and are scored by the dataset's own `score_answer`.

Drawing. A problem is entry `index` of a dataset built with seed `k * SIZE`, where `k < SEED_POOL` and
`index < SIZE` both come from the task's rng. reasoning-gym seeds entry `i` of a dataset with seed `s`
from `s + i`, so spacing the seeds `SIZE` apart keeps the `SEED_POOL * SIZE` entries distinct. Built
datasets are cached per (dataset, level, seed), so drawing costs one entry, not one dataset.

Difficulty. Where the dataset has a reasoning-gym curriculum, ponder difficulty `d` is the curriculum's
global level `d - 1` (every attribute at that level, clamped to its last one; ranges run from level 0
up, reasoning-gym's INCLUSIVE mode). Difficulties stop at 5, at the first level whose configuration
fails reasoning-gym's own validation, or at the first level that changes nothing (an attribute list
shorter than 5), so `task.difficulties` is `(1, ..., n)` with every level distinct and valid. Datasets
without a curriculum (or whose level 0 is invalid) use the dataset's default configuration, as
difficulty 1 only. Level 0 is very easy (e.g. `2 + 3`): pick the difficulty to suit the model.

Scoring. `score` is the raw `score_answer` float in [0, 1] (partial credit where the dataset gives it);
`check` is `score >= 1`. Neither raises: an exception inside `score_answer` scores 0.

Traces are thin: reasoning-gym ships no worked solutions, so `trace` only states the answer (after the
expression, for datasets whose metadata has one). Use gym tasks for RL; their traces teach the format,
not the reasoning. A few datasets (e.g. `boxnet`, `rush_hour`) have no single reference answer: their
problems have `answer == ""`, score fine, and `trace` raises. Some datasets are slow to generate at
their higher levels (seconds per problem for `jugs`): that is reasoning-gym's generator.
"""

from __future__ import annotations

import difflib
import functools
import math
import random
from typing import Any

import reasoning_gym
from reasoning_gym import factory

from ponder.errors import PonderError
from ponder.format import parse_completion
from ponder.tasks.base import Draft, Problem, Task
from ponder.tasks.thin import thin_trace

SIZE = 1000  # entries per built dataset (a few datasets precompute O(size) in their constructor)
SEED_POOL = 64  # datasets per difficulty: SEED_POOL * SIZE distinct problems
MAX_DIFFICULTY = 5
UNSUPPORTED = ("composite",)  # needs a config naming other datasets: use those directly
EXAMPLES = ("basic_arithmetic", "leg_counting", "chain_sum", "countdown", "gsm_symbolic", "mini_sudoku")


class GymTask(Task):
    """The reasoning-gym dataset `dataset_name`, as the task `gym:<dataset_name>`."""

    def __init__(self, dataset_name: str):
        if dataset_name not in factory.DATASETS or dataset_name in UNSUPPORTED:
            raise PonderError(_unknown_message(dataset_name))
        self.dataset_name = dataset_name
        self.name = f"gym:{dataset_name}"
        self.description = f"reasoning-gym dataset {dataset_name!r}, scored by its own score_answer"
        self.levels = _curriculum_levels(dataset_name)  # ponder difficulty d -> self.levels[d - 1]
        self.difficulties = tuple(range(1, len(self.levels) + 1)) or (1,)

    def draw(self, rng: random.Random, difficulty: int) -> Draft:
        level = self.levels[difficulty - 1] if self.levels else None
        seed = rng.randrange(SEED_POOL) * SIZE
        entry = _dataset(self.dataset_name, level, seed)[rng.randrange(SIZE)]
        answer = entry.get("answer")
        meta = {"entry": entry, "level": level, "seed": seed}
        return Draft(str(entry["question"]), "" if answer is None else str(answer), meta)

    def check(self, problem: Problem, answer: str) -> bool:
        return self._raw_score(problem, answer) >= 1.0

    def score(self, problem: Problem, completion: str) -> float:
        """The dataset's own score in [0, 1] for the answer after </think>; 0 without a closed </think>."""
        parsed = parse_completion(completion)
        return self._raw_score(problem, parsed.answer) if parsed.closed_thinking else 0.0

    def trace(self, problem: Problem, rng: random.Random, mistake: bool = False) -> str:
        """A thin trace: the answer (after the expression, where the metadata has one); see the module doc."""
        if not problem.answer:
            raise PonderError(
                f"{self.name} has no single reference answer, so it cannot write traces: "
                "use it for RL only, not for the pretraining/SFT corpus."
            )
        body = thin_trace(problem.answer, rng, mistake, lambda text: self.check(problem, text))
        expression = problem.meta.get("entry", {}).get("metadata", {}).get("expression")
        return f"{expression} = ?\n{body}" if isinstance(expression, str) and expression else body

    def _raw_score(self, problem: Problem, answer: str) -> float:
        """`score_answer`'s float, clamped to [0, 1]; 0 on any exception or non-number."""
        entry = problem.meta.get("entry")
        if not isinstance(entry, dict) or not isinstance(answer, str):
            return 0.0
        try:
            dataset = _dataset(self.dataset_name, problem.meta.get("level"), problem.meta.get("seed", 0))
            value = float(dataset.score_answer(answer, entry))
        except Exception:  # noqa: BLE001 - a verifier bug must not crash training: it scores 0
            return 0.0
        return min(max(value, 0.0), 1.0) if math.isfinite(value) else 0.0


def _config(name: str, level: int, seed: int) -> Any:
    """The dataset config for one curriculum global level (raises if reasoning-gym finds it invalid)."""
    curriculum = factory.create_curriculum(name)
    curriculum.set_global_level(level)
    config = curriculum.generate_configuration({"seed": seed, "size": SIZE})
    if callable(getattr(config, "validate", None)):
        config.validate()
    return config


@functools.cache
def _curriculum_levels(name: str) -> tuple[int, ...]:
    """The curriculum levels 0, 1, ... that are valid and each differ from the one before (at most 5)."""
    if not factory.has_curriculum(name):
        return ()
    levels: list[int] = []
    previous = None
    for level in range(MAX_DIFFICULTY):
        try:
            config = _config(name, level, 0)
        except Exception:  # noqa: BLE001 - reasoning-gym validates with assert and ValueError alike
            break
        if config == previous:
            break
        levels.append(level)
        previous = config
    return tuple(levels)


@functools.lru_cache(maxsize=512)
def _dataset(name: str, level: int | None, seed: int) -> Any:
    """A built dataset, cached: a curriculum level's config, or the default config when `level` is None."""
    if level is None:
        return reasoning_gym.create_dataset(name, seed=seed, size=SIZE)
    dataset_cls, _ = factory.DATASETS[name]
    return dataset_cls(config=_config(name, level, seed))


def _unknown_message(name: str) -> str:
    known = sorted(set(factory.DATASETS) - set(UNSUPPORTED))
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    examples = ", ".join(n for n in EXAMPLES if n in factory.DATASETS)
    return (
        f"unknown reasoning-gym dataset {name!r}.{hint} Some known ones: {examples} ({len(known)} in all; "
        "the full list is reasoning_gym.factory.DATASETS: "
        "python -c 'import reasoning_gym.factory as f; print(sorted(f.DATASETS))')."
    )
