"""Sudoku 4x4: fill the blanks so every row, column and 2x2 box holds 1-4 once.

"Solve the 4x4 sudoku: 12_4/3_1_/2143/4_21" -> "1234/3412/2143/4321".

Difficulty is the number of blanks: 1: 2-3, 2: 4-5, 3: 5-6, 4: 6-8, 5: 8-10. Puzzles are built so that
repeatedly filling a cell with a single candidate solves them (which also makes the solution unique);
the trace is exactly that, one cell per line with the digits that rule the others out:
"r1c3 row 1 2 4 -> 3" or "r2c2 row 3 col 1 box 2 -> 4". The verifier accepts any valid completion
that keeps the givens, written as rows split by "/", newlines, spaces or commas, or as 16 digits.
"""

from __future__ import annotations

import random
import re

from ponder.tasks.answers import clean_answer
from ponder.tasks.base import Draft, Problem, Task

Grid = list[list[int]]  # 0 is a blank

_BLANKS = {1: (2, 3), 2: (4, 5), 3: (5, 6), 4: (6, 8), 5: (8, 10)}
_BASE = [[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]]
_DIGITS = {1, 2, 3, 4}
_PROMPT_GRID = re.compile(r"[1-4_]{4}(?:/[1-4_]{4}){3}")
_SEPARATORS = re.compile(r"[\s/,;|\[\]()]+")


def _solution(rng: random.Random) -> Grid:
    """A random valid grid: relabel digits, shuffle rows within bands, bands, then the same for columns."""
    relabel = dict(zip(range(1, 5), rng.sample(range(1, 5), 4), strict=True))
    grid = [[relabel[v] for v in row] for row in _BASE]
    for _ in range(2):  # rows, then (after transposing) columns
        bands = rng.sample([[0, 1], [2, 3]], 2)
        order = [r for band in bands for r in rng.sample(band, 2)]
        grid = [list(col) for col in zip(*[grid[r] for r in order], strict=True)]
    return grid


def _units(r: int, c: int) -> list[tuple[str, list[tuple[int, int]]]]:
    br, bc = r - r % 2, c - c % 2
    return [
        ("row", [(r, j) for j in range(4)]),
        ("col", [(i, c) for i in range(4)]),
        ("box", [(br + i, bc + j) for i in range(2) for j in range(2)]),
    ]


def _explain(grid: Grid, r: int, c: int) -> list[tuple[str, list[int]]] | None:
    """Why cell (r, c) is forced: [(unit, new digits it rules out), ...], or None if it is not forced."""
    units = [(name, sorted({grid[i][j] for i, j in cells} - {0})) for name, cells in _units(r, c)]
    for name, digits in units:  # a unit with three digits forces the fourth on its own
        if len(digits) == 3:
            return [(name, digits)]
    seen: set[int] = set()
    parts = []
    for name, digits in units:
        new = [d for d in digits if d not in seen]
        if new:
            parts.append((name, new))
            seen.update(new)
    return parts if len(seen) == 3 else None


def _fill_order(grid: Grid) -> tuple[list[tuple[int, int, int, list]], bool]:
    """Cells in the order single candidates fill them: [(r, c, digit, explanation)], and whether done."""
    grid = [row[:] for row in grid]
    order = []
    while True:
        blanks = [(r, c) for r in range(4) for c in range(4) if grid[r][c] == 0]
        if not blanks:
            return order, True
        for r, c in blanks:  # reading order: the first forced cell
            why = _explain(grid, r, c)
            if why is not None:
                digit = (_DIGITS - {d for _, ds in why for d in ds}).pop()
                grid[r][c] = digit
                order.append((r, c, digit, why))
                break
        else:
            return order, False


def _puzzle(rng: random.Random, solution: Grid, blanks: int) -> Grid:
    """Blank `blanks` cells so that single candidates still solve it; if no luck, any `blanks` cells."""
    cells = [(r, c) for r in range(4) for c in range(4)]
    for _ in range(30):
        grid = [row[:] for row in solution]
        removed = 0
        for r, c in rng.sample(cells, 16):
            grid[r][c] = 0
            if _fill_order(grid)[1]:
                removed += 1
                if removed == blanks:
                    return grid
            else:
                grid[r][c] = solution[r][c]
    grid = [row[:] for row in solution]
    for r, c in rng.sample(cells, blanks):
        grid[r][c] = 0
    return grid


