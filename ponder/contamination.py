"""Contamination check: do eval prompts appear in the training corpora?

    report = check(eval_prompts_by_task, training_texts, n=8)
    report.raise_if_above(threshold=0.01)  # ContaminationError names the tasks and example prompts

The unit is the word n-gram (lowercased, whitespace-split, surrounding punctuation stripped), n = 8 by
default. Why not shorter: ponder's procedural prompts share templates ("Make N from", "How many x are
in"), and templates are not contamination; an 8-gram of these prompts always includes several
problem-specific numbers or words. Most procedural prompts are shorter than 8 words; for them the unit
is the *whole prompt*: a prompt of L < n words is contaminated only if it equals a whole training text
or a whole line of one. (Matching it anywhere inside a text would be wrong: "Make 7 from 3 4." is a
different problem from "Make 7 from 3 4 8.", yet its words are a prefix of it.)
Per prompt, overlap = share of its n-grams found in training; a prompt counts as
contaminated when overlap >= `flag_at` (default 0.5). The report gives, per task, the share of
contaminated prompts and the mean overlap; `raise_if_above` fails when any task's share of
contaminated prompts exceeds the threshold.

Built-in tasks assign a prompt to train or eval by a hash of its text, so exact duplicates cannot
cross; the check exists for user JSONL corpora, reasoning-gym data and mistakes in splitting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ponder.errors import PonderError
from ponder.io import jsonl_objects

PUNCT = ".,;:!?\"'()[]{}"


class ContaminationError(PonderError):
    """Eval prompts overlap the training data above the allowed threshold."""


def words(text: str) -> list[str]:
    return [w for w in (t.strip(PUNCT) for t in text.lower().split()) if w]


def grams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    n = min(n, len(tokens))
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)} if n else set()


@dataclass
class TaskOverlap:
    task: str
    prompts: int = 0
    contaminated: int = 0
    overlap_sum: float = 0.0
    examples: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return self.contaminated / self.prompts if self.prompts else 0.0

    @property
    def mean_overlap(self) -> float:
        return self.overlap_sum / self.prompts if self.prompts else 0.0


@dataclass
class ContaminationReport:
    n: int
    training_texts: int
    by_task: dict[str, TaskOverlap]

    def to_json(self) -> dict:
        return {
            "n": self.n,
            "training_texts": self.training_texts,
            "by_task": {
                t: {"prompts": o.prompts, "contaminated": o.contaminated, "fraction": o.fraction,
                    "mean_overlap": o.mean_overlap, "examples": o.examples}
                for t, o in self.by_task.items()
            },
        }  # fmt: skip

    def failing(self, threshold: float) -> list[TaskOverlap]:
        return [o for o in self.by_task.values() if o.fraction > threshold]

    def raise_if_above(self, threshold: float) -> None:
        bad = self.failing(threshold)
        if bad:
            lines = [
                f"{o.task}: {o.contaminated}/{o.prompts} eval prompts ({o.fraction:.1%}) found in training, "
                f"e.g. {o.examples[:2]}"
                for o in bad
            ]
            raise ContaminationError(
                f"CONTAMINATED: eval prompts overlap the training corpora above {threshold:.1%} "
                f"({self.n}-gram check):\n  " + "\n  ".join(lines) + "\nRemove those prompts from training "
                "(or from the eval set) and rerun."
            )


def check(
    eval_prompts: dict[str, list[str]], training: Iterable[str], n: int = 8, flag_at: float = 0.5
) -> ContaminationReport:
    """Overlap of each task's eval prompts with the training texts (see the module docstring)."""
    if n < 1:
        raise PonderError(f"n-gram size must be >= 1, got {n}")
    prompt_words = {t: [words(p) for p in ps] for t, ps in eval_prompts.items()}
    ngrams: set[tuple[str, ...]] = set()  # every n-gram of every training text
    lines: set[tuple[str, ...]] = set()  # every whole line of every training text
    count = 0
    for text in training:
        count += 1
        tokens = words(text)
        ngrams.update(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        lines.add(tuple(tokens))
        lines.update(tuple(words(line)) for line in text.splitlines())
    by_task = {}
    for task, ws in prompt_words.items():
        o = TaskOverlap(task)
        for prompt, w in zip(eval_prompts[task], ws, strict=True):
            if len(w) >= n:
                g = grams(w, n)
                share = sum(x in ngrams for x in g) / len(g)
            else:
                share = float(tuple(w) in lines)
            o.prompts += 1
            o.overlap_sum += share
            if share >= flag_at:
                o.contaminated += 1
                if len(o.examples) < 5:
                    o.examples.append(prompt)
        by_task[task] = o
    return ContaminationReport(n, count, by_task)


def jsonl_texts(path: str | Path) -> Iterable[str]:
    """The text fields of a user JSONL corpus: prompt, completion / answer, text, messages' contents."""
    path = Path(path)
    if not path.is_file():
        raise PonderError(f"training corpus {path} does not exist")
    for _, obj in jsonl_objects(path, PonderError):
        if isinstance(obj, str):
            yield obj
            continue
        parts = [str(obj[k]) for k in ("prompt", "text", "completion") if k in obj]
        parts += [str(m.get("content", "")) for m in obj.get("messages", []) if isinstance(m, dict)]
        yield "\n".join(parts)


def mix_training_prompts(spec: str, examples: int, seed: int = 0) -> Iterable[str]:
    """The user messages of the first `examples` corpus examples of a mix (train split)."""
    from ponder.tasks.mix import TaskMix

    mix = TaskMix(spec)
    for i in range(examples):
        yield mix.problem("train", i, seed).prompt
