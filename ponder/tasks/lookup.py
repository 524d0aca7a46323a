"""Lookup: questions about a made-up world, answerable only by searching its documents.

"In what year was the town of Vellmarsh founded?" The towns, people, inventions, mountains and rivers
are invented (`ponder.tools.collection`), so no pretrained model knows the answer: accuracy with the
`search` tool minus accuracy without it is the value of searching.

Difficulty: 1: a year, one document; 2: another number (population, length, height, weight, first
ascent), one document; 3: a name (river, founder, inventor, climber, birthplace, lake), one document;
4: two hops ("In what year was the founder of Vellmarsh born?": the town's document names the
founder, whose own document has the year); 5: two lookups and a subtraction (an age, or the years
between two foundings).

The trace is the tool-using solution: per hop a search call in the tool-call markup, the tool's real
response over the shipped collection (default `ToolConfig`), and a line reading off the fact; then
any arithmetic and the answer. With `mistake=True` the last fact or sum is misread, then corrected.
"""

from __future__ import annotations

import functools
import random
import re

from ponder.tasks.answers import canonical_number, clean_answer, parse_number
from ponder.tasks.base import Draft, Problem, Task

# subject kind, question, answer field, how the document's fact reads
_FACTS = {
    1: [
        ("town", "In what year was the town of {name} founded?", "founded", "{name} was founded in {value}"),
        ("person", "In what year was {name} born?", "born", "{name} was born in {value}"),
        ("invention", "In what year was the {name} invented?", "year", "the {name} was invented in {value}"),
    ],
    2: [
        ("town", "What is the population of {name}?", "population", "{name} has a population of {value}"),
        ("river", "How many kilometres long is the river {name}?", "length_km", "the {name} is {value} km long"),
        ("mountain", "How many metres high is {name}?", "height_m", "{name} is {value} metres high"),
        ("invention", "How many kilograms does the {name} weigh?", "weight_kg", "the {name} weighs {value} kg"),
        ("mountain", "In what year was {name} first climbed?", "first_climbed", "{name} was first climbed in {value}"),
    ],
    3: [
        ("town", "On which river does {name} lie?", "river", "{name} lies on the river {value}"),
        ("town", "Who founded {name}?", "founder", "{name} was founded by {value}"),
        ("invention", "Who invented the {name}?", "inventor", "the {name} was invented by {value}"),
        ("mountain", "Who first climbed {name}?", "climber", "{name} was first climbed by {value}"),
        ("person", "In which town was {name} born?", "birthplace", "{name} was born in {value}"),
        ("river", "Into which lake does the river {name} flow?", "flows_into", "the {name} flows into {value}"),
    ],
}
# subject kind, question, field naming the next subject, its field asked, how each hop reads
_CHAINS = [
    ("town", "In what year was the founder of {name} born?", "founder", "born"),
    ("town", "How many kilometres long is the river that {name} lies on?", "river", "length_km"),
    ("invention", "In what year was the inventor of the {name} born?", "inventor", "born"),
    ("person", "In what year was the town where {name} was born founded?", "birthplace", "founded"),
]
_HOP_LINES = {
    "founder": "{name} was founded by {value}",
    "river": "{name} lies on the river {value}",
    "inventor": "the {name} was invented by {value}",
    "birthplace": "{name} was born in {value}",
}
_SECOND_LINES = {"born": _FACTS[1][1][3], "length_km": _FACTS[2][1][3], "founded": _FACTS[1][0][3]}
# subject kind, question, field naming the person, the subject's year field
_AGES = [
    ("town", "How old was the founder of {name} when the town was founded?", "founder", "founded"),
    ("invention", "How old was the inventor of the {name} when it was invented?", "inventor", "year"),
]
_QUERIES = {
    "town": "{name} town",
    "person": "{name} born",
    "invention": "{name} invented",
    "mountain": "{name} mountain",
    "river": "{name} river",
}
_ANSWER_KINDS = {"river": "river", "founder": "person", "inventor": "person", "climber": "person"}
_ANSWER_KINDS |= {"birthplace": "town", "flows_into": "lake"}
_UNITS = re.compile(
    r"(?:years?(?:\s+old)?|kilograms?|kg|metres?|meters?|m|kilometres?|kilometers?|km|people|inhabitants|ad|ce)?"
)
_NUMBER_HEAD = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


@functools.lru_cache(maxsize=1)
def world() -> dict:
    """The shipped collection's facts, by kind and by name, each with its document id as "doc"."""
    from ponder.tools.collection import load

    by_kind: dict[str, list[dict]] = {}
    for doc in load():
        by_kind.setdefault(doc["facts"]["kind"], []).append(dict(doc["facts"], doc=doc["id"]))
    lakes = sorted({r["flows_into"] for r in by_kind["river"]})
    by_name = {f["name"]: f for facts in by_kind.values() for f in facts}
    return {"kind": by_kind | {"lake": [{"name": lake} for lake in lakes]}, "name": by_name}


def _hop(subject: dict, line: str, value: object) -> list[str]:
    """One search: [query, id of the document that answers it, the line reading off the fact]."""
    query = _QUERIES[subject["kind"]].format(name=subject["name"])
    return [query, subject["doc"], line.format(name=subject["name"], value=value)]


def _pick(rng: random.Random, kind: str, needs: str | None = None) -> dict:
    return rng.choice([f for f in world()["kind"][kind] if needs is None or f.get(needs)])


