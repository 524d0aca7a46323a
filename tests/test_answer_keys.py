"""Votes and verifiers agree: two answers share an `answer_key` exactly when `check` takes them for the same
answer, and a false statement is not accepted (nor voted with the right answer) because it contains the
right number.

Each family has a table of answers grouped by what they say: every answer in the group "right" is
accepted, every other group is rejected, and two answers share a key iff they are in the same group
(the group "unreadable" must have the empty key, which never wins a vote). Generated problems then check
the same two properties on the reference answer, its trace and their reformulations."""

from __future__ import annotations

import itertools
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.format import parse_completion, render_completion
from ponder.tasks.answers import WORD_NUMBERS
from ponder.tasks.arithmetic import ArithmeticTask
from ponder.tasks.base import Problem, Task
from ponder.tasks.countdown import CountdownTask
from ponder.tasks.decimals import DecimalsTask
from ponder.tasks.letters import LettersTask
from ponder.tasks.sudoku import SudokuTask

ARITHMETIC, COUNTDOWN, SUDOKU, LETTERS, DECIMALS = (
    ArithmeticTask(),
    CountdownTask(),
    SudokuTask(),
    LettersTask(),
    DecimalsTask(),
)
FAMILIES = [ARITHMETIC, COUNTDOWN, SUDOKU, LETTERS, DECIMALS]

# (task, prompt, reference answer, {group: answers that say the same thing})
TABLES = [
    (
        ARITHMETIC,
        "Compute 47+38*2-12.",
        "111",
        {
            "right": ["111", "111.0", "+111", "\\boxed{111}", "The answer is 111.", "Answer: 111", "**111**", "111.00"],
            "112": ["112", "112.0", "The answer is 112"],
            "111.5": ["111.5", "111.50"],
            "-111": ["-111", "\u2212111"],
            "either": ["111 or 112"],
            "denial": ["111 is wrong"],
            "unreadable": ["", "   ", "\\boxed{}"],
        },
    ),
    (
        COUNTDOWN,
        "Make 22 from 3 5 7.",
        "3*5+7",
        {
            "right": [
                "3*5+7",
                "7+5*3",
                "(3*5)+7",
                " 7 + 3 * 5 ",
                "3*5+7 = 22",
                "22 = 7+3*5",
                "3\u00d75+7",
                "\\boxed{3*5+7}",
                "The answer is 3*5+7.",
            ],
            "reaches 15": ["3*5", "5*3", "3+5+7", "3*5 = 15"],
            # a false total: the expression reaches 22, the statement says 23 (it used to vote with "3*5+7")
            "claims 23": ["3*5+7 = 23", "23 = 3*5+7", "3 * 5 + 7 = 23", "3\u00d75+7 = 23"],
            "claims 22, is 21": ["3*7 = 22", "22 = 3*7"],
            "numbers not given": ["2*11", "2*11 = 22", "2 * 11"],
            "the target itself": ["22"],
            "unreadable": ["", "3*5+7=22=22", "(3*5+7", "3^5", "3*5+7 and more", "3*5+7.0", "3*5 = 15+0"],
        },
    ),
    (
        SUDOKU,
        "Solve the 4x4 sudoku: 12_4/3_1_/2143/4_21",
        "1234/3412/2143/4321",
        {
            "right": [
                "1234/3412/2143/4321",
                "1234\n3412\n2143\n4321",
                "1 2 3 4\n3 4 1 2\n2 1 4 3\n4 3 2 1",
                "1234341221434321",
                "\\boxed{1234/3412/2143/4321}",
                "[[1,2,3,4],[3,4,1,2],[2,1,4,3],[4,3,2,1]]",
            ],
            "not a sudoku": ["2134/3412/2143/4321", "2134 3412 2143 4321"],
            "breaks the givens": ["2341/4123/3214/1432"],
            "unreadable": ["", "1234/3412/2143", "1234/3412/2143/4325", "the grid is 1234/3412/2143/4321"],
        },
    ),
    (
        LETTERS,
        "How many r are in strawberry?",
        "3",
        {
            # these four used to get four keys and split the vote
            "right": [
                "3",
                "three",
                "Three.",
                "3 times",
                "There are 3",
                "There are 3 r's.",
                "3 r's",
                "3 'r's",
                "3 R",
                "\\boxed{3}",
                "The answer is 3",
                "3.0",
                "It appears 3 times",
            ],
            "2": ["2", "two", "There are 2", "2 r's"],
            # another letter named: an answer to another question (it used to be accepted)
            "3 z's": ["3 z's", "3 z", "3 'z's", "There are three z's"],
            "unreadable": ["", "3 or 4", "3z", "3 3", "many", "r"],
        },
    ),
    (
        DECIMALS,
        "Which is larger, 9.11 or 9.9?",
        "9.9",
        {
            "right": [
                "9.9",
                "9.90",
                "9.9 is larger",
                "9.9 is the larger one",
                "9.9 is bigger",
                "9.90 is Greater",
                "\\boxed{9.9}",
                "The answer is 9.9.",
                "**9.9** is larger",
            ],
            "9.11": ["9.11", "9.110", "9.11 is larger", "9.11 is the greatest"],
            # the right number in a false statement (it used to be accepted)
            "9.9 is smaller": ["9.9 is smaller", "9.9 is less", "9.9 is the smaller one", "9.90 is lower"],
            "9.11 is smaller": ["9.11 is smaller"],
            "9.5": ["9.5"],
            "unreadable": ["", "9.9 or 9.11", "9,9", "9.9 is not larger", "neither"],
        },
    ),
    (
        DECIMALS,
        "Which is smaller, 9.11 or 9.9?",
        "9.11",
        {
            "right": ["9.11", "9.11 is smaller", "9.110 is the lesser one", "9.11 is the least"],
            "9.11 is larger": ["9.11 is larger", "9.11 is greater"],
            "9.9": ["9.9", "9.90", "9.9 is smaller"],
            "9.9 is larger": ["9.9 is larger"],
            "unreadable": ["", "smaller"],
        },
    ),
    (
        DECIMALS,
        "Sort ascending: 3.2, 3.15, 3.7",
        "3.15, 3.2, 3.7",
        {
            "right": ["3.15, 3.2, 3.7", "3.15 < 3.2 < 3.7", "3.15 3.20 3.70", "3.15;3.2;3.7", "\\boxed{3.15,3.2,3.7}"],
            "descending": ["3.7, 3.2, 3.15", "3.70 3.20 3.15"],
            "as given": ["3.2, 3.15, 3.7"],
            "one missing": ["3.15, 3.2"],
            "unreadable": ["", "3.15, 3.2, x", "3.7 > 3.2 > 3.15"],
        },
    ),
]
TABLE_IDS = [f"{task.name}: {prompt}" for task, prompt, _, _ in TABLES]


