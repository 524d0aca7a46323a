"""Decimals: compare and order decimal numbers, with the "is 9.11 larger than 9.9?" trap built in.

Difficulty: 1: "Which is larger, 9.11 or 9.9?" with integer parts 0-9 and 1-2 decimal places; 2: the
same with integer parts 0-20 and up to 3 places; 3: "larger" or "smaller"; 4: "Sort ascending:" three
numbers; 5: four or five numbers. Half the pairs (and most lists) share an integer part and have a longer
decimal that is the smaller number. Answers are compared as `Decimal`s, so "9.90" counts for "9.9".
A comparison answer may say which it is ("9.9 is larger", "9.9 is the bigger one"); saying the opposite
of what was asked ("9.9 is smaller" to "Which is larger?") is a false statement and is wrong, though it
names the right number. Votes and the verifier read an answer the same way (`answer_key`).

The trace pads decimals to the same number of places and compares integers:
"9.11 vs 9.90", "9=9", "11<90", "9.9"; sorting writes "pad 3.20 3.15 3.70" then "sort 3.15 3.20 3.70".
"""

from __future__ import annotations

import random
import re
from decimal import Decimal

from ponder.tasks.answers import canonical_number, clean_answer, parse_number
from ponder.tasks.base import Draft, Problem, Task

# difficulty -> (max integer part, max decimal places, how many numbers (lo, hi))
_LEVELS = {1: (9, 2, (2, 2)), 2: (20, 3, (2, 2)), 3: (20, 3, (2, 2)), 4: (20, 3, (3, 3)), 5: (20, 3, (4, 5))}
_TRAP_RATE = 0.5
_SORT_SEPARATORS = re.compile(r"(?:\s*[,;<]\s*|\s+)")
_QUESTION = re.compile(r"Which is (larger|smaller), ")
_RELATIONS = {
    **dict.fromkeys(("larger", "bigger", "greater", "higher", "largest", "biggest", "greatest", "highest"), "larger"),
    **dict.fromkeys(("smaller", "lesser", "less", "lower", "smallest", "least", "lowest"), "smaller"),
}
_VERDICT = re.compile(rf"\s+is\s+(?:the\s+)?(?P<word>{'|'.join(_RELATIONS)})(?:\s+one)?$", re.IGNORECASE)


def _decimal(rng: random.Random, whole: int, places: int) -> str:
    """A number with exactly `places` decimals, the last one non-zero (so "3.20" is never drawn)."""
    digits = [str(rng.randint(0, 9)) for _ in range(places - 1)] + [str(rng.randint(1, 9))]
    return f"{whole}.{''.join(digits)}"


def _is_trap(a: str, b: str) -> bool:
    """Same integer part, and the one with more decimal places is the smaller."""
    (wa, fa), (wb, fb) = a.split("."), b.split(".")
    if wa != wb or len(fa) == len(fb):
        return False
    longer, shorter = (a, b) if len(fa) > len(fb) else (b, a)
    return Decimal(longer) < Decimal(shorter)


def _pad(numbers: list[str]) -> list[str]:
    places = max(len(n.split(".")[1]) for n in numbers)
    return [n + "0" * (places - len(n.split(".")[1])) for n in numbers]


def _draw_numbers(rng: random.Random, difficulty: int) -> list[str]:
    max_whole, max_places, (lo, hi) = _LEVELS[difficulty]
    count = rng.randint(lo, hi)
    trap = rng.random() < _TRAP_RATE
    whole = rng.randint(0, max_whole)
    while True:
        # traps share the integer part; otherwise mostly the same too (else the task is trivial)
        numbers = [
            _decimal(
                rng,
                whole if trap or rng.random() < 0.7 else rng.randint(0, max_whole),
                rng.randint(1, max_places),
            )
            for _ in range(count)
        ]
        if len({Decimal(n) for n in numbers}) < count:
            continue
        if trap and not any(_is_trap(a, b) for a in numbers for b in numbers):
            continue
        return numbers


def _compare_lines(a: str, b: str) -> list[str]:
    """Pad, compare integer parts, then decimal parts as integers: the lines that decide a vs b."""
    pa, pb = _pad([a, b])
    (wa, fa), (wb, fb) = pa.split("."), pb.split(".")
    lines = [f"{pa} vs {pb}"]
    if wa != wb:
        return lines + [f"{wa}{'<' if int(wa) < int(wb) else '>'}{wb}"]
    return lines + [f"{wa}={wb}", f"{fa}{'<' if int(fa) < int(fb) else '>'}{fb}"]


