"""The terminal side of every command: one rich Console, progress bars and the result tables.

Commands and scripts print through `console` so that output, progress and errors interleave in
order; tables are built here so that the demo and the command it summarises show the same columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()


def progress_bar() -> Progress:
    """A bar with a description, count, elapsed time and a free `info` field (loss, tokens/s, ...)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], left: int = 0) -> Table:
    """A table of pre-formatted cells: the first `left` columns are labels, the rest right-aligned numbers."""
    out = Table(title=title)
    for i, column in enumerate(columns):
        out.add_column(column, justify="left" if i < left else "right")
    for row in rows:
        out.add_row(*row)
    return out


def eval_table(title: str, reports: dict) -> Table:
    """Columns per model (e.g. before / after RL): accuracy, tokens per answer, and the share of answers
    that worked it out (non-empty thinking); one row per task."""
    columns = ["task"]
    for name in reports:
        columns += [f"{name} acc", f"{name} tok/ans", f"{name} thinks"]
    rows = []
    for task in sorted({t for r in reports.values() for t in r.by_task}):
        cells = [task]
        for r in reports.values():
            s = r.by_task.get(task)
            cells += [f"{s.accuracy:.1%}", f"{s.tokens_per_answer:.0f}", f"{s.thinking_share:.0%}"] if s else ["-"] * 3
        rows.append(cells)
    overall = ["[bold]overall"]
    for r in reports.values():
        overall += [f"[bold]{r.overall:.1%}", f"{r.tokens / max(1, r.problems):.0f}", f"{r.thinking_share:.0%}"]
    return table(title, columns, [*rows, overall], left=1)


def before_after_table(before: dict, after: dict) -> Table:
    """Held-out greedy accuracy per task from the first and last eval records of an RL run."""
    rows = [(t, before["eval_by_task"][t], after["eval_by_task"].get(t, 0.0)) for t in before["eval_by_task"]]
    rows.append(("[bold]overall", before["eval_accuracy"], after["eval_accuracy"]))
    return table(
        f"held-out greedy accuracy: before RL and after {after['step']} steps",
        ("task", "before", "after", "change"),
        [(task, f"{b:.1%}", f"{a:.1%}", f"{100 * (a - b):+.1f} pts") for task, b, a in rows],
        left=1,
    )


def memory_table(estimate) -> Table:
    """A run's memory estimate (`ponder.train.memory.MemoryEstimate`): each part, how it was counted,
    the peak and, when known, the device's free memory."""
    gib = 2**30
    rows = [(name, how, f"{size / gib:.2f}") for name, size, how in estimate.parts]
    rows.append(("[bold]peak", "fp32 states + the larger of training, rollouts", f"[bold]{estimate.peak / gib:.2f}"))
    if estimate.device is not None:
        rows.append(("device free", estimate.device.label, f"{estimate.device.free / gib:.2f}"))
    return table("memory estimate (GiB)", ("part", "how", "GiB"), rows, left=2)


def print_memory_estimate(estimate) -> None:
    """The estimate's table before a run starts, and a warning when it exceeds the device's free memory."""
    if estimate is None:
        return
    console.print(memory_table(estimate))
    if estimate.warning():
        console.print(f"[yellow]warning:[/] {estimate.warning()}")


def points_table(points: list[dict], where: str) -> Table:
    """The scaling sweep's points: accuracy and tokens per problem at each compute level."""
    return table(
        f"accuracy against test-time compute, {where}",
        ("strategy", "level", "accuracy", "tokens/problem"),
        [(p["strategy"], f"{p['level']:g}", f"{p['accuracy']:.1%}", f"{p['tokens_per_problem']:.0f}") for p in points],
    )
