"""User problems from a JSONL file as a ponder task: `get_task("jsonl:path/to/problems.jsonl")`.

Each non-blank line is one JSON object: `{"prompt": ..., "answer": ...}` (strings or numbers), with an
optional integer `"difficulty"` (default 1). A problem belongs to the split its prompt hashes to
(`split_of`), so train and eval are disjoint by construction; `problem(split, index, difficulty)` is the
`index`-th problem of that split and difficulty in file order, cycling (the seed is not used).

Scoring uses math-verify, so `1/2`, `0.5` and `\\frac{1}{2}` are the same answer, and a final number in
prose ("the answer is 7") counts. In order, an answer is correct when:
1. it equals the reference after normalisation (case, whitespace, surrounding `$`, a final period);
2. math-verify finds them equal, the reference parsed as `$reference$` when it has no words (so `(1, 2)`
   stays a pair and `x+1` an expression) and as is otherwise, the answer parsed both as is and wrapped.
References with words are never `$`-wrapped: LaTeX would read `Paris` as the product P*a*r*i*s, equal
to `Pairs`. Answers longer than `MAX_PARSE_CHARS` only get the string comparison. Nothing here raises.

Traces are thin ("The answer is X."): a file gives answers, not worked solutions.
"""

from __future__ import annotations

import json
import random
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from ponder.errors import PonderError
from ponder.tasks.base import SPLITS, Draft, Problem, Task, split_of
from ponder.tasks.thin import thin_trace

MAX_PARSE_CHARS = 2000
TIMEOUT_S = 5  # math-verify's own limit, enforced with SIGALRM: main thread only
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[A-Za-z]{2,}")


@dataclass(frozen=True)
class _Row:
    prompt: str
    answer: str
    difficulty: int
    line: int


class JsonlTask(Task):
    """The problems in one JSONL file, as the task `jsonl:<path>`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = f"jsonl:{path}"
        self.description = f"user problems from {path}, scored with math-verify"
        self.rows = _load(self.path)
        self.difficulties = tuple(sorted({row.difficulty for row in self.rows}))

    def problem(self, split: str, index: int, difficulty: int, seed: int = 0) -> Problem:
        """The `index`-th problem (cycling) of this split and difficulty, in file order."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        rows = self._rows(difficulty)
        chosen = [row for row in rows if split_of(row.prompt) == split]
        if not chosen:
            raise PonderError(
                f"{self.path} has too few problems for a held-out split: none of its {len(rows)} problems "
                f"of difficulty {difficulty} hashes to {split!r} (about 1 in 5 goes to eval). "
                "Add more problems to the file."
            )
        row = chosen[index % len(chosen)]
        return Problem(self.name, row.prompt, row.answer, difficulty, split, index, {"line": row.line})

    def draw(self, rng: random.Random, difficulty: int) -> Draft:
        row = rng.choice(self._rows(difficulty))
        return Draft(row.prompt, row.answer, {"line": row.line})

    def check(self, problem: Problem, answer: str) -> bool:
        return answers_match(problem.answer, answer)

    def trace(self, problem: Problem, rng: random.Random, mistake: bool = False) -> str:
        """A thin trace: 'The answer is X.' (a file has no worked solutions)."""
        return thin_trace(problem.answer, rng, mistake, lambda text: self.check(problem, text))

    def _rows(self, difficulty: int) -> list[_Row]:
        rows = [row for row in self.rows if row.difficulty == difficulty]
        if not rows:
            raise PonderError(
                f"{self.path} has no problems of difficulty {difficulty!r}; "
                f"its difficulties are {list(self.difficulties)}."
            )
        return rows


# --- loading -------------------------------------------------------------------------------------


def _load(path: Path) -> list[_Row]:
    if not path.is_file():
        raise PonderError(
            f"JSONL task file {str(path)!r} not found: pass 'jsonl:<path>' to a file with one "
            '{"prompt": ..., "answer": ...} object per line.'
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PonderError(f"cannot read {path} as UTF-8 text: {error}") from error
    rows = [_row(path, number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not rows:
        raise PonderError(
            f'{path} is empty: write one JSON object per line, e.g. {{"prompt": "What is 2+3?", "answer": "5"}}.'
        )
    return rows


def _row(path: Path, number: int, line: str) -> _Row:
    where = f"{path}, line {number}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as error:
        raise PonderError(f"{where} is not valid JSON ({error.msg}): fix or remove that line.") from error
    if not isinstance(obj, dict):
        raise PonderError(f'{where} is a JSON {type(obj).__name__}, not an object {{"prompt": ..., "answer": ...}}.')
    prompt, answer = (_text_field(obj, key, where) for key in ("prompt", "answer"))
    difficulty = obj.get("difficulty", 1)
    if not isinstance(difficulty, int) or isinstance(difficulty, bool) or difficulty < 1:
        raise PonderError(f"{where}: 'difficulty' must be a positive integer, got {difficulty!r}.")
    return _Row(prompt, answer, difficulty, number)


def _text_field(obj: dict, key: str, where: str) -> str:
    if key not in obj:
        raise PonderError(f"{where} has no {key!r} key: every line needs both 'prompt' and 'answer'.")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PonderError(f"{where}: {key!r} must be a string or a number, got {type(value).__name__}.")
    text = str(value).strip()
    if not text:
        raise PonderError(f"{where}: {key!r} is empty.")
    return text


# --- scoring -------------------------------------------------------------------------------------


def answers_match(gold: str, answer: str) -> bool:
    """Is `answer` the same as the reference `gold`? String match, then math-verify. Never raises."""
    try:
        if not isinstance(answer, str) or not answer.strip():
            return False
        if _normalize(gold) == _normalize(answer):
            return True
        return len(answer) <= MAX_PARSE_CHARS and _math_equal(gold, answer)
    except Exception:  # noqa: BLE001 - a verifier bug must not crash training: it scores 0
        return False


def _normalize(text: str) -> str:
    text = " ".join(text.split()).casefold().rstrip(".").strip()
    return text[1:-1].strip() if len(text) > 1 and text[0] == text[-1] == "$" else text


def _math_equal(gold: str, answer: str) -> bool:
    from math_verify import parse, verify  # imported here: it loads sympy (~0.4 s)

    # SIGALRM only works in the main thread; elsewhere math-verify would raise, so run without a limit.
    limit = TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    wordless = _WORD.search(_LATEX_COMMAND.sub("", gold)) is None
    gold_parsed = (parse(f"${gold}$", parsing_timeout=limit) if wordless else []) or parse(gold, parsing_timeout=limit)
    if not gold_parsed:
        return False
    candidates = (answer, f"${answer}$") if wordless else (answer,)
    return any(verify(gold_parsed, parse(text, parsing_timeout=limit), timeout_seconds=limit) for text in candidates)