def _problem(task: Task, prompt: str, answer: str) -> Problem:
    return Problem(task.name, prompt, answer, 1, "train", 0)


@pytest.mark.parametrize(("task", "prompt", "reference", "groups"), TABLES, ids=TABLE_IDS)
def test_check_accepts_exactly_the_right_group(task: Task, prompt: str, reference: str, groups: dict) -> None:
    p = _problem(task, prompt, reference)
    assert reference in groups["right"]
    for group, answers in groups.items():
        for answer in answers:
            assert task.check(p, answer) == (group == "right"), (group, answer)


@pytest.mark.parametrize(("task", "prompt", "reference", "groups"), TABLES, ids=TABLE_IDS)
def test_keys_are_equal_iff_answers_are_in_one_group(task: Task, prompt: str, reference: str, groups: dict) -> None:
    p = _problem(task, prompt, reference)
    keyed = [(group, answer, task.answer_key(p, answer)) for group, answers in groups.items() for answer in answers]
    for group, answer, key in keyed:
        assert (key == "") == (group == "unreadable"), (group, answer, key)
    for (g1, a1, k1), (g2, a2, k2) in itertools.combinations(keyed, 2):
        assert (k1 == k2) == (g1 == g2), (g1, a1, k1, g2, a2, k2)


def test_one_count_in_several_forms_outvotes_a_wrong_count() -> None:
    """The user-visible point of shared keys: 3 forms of "3" beat two plain "4"s in a majority vote
    (counted here as the test-time-compute vote counts them: by key)."""
    p = _problem(LETTERS, "How many r are in strawberry?", "3")
    answers = ["4", "three", "There are 3", "4", "3 times"]
    votes = Counter(LETTERS.answer_key(p, a) for a in answers)
    winner = next(a for a in answers if LETTERS.answer_key(p, a) == votes.most_common(1)[0][0])
    assert votes.most_common(1)[0][1] == 3 and LETTERS.check(p, winner), votes


# --- generated problems ------------------------------------------------------------------------------


def _generic_forms(answer: str) -> list[str]:
    return [
        answer,
        f"  {answer}\n",
        f"{answer}.",
        f"\\boxed{{{answer}}}",
        f"The answer is {answer}.",
        f"Answer: {answer}",
        f"**{answer}**",
        f"The final answer is $\\boxed{{{answer}}}$.",
    ]


