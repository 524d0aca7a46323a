"""The `calculator` tool: exact arithmetic on one expression, with sizes bounded before computing.

The expression is parsed with `ast` and walked over a whitelist (numbers, + - * / // % **, unary
signs, parentheses); nothing is ever `eval`-ed, so `__import__('os')` is just a rejected node.
Values are `fractions.Fraction`, so 0.1 + 0.2 is 0.3 and 1/3 stays 1/3. A result prints as an
integer when it is one, as a decimal when its decimal expansion ends (1/8 -> 0.125), else as a
fraction (1/3).

Exact arithmetic can be asked for astronomically large numbers (9**9**9 has 370 million digits), so
every power is sized first from exponent * log10(base) and refused at once past `max_digits`, and
every other result is checked as it is made (a product of two bounded numbers is cheap to compute).
"""

from __future__ import annotations

import ast
import math
import operator
from fractions import Fraction

from ponder.tools.base import Observation, Tool, ToolInputError

MAX_EXPRESSION_CHARS = 1000
_LOG10_2 = math.log10(2)
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_ALLOWED = "numbers, + - * / // % ** and parentheses"
_SPELLINGS = {"\u00d7": "*", "\u00f7": "/", "\u2212": "-"}  # times, divide, typographic minus


def _digits(value: Fraction) -> int:
    """Decimal digits of the larger of numerator and denominator (from bit lengths: cheap)."""
    return int(max(abs(value.numerator).bit_length(), value.denominator.bit_length()) * _LOG10_2) + 1


def _power(base: Fraction, exponent: Fraction, max_digits: int) -> Fraction:
    if exponent.denominator != 1:
        raise ToolInputError(f"the exponent {exponent} is not a whole number, so the result would not be exact")
    n = int(exponent)
    if base == 0 and n < 0:
        raise ToolInputError("division by zero (0 to a negative power)")
    size = max(abs(base.numerator), base.denominator)
    if size > 1 and abs(n) * math.log10(size) > max_digits:
        estimate = f"{abs(n) * math.log10(size):.3g}"
        raise ToolInputError(f"the result of a power would have about {estimate} digits; the limit is {max_digits}")
    return base**n


def _number(node: ast.Constant) -> Fraction:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolInputError(f"{value!r} is not a number; only {_ALLOWED} are allowed")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolInputError("a number in the expression is too large to read")
    return Fraction(value) if isinstance(value, int) else Fraction(repr(value))  # 0.1 as written, exactly


def evaluate(expression: str, max_digits: int = 1000) -> Fraction:
    """The exact value of an arithmetic expression. Raises ToolInputError (a message for the model)
    for anything outside the whitelist, a division by zero, or a result over `max_digits`."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolInputError(f"the expression is {len(expression)} characters; the limit is {MAX_EXPRESSION_CHARS}")
    for spelling, op in _SPELLINGS.items():
        expression = expression.replace(spelling, op)
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        raise ToolInputError(f"cannot parse {expression.strip()!r:.80}: {getattr(e, 'msg', e)}")
    try:
        return _walk(tree.body, max_digits)
    except RecursionError:
        raise ToolInputError("the expression is nested too deeply")


def _walk(node: ast.AST, max_digits: int) -> Fraction:
    if isinstance(node, ast.Constant):
        value = _number(node)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _walk(node.operand, max_digits)
        value = -operand if isinstance(node.op, ast.USub) else operand
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        raise ToolInputError("'^' is not a power here; write 2**10 for two to the tenth")
    elif isinstance(node, ast.BinOp) and (isinstance(node.op, ast.Pow) or type(node.op) in _BINARY):
        left, right = _walk(node.left, max_digits), _walk(node.right, max_digits)
        if isinstance(node.op, ast.Pow):
            value = _power(left, right, max_digits)
        elif right == 0 and isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod):
            raise ToolInputError("division by zero")
        else:
            value = Fraction(_BINARY[type(node.op)](left, right))
    else:
        found = ast.unparse(node)
        raise ToolInputError(f"{found!r:.60} is not allowed; only {_ALLOWED} are")
    if _digits(value) > max_digits:
        raise ToolInputError(f"a result has more than {max_digits} digits")
    return value


def render(value: Fraction) -> str:
    """An integer as an integer, a finite decimal as a decimal, anything else as p/q."""
    if value.denominator == 1:
        return str(value.numerator)
    den, twos, fives = value.denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    scaled = abs(value.numerator) * 10**places // value.denominator
    digits = str(scaled).rjust(places + 1, "0")
    sign = "-" if value < 0 else ""
    return f"{sign}{digits[:-places]}.{digits[-places:].rstrip('0')}"


class CalculatorTool(Tool):
    name = "calculator"
    description = (
        "Evaluate an arithmetic expression exactly: numbers, + - * / // % ** and parentheses. "
        "Returns an integer, a finite decimal, or a fraction like 1/3."
    )
    parameters = {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "for example (17 * 23 - 5) / 4"}},
        "required": ["expression"],
    }
    primary = "expression"

    def call(self, arguments: dict) -> Observation:
        value = evaluate(arguments["expression"], self.config.max_digits)
        return Observation(render(value))
