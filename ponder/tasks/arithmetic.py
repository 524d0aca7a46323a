"""Arithmetic: evaluate a chain of + - * with standard precedence, e.g. "Compute 47+38*2-12." -> 111.

Difficulty (terms, operand size, operators):
  1  two terms of 1-2 digits, + or -
  2  three terms of 2 digits, + and -
  3  three or four terms of 2 digits with at least one *, the multiplier a single digit
  4  four terms of up to 3 digits, multipliers up to 2 digits
  5  five terms of up to 5 digits, multipliers up to 2 digits

Multiplication never chains (no a*b*c), so each product is one "number times multiplier". The trace does
products first, then the sums left to right, one operation per line; a multi-digit multiplier is split
into one partial product per digit ("386*7=2702", "386*20=7720", "2702+7720=10422").
"""

from __future__ import annotations

import random

from ponder.tasks.answers import clean_answer, parse_int
from ponder.tasks.base import Draft, Problem, Task

# difficulty -> (term counts, term digits (lo, hi), multiplier digits, allow *)
_LEVELS = {
    1: ((2,), (1, 2), 0, False),
    2: ((3,), (2, 2), 0, False),
    3: ((3, 4), (2, 2), 1, True),
    4: ((4,), (2, 3), 2, True),
    5: ((5,), (3, 5), 2, True),
}


def _number(rng: random.Random, lo_digits: int, hi_digits: int) -> int:
    digits = rng.randint(lo_digits, hi_digits)
    return rng.randint(1 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def _mul_steps(a: int, b: int) -> tuple[list[tuple[str, int]], int]:
    """Lines for a*b: one line if either factor has a single nonzero digit, else partial products."""
    if len(str(a)) < len(str(b)):
        a, b = b, a  # split the shorter factor into digits
    parts = [int(d) * 10**k for k, d in enumerate(reversed(str(b))) if d != "0"]
    if len(parts) <= 1:
        return [(f"{a}*{b}", a * b)], a * b
    steps = [(f"{a}*{p}", a * p) for p in parts]
    total = a * parts[0]
    for p in parts[1:]:
        steps.append((f"{total}+{a * p}", total + a * p))
        total += a * p
    return steps, total


def _steps(terms: list[int], ops: list[str]) -> list[tuple[str, int]]:
    """(expression, value) per line: products first, then + and - left to right."""
    steps: list[tuple[str, int]] = []
    values, signs = [terms[0]], []
    for op, term in zip(ops, terms[1:], strict=True):
        if op == "*":
            mul, values[-1] = _mul_steps(values[-1], term)
            steps += mul
        else:
            values.append(term)
            signs.append(op)
    total = values[0]
    for op, value in zip(signs, values[1:], strict=True):
        new = total + value if op == "+" else total - value
        steps.append((f"{total}{op}{value}", new))
        total = new
    return steps


def _parse(prompt: str) -> tuple[list[int], list[str]]:
    expr = prompt.removeprefix("Compute ").removesuffix(".")
    terms, ops, num = [], [], ""
    for ch in expr:
        if ch.isdigit():
            num += ch
        else:
            terms.append(int(num))
            ops.append(ch)
            num = ""
    terms.append(int(num))
    return terms, ops


def _wrong(value: int, rng: random.Random) -> int:
    """A plausible slip: off by a power of ten in one digit (a dropped or extra carry)."""
    k = rng.randrange(len(str(abs(value))))
    delta = 10**k
    if abs(value) < delta or rng.random() < 0.5:
        return value + delta if value >= 0 else value - delta
    return value - delta if value >= 0 else value + delta


class ArithmeticTask(Task):
    name = "arithmetic"
    description = "Evaluate chains of + - * with carries and standard precedence."

    def draw(self, rng: random.Random, difficulty: int) -> Draft:
        counts, (lo, hi), mul_digits, allow_mul = _LEVELS[difficulty]
        n = rng.choice(counts)
        while True:
            ops = [rng.choice("+-*" if allow_mul else "+-") for _ in range(n - 1)]
            # no chained products, and levels 3+ always include one
            if any(a == b == "*" for a, b in zip(ops, ops[1:], strict=False)):
                continue
            if allow_mul and "*" not in ops:
                continue
            break
        terms = [_number(rng, lo, hi)]
        for op in ops:
            terms.append(_number(rng, 1, mul_digits) if op == "*" else _number(rng, lo, hi))
        # a multiplier of 1 teaches nothing
        terms = [max(t, 2) if op == "*" else t for op, t in zip([""] + ops, terms, strict=True)]
        expr = str(terms[0]) + "".join(f"{op}{t}" for op, t in zip(ops, terms[1:], strict=True))
        answer = _steps(terms, ops)[-1][1]
        return Draft(prompt=f"Compute {expr}.", answer=str(answer), meta={"expression": expr})

    def check(self, problem: Problem, answer: str) -> bool:
        value = parse_int(clean_answer(answer))
        return value is not None and value == int(problem.answer)

    def trace(self, problem: Problem, rng: random.Random, mistake: bool = False) -> str:
        steps = _steps(*_parse(problem.prompt))
        lines = [f"{expr}={value}" for expr, value in steps]
        if mistake:
            i = rng.randrange(len(steps))
            expr, value = steps[i]
            wrong = _wrong(value, rng)
            lines[i : i + 1] = [f"{expr}={wrong}", f"wait, {expr} is not {wrong}, let me recheck", lines[i]]
        return "\n".join(lines)