def _family_forms(task: Task, p: Problem) -> tuple[list[str], list[str]]:
    """(reformulations of the reference that must be accepted, wrong answers that must be rejected)."""
    x = p.answer
    if task is ARITHMETIC:
        value = int(x)
        return [f"{x}.0", f"{x}.00"], [str(value + 1), str(-value or 1), f"{x}.5", f"{x} or {value + 1}"]
    if task is COUNTDOWN:
        target = int(p.prompt.split()[1])
        # the reference uses every given number once, so "+1" always needs a number that is not there
        return [f"{x} = {target}", f"{target} = {x}"], [f"{x} = {target + 1}", f"{target + 1} = {x}", f"{x}+1"]
    if task is SUDOKU:
        rows = x.split("/")
        swapped = rows[0][1] + rows[0][0] + rows[0][2:]  # two cells of one row: two columns break
        return ["\n".join(rows), "".join(rows), " ".join(rows)], ["/".join([swapped, *rows[1:]])]
    if task is LETTERS:
        letter = re.fullmatch(r"How many ([a-z]) are", p.prompt.split(" in ")[0]).group(1)
        other = "z" if letter != "z" else "q"
        words = [w for w, n in WORD_NUMBERS.items() if n == int(x)]
        right = [f"There are {x}", f"{x} times", f"{x} {letter}'s", *words]
        return right, [str(int(x) + 1), f"{x} {other}'s", f"There are {int(x) + 1} {letter}'s"]
    if p.prompt.startswith("Sort"):
        numbers = x.split(", ")
        return [" < ".join(numbers), " ".join(numbers), f"{x}".replace(", ", ",")], [", ".join(numbers[::-1])]
    asked = "larger" if "larger" in p.prompt else "smaller"
    opposite = "smaller" if asked == "larger" else "larger"
    a, b = re.findall(r"\d+\.\d+", p.prompt)
    other = b if x == a else a
    return [f"{x} is the {asked}", f"{x}0", f"{x} is {asked}"], [other, f"{x} is {opposite}", f"{other} is {asked}"]


problems = st.builds(
    lambda task, split, index, pick: task.problem(split, index, task.difficulties[pick % len(task.difficulties)]),
    st.sampled_from(FAMILIES),
    st.sampled_from(("train", "eval")),
    st.integers(0, 10**6),
    st.integers(0, 100),
)


@settings(max_examples=120, deadline=None)
@given(p=problems)
def test_the_reference_and_its_reformulations_share_the_accepted_key(p: Problem) -> None:
    task = next(t for t in FAMILIES if t.name == p.task)
    right_key = task.answer_key(p, p.answer)
    assert right_key != ""
    right, wrong = _family_forms(task, p)
    for form in _generic_forms(p.answer) + right:
        assert task.check(p, form), (p.prompt, form)
        assert task.answer_key(p, form) == right_key, (p.prompt, form)
    for form in wrong:
        assert not task.check(p, form), (p.prompt, form)
        assert task.answer_key(p, form) != right_key, (p.prompt, form)


@settings(max_examples=60, deadline=None)
@given(p=problems, mistake=st.booleans())
def test_the_trace_answer_is_accepted_and_votes_with_the_reference(p: Problem, mistake: bool) -> None:
    task = next(t for t in FAMILIES if t.name == p.task)
    completion = render_completion(task.trace(p, task.trace_rng(p), mistake=mistake), p.answer)
    answer = parse_completion(completion).answer
    assert task.score(p, completion) == 1.0
    assert task.answer_key(p, answer) == task.answer_key(p, f"The answer is \\boxed{{{p.answer}}}.") != ""


_AROUND = ["", " ", "The answer is ", "not ", "-", "1", "0", "=", " = 23", " is larger", " is smaller", " times"]
_AROUND += [" z's", " r's", " or 7", ".5", ", 1.5", "/1234", "\\boxed{", "}", "**", " is wrong", "+1", "*2"]


@settings(max_examples=300, deadline=None)
@given(p=problems, before=st.sampled_from(_AROUND), after=st.sampled_from(_AROUND) | st.text(max_size=6))
def test_accepted_iff_the_key_is_the_references(p: Problem, before: str, after: str) -> None:
    """Around the right answer, whatever is added: `check` says yes exactly when the key is the right one
    (the generated problems have one answer, so the right key is the reference's)."""
    task = next(t for t in FAMILIES if t.name == p.task)
    text = before + p.answer + after
    assert task.check(p, text) == (task.answer_key(p, text) == task.answer_key(p, p.answer)), (p.prompt, text)
