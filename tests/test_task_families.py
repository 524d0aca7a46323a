"""The built-in task families: determinism, verifiers (right forms accepted, wrong ones refused, never
raising), and traces that score 1.0 with "wait" only in mistake traces."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.format import render_completion
from ponder.tasks.answers import clean_answer, parse_int, parse_number
from ponder.tasks.arithmetic import ArithmeticTask
from ponder.tasks.base import Problem, Task
from ponder.tasks.countdown import CountdownTask, evaluate_expression, solve
from ponder.tasks.decimals import DecimalsTask, _is_trap
from ponder.tasks.letters import LettersTask
from ponder.tasks.sudoku import SudokuTask, is_valid, parse_grid

FAMILIES = [ArithmeticTask(), CountdownTask(), SudokuTask(), LettersTask(), DecimalsTask()]
CASES = [(task, d) for task in FAMILIES for d in task.difficulties]
IDS = [f"{task.name}-{d}" for task, d in CASES]
N = 12  # problems per (family, difficulty)


def _problems(task: Task, difficulty: int, n: int = N) -> list[Problem]:
    return [task.problem(split, i, difficulty, seed=1) for split in ("train", "eval") for i in range(n // 2)]


def _wrap(answer: str) -> list[str]:
    """Surface forms every family must accept for its reference answer."""
    return [
        answer,
        f"  {answer}\n",
        f"{answer}.",
        f"\\boxed{{{answer}}}",
        f"The answer is {answer}.",
        f"Answer: {answer}",
        f"The answer is $\\boxed{{{answer}}}$.",
    ]


def _make(task: Task, prompt: str, answer: str) -> Problem:
    return Problem(task.name, prompt, answer, 1, "train", 0)


# --- every family -------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "difficulty"), CASES, ids=IDS)
def test_deterministic(task: Task, difficulty: int) -> None:
    for split in ("train", "eval"):
        for i in range(5):
            a, b = task.problem(split, i, difficulty, seed=7), task.problem(split, i, difficulty, seed=7)
            assert a == b and a.meta == b.meta
            assert a.split == split
    assert task.problem("train", 0, difficulty, seed=1) != task.problem("train", 0, difficulty, seed=2)


@pytest.mark.parametrize(("task", "difficulty"), CASES, ids=IDS)
def test_reference_and_surface_forms_pass(task: Task, difficulty: int) -> None:
    for p in _problems(task, difficulty):
        for form in _wrap(p.answer):
            assert task.check(p, form), (p.prompt, form)


@pytest.mark.parametrize(("task", "difficulty"), CASES, ids=IDS)
def test_traces_score_one_and_wait_only_in_mistakes(task: Task, difficulty: int) -> None:
    for p in _problems(task, difficulty):
        for mistake in (False, True):
            thinking = task.trace(p, task.trace_rng(p), mistake=mistake)
            assert ("wait" in thinking) == mistake, thinking
            assert "</think>" not in thinking and thinking.strip()
            assert task.score(p, render_completion(thinking, p.answer)) == 1.0
            assert thinking == task.trace(p, task.trace_rng(p), mistake=mistake)  # deterministic too
        assert task.score(p, thinking + "\n" + p.answer) == 0.0  # no </think>, no reward


@pytest.mark.parametrize("task", FAMILIES, ids=[t.name for t in FAMILIES])
@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200))
def test_check_never_raises(task: Task, text: str) -> None:
    for difficulty in (1, 5):
        p = task.problem("train", 0, difficulty)
        assert task.check(p, text) in (True, False)
        assert task.check(p, p.answer + text) in (True, False)


@pytest.mark.parametrize("task", FAMILIES, ids=[t.name for t in FAMILIES])
def test_garbage_is_refused(task: Task) -> None:
    p = task.problem("train", 3, 3)
    for junk in ["", " ", ".", "\\boxed{}", "The answer is", "None", "nan", "inf", "-", "1e3", "x" * 5000]:
        assert not task.check(p, junk), junk


# --- shared helpers -----------------------------------------------------------------------------


def test_answer_helpers() -> None:
    assert clean_answer("The answer is $\\boxed{\\frac{1}{2}}$.") == "\\frac{1}{2}"
    assert clean_answer("**7**") == "7" and clean_answer("Final answer: `7`") == "7"
    assert clean_answer(None) == "" and clean_answer("7" * 2000) == ""
    assert parse_number("1,234.50") == parse_number("1234.5")
    assert parse_number("1e5") is None and parse_number("1,23") is None and parse_number("") is None
    assert parse_int("73.0") == 73 and parse_int("73.5") is None and parse_int("-4") == -4
    assert parse_int("Three", words=True) == 3 and parse_int("three") is None
    assert parse_number("\u0663") is None  # only ASCII digits: an Arabic-Indic 3 is not "3"


# --- arithmetic ---------------------------------------------------------------------------------


@pytest.mark.parametrize("difficulty", ArithmeticTask.difficulties)
def test_arithmetic(difficulty: int) -> None:
    task = ArithmeticTask()
    for p in _problems(task, difficulty):
        expr = p.prompt.removeprefix("Compute ").removesuffix(".")
        assert int(p.answer) == eval(expr)  # the reference is Python's own precedence
        assert task.check(p, f"{p.answer}.0") and task.check(p, f"{p.answer}.00")
        for wrong in (int(p.answer) + 1, int(p.answer) - 10, -int(p.answer) or 1):
            assert not task.check(p, str(wrong))
        assert not task.check(p, f"{p.answer}.5") and not task.check(p, f"{p.answer}{p.answer}")


def _read_columns(cols: list[str]) -> int:
    """The number a line's columns spell: each column's last digit, ones first; the last column whole."""
    values = [int(c.rsplit("=", 1)[1]) for c in cols]
    return sum(v % 10 * 10**k for k, v in enumerate(values[:-1])) + values[-1] * 10 ** (len(values) - 1)


@given(st.integers(-999, 999), st.sampled_from("+-"), st.integers(0, 999))
def test_arithmetic_columns_add_up_for_any_signs(left: int, op: str, right: int) -> None:
    from ponder.tasks.arithmetic import Step, _line, _unsigned

    value = left + right if op == "+" else left - right
    header, cols = _unsigned(Step(left, op, right, value))
    assert _read_columns(cols) == abs(value)
    assert header.startswith(f"{left}{op}{right}")
    assert _line(Step(left, op, right, value)).endswith(f"so {value}")


@given(st.integers(1, 99999), st.integers(1, 9), st.integers(0, 2))
def test_arithmetic_product_columns_then_the_zeros(x: int, digit: int, zeros: int) -> None:
    from ponder.tasks.arithmetic import _mul_columns

    assert _read_columns(_mul_columns(x, digit * 10**zeros)) * 10**zeros == x * digit * 10**zeros


def test_arithmetic_levels() -> None:
    task = ArithmeticTask()
    for p in _problems(task, 1, 30):
        assert "*" not in p.prompt and p.prompt.count("+") + p.prompt.count("-") == 1
    for p in _problems(task, 3, 30):
        assert "*" in p.prompt and "**" not in p.prompt
    assert any(int(p.answer) < 0 for p in _problems(task, 5, 30))


# --- countdown ----------------------------------------------------------------------------------


def test_countdown_accepts_any_valid_expression() -> None:
    task = CountdownTask()
    p = _make(task, "Make 22 from 3 5 7.", "3*5+7")
    for good in [
        "3*5+7",
        "7+5*3",
        "(3*5)+7",
        " 7 + 3 * 5 ",
        "3*5+7 = 22",
        "22 = 7+3*5",
        "3×5+7",
        "\\boxed{3*5+7}",
    ]:
        assert task.check(p, good), good
    p = _make(task, "Make 6 from 2 4 12.", "4+2")
    assert task.check(p, "12/2") and task.check(p, "12/(4-2)") and task.check(p, "4+2.")


def test_countdown_rejects_wrong_expressions() -> None:
    task = CountdownTask()
    p = _make(task, "Make 22 from 1 3 5 7.", "3*5+7")
    bad = [
        "3*5+7+1 = 22",  # evaluates to 23
        "3*5+7+1",
        "3*5+7 = 23",  # the claimed total is wrong
        "5*5-3",  # 5 used twice
        "2*11",  # numbers not given
        "22",  # the target itself is not given
        "3*5+7.0",
        "-3+25",
        "3*5+7=22=22",
        "(3*5+7",
        "3 5 7",
        "3*5+7 and more",
        "3^5",
    ]
    for answer in bad:
        assert not task.check(p, answer), answer


def test_countdown_verifier_is_safe_and_fast() -> None:
    task = CountdownTask()
    p = _make(task, "Make 22 from 3 5 7.", "3*5+7")
    hostile = [
        "__import__('os').system('true')",
        "2**999999",
        "9**9**9**9",
        "(" * 5000 + "1" + ")" * 5000,
        "9" * 100_000,
        "1+" * 50_000 + "1",
        "()",
        "[3, 5, 7]",
        "lambda: 22",
        "3*5+7; import os",
        "True*22",
    ]
    for answer in hostile:
        start = time.perf_counter()
        assert not task.check(p, answer)
        assert time.perf_counter() - start < 0.05, answer
    assert evaluate_expression("2**3") is None and evaluate_expression("1/0") is None


@pytest.mark.parametrize("difficulty", CountdownTask.difficulties)
def test_countdown_instances_are_solvable(difficulty: int) -> None:
    task = CountdownTask()
    count = {1: 2, 2: 3, 3: 3, 4: 4, 5: 5}[difficulty]
    for p in _problems(task, difficulty):
        assert len(p.prompt.split(" from ")[1].split()) == count
        target = int(p.prompt.split()[1])
        numbers = [int(x) for x in p.prompt.split(" from ")[1].rstrip(".").split()]
        assert 0 < target <= 999 and target not in numbers
        assert solve(numbers, target)
        value, used = evaluate_expression(p.answer)
        assert value == target and sorted(used) == sorted(numbers)


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet="0123456789+-*/() =.", max_size=60))
def test_countdown_check_on_near_expressions(text: str) -> None:
    task = CountdownTask()
    p = _make(task, "Make 22 from 3 5 7.", "3*5+7")
    result = task.check(p, text)
    parsed = evaluate_expression(text.split("=")[0].strip().removesuffix(".").strip())
    if result and "=" not in text:
        assert parsed is not None and parsed[0] == 22


# --- sudoku -------------------------------------------------------------------------------------


@pytest.mark.parametrize("difficulty", SudokuTask.difficulties)
def test_sudoku(difficulty: int) -> None:
    task = SudokuTask()
    lo, hi = {1: (2, 3), 2: (4, 5), 3: (5, 6), 4: (6, 8), 5: (8, 10)}[difficulty]
    for p in _problems(task, difficulty):
        assert lo <= p.prompt.count("_") <= hi
        rows = p.answer.split("/")
        for form in [
            "\n".join(rows),
            " ".join(rows),
            ", ".join(rows),
            "".join(rows),
            "\n".join(" ".join(r) for r in rows),
        ]:
            assert task.check(p, form), form
        grid = parse_grid(p.answer)
        assert is_valid(grid)
        swapped = [row[:] for row in grid]
        swapped[0][0], swapped[0][1] = swapped[0][1], swapped[0][0]
        assert not task.check(p, "/".join("".join(map(str, r)) for r in swapped))
        relabeled = [[v % 4 + 1 for v in row] for row in grid]  # valid, but the givens change
        assert is_valid(relabeled)
        assert not task.check(p, "/".join("".join(map(str, r)) for r in relabeled))
        assert not task.check(p, p.answer[:-1]) and not task.check(p, p.answer + "1")
        assert not task.check(p, p.answer.replace("1", "5"))


def test_sudoku_accepts_any_valid_completion_and_falls_back() -> None:
    task = SudokuTask()
    p = _make(task, "Solve the 4x4 sudoku: ____/____/____/____", "1234/3412/2143/4321")
    assert task.check(p, "2143/4321/1234/3412")  # another valid grid: no givens to break
    for mistake in (False, True):
        thinking = task.trace(p, task.trace_rng(p), mistake=mistake)
        assert ("wait" in thinking) == mistake
        assert thinking.count("try ->") == 16 + mistake
        assert task.score(p, render_completion(thinking, p.answer)) == 1.0


# --- letters ------------------------------------------------------------------------------------


@pytest.mark.parametrize("difficulty", LettersTask.difficulties)
def test_letters(difficulty: int) -> None:
    task = LettersTask()
    for p in _problems(task, difficulty):
        letter, text = p.prompt.removeprefix("How many ").removesuffix("?").split(" are in ")
        n = int(p.answer)
        assert n == text.count(letter)
        for form in [f"There are {n}", f"There are {n}.", f"{n} times", f"{n} {letter}'s", f"{n}.0"]:
            assert task.check(p, form), form
        assert not task.check(p, str(n + 1)) and not task.check(p, f"{n} or {n + 1}")
        assert not task.check(p, f"1{n}") and not task.check(p, f"There are {n + 1}")
    p = _make(task, "How many e are in three?", "2")
    assert task.check(p, "two") and task.check(p, "Two.") and not task.check(p, "three")
    assert not task.check(p, "2z") and not task.check(p, "2 2") and task.check(p, "2 e's")


def test_letters_zero_counts_are_rare_but_exist() -> None:
    task = LettersTask()
    counts = [int(task.problem("train", i, 2).answer) for i in range(200)]
    assert 0 < counts.count(0) < 30
    p = _make(task, "How many z are in apple?", "0")
    assert task.check(p, "zero") and task.check(p, "0") and not task.check(p, "1")
    thinking = task.trace(p, task.trace_rng(p), mistake=True)
    assert "wait" in thinking and task.score(p, render_completion(thinking, "0")) == 1.0


# --- decimals -----------------------------------------------------------------------------------


def test_decimals_compare() -> None:
    task = DecimalsTask()
    p = _make(task, "Which is larger, 9.11 or 9.9?", "9.9")
    for good in ["9.9", "9.90", "9.900", "9.9 is larger", "\\boxed{9.9}", "The answer is 9.9."]:
        assert task.check(p, good), good
    for bad in ["9.11", "9.91", "9", "99", "9.9 or 9.11", "9,9"]:
        assert not task.check(p, bad), bad
    thinking = task.trace(p, task.trace_rng(p))
    assert thinking == "9.11 vs 9.90\n9=9\n11<90\n9.9"


@pytest.mark.parametrize("difficulty", DecimalsTask.difficulties)
def test_decimals(difficulty: int) -> None:
    task = DecimalsTask()
    problems = _problems(task, difficulty, 40)
    for p in problems:
        if p.prompt.startswith("Sort"):
            given_numbers = p.prompt.removeprefix("Sort ascending: ").split(", ")
            ordered = p.answer.split(", ")
            assert sorted(given_numbers) == sorted(ordered) and len(ordered) >= 3
            for form in [" ".join(ordered), " < ".join(ordered), ",".join(ordered), "; ".join(ordered)]:
                assert task.check(p, form), form
            assert not task.check(p, ", ".join(ordered[::-1]))
            assert not task.check(p, ", ".join(ordered[:-1]))  # a number missing
            assert not task.check(p, ", ".join(ordered + ordered[-1:]))  # one repeated
            assert not task.check(p, ", ".join(ordered[1:2] + ordered[:1] + ordered[2:]))
        else:
            a, b = p.prompt.split(", ", 1)[1].removesuffix("?").split(" or ")
            other = b if p.answer == a else a
            assert not task.check(p, other)
            assert task.check(p, p.answer + "0")
    if difficulty <= 3:  # the trap: same integer part, and the longer decimal is the smaller number
        traps = [p for p in problems if _is_trap(*re.findall(r"\d+\.\d+", p.prompt))]
        assert len(traps) >= 8
    if difficulty == 3:
        assert any("smaller" in p.prompt for p in problems) and any("larger" in p.prompt for p in problems)
