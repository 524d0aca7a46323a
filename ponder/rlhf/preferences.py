"""Preference pairs, one schema from three sources.

    PreferencePair(prompt, chosen, rejected, source)
    load_pairs("jsonl:prefs.jsonl")          {"prompt", "chosen", "rejected"[, "source"]} per line
    load_pairs("feedback:feedback.sqlite")   what `ponder serve` collected (thumbs and pairwise)
    load_pairs("synthetic:summary", count=2000, seed=0)   the declared rule of ponder.rlhf.synthetic
    train, heldout = split_pairs(pairs)      by a hash of the prompt: no prompt is in both

`prompt` is the user's question; `chosen` and `rejected` are responses: a bare answer, or a completion
as the policy writes it (thinking, `</think>`, answer). From the feedback database, thumbs become pairs
where one prompt has both an up and a down (the store's `preference_pairs` view does the pairing; each
completion's latest rating counts), and explicit pairwise preferences are taken as they are. Feedback
on a multi-turn conversation is skipped and counted: the reward model scores single questions, as RL
samples them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from ponder.errors import PonderError
from ponder.io import atomic_write_text, jsonl_objects
from ponder.tasks.base import split_of

log = logging.getLogger(__name__)

FIELDS = ("prompt", "chosen", "rejected", "source")
SOURCES = "synthetic:RULE, jsonl:PATH or feedback:DB"


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str
    source: str


def load_pairs(spec: str, count: int = 2000, seed: int = 0) -> list[PreferencePair]:
    """Pairs from one source, or several joined by commas (`count` and `seed` are the generator's)."""
    pairs: list[PreferencePair] = []
    for part in (p.strip() for p in spec.split(",")):
        kind, _, arg = part.partition(":")
        if kind == "synthetic" and arg:
            pairs += synthetic(arg, count, seed)
        elif kind == "jsonl" and arg:
            pairs += read_jsonl(arg)
        elif kind == "feedback" and arg:
            pairs += from_feedback(arg)
        elif part:
            raise PonderError(f"preference source {part!r}: expected {SOURCES}")
    return pairs


def split_pairs(pairs: list[PreferencePair]) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, held-out) by the prompt's hash, the tasks' split: about 20% held out, and RL's
    held-out prompts of a synthetic rule are exactly the reward model's held-out prompts."""
    train = [p for p in pairs if split_of(p.prompt) == "train"]
    return train, [p for p in pairs if split_of(p.prompt) != "train"]


# ---------------------------------------------------------------------------------------------------
# JSONL


def read_jsonl(path: str | Path) -> list[PreferencePair]:
    """Pairs from a JSONL file; a bad line is an error naming the line and what it lacks."""
    path = Path(path)
    if not path.is_file():
        raise PonderError(f"preference file {path} does not exist (one JSON object per line: {', '.join(FIELDS)})")
    pairs = []
    for n, record in jsonl_objects(path, PonderError):
        missing = [k for k in FIELDS[:3] if not isinstance(record.get(k) if isinstance(record, dict) else None, str)]
        if missing:
            raise PonderError(f"{path}:{n}: missing or non-string field(s) {missing}; each line needs {FIELDS[:3]}")
        source = record.get("source") or f"jsonl:{path.name}"
        pairs.append(PreferencePair(record["prompt"], record["chosen"], record["rejected"], str(source)))
    return pairs


def write_jsonl(pairs: list[PreferencePair], path: str | Path) -> Path:
    atomic_write_text(path, "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in pairs))
    return Path(path)


# ---------------------------------------------------------------------------------------------------
# ponder serve's feedback database

FEEDBACK_QUERY = """
SELECT p.source, p.chosen, p.rejected,
       (SELECT messages FROM completions c WHERE c.prompt = p.prompt LIMIT 1) AS messages
FROM preference_pairs p ORDER BY p.created, p.feedback_id
"""


def from_feedback(db: str | Path) -> list[PreferencePair]:
    """Pairs from the SQLite store of `ponder serve` (ponder/serve/feedback.py), opened read-only."""
    db = Path(db)
    if not db.is_file():
        raise PonderError(f"feedback database {db} does not exist: `ponder serve` writes it (see docs/rlhf.md)")
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute(FEEDBACK_QUERY).fetchall()
    except sqlite3.Error as e:
        raise PonderError(f"{db}: cannot read preference pairs ({e}); is it a `ponder serve` feedback database?")
    pairs, skipped = [], 0
    for source, chosen, rejected, messages in rows:
        question = single_question(json.loads(messages or "[]"))
        if question is None:
            skipped += 1
            continue
        pairs.append(PreferencePair(question, chosen, rejected, f"feedback:{source}"))
    if skipped:
        log.warning("%s: %d preference pair(s) on multi-turn conversations skipped", db, skipped)
    return pairs


def single_question(messages: list[dict]) -> str | None:
    """The user's text when the conversation is one user turn (system turns allowed), else None."""
    users = [m for m in messages if m.get("role") == "user"]
    if len(users) != 1 or any(m.get("role") not in ("user", "system") for m in messages):
        return None
    content = users[0].get("content")
    if isinstance(content, list):  # OpenAI content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else None


# ---------------------------------------------------------------------------------------------------
# synthetic


def synthetic(rule: str, count: int, seed: int = 0) -> list[PreferencePair]:
    """`count` pairs by a declared rule (ponder.rlhf.synthetic), on prompts of both splits."""
    from ponder.rlhf.synthetic import synthetic_pairs

    return [PreferencePair(p, c, r, f"synthetic:{rule}") for p, c, r in synthetic_pairs(rule, None, count, seed)]
