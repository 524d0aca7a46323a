"""The reasoning-gym adapter (`gym:<dataset>`) and user JSONL files (`jsonl:<path>`)."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ponder.errors import PonderError
from ponder.format import render_completion
from ponder.tasks.base import split_of
from ponder.tasks.gym import GymTask
from ponder.tasks.jsonl import JsonlTask, answers_match

# --- reasoning-gym ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arithmetic() -> GymTask:
    return GymTask("basic_arithmetic")


@pytest.mark.parametrize("dataset", ["basic_arithmetic", "leg_counting"])
def test_gym_reference_answer_scores_one_and_wrong_scores_zero(dataset):
    task = GymTask(dataset)
    assert task.name == f"gym:{dataset}"
    for difficulty in task.difficulties:
        for split in ("train", "eval"):
            problem = task.problem(split, 0, difficulty)
            assert problem.prompt and problem.answer and split_of(problem.prompt) == split
            assert task.score(problem, render_completion("thinking", problem.answer)) == 1.0
            assert task.check(problem, problem.answer)
            assert task.score(problem, render_completion("thinking", "not a number")) == 0.0
            assert not task.check(problem, str(int(problem.answer) + 1))


def test_gym_no_closed_thinking_scores_zero(arithmetic):
    problem = arithmetic.problem("train", 0, 1)
    assert arithmetic.score(problem, f"I think it is {problem.answer}") == 0.0


def test_gym_is_deterministic_and_varied(arithmetic):
    again = GymTask("basic_arithmetic")
    first = [arithmetic.problem("train", i, 3, seed=7) for i in range(10)]
    assert first == [again.problem("train", i, 3, seed=7) for i in range(10)]
    assert len({p.prompt for p in first}) > 5
    assert first != [arithmetic.problem("train", i, 3, seed=8) for i in range(10)]


def test_gym_difficulty_follows_the_curriculum(arithmetic):
    assert arithmetic.difficulties == (1, 2, 3, 4, 5)

    def terms(difficulty):
        return max(arithmetic.problem("train", i, difficulty).meta["entry"]["metadata"]["num_terms"] for i in range(20))

    assert terms(1) == 2 < terms(5)


def test_gym_meta_keeps_the_entry(arithmetic):
    problem = arithmetic.problem("eval", 2, 2)
    assert problem.meta["entry"]["question"] == problem.prompt
    assert problem.meta["entry"]["answer"] == problem.answer


def test_gym_trace_is_thin_and_ends_at_the_answer(arithmetic):
    problem = arithmetic.problem("train", 1, 2)
    trace = arithmetic.trace(problem, random.Random(0))
    assert trace.endswith(f"The answer is {problem.answer}.")
    assert "recheck" in arithmetic.trace(problem, random.Random(0), mistake=True)


def test_gym_unknown_name_lists_known_names():
    with pytest.raises(PonderError) as info:
        GymTask("basic_arithmetc")
    message = str(info.value)
    assert "basic_arithmetic" in message and "leg_counting" in message
    assert "reasoning_gym.factory.DATASETS" in message


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text())
def test_gym_check_never_raises(arithmetic, text):
    problem = arithmetic.problem("train", 0, 2)
    assert isinstance(arithmetic.check(problem, text), bool)
    assert 0.0 <= arithmetic.score(problem, text) <= 1.0


# --- JSONL -----------------------------------------------------------------------------------------


def _write(tmp_path, lines, name="problems.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def many(tmp_path) -> JsonlTask:
    rows = [{"prompt": f"What is {i} + {i}?", "answer": 2 * i} for i in range(40)]
    rows.append({"prompt": "Half of one?", "answer": "1/2", "difficulty": 2})
    rows += [{"prompt": f"Half of {i}?", "answer": i / 2, "difficulty": 2} for i in range(2, 12)]
    return JsonlTask(_write(tmp_path, [json.dumps(row) for row in rows]))


def test_jsonl_splits_are_disjoint_and_cycle(many):
    assert many.name.startswith("jsonl:") and many.difficulties == (1, 2)
    train = {many.problem("train", i, 1).prompt for i in range(40)}
    held_out = {many.problem("eval", i, 1).prompt for i in range(40)}
    assert train and held_out and not train & held_out
    assert all(split_of(p) == "train" for p in train) and all(split_of(p) == "eval" for p in held_out)
    assert len(train) + len(held_out) == 40
    assert many.problem("train", 0, 1).prompt == many.problem("train", len(train), 1).prompt


def test_jsonl_reference_scores_one(many):
    for split in ("train", "eval"):
        for i in range(5):
            problem = many.problem(split, i, 1)
            assert many.score(problem, render_completion("hm", problem.answer)) == 1.0
            assert many.score(problem, render_completion("hm", "12345")) == 0.0
            assert many.trace(problem, random.Random(i)).endswith(f"The answer is {problem.answer}.")


@pytest.mark.parametrize("gold", ["1/2", "0.5", "\\frac{1}{2}"])
@pytest.mark.parametrize("answer", ["1/2", "0.5", "\\frac{1}{2}", "$\\frac{1}{2}$", "\\boxed{0.5}"])
def test_math_verify_accepts_equivalent_forms(gold, answer):
    assert answers_match(gold, answer)


@pytest.mark.parametrize(
    "gold, answer, expected",
    [
        ("1/2", "0.25", False),
        ("1/2", "2", False),
        ("7", "8", False),
        ("7", "The answer is 7", True),
        ("x+1", "1 + x", True),
        ("x+1", "x+2", False),
        ("(1, 2)", "2", False),
        ("Paris", "paris.", True),
        ("Paris", "Pairs", False),
        ("1,000", "1000", True),
        ("5", "", False),
    ],
)
def test_math_verify_cases(gold, answer, expected):
    assert answers_match(gold, answer) is expected


@settings(max_examples=80, deadline=None)
@given(text=st.text())
def test_jsonl_check_never_raises(text):
    assert answers_match("1/2", text) in (True, False)
    assert answers_match("Paris", text) in (True, False)


def test_jsonl_missing_file(tmp_path):
    with pytest.raises(PonderError, match="not found"):
        JsonlTask(tmp_path / "nope.jsonl")


def test_jsonl_empty_file(tmp_path):
    with pytest.raises(PonderError, match="empty"):
        JsonlTask(_write(tmp_path, ["", "   "]))


def test_jsonl_bad_json_names_the_line(tmp_path):
    path = _write(tmp_path, ['{"prompt": "a", "answer": 1}', "", "{not json"])
    with pytest.raises(PonderError, match=r"line 3 is not valid JSON") as info:
        JsonlTask(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("key", ["prompt", "answer"])
def test_jsonl_missing_key_names_line_and_key(tmp_path, key):
    row = {"prompt": "a", "answer": 1}
    del row[key]
    path = _write(tmp_path, ['{"prompt": "b", "answer": 2}', json.dumps(row)])
    with pytest.raises(PonderError, match=rf"line 2 has no '{key}' key"):
        JsonlTask(path)


@pytest.mark.parametrize(
    "row, needle",
    [
        ({"prompt": "a", "answer": [1]}, "string or a number"),
        ({"prompt": "a", "answer": 1, "difficulty": 0}, "positive"),
    ],
)
def test_jsonl_bad_values(tmp_path, row, needle):
    with pytest.raises(PonderError, match=needle):
        JsonlTask(_write(tmp_path, [json.dumps(row)]))


def test_jsonl_too_few_problems_for_eval(tmp_path):
    prompts = [f"q{i}" for i in range(200) if split_of(f"q{i}") == "train"][:2]
    task = JsonlTask(_write(tmp_path, [json.dumps({"prompt": p, "answer": 1}) for p in prompts]))
    assert task.problem("train", 5, 1).prompt in prompts
    with pytest.raises(PonderError, match="too few problems for a held-out split"):
        task.problem("eval", 0, 1)
