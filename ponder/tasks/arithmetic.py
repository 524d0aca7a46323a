"""Arithmetic: evaluate a chain of + - * with standard precedence, e.g. "Compute 47+38*2-12." -> 111.

Difficulty (terms, operand size, operators):
  1  two terms of 1-2 digits, + or -
  2  three terms of 2 digits, + and -
  3  three or four terms of 2 digits with at least one *, the multiplier a single digit
  4  four terms of up to 3 digits, multipliers up to 2 digits
  5  five terms of up to 5 digits, multipliers up to 2 digits

Two kinds of trace. `trace` works by hand (below); `tool_trace` hands the whole expression to a tool
(`calculator`, or `python` printing it) and reads the result off, which is how a model that has
tools solves levels 4-5, whose hand-worked traces run to 300-500 tokens of column arithmetic.

Multiplication never chains (no a*b*c), so each product is one "number times multiplier". The trace does
products first, then the sums left to right, one operation per line; a multi-digit multiplier is split
into one partial product per digit (386*7, 386*20, then their sum). Each line is worked the way it is
taught at school, one digit column at a time from the ones, with the carries written out:

    95-81-58  ->  95-81: 5-1=4, 9-8=1, so 14
                  14-58=-(58-14): 8-4=4, 5-1=4, so -44
"""

from __future__ import annotations

import random
from typing import NamedTuple

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


class Step(NamedTuple):
    """One operation of the trace: left op right = value."""

    left: int
    op: str
    right: int
    value: int

    @property
    def expr(self) -> str:
        return f"{self.left}{self.op}{self.right}"


def _mul_steps(a: int, b: int) -> tuple[list[Step], int]:
    """Steps for a*b: one if either factor has a single nonzero digit, else partial products."""
    if len(str(a)) < len(str(b)):
        a, b = b, a  # split the shorter factor into digits
    parts = [int(d) * 10**k for k, d in enumerate(reversed(str(b))) if d != "0"]
    if len(parts) <= 1:
        return [Step(a, "*", b, a * b)], a * b
    steps = [Step(a, "*", p, a * p) for p in parts]
    total = a * parts[0]
    for p in parts[1:]:
        steps.append(Step(total, "+", a * p, total + a * p))
        total += a * p
    return steps, total


def _steps(terms: list[int], ops: list[str]) -> list[Step]:
    """The operations in order: products first, then + and - left to right."""
    steps: list[Step] = []
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
        steps.append(Step(total, op, value, new))
        total = new
    return steps


# --- the written method: one digit column at a time, ones first ---------------------------------------
# A small model cannot add two numbers in one step, but it can add two digits and a carry. So a line
# works column by column from the ones ("7+6=13, 2+5+1=8") and then states the result ("so 83"); a
# signed case is first turned into an unsigned one ("42-97=-(97-42): ...").


def _digits(n: int) -> list[int]:
    """Digits of n >= 0, ones first."""
    return [int(c) for c in reversed(str(n))]


def _add_columns(x: int, y: int) -> list[str]:
    """x + y for x, y >= 0: "7+6=13", then "2+5+1=8" (the +1 is the carry)."""
    a, b = _digits(x), _digits(y)
    cols, carry = [], 0
    for i in range(max(len(a), len(b))):
        da, db = (a[i] if i < len(a) else 0), (b[i] if i < len(b) else 0)
        total = da + db + carry
        cols.append(f"{da}+{db}{'+1' if carry else ''}={total}")
        carry = total // 10
    return cols


def _sub_columns(x: int, y: int) -> list[str]:
    """x - y for x >= y >= 0: "13-6=7" borrows a ten, and the next column pays it back ("8-6-1=1")."""
    a, b = _digits(x), _digits(y)
    cols, borrow = [], 0
    for i, da in enumerate(a):
        db = b[i] if i < len(b) else 0
        expr = f"{da}-{db}{'-1' if borrow else ''}"
        digit = da - db - borrow
        borrow = int(digit < 0)
        cols.append(f"{'1' if borrow else ''}{expr}={digit + 10 * borrow}")
    return cols


def _mul_columns(x: int, y: int) -> list[str]:
    """x * y for x >= 0 and y one nonzero digit times a power of ten: "7*8=56", "3*8+5=29"; the zeros of
    y are appended to the result."""
    d = int(str(y)[0])
    cols, carry = [], 0
    for dx in _digits(x):
        total = dx * d + carry
        cols.append(f"{dx}*{d}{f'+{carry}' if carry else ''}={total}")
        carry = total // 10
    return cols


def _unsigned(step: Step) -> tuple[str, list[str]]:
    """The line's header and columns: a signed + or - becomes an unsigned one, with the sign outside."""
    left, op, right = step.left, step.op, step.right
    if op == "*":
        return step.expr, _mul_columns(left, right)
    if left >= 0 and op == "+":
        return step.expr, _add_columns(left, right)
    if left >= 0:  # left - right
        if left >= right:
            return step.expr, _sub_columns(left, right)
        return f"{step.expr}=-({right}-{left})", _sub_columns(right, left)
    size = -left
    if op == "-":  # -size - right
        return f"{step.expr}=-({size}+{right})", _add_columns(size, right)
    if right >= size:  # -size + right
        return f"{step.expr}={right}-{size}", _sub_columns(right, size)
    return f"{step.expr}=-({size}-{right})", _sub_columns(size, right)


def _line(step: Step, value: int | None = None) -> str:
    header, cols = _unsigned(step)
    return f"{header}: {', '.join(cols)}, so {step.value if value is None else value}"


def _expression(prompt: str) -> str:
    return prompt.removeprefix("Compute ").removesuffix(".")


def _parse(prompt: str) -> tuple[list[int], list[str]]:
    expr = _expression(prompt)
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
        answer = _steps(terms, ops)[-1].value
        return Draft(prompt=f"Compute {expr}.", answer=str(answer), meta={"expression": expr})

    def check(self, problem: Problem, answer: str) -> bool:
        value = parse_int(clean_answer(answer))
        return value is not None and value == int(problem.answer)

    def tool_trace(self, problem: Problem, tool: str = "calculator") -> str:
        """The problem worked through a tool: one call with the whole expression, the tool's response
        (written right after the call, as the engine writes it), then the result read off:

            <tool_call>{"name": "calculator", ...}</tool_call><tool_response>139090</tool_response>
            so 139090

        The calculator's response is its real output; the python tool's is what `print(<expression>)`
        prints, the same integer (computed here: a sandbox per training example would cost more than
        the training step)."""
        from ponder.tools import CalculatorTool, Observation, format_observation, render_call

        expression = _expression(problem.prompt)
        if tool == "calculator":
            call = render_call(tool, {"expression": expression})
            observation = CalculatorTool().run({"expression": expression})
        elif tool == "python":
            call = render_call(tool, {"code": f"print({expression})"})
            observation = Observation(str(_steps(*_parse(problem.prompt))[-1].value))
        else:
            raise ValueError(f"arithmetic has traces for the calculator and python tools, not {tool!r}")
        return f"{call}{format_observation(observation)}\nso {observation.text}"

    def trace(self, problem: Problem, rng: random.Random, mistake: bool = False) -> str:
        steps = _steps(*_parse(problem.prompt))
        lines = [_line(step) for step in steps]
        if mistake:
            i = rng.randrange(len(steps))
            wrong = _wrong(steps[i].value, rng)
            recheck = f"wait, {steps[i].expr} is not {wrong}, let me recheck"
            lines[i : i + 1] = [_line(steps[i], wrong), recheck, lines[i]]
        return "\n".join(lines)