def _single(rng: random.Random, difficulty: int) -> tuple[str, str, list, str | None, str]:
    kind, question, field, line = rng.choice(_FACTS[difficulty])
    subject = _pick(rng, kind, field)
    value = subject[field]
    answer_kind = _ANSWER_KINDS.get(field, "number")
    return question.format(name=subject["name"]), str(value), [_hop(subject, line, value)], None, answer_kind


def _chain(rng: random.Random) -> tuple[str, str, list, str | None, str]:
    kind, question, link, field = rng.choice(_CHAINS)
    subject = _pick(rng, kind, link)
    other = world()["name"][subject[link]]
    steps = [_hop(subject, _HOP_LINES[link], other["name"]), _hop(other, _SECOND_LINES[field], other[field])]
    return question.format(name=subject["name"]), str(other[field]), steps, None, "number"


def _difference(rng: random.Random) -> tuple[str, str, list, str | None, str]:
    if rng.random() < 0.4:  # years between two foundings
        first, second = rng.sample(world()["kind"]["town"], 2)
        line = _FACTS[1][0][3]
        steps = [_hop(first, line, first["founded"]), _hop(second, line, second["founded"])]
        late, early = sorted((first["founded"], second["founded"]), reverse=True)
        question = f"How many years apart were the towns of {first['name']} and {second['name']} founded?"
        return question, str(late - early), steps, f"{late} - {early} = {{value}}", "number"
    kind, question, link, year = rng.choice(_AGES)
    subject = _pick(rng, kind)
    person = world()["name"][subject[link]]
    first_line = _HOP_LINES[link].replace("{value}", f"{{value}} in {subject[year]}")
    steps = [_hop(subject, first_line, person["name"]), _hop(person, _SECOND_LINES["born"], person["born"])]
    age = subject[year] - person["born"]
    return (
        question.format(name=subject["name"]),
        str(age),
        steps,
        f"{subject[year]} - {person['born']} = {{value}}",
        "number",
    )


def _normal(text: str) -> str:
    text = " ".join(clean_answer(text).lower().replace(",", " ").split())
    text = text.removeprefix("the ").removeprefix("river ").removesuffix(" river")
    return text


@functools.lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    """Other accepted spellings of names, normalized, to the full name: a person's surname (unique in
    the world), a lake without "Lake"."""
    kinds = world()["kind"]
    people = {_normal(f["name"]).split()[-1]: _normal(f["name"]) for f in kinds["person"]}
    lakes = {_normal(f["name"]).removeprefix("lake "): _normal(f["name"]) for f in kinds["lake"]}
    return people | lakes


class LookupTask(Task):
    name = "lookup"
    description = "Answer a question about a made-up world by searching its documents (the search tool)."

    def draw(self, rng: random.Random, difficulty: int) -> Draft:
        if difficulty <= 3:
            question, answer, steps, sum_line, answer_kind = _single(rng, difficulty)
        elif difficulty == 4:
            question, answer, steps, sum_line, answer_kind = _chain(rng)
        else:
            question, answer, steps, sum_line, answer_kind = _difference(rng)
        meta = {
            "tools": ["search"],
            "doc_id": steps[0][1],
            "docs": [step[1] for step in steps],
            "steps": steps,
            "sum": sum_line,
            "answer_kind": answer_kind,
        }
        return Draft(prompt=question, answer=answer, meta=meta)

    def check(self, problem: Problem, answer: str) -> bool:
        key = self.answer_key(problem, answer)
        return key != "" and key == self.answer_key(problem, problem.answer)

    def answer_key(self, problem: Problem, answer: str) -> str:
        """Numbers canonical, units allowed ("54 years old" -> "54"); a name in any accepted spelling
        ("Ostrevel", "Bram Ostrevel", "the Orrin") -> the full name, read from the world, never from the
        reference; other text normalized; "" for no number where one is asked."""
        kind = problem.meta.get("answer_kind", "number")
        text = clean_answer(answer)
        if kind == "number":
            head = _NUMBER_HEAD.match(text)
            if head is None or not _UNITS.fullmatch(text[head.end() :].strip().lower().rstrip(".")):
                return ""
            value = parse_number(head.group(0))
            return "" if value is None else canonical_number(value)
        normal = _normal(text)
        return _aliases().get(normal, normal)

    def trace(self, problem: Problem, rng: random.Random, mistake: bool = False) -> str:
        from ponder.tools import SearchTool, format_observation, render_call

        tool = _search_tool()
        lines = []
        for query, _, line in problem.meta["steps"]:
            lines += [render_call(SearchTool.name, {"query": query}), format_observation(tool.run({"query": query}))]
            lines.append(line)
        if problem.meta["sum"]:
            lines.append(problem.meta["sum"].format(value=problem.answer))
        if mistake:
            right = lines.pop()
            wrong = _wrong(problem, rng)
            lines += [wrong.join(right.rsplit(problem.answer, 1)), "wait, I misread that, let me recheck", right]
        return "\n".join(lines + [problem.answer])


def _wrong(problem: Problem, rng: random.Random) -> str:
    """A plausible wrong value: a near number, or another name of the same kind."""
    kind = problem.meta["answer_kind"]
    if kind == "number":
        value = int(problem.answer)
        options = [value + d for d in (-10, -2, -1, 1, 2, 10) if value + d >= 0]
        return str(rng.choice(options))
    names = [f["name"] for f in world()["kind"][kind] if f["name"] != problem.answer]
    return rng.choice(names)


@functools.lru_cache(maxsize=1)
def _search_tool():
    from ponder.tools import SearchTool

    return SearchTool()
