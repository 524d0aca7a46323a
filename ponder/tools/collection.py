"""The shipped search collection: short documents about a made-up world, generated deterministically.

Towns, the people who founded them, inventions and their inventors, mountains and their first
climbers, rivers: every name is invented from syllables, so no fact here is in any pretraining data
and a question about one (the `lookup` task) can only be answered by searching. Each document keeps
its structured `facts` next to its text, so questions and answers are read from the same file the
search tool indexes.

The wording keeps each question's words in one document: a town's text says "founded in", its
founder's says "established the settlement of"; an invention's says "invented", its inventor's
"built the first". So the question itself, used as a search query, ranks its document first.

Regenerate the shipped file with `python -m ponder.tools.collection`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ponder.assets import ASSETS

SHIPPED = ASSETS / "search" / "facts.jsonl"

_ONSETS = "b br c d dr f g gr h k l m n p r s st t th v w z qu sh".split()
_VOWELS = "a e i o u ae ai ei ou".split()
_CODAS = ["", "l", "n", "r", "s", "th", "m", "ck", "ll", "rn", "st", "nd"]
_TOWN_ENDS = "marsh ford wick holm stead by ton mere dale gate".split()
_FIRST_NAMES = (
    "Orla Bram Tessan Idris Maelis Corvin Ysolde Fenwick Odette Lorcan Sabeth Tamsin Ulric Wren Anselm "
    "Brisca Calder Dovey Elspeth Galen Hesper Ivo Jorun Kestrel Linnea Marek Nessa Osric Petra Quill"
).split()
_PROFESSIONS = (
    "clockmaker surveyor weaver engineer cartographer physician glassblower shipwright astronomer "
    "mason brewer printer botanist merchant miller"
).split()
_DEVICES = {
    "loom": "weaves patterned cloth",
    "pump": "lifts water from deep wells",
    "lantern": "lights streets at night",
    "compass": "finds north in fog",
    "kiln": "fires bricks in a single day",
    "press": "presses oil from seeds",
    "clock": "keeps time at sea",
    "sextant": "measures the height of stars",
    "mill": "grinds grain without wind",
    "bellows": "feeds air to a forge",
    "plough": "breaks stony ground",
    "hoist": "hauls stone up cliffs",
}
# Big enough that a model cannot learn the answers by heart in a fine-tuning run: with a world of a
# few hundred subjects the lookup questions repeat so often that a tiny model memorizes them instead of
# learning to copy the name into its query (held-out lookups stayed at 24% while train ones reached 89%).
_COUNTS = {"regions": 12, "lakes": 12, "rivers": 96, "towns": 360, "inventions": 210, "mountains": 120}


class _Names:
    """Unique made-up words: one world never uses a name twice, so every name points to one document."""

    def __init__(self, rng: random.Random):
        self.rng, self.used = rng, set()

    def word(self, syllables: int) -> str:
        while True:
            parts = [self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) for _ in range(syllables)]
            text = ("".join(parts) + self.rng.choice(_CODAS)).capitalize()
            if text not in self.used and len(text) >= 4:
                self.used.add(text)
                return text

    def town(self) -> str:
        while True:
            text = self.word(2) + self.rng.choice(_TOWN_ENDS)
            if text not in self.used:
                self.used.add(text)
                return text

    def person(self) -> str:
        return f"{self.rng.choice(_FIRST_NAMES)} {self.word(self.rng.choice((2, 3)))}"


def _person(rng: random.Random, names: _Names, born: int, towns: list[dict], role: dict) -> dict:
    """A person born in `born`, in a town that existed by then where one did."""
    older = [t for t in towns if t["founded"] < born]
    place = rng.choice(older)["name"] if older else None
    return {"kind": "person", "name": names.person(), "born": born, "birthplace": place, **role}


def build(seed: int = 0) -> list[dict]:
    """The facts of the world, one dict per document subject (`kind` says which)."""
    rng = random.Random(seed)
    names = _Names(rng)
    regions = [f"{names.word(2)} Province" for _ in range(_COUNTS["regions"])]
    lakes = [f"Lake {names.word(2)}" for _ in range(_COUNTS["lakes"])]
    rivers = [
        {"kind": "river", "name": names.word(2), "region": regions[i % len(regions)]}
        | {"length_km": rng.randint(40, 900), "flows_into": rng.choice(lakes)}
        for i in range(_COUNTS["rivers"])
    ]
    towns = []
    for _ in range(_COUNTS["towns"]):
        river = rng.choice(rivers)
        towns.append(
            {"kind": "town", "name": names.town(), "region": river["region"], "river": river["name"]}
            | {"founded": rng.randint(1150, 1880), "population": rng.randint(200, 95000)}
        )
    people = []
    for town in towns:
        founder = _person(rng, names, town["founded"] - rng.randint(24, 62), towns, {"founded_town": town["name"]})
        town["founder"] = founder["name"]
        people.append(founder)
    inventions = []
    for _ in range(_COUNTS["inventions"]):
        year = rng.randint(1300, 1895)
        device = rng.choice(sorted(_DEVICES))
        invention = {"kind": "invention", "name": f"{names.word(2)} {device}", "year": year, "use": _DEVICES[device]}
        inventor = _person(rng, names, year - rng.randint(22, 60), towns, {"invented": invention["name"]})
        invention |= {"inventor": inventor["name"], "weight_kg": rng.randint(2, 900)}
        inventions.append(invention)
        people.append(inventor)
    mountains = []
    for _ in range(_COUNTS["mountains"]):
        year = rng.randint(1500, 1899)
        mountain = {"kind": "mountain", "name": f"Mount {names.word(2)}", "region": rng.choice(regions)}
        climber = _person(rng, names, year - rng.randint(20, 45), towns, {"climbed": mountain["name"]})
        mountain |= {"height_m": rng.randint(800, 6200), "first_climbed": year, "climber": climber["name"]}
        mountains.append(mountain)
        people.append(climber)
    for person in people:
        person["profession"] = rng.choice(_PROFESSIONS)
    return rivers + towns + people + inventions + mountains


def _text(f: dict, by_name: dict[str, dict]) -> str:
    kind = f["kind"]
    if kind == "river":
        where = f"The {f['name']} is a river in {f['region']}"
        return f"{where}, {f['length_km']} kilometres long. It flows into {f['flows_into']}."
    if kind == "town":
        return (
            f"{f['name']} is a town in {f['region']} on the river {f['river']}. It was founded in "
            f"{f['founded']} by {f['founder']} and has a population of {f['population']}."
        )
    if kind == "invention":
        return (
            f"The {f['name']} was invented by {f['inventor']} in {f['year']}. It {f['use']} "
            f"and weighs {f['weight_kg']} kilograms."
        )
    if kind == "mountain":
        return (
            f"{f['name']} is a mountain in {f['region']}, "
            f"{f['height_m']} metres high. It was first climbed in {f['first_climbed']} by {f['climber']}."
        )
    return _person_text(f, by_name)


def _person_text(f: dict, by_name: dict[str, dict]) -> str:
    place = f["birthplace"] or "a farmstead far from any town"
    surname = f["name"].split()[-1]
    article = "an" if f["profession"][0] in "aeiou" else "a"
    text = f"{f['name']} was {article} {f['profession']} born in {f['born']} in {place}."
    if "founded_town" in f:
        town = by_name[f["founded_town"]]
        return f"{text} {surname} established the settlement of {town['name']} in {town['founded']}."
    if "invented" in f:
        return f"{text} {surname} built the first {f['invented']} in {by_name[f['invented']]['year']}."
    mountain = by_name[f["climbed"]]
    return f"{text} {surname} reached the top of {mountain['name']} in {mountain['first_climbed']}."


def documents(seed: int = 0) -> list[dict]:
    """The collection as search documents: {"id", "title", "text", "facts"}."""
    facts = build(seed)
    by_name = {f["name"]: f for f in facts}
    return [
        {"id": f"{f['kind']}-{f['name'].lower().replace(' ', '-')}", "title": f["name"], "text": _text(f, by_name)}
        | {"facts": f}
        for f in facts
    ]


def write(path: Path = SHIPPED, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(doc, ensure_ascii=False, sort_keys=True) for doc in documents(seed)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load(path: Path = SHIPPED) -> list[dict]:
    """The documents of a collection file, in order."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


if __name__ == "__main__":
    print(f"wrote {len(documents())} documents to {write()}")
