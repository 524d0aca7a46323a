"""Countdown: reach a target from given numbers with + - *, each number used at most once.

"Make 22 from 3 5 7." -> "3*5+7" (or any other expression that works: the verifier evaluates it).

Difficulty (how many numbers, their range): 1: two numbers 1-10; 2: three numbers 1-10; 3: three
numbers 2-25; 4: four numbers 1-12; 5: five numbers 1-12. Targets are 1..999 and never one of the
numbers. Every instance is solvable: the target is built by combining the numbers with random steps.

The verifier parses the answer with `ast` and allows only integer literals, + - * /, and parentheses;
it checks the literals are a sub-multiset of the given numbers and the value is exactly the target
(with `fractions.Fraction`, so "/" is fine when exact). An answer may state its total ("3*5+7 = 22" or
"22 = 3*5+7"); a stated total that is not the expression's value makes the answer false, even when
the expression itself reaches the target. Votes and the verifier read an answer the same way
(`_answer_key`): every correct expression shares the key "=<target>", a false statement never does.

The trace is a breadth-first search's shortest solution, one step per line ("5*3=15", "15+7=22");
larger operand first, subtraction never negative.
"""

from __future__ import annotations

import ast
import random
import re
from collections import Counter
from fractions import Fraction

from ponder.tasks.answers import clean_answer, parse_int
from ponder.tasks.base import Draft, Problem, Task

# difficulty -> (how many numbers, smallest, largest)
_LEVELS = {1: (2, 1, 10), 2: (3, 1, 10), 3: (3, 2, 25), 4: (4, 1, 12), 5: (5, 1, 12)}
_MAX_TARGET = 999
_MAX_EXPR_CHARS = 100  # a real answer over five numbers is far shorter
_MAX_LITERAL_DIGITS = 6
_PROMPT = re.compile(r"Make (\d+) from ([\d ]+)\.")
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def _combine(a: int, b: int, op: str) -> tuple[str, int]:
    """One step with the larger operand first (so subtraction stays non-negative)."""
    a, b = max(a, b), min(a, b)
    value = a + b if op == "+" else a - b if op == "-" else a * b
    return f"{a}{op}{b}", value


def _render(left: tuple[str, int], op: str, right: tuple[str, int]) -> str:
    """Join two sub-expressions (text, precedence) with the fewest parentheses that keep the meaning."""
    prec = 1 if op in "+-" else 2
    lt = left[0] if left[1] >= prec else f"({left[0]})"
    need = right[1] <= prec if op == "-" else right[1] < prec
    rt = f"({right[0]})" if need else right[0]
    return f"{lt}{op}{rt}"


def _build(rng: random.Random, numbers: list[int]) -> tuple[str, int]:
    """A random expression using every number once, with non-negative, non-zero intermediate values."""
    pool = [(str(n), n, 3) for n in numbers]  # (text, value, precedence)
    while len(pool) > 1:
        i, j = sorted(rng.sample(range(len(pool)), 2))
        b, a = pool.pop(j), pool.pop(i)
        if a[1] < b[1]:
            a, b = b, a
        op = rng.choice("+-*" if a[1] != b[1] else "+*")
        value = a[1] + b[1] if op == "+" else a[1] - b[1] if op == "-" else a[1] * b[1]
        text = _render((a[0], a[2]), op, (b[0], b[2]))
        pool.append((text, value, 1 if op in "+-" else 2))
    return pool[0][0], pool[0][1]


def solve(numbers: list[int], target: int) -> list[str] | None:
    """Shortest list of steps reaching `target` (breadth-first over multisets), or None."""
    start = tuple(sorted(numbers))
    if target in start:
        return []
    parents: dict[tuple[int, ...], tuple[tuple[int, ...], str] | None] = {start: None}
    layer = [start]
    while layer:
        nxt = []
        for state in layer:
            for i in range(len(state)):
                for j in range(i + 1, len(state)):
                    rest = state[:i] + state[i + 1 : j] + state[j + 1 :]
                    for op in "+-*":
                        step, value = _combine(state[i], state[j], op)
                        if value <= 0:
                            continue
                        new = tuple(sorted(rest + (value,)))
                        if new in parents:
                            continue
                        parents[new] = (state, f"{step}={value}")
                        if value == target:
                            return _path(parents, new)
                        nxt.append(new)
        layer = nxt
    return None


def _path(parents: dict, state: tuple[int, ...]) -> list[str]:
    steps = []
    while parents[state] is not None:
        state, step = parents[state]
        steps.append(step)
    return steps[::-1]


def _parse_prompt(prompt: str) -> tuple[int, list[int]]:
    m = _PROMPT.fullmatch(prompt)
    if m is None:
        raise ValueError(f"not a countdown prompt: {prompt!r}")
    return int(m.group(1)), [int(x) for x in m.group(2).split()]


