"""Task registry: built-in procedural families, the reasoning-gym adapter and user JSONL files.

get_task("countdown")            a built-in family
get_task("gym:basic_arithmetic")  any reasoning-gym dataset, scored by its own `score_answer`
get_task("jsonl:path/to.jsonl")   user problems {"prompt", "answer"}, scored with math-verify
get_task("pref:summary")          open-ended prompts scored by a declared preference rule (ponder.rlhf)
"""

from __future__ import annotations

from ponder.errors import PonderError
from ponder.tasks.arithmetic import ArithmeticTask
from ponder.tasks.base import Draft, Problem, Task, split_of
from ponder.tasks.countdown import CountdownTask
from ponder.tasks.decimals import DecimalsTask
from ponder.tasks.letters import LettersTask
from ponder.tasks.lookup import LookupTask
from ponder.tasks.sudoku import SudokuTask

BUILTIN: dict[str, type[Task]] = {
    cls.name: cls for cls in (ArithmeticTask, CountdownTask, SudokuTask, LettersTask, DecimalsTask, LookupTask)
}


def get_task(name: str) -> Task:
    """A task by name. Unknown names raise an error that lists the known ones."""
    if name.startswith("gym:"):
        from ponder.tasks.gym import GymTask

        return GymTask(name[len("gym:") :])
    if name.startswith("jsonl:"):
        from ponder.tasks.jsonl import JsonlTask

        return JsonlTask(name[len("jsonl:") :])
    if name.startswith("pref:"):
        from ponder.rlhf.synthetic import PreferenceTask

        return PreferenceTask(name[len("pref:") :])
    if name not in BUILTIN:
        known = ", ".join(sorted(BUILTIN))
        raise PonderError(
            f"unknown task {name!r}. Known tasks: {known}; or 'gym:<reasoning-gym dataset>' "
            "or 'jsonl:<path to a .jsonl file with prompt/answer>' or 'pref:<rule>' (summary, keyword)."
        )
    return BUILTIN[name]()


__all__ = ["BUILTIN", "Draft", "Problem", "Task", "get_task", "split_of"]
