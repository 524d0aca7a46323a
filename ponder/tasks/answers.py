"""Shared answer extraction for the built-in task families: every `check` starts here.

Models wrap answers in many harmless ways ("\\boxed{7}", "The answer is 7.", "Answer: 7", "**7**").
`clean_answer` peels those off, and `parse_number` / `parse_int` read a number leniently ("73.0" is 73,
"1,234" is 1234). All functions are total: any string in, a value or None out, never an exception.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

MAX_ANSWER_CHARS = 1000  # longer text is never a right answer here; refusing it keeps checks fast

_PREFIXES = (
    "the final answer is",
    "final answer:",
    "final answer",
    "the answer is",
    "answer:",
    "answer is",
    "answer",
)
_WRAPPERS = (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**"), ("`", "`"), ('"', '"'), ("'", "'"))
_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|[+-]?\.\d+", re.ASCII)

WORD_NUMBERS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}


def _unbox(text: str) -> str:
    """The contents of the last \\boxed{...} (braces matched), or the text unchanged."""
    start = text.rfind("\\boxed")
    if start < 0:
        return text
    i = text.find("{", start)
    if i < 0:
        return text
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return text


def clean_answer(text: object, prefixes: tuple[str, ...] = ()) -> str:
    """The bare answer: no \\boxed{}, no "The answer is", no wrapping quotes or $, no trailing period.

    `prefixes` adds family-specific lead-ins (matched case-insensitively), e.g. "there are"."""
    if not isinstance(text, str) or len(text) > MAX_ANSWER_CHARS:
        return ""
    text = text.strip()
    # A few passes, because wrappers nest: "The answer is $\\boxed{7}$."
    for _ in range(4):
        before = text
        text = _unbox(text).strip()
        for prefix in prefixes + _PREFIXES:
            if text.lower().startswith(prefix):
                text = text[len(prefix) :].lstrip(" :").strip()
                break
        for left, right in _WRAPPERS:
            if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
                text = text[len(left) : len(text) - len(right)].strip()
        text = text.rstrip().removesuffix(".").rstrip()
        if text == before:
            break
    return text


def parse_number(text: str) -> Decimal | None:
    """A plain decimal number ("73", "-5", "73.0", "1,234", ".5"), or None. No exponents, no words."""
    if not isinstance(text, str) or len(text) > 100:
        return None
    text = text.strip().replace("\u2212", "-")  # a typographic minus sign is still a minus
    if not _NUMBER.fullmatch(text):
        return None
    try:
        return Decimal(text.replace(",", ""))
    except (InvalidOperation, ValueError):
        return None


def parse_int(text: str, words: bool = False) -> int | None:
    """An integer written as a number ("73", "73.0") or, with `words`, as a word ("three")."""
    if words and isinstance(text, str) and text.strip().lower() in WORD_NUMBERS:
        return WORD_NUMBERS[text.strip().lower()]
    value = parse_number(text)
    if value is None or value != value.to_integral_value():
        return None
    return int(value)


def canonical_number(value: Decimal) -> str:
    """One spelling per number: Decimal("73.0") and Decimal("73") both give "73"; never exponents."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "+0") else text


def answer_key(text: object) -> str:
    """A voting key for a free-form answer: the canonical number if it is one, else the cleaned text,
    lowercased with whitespace collapsed. "" for empty or unreadable text."""
    cleaned = clean_answer(text)
    value = parse_number(cleaned)
    if value is not None:
        return canonical_number(value)
    return " ".join(cleaned.lower().split())
