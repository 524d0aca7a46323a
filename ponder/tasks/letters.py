"""Letter counting: "How many r are in strawberry?" -> 3.

Difficulty: 1: words of 3-5 letters; 2: 6-7 letters; 3: 8 or more; 4: two-word phrases; 5: made-up
strings of 12-18 letters. The asked letter is usually in the text (a count of 0 is rare, about 1 in 20).
The trace spells the text letter by letter, tagging each match with the running count, then gives the
total: "s t r=1 a w b e r=2 r=3 y" then "3".

An answer is a count, as a number or a word up to twenty, optionally after "There are" and before
"times" or the letter itself ("3", "three", "There are 3", "3 times", "3 r's"). Naming another letter
("3 z's") answers another question and is wrong. Votes and the verifier read an answer the same way
(`_read`), so every accepted form of a count shares one key, the count.
"""

from __future__ import annotations

import random
import re
import string

from ponder.tasks.answers import clean_answer, parse_int
from ponder.tasks.base import Draft, Problem, Task

WORDS = tuple(
    dict.fromkeys(
        """
    cat dog sun hat cup map pen box egg bus car fan ant bee cow owl pig fox bed bag bat bell book bird
    boat cake coat door duck fish frog game gift goat hand home kite lamp leaf lion milk moon nest note
    rain ring road rock rose salt sand seed ship shoe sock star tree wind wolf yarn apple bread chair
    cloud dance dream earth field flame glass grape green heart honey horse house juice knife lemon
    light money mouse night ocean paper party peach piano plant queen river robot sheep skill smile
    snake sound spoon stone storm sugar table tiger toast train water whale wheel world zebra
    banana basket bottle bridge butter button camera candle carrot castle cheese cherry circle coffee
    cookie cotton dinner doctor dragon engine family farmer finger flower forest garden ginger guitar
    hammer island jacket kettle ladder letter little market mirror monkey needle orange parrot pencil
    pepper pillow pirate planet pocket rabbit ribbon rocket school silver singer spider spring summer
    tennis ticket tomato turtle valley wallet window winter yellow balloon battery bedroom blanket
    cabbage captain chicken cooking country crystal dolphin example factory feather giraffe hundred
    kitchen letters library machine morning mustard network october pancake panther penguin picture
    pumpkin rainbow sausage scissors seventy student sweater teacher theater thunder tractor trumpet
    uniform village volcano weather whistle address appetite assessment baseball birthday blueberry
    brilliant building butterfly calendar caterpillar chocolate classroom coconut committee computer
    crocodile cucumber daughter december dinosaur direction elephant embarrass engineer envelope
    happiness hospital internet kangaroo keyboard landscape mississippi mountain necessary neighbor
    notebook occurrence parallel pineapple playground possession president principal professor
    raspberry refrigerator restaurant sandwich screwdriver skeleton spaghetti squirrel strawberry
    successful sunflower telephone temperature tomorrow umbrella vegetable waterfall woodpecker
    yesterday accommodate bookkeeper committee mediterranean millennium parliament questionnaire
    recommend sleeplessness tennessee unnecessary assassination bananas referee
    """.split()
    )
)
_LENGTHS = {1: (3, 5), 2: (6, 7), 3: (8, 99)}
_ZERO_RATE = 0.05
_PROMPT = re.compile(r"How many ([a-z]) are in ([a-z ]+)\?")
_PREFIXES = ("there are", "there is", "it has", "it appears")
# a count, then optionally "times" or the letter counted: "3", "three", "3 times", "3 r's", "3 'r's"
_ANSWER = re.compile(
    r"(?P<count>[a-z]+|[+-]?[0-9.,]+)"
    r"(?:\s+(?:times?|occurrences?|letters?|(?P<quote>['\"]?)(?P<letter>[a-z])(?P=quote)(?:'?s)?))?"
)


def _text(rng: random.Random, difficulty: int) -> str:
    if difficulty <= 3:
        lo, hi = _LENGTHS[difficulty]
        return rng.choice([w for w in WORDS if lo <= len(w) <= hi])
    if difficulty == 4:
        return " ".join(rng.sample([w for w in WORDS if len(w) <= 8], 2))
    # made-up string from a few letters, so repeats (the hard part) are common
    alphabet = rng.sample(string.ascii_lowercase, rng.randint(5, 9))
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(12, 18)))


def _read(answer: str) -> tuple[int, str | None] | None:
    """(count, the letter the answer names or None) of an answer; None if it is not a count."""
    m = _ANSWER.fullmatch(clean_answer(answer, _PREFIXES).lower())
    count = None if m is None else parse_int(m.group("count"), words=True)
    return None if count is None else (count, m.group("letter"))


def _asked_letter(problem: Problem) -> str | None:
    m = _PROMPT.fullmatch(problem.prompt)
    return None if m is None else m.group(1)


def _spell(text: str, letter: str, skip: int = -1, extra: int = -1) -> tuple[str, int]:
    """Letters with running counts; `skip` misses that match, `extra` wrongly counts that position."""
    out, count, match = [], 0, 0
    for pos, ch in enumerate(text.replace(" ", "")):
        hit = ch == letter
        if hit:
            match += 1
        if (hit and match - 1 != skip) or pos == extra:
            count += 1
            out.append(f"{ch}={count}")
        else:
            out.append(ch)
    return " ".join(out), count


class LettersTask(Task):
    name = "letters"
    description = "Count how many times a letter occurs in a word, phrase or letter string."

    def draw(self, rng: random.Random, difficulty: int) -> Draft:
        text = _text(rng, difficulty)
        present = sorted(set(text) - {" "})
        if rng.random() < _ZERO_RATE:
            absent = [ch for ch in string.ascii_lowercase if ch not in present]
            letter = rng.choice(absent)
        else:
            letter = rng.choice(text.replace(" ", ""))  # weighted by frequency: repeats are asked more
        return Draft(prompt=f"How many {letter} are in {text}?", answer=str(text.count(letter)))

    def check(self, problem: Problem, answer: str) -> bool:
        key = self.answer_key(problem, answer)
        return key != "" and key == self.answer_key(problem, problem.answer)

    def answer_key(self, problem: Problem, answer: str) -> str:
        """The count ("3" for "three", "There are 3", "3 r's"), so the forms of one count vote together;
        "3 z's" when another letter is named, a different answer; "" when there is no count."""
        read = _read(answer)
        if read is None:
            return ""
        count, letter = read
        if letter is None or letter == _asked_letter(problem):
            return str(count)
        return f"{count} {letter}'s"

    def trace(self, problem: Problem, rng: random.Random, mistake: bool = False) -> str:
        m = _PROMPT.fullmatch(problem.prompt)
        letter, text = m.group(1), m.group(2)
        spelled, count = _spell(text, letter)
        if not mistake:
            return f"{spelled}\n{count}"
        if count > 0:  # overlook one occurrence
            wrong, wrong_count = _spell(text, letter, skip=rng.randrange(count))
            why = f"wait, I missed one {letter}, let me recheck"
        else:  # count a look-alike letter
            pos = rng.randrange(len(text.replace(" ", "")))
            wrong, wrong_count = _spell(text, letter, extra=pos)
            why = f"wait, {text.replace(' ', '')[pos]} is not {letter}, let me recheck"
        return f"{wrong}\n{wrong_count}\n{why}\n{spelled}\n{count}"
