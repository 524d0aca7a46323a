"""Open-ended prompts with a declared preference rule: preferences without a verifier, and a gold measure.

    task = get_task("pref:summary")      # prompts such as "Describe the red candle."
    task.score(problem, completion)      # 1 if the answer follows the rule: the gold measure
    synthetic_pairs("summary", "train", 2000, seed=0)   # (prompt, chosen, rejected) by the rule

The prompts have no right answer; a *rule* declares which of two answers is preferred, so preference
pairs, a reward model trained on them, and a gold measure of what RL against that reward model did
all come from one place. Rules:

    summary   prefers answers that END with one summary sentence naming the prompt's subject
              ("..., In short, the red candle is warm."): a summary in the middle, or one about another
              thing, does not count
    keyword   prefers answers that use the word the prompt asks for ("... using the word 'calm'.")

Length is not a shortcut: a chosen answer has 1-3 sentences before its summary while a rejected one
has 1-5, so the chosen side is the shorter one in a large share of pairs (the reward model's
held-out accuracy is reported on that stratum separately). A third of the rejected answers are
near misses (a summary not at the end, or naming another thing; for `keyword`, the keyword's
neighbour in the list), so a surface pattern alone does not separate the pairs.

Each task problem comes with a reference answer drawn from the *unaligned* distribution (the rule
followed in `base_rate` of answers): `ponder sft --tasks pref:summary` teaches a policy to write
such answers, and RL against a reward model has to discover the preferred ones.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from ponder.errors import PonderError
from ponder.tasks.base import Draft, Problem, Task, _rng, split_of

SUBJECTS = (
    "umbrella", "candle", "engine", "butter", "ocean", "duck", "gift", "box", "kettle", "lamp",
    "river", "garden", "berry", "coat", "drum", "boat", "chair", "clock", "stone", "bell",
)  # fmt: skip
MODIFIERS = ("red", "blue", "green", "old", "small", "big", "quiet", "bright", "tall", "round")
ADJECTIVES = ("warm", "soft", "heavy", "light", "strong", "cheap", "new", "clean", "loud", "calm")
PLACES = ("by the door", "on the shelf", "in the garden", "near the river", "under the table", "in the box")
TIMES = ("every day", "at night", "in the morning", "after rain")
TEMPLATES = ("Describe the {m} {s}.", "Tell me about the {m} {s}.", "Write about the {m} {s}.")
SUMMARY = "In short,"
SUBJECT_RE = re.compile(r"the (\w+) (\w+)")
KEYWORD_RE = re.compile(r"using the word '(\w+)'")


@dataclass(frozen=True)
class Subject:
    modifier: str
    noun: str

    @property
    def name(self) -> str:
        return f"{self.modifier} {self.noun}"


def subject_of(prompt: str) -> Subject | None:
    found = SUBJECT_RE.search(prompt)
    return Subject(*found.groups()) if found else None


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


# ---------------------------------------------------------------------------------------------------
# answers


def content_sentences(rng: random.Random, subject: Subject, count: int, avoid: str = "") -> list[str]:
    """`count` distinct plain sentences about `subject` (never a summary; never the word `avoid`)."""
    adjectives = [a for a in ADJECTIVES if a != avoid]
    pool = [
        lambda: f"The {subject.name} is {rng.choice(adjectives)}.",
        lambda: f"It is {rng.choice(adjectives)}.",
        lambda: f"It sits {rng.choice(PLACES)}.",
        lambda: f"You can see it {rng.choice(TIMES)}.",
        lambda: f"It was made {rng.choice(('long ago', 'last year', 'by hand', 'in a shop'))}.",
    ]
    out: list[str] = []
    for _ in range(100):
        if len(out) == count:
            break
        line = rng.choice(pool)()
        if line not in out:
            out.append(line)
    return out


def summary_sentence(rng: random.Random, subject: Subject) -> str:
    return f"{SUMMARY} the {subject.name} is {rng.choice(ADJECTIVES)}."


def other_subject(rng: random.Random, subject: Subject) -> Subject:
    while True:
        other = Subject(rng.choice(MODIFIERS), rng.choice(SUBJECTS))
        if other != subject:
            return other


# ---------------------------------------------------------------------------------------------------
# rules: prompt, unaligned answer, preference pair, gold check


class Rule:
    """A declared preference: how its prompts read, and which answers it prefers."""

    name = ""
    description = ""

    def prompt(self, rng: random.Random) -> str:
        return rng.choice(TEMPLATES).format(m=rng.choice(MODIFIERS), s=rng.choice(SUBJECTS))

    def follows(self, prompt: str, answer: str) -> bool:
        raise NotImplementedError

    def answer(self, rng: random.Random, prompt: str, follow: bool) -> str:
        """An answer that follows the rule (or not), of random length."""
        raise NotImplementedError

    def pair(self, rng: random.Random, prompt: str) -> tuple[str, str]:
        """(chosen, rejected) for one prompt."""
        raise NotImplementedError


class SummaryRule(Rule):
    name = "summary"
    description = "prefers answers ending in one summary sentence ('In short, the <subject> ...') naming the subject"

    def follows(self, prompt: str, answer: str) -> bool:
        subject = subject_of(prompt)
        lines = sentences(answer)
        if subject is None or len(lines) < 2:
            return False
        *body, last = lines
        named = last.startswith(f"{SUMMARY} the {subject.name} ")
        return named and not any(line.startswith(SUMMARY) for line in body)

    def answer(self, rng: random.Random, prompt: str, follow: bool) -> str:
        subject = subject_of(prompt)
        if follow:
            return " ".join([*content_sentences(rng, subject, rng.randint(1, 3)), summary_sentence(rng, subject)])
        return " ".join(content_sentences(rng, subject, rng.randint(1, 5)))

    def pair(self, rng: random.Random, prompt: str) -> tuple[str, str]:
        subject = subject_of(prompt)
        chosen = self.answer(rng, prompt, follow=True)
        kind = rng.random()
        if kind < 2 / 3:  # no summary at all, 1-5 sentences: often longer than the chosen one
            rejected = self.answer(rng, prompt, follow=False)
        elif kind < 5 / 6:  # a summary, but not at the end
            body = content_sentences(rng, subject, rng.randint(2, 4))
            rejected = " ".join([body[0], summary_sentence(rng, subject), *body[1:]])
        else:  # a summary at the end, about something else
            body = content_sentences(rng, subject, rng.randint(1, 3))
            rejected = " ".join([*body, summary_sentence(rng, other_subject(rng, subject))])
        return chosen, rejected


class KeywordRule(Rule):
    name = "keyword"
    description = "prefers answers that use the word the prompt asks for"

    def prompt(self, rng: random.Random) -> str:
        return f"{super().prompt(rng)[:-1]}, using the word '{rng.choice(ADJECTIVES)}'."

    def follows(self, prompt: str, answer: str) -> bool:
        found = KEYWORD_RE.search(prompt)
        return bool(found) and re.search(rf"\b{found.group(1)}\b", answer) is not None

    def answer(self, rng: random.Random, prompt: str, follow: bool) -> str:
        subject, keyword = subject_of(prompt), KEYWORD_RE.search(prompt).group(1)
        lines = content_sentences(rng, subject, rng.randint(1, 4), avoid=keyword)
        if follow:
            lines.insert(rng.randint(0, len(lines)), f"It is {keyword}.")
        return " ".join(lines)

    def pair(self, rng: random.Random, prompt: str) -> tuple[str, str]:
        return self.answer(rng, prompt, follow=True), self.answer(rng, prompt, follow=False)


RULES: dict[str, Rule] = {r.name: r for r in (SummaryRule(), KeywordRule())}


def get_rule(name: str) -> Rule:
    if name not in RULES:
        raise PonderError(f"unknown preference rule {name!r}; known rules: {', '.join(sorted(RULES))}")
    return RULES[name]


def synthetic_pairs(rule: str, split: str | None, count: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """`count` (prompt, chosen, rejected) triples on prompts of `split` (None: either; the split is the
    prompt's hash, as for tasks, so train and held-out pairs never share a prompt). Deterministic."""
    r = get_rule(rule)
    out = []
    for i in range(count):
        for attempt in range(1000):
            rng = _rng("pairs", rule, seed, split, i, attempt)
            prompt = r.prompt(rng)
            if split is None or split_of(prompt) == split:
                out.append((prompt, *r.pair(rng, prompt)))
                break
    return out


# ---------------------------------------------------------------------------------------------------
# the task: RL prompts, the gold measure, the SFT corpus


class PreferenceTask(Task):
    """`pref:<rule>`: a rule's prompts as a task. Its `check` is the rule (the gold measure); its
    reference answer is an unaligned one (the rule followed in `base_rate` of them), the SFT target."""

    difficulties = (1,)
    base_rate = 0.3

    def __init__(self, rule: str):
        self.rule = get_rule(rule)
        self.name = f"pref:{rule}"
        self.description = self.rule.description

    def draw(self, rng: random.Random, difficulty: int) -> Draft:
        prompt = self.rule.prompt(rng)
        follow = rng.random() < self.base_rate
        return Draft(prompt, self.rule.answer(rng, prompt, follow), {"follows_rule": follow})

    def check(self, problem: Problem, answer: str) -> bool:
        return self.rule.follows(problem.prompt, answer)

    def trace(self, problem: Problem, rng: random.Random, mistake: bool = False) -> str:
        return ""  # open-ended prompts are answered directly: empty thinking
