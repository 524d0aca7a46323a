"""Task mixes: the train / eval split is disjoint by construction, and mix specs parse or say why not."""

from __future__ import annotations

import pytest

from ponder.errors import PonderError
from ponder.tasks import BUILTIN, get_task, split_of
from ponder.tasks.mix import DEFAULT_MIX, TaskMix, parse_mix

PER_SPLIT = 200


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_train_and_eval_prompts_are_disjoint_at_every_difficulty(name):
    task = get_task(name)
    for difficulty in task.difficulties:
        train = [task.problem("train", i, difficulty) for i in range(PER_SPLIT)]
        held_out = [task.problem("eval", i, difficulty) for i in range(PER_SPLIT)]
        assert not {p.prompt for p in train} & {p.prompt for p in held_out}, (name, difficulty)
        for p in train + held_out:
            assert split_of(p.prompt) == p.split
            assert p.task == name and p.difficulty == difficulty


def test_problems_are_deterministic_and_seeded():
    task = get_task("arithmetic")
    assert task.problem("eval", 3, 2) == task.problem("eval", 3, 2)
    assert [task.problem("eval", i, 2, seed=1).prompt for i in range(5)] != [
        task.problem("eval", i, 2, seed=0).prompt for i in range(5)
    ]


def test_eval_set_is_the_same_for_every_call_and_covers_every_cell():
    mix = TaskMix("arithmetic:1-2,letters:1")
    problems = mix.eval_set(per_cell=3)
    assert problems == TaskMix("arithmetic:1-2,letters:1").eval_set(per_cell=3)
    cells = [(p.task, p.difficulty) for p in problems]
    assert {c: cells.count(c) for c in cells} == {("arithmetic", 1): 3, ("arithmetic", 2): 3, ("letters", 1): 3}
    assert all(p.split == "eval" for p in problems)


def test_mix_spec_with_ranges_and_bare_names():
    cells = [(c.task.name, c.difficulty) for c in parse_mix("arithmetic:1-2, letters")]
    letters = get_task("letters").difficulties
    assert cells == [("arithmetic", 1), ("arithmetic", 2)] + [("letters", d) for d in letters]


def test_default_mix_parses():
    assert len(TaskMix(DEFAULT_MIX).cells) == 10


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(PonderError, match="nosuch") as err:
        parse_mix("arithmetic:1,nosuch:1")
    for name in BUILTIN:
        assert name in str(err.value)


@pytest.mark.parametrize("levels", ["9", "0-2", "3-1"])
def test_bad_difficulty_names_the_allowed_ones(levels):
    with pytest.raises(PonderError, match=r"difficulties \[1, 2, 3, 4, 5\]"):
        parse_mix(f"arithmetic:{levels}")


@pytest.mark.parametrize("spec", ["", " , ", ","])
def test_empty_mix_is_an_error(spec):
    with pytest.raises(PonderError, match="empty"):
        TaskMix(spec)