def _show(grid: Grid) -> str:
    return "/".join("".join(str(v) if v else "_" for v in row) for row in grid)


def _givens(prompt: str) -> Grid | None:
    m = _PROMPT_GRID.search(prompt)
    if m is None:
        return None
    return [[0 if ch == "_" else int(ch) for ch in row] for row in m.group(0).split("/")]


def parse_grid(text: str) -> Grid | None:
    """A 4x4 grid of digits 1-4 from "1234/3412/...", lines, spaces, commas or 16 digits; else None."""
    digits = _SEPARATORS.sub("", text)
    if len(digits) != 16 or any(ch not in "1234" for ch in digits):
        return None
    return [[int(ch) for ch in digits[i : i + 4]] for i in range(0, 16, 4)]


def is_valid(grid: Grid) -> bool:
    # the units through (0,0), (1,2), (2,1), (3,3) cover every row, column and box
    units = [cells for r, c in ((0, 0), (1, 2), (2, 1), (3, 3)) for _, cells in _units(r, c)]
    return all({grid[i][j] for i, j in cells} == _DIGITS for cells in units)


def _line(r: int, c: int, why: list[tuple[str, list[int]]], digit: int) -> str:
    reasons = " ".join(f"{name} {' '.join(map(str, ds))}" for name, ds in why)
    return f"r{r + 1}c{c + 1} {reasons} -> {digit}"


class SudokuTask(Task):
    name = "sudoku"
    description = "Solve a 4x4 sudoku (digits 1-4 in every row, column and 2x2 box)."

    def draw(self, rng: random.Random, difficulty: int) -> Draft:
        solution = _solution(rng)
        puzzle = _puzzle(rng, solution, rng.randint(*_BLANKS[difficulty]))
        return Draft(prompt=f"Solve the 4x4 sudoku: {_show(puzzle)}", answer=_show(solution))

    def check(self, problem: Problem, answer: str) -> bool:
        givens = _givens(problem.prompt)
        grid = parse_grid(clean_answer(answer))
        if givens is None or grid is None or not is_valid(grid):
            return False
        return all(givens[r][c] in (0, grid[r][c]) for r in range(4) for c in range(4))

    def answer_key(self, problem: Problem, answer: str) -> str:
        """The 16 digits, whatever the separators; "" if it is not a 4x4 grid of 1-4."""
        grid = parse_grid(clean_answer(answer))
        return "" if grid is None else "".join(str(v) for row in grid for v in row)

    def trace(self, problem: Problem, rng: random.Random, mistake: bool = False) -> str:
        puzzle = _givens(problem.prompt)
        solution = [[int(ch) for ch in row] for row in problem.answer.split("/")]
        order, done = _fill_order(puzzle)
        lines = [_line(r, c, why, d) for r, c, d, why in order]
        if not done:  # no single candidate left: write the rest from the solution
            filled = {(r, c) for r, c, _, _ in order}
            lines += [
                f"r{r + 1}c{c + 1} try -> {solution[r][c]}"
                for r in range(4)
                for c in range(4)
                if puzzle[r][c] == 0 and (r, c) not in filled
            ]
        if mistake and order:
            i = rng.randrange(len(order))
            r, c, digit, why = order[i]
            # forget the last digit of the explanation and pick it: the classic overlooked constraint
            *head, (unit, ds) = why
            wrong_why = head + ([(unit, ds[:-1])] if len(ds) > 1 else [])
            wrong = ds[-1]
            lines[i : i + 1] = [
                _line(r, c, wrong_why, wrong),
                f"wait, {unit} has {wrong}, let me recheck",
                lines[i],
            ]
        elif mistake:  # only guesses: guess wrong once
            cell, digit = lines[0].split(" try -> ")
            wrong = int(digit) % 4 + 1
            lines[0:0] = [f"{cell} try -> {wrong}", f"wait, {cell} is not {wrong}, let me recheck"]
        return "\n".join(lines)