def _comparison_key(prompt: str, text: str) -> str:
    """The key of an answer to "Which is larger/smaller, a or b?": the number, plus the relation it claims
    when that is not the one asked ("9.9 is smaller" to "Which is larger?"); "" if there is no number."""
    verdict = _VERDICT.search(text)
    value = parse_number(clean_answer(text[: verdict.start()]) if verdict else text)
    if value is None:
        return ""
    claim = _RELATIONS[verdict.group("word").lower()] if verdict else None
    asked = _QUESTION.match(prompt)
    if claim is not None and asked is not None and claim != asked.group(1):
        return f"{canonical_number(value)} is {claim}"
    return canonical_number(value)


class DecimalsTask(Task):
    name = "decimals"
    description = "Compare or sort decimal numbers (the 9.11 vs 9.9 trap)."

    def draw(self, rng: random.Random, difficulty: int) -> Draft:
        numbers = _draw_numbers(rng, difficulty)
        if len(numbers) > 2:
            ordered = sorted(numbers, key=Decimal)
            return Draft(prompt=f"Sort ascending: {', '.join(numbers)}", answer=", ".join(ordered))
        word = rng.choice(("larger", "smaller")) if difficulty >= 3 else "larger"
        pick = max if word == "larger" else min
        return Draft(prompt=f"Which is {word}, {numbers[0]} or {numbers[1]}?", answer=pick(numbers, key=Decimal))

    def check(self, problem: Problem, answer: str) -> bool:
        key = self.answer_key(problem, answer)
        return key != "" and key == self.answer_key(problem, problem.answer)

    def answer_key(self, problem: Problem, answer: str) -> str:
        """Numbers as canonical Decimals ("9.90" -> "9.9"), a sorted list joined by ", "; a comparison that
        claims the opposite of the question keeps its claim ("9.9 is smaller"), so it never shares the
        key of the right answer; "" if unreadable."""
        text = clean_answer(answer)
        if problem.prompt.startswith("Sort"):
            values = [parse_number(part) for part in _SORT_SEPARATORS.split(text)]
            return "" if None in values else ", ".join(canonical_number(v) for v in values)
        return _comparison_key(problem.prompt, text)

    def trace(self, problem: Problem, rng: random.Random, mistake: bool = False) -> str:
        if problem.prompt.startswith("Sort"):
            return self._sort_trace(problem, rng, mistake)
        a, b = re.findall(r"\d+\.\d+", problem.prompt)
        lines = _compare_lines(a, b) + [problem.answer]
        if mistake:
            (wa, fa), (wb, fb) = a.split("."), b.split(".")
            if wa == wb and len(fa) != len(fb) and (int(fa) < int(fb)) != (Decimal(a) < Decimal(b)):
                # the trap itself: comparing unpadded decimal parts as integers
                short = b if len(fa) > len(fb) else a
                wrong = [f"{a} vs {b}", f"{wa}={wb}", f"{fa}{'<' if int(fa) < int(fb) else '>'}{fb}"]
                fix = f"wait, {short} is {_pad([a, b])[[a, b].index(short)]}, let me recheck"
            else:  # a flipped comparison sign
                wrong = lines[:-1]
                last = wrong[-1]
                flipped = last.replace("<", ">") if "<" in last else last.replace(">", "<")
                wrong = wrong[:-1] + [flipped]
                fix = f"wait, {flipped} is wrong, let me recheck"
            lines = wrong + [fix] + _compare_lines(a, b)[-1:] + [problem.answer]
        return "\n".join(lines)

    def _sort_trace(self, problem: Problem, rng: random.Random, mistake: bool) -> str:
        numbers = problem.prompt.removeprefix("Sort ascending: ").split(", ")
        padded = _pad(numbers)
        ordered = sorted(padded, key=Decimal)
        lines = [f"pad {' '.join(padded)}", f"sort {' '.join(ordered)}"]
        if mistake:  # swap one adjacent pair, then notice
            i = rng.randrange(len(ordered) - 1)
            wrong = ordered[:i] + [ordered[i + 1], ordered[i]] + ordered[i + 2 :]
            lines[1:1] = [f"sort {' '.join(wrong)}", f"wait, {ordered[i + 1]}>{ordered[i]}, let me recheck"]
        return "\n".join(lines)