def _evaluate(node: ast.AST, used: list[int]) -> Fraction | None:
    """The exact value of an allowed expression tree, collecting its literals; None if anything else."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        if len(str(node.value)) > _MAX_LITERAL_DIGITS:
            return None
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _evaluate(node.left, used), _evaluate(node.right, used)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        return None if right == 0 else left / right
    return None


def _ascii_operators(text: str) -> str:
    """Typographic operators are the same operators: "3×5−7" reads as "3*5-7"."""
    return text.replace("\u00d7", "*").replace("\u00f7", "/").replace("\u2212", "-").strip()


def evaluate_expression(text: str) -> tuple[Fraction, list[int]] | None:
    """(value, literals used) of a + - * / expression over integers, or None if it is anything else."""
    text = _ascii_operators(text)
    if not text or len(text) > _MAX_EXPR_CHARS or not re.fullmatch(r"[0-9+\-*/() ]+", text):
        return None
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    used: list[int] = []
    value = _evaluate(tree.body, used)
    return None if value is None else (value, used)


class CountdownTask(Task):
    name = "countdown"
    description = "Reach a target number from given numbers with + - *, each number used at most once."

    def draw(self, rng: random.Random, difficulty: int) -> Draft:
        count, lo, hi = _LEVELS[difficulty]
        while True:
            numbers = [rng.randint(lo, hi) for _ in range(count)]
            expr, target = _build(rng, numbers)
            if 0 < target <= _MAX_TARGET and target not in numbers:
                break
        shown = " ".join(map(str, sorted(numbers)))
        return Draft(prompt=f"Make {target} from {shown}.", answer=expr, meta={"numbers": numbers})

    def check(self, problem: Problem, answer: str) -> bool:
        try:
            target, numbers = _parse_prompt(problem.prompt)
        except ValueError:
            return False
        return _answer_key(answer, numbers) == f"={target}"

    def answer_key(self, problem: Problem, answer: str) -> str:
        """Legal expressions (given numbers only, any stated total true) vote by their value, "=22", so
        every correct expression shares one key. Expressions over other numbers vote by their text
        ("expr:2*11"), false statements by their text and claim ("false:3*5+7=23"): neither can share
        the correct key. Unreadable answers get ""."""
        try:
            _, numbers = _parse_prompt(problem.prompt)
        except ValueError:
            return super().answer_key(problem, answer)
        return _answer_key(answer, numbers)

    def trace(self, problem: Problem, rng: random.Random, mistake: bool = False) -> str:
        target, numbers = _parse_prompt(problem.prompt)
        steps = solve(numbers, target) or []
        if not mistake:
            return "\n".join(steps)
        dead = _dead_end(rng, numbers, target)
        if dead is None:  # every path hits the target: slip on the first step's arithmetic instead
            expr, value = steps[0].split("=")
            wrong = int(value) + rng.choice((-1, 1))
            dead = [f"{expr}={wrong}", f"wait, {expr} is not {wrong}, let me recheck"]
        else:
            dead.append(f"wait, {dead[-1].split('=')[1]} is not {target}, let me try again")
        return "\n".join(dead + steps)


def _split_claim(text: str) -> tuple[str, int | None] | None:
    """(expression, stated total) of "E", "E = N" or "N = E" (total None when none is stated); None for
    anything else, such as two "=" or no side that is a plain number."""
    sides = [side.strip() for side in text.split("=")]
    if len(sides) == 1:
        return sides[0], None
    if len(sides) > 2:
        return None
    left, right = sides
    if (claim := parse_int(right)) is not None:
        return left, claim
    if (claim := parse_int(left)) is not None:
        return right, claim
    return None


def _answer_key(answer: str, numbers: list[int]) -> str:
    """The one reading of an answer that both `check` and the vote use; see `CountdownTask.answer_key`.
    It never looks at the target, so a key is a fact about the answer, not about being right."""
    split = _split_claim(clean_answer(answer))
    result = None if split is None else evaluate_expression(split[0])
    if result is None:
        return ""
    expr, claim = _ascii_operators(split[0]).replace(" ", ""), split[1]
    value, used = result
    if claim is not None and claim != value:
        return f"false:{expr}={claim}"
    if Counter(used) - Counter(numbers):
        return f"expr:{expr}"
    return f"={value}"


def _dead_end(rng: random.Random, numbers: list[int], target: int) -> list[str] | None:
    """A random attempt that combines every number and never meets the target (a plausible wrong try)."""
    for _ in range(20):
        pool, steps = list(numbers), []
        while len(pool) > 1:
            i, j = sorted(rng.sample(range(len(pool)), 2))
            b, a = pool.pop(j), pool.pop(i)
            step, value = _combine(a, b, rng.choice("+-*"))
            if value <= 0 or value == target:
                break
            steps.append(f"{step}={value}")
            pool.append(value)
        else:
            return steps
    return None
