"""pass@k, maj@k, answer keys and the voting rules."""

from itertools import combinations
from math import comb

import pytest

from ponder.tasks import get_task
from ponder.ttc.answers import leader, plurality, top_score, weighted
from ponder.ttc.metrics import maj_at_k, pass_at_k


@pytest.mark.parametrize(
    "n,c,k,want",
    [(10, 0, 1, 0.0), (10, 10, 3, 1.0), (10, 3, 1, 0.3), (4, 1, 2, 0.5), (5, 2, 2, 0.7), (16, 1, 16, 1.0)],
)
def test_pass_at_k_by_hand(n, c, k, want):
    assert pass_at_k(n, c, k) == pytest.approx(want)


@pytest.mark.parametrize("n,c,k", [(n, c, k) for n in range(1, 9) for c in range(n + 1) for k in range(1, n + 1)])
def test_pass_at_k_matches_brute_force(n, c, k):
    samples = [1] * c + [0] * (n - c)
    subsets = list(combinations(range(n), k))
    brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(brute)
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_pass_at_k_rejects_bad_input():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_maj_at_k():
    keys, correct = ["a", "a", "b", "a"], [True, True, False, True]
    assert maj_at_k(keys, correct, 4) == 1.0
    assert maj_at_k(["b", "a", "a"], [False, True, True], 1, trials=200) == pytest.approx(2 / 3, abs=0.1)
    assert maj_at_k(["", "", "x"], [False, False, True], 3) == 1.0  # empty keys never win


def test_plurality_ignores_empty_keys_and_breaks_ties_by_first_seen():
    assert plurality(["", "", "", "7", "8", "7"]) == 3
    assert plurality(["8", "7", "7", "8"]) == 0
    assert plurality(["", ""]) == 0
    assert leader(["7", "7", "", "8"]) == ("7", 2, 0.5)
    assert leader(["", ""]) == ("", 0, 0.0)


def test_top_score_and_weighted_vote():
    keys = ["a", "b", "b", ""]
    scores = [0.9, 0.5, 0.6, 1.0]
    assert top_score(keys, scores) == 0  # the empty answer's high score does not count
    assert weighted(keys, scores) == 2  # b: 1.1 beats a: 0.9; its best sample is returned


def test_answer_keys():
    arith = get_task("arithmetic")
    p = arith.problem("eval", 0, 1)
    assert len({arith.answer_key(p, x) for x in ("73", "73.0", "\\boxed{73}", "The answer is 73.")}) == 1
    assert arith.answer_key(p, "") == ""
    countdown = get_task("countdown")
    q = countdown.problem("eval", 0, 2)  # "Make 14 from 1 6 8."
    target = int(q.prompt.split()[1])
    a, b, c = sorted(int(x) for x in q.prompt.rstrip(".").split()[3:])
    right = [
        e for e in (f"{c}*{a}+{b}", f"{b}+{c}*{a}", f"{c}+{b}*{a}", f"{c}+{b}", f"{b}*{a}+{c}") if countdown.check(q, e)
    ]
    assert len(right) >= 2, right
    assert len({countdown.answer_key(q, e) for e in right}) == 1
    assert countdown.answer_key(q, right[0]) == f"={target}"
    assert countdown.answer_key(q, "1+") == ""
    sudoku = get_task("sudoku")
    s = sudoku.problem("eval", 0, 1)
    assert (
        sudoku.answer_key(s, s.answer) == sudoku.answer_key(s, s.answer.replace("/", " ")) == s.answer.replace("/", "")
    )
    assert sudoku.answer_key(s, "12") == ""
    dec = get_task("decimals")
    d = dec.problem("eval", 0, 1)
    assert dec.answer_key(d, d.answer + "0") == dec.answer_key(d, d.answer)
