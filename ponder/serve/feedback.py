"""The feedback store: every completion the server returns, and what users said about it, in SQLite.

    store = FeedbackStore("runs/serve/feedback.sqlite")
    await store.save_completions([CompletionRow(...), ...])    # as each response is sent
    await store.record(ThumbsFeedback(...))                     # POST /v1/feedback

Every returned completion is stored under its response id and choice index, with the conversation
as the chat template saw it and the exact prompt text, so feedback that names it has everything an
RLHF run needs. The view `preference_pairs` gives (prompt, chosen, rejected, source) rows: explicit
pairwise preferences, and a thumbs-up against a thumbs-down on the same prompt (docs/serve.md has the
schema). Writes are transactions in WAL mode with synchronous=FULL: a committed write is on disk
before the HTTP answer leaves, so it survives the server being killed (SIGKILL) right after.
One worker thread owns the connection; the event loop only awaits it. Completions that arrive while
a commit is on its way to disk are committed together in the next transaction (group commit, as
databases do): one disk flush for a burst of responses instead of one each, which under 16
concurrent clients had made the flushes the server's queue.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from ponder.serve.protocol_common import bad_request, not_found
from ponder.serve.protocol_feedback import CompletionRef, PairwiseFeedback, ThumbsFeedback

SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    id TEXT NOT NULL,                 -- the response id: chatcmpl-... or resp_...
    choice INTEGER NOT NULL,          -- the choice index within the response
    created REAL NOT NULL,            -- unix time
    endpoint TEXT NOT NULL,           -- chat.completions | responses
    model TEXT NOT NULL,
    messages TEXT NOT NULL,           -- JSON: the conversation as the chat template saw it
    prompt TEXT NOT NULL,             -- the rendered prompt (the model's own template), as decoded
    completion TEXT NOT NULL,         -- everything the model wrote, thinking included
    thinking TEXT NOT NULL,
    answer TEXT NOT NULL,
    summary TEXT,                     -- the reasoning summary sent (NULL: summaries off)
    tool_calls TEXT NOT NULL,         -- JSON list of {name, arguments} returned to the client
    finish_reason TEXT NOT NULL,      -- stop | length | tool_calls
    completion_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    sampling TEXT NOT NULL,           -- JSON: reasoning_effort, temperature, top_p, seed, rank, ...
    PRIMARY KEY (id, choice)
);
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT PRIMARY KEY,              -- fb-...
    created REAL NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('thumbs', 'pairwise')),
    completion_id TEXT, completion_choice INTEGER,     -- thumbs: the completion rated
    rating INTEGER CHECK (rating IN (-1, 1)),          -- thumbs: +1 up, -1 down
    chosen_id TEXT, chosen_choice INTEGER,             -- pairwise: the better completion
    rejected_id TEXT, rejected_choice INTEGER,         -- pairwise: the worse one
    comment TEXT,
    source TEXT NOT NULL                               -- who gave it: web, api, ...
);
CREATE INDEX IF NOT EXISTS completions_by_prompt ON completions (prompt);
CREATE VIEW IF NOT EXISTS latest_thumbs AS
    SELECT * FROM (
        SELECT f.*, ROW_NUMBER() OVER (
            PARTITION BY completion_id, completion_choice ORDER BY created DESC, rowid DESC) AS nth
        FROM feedback f WHERE kind = 'thumbs')
    WHERE nth = 1;
CREATE VIEW IF NOT EXISTS preference_pairs AS
    SELECT c.prompt AS prompt, c.completion AS chosen, r.completion AS rejected,
           'pairwise:' || f.source AS source, c.answer AS chosen_answer, r.answer AS rejected_answer,
           f.id AS feedback_id, f.created AS created
    FROM feedback f
    JOIN completions c ON c.id = f.chosen_id AND c.choice = f.chosen_choice
    JOIN completions r ON r.id = f.rejected_id AND r.choice = f.rejected_choice
    WHERE f.kind = 'pairwise'
    UNION ALL
    SELECT c.prompt, c.completion, r.completion, 'thumbs:' || u.source, c.answer, r.answer,
           u.id || '+' || d.id, MAX(u.created, d.created)
    FROM latest_thumbs u
    JOIN completions c ON c.id = u.completion_id AND c.choice = u.completion_choice
    JOIN latest_thumbs d ON d.rating = -1
    JOIN completions r ON r.id = d.completion_id AND r.choice = d.completion_choice
    WHERE u.rating = 1 AND r.prompt = c.prompt;
"""


@dataclass
class CompletionRow:
    id: str
    choice: int
    endpoint: str
    model: str
    messages: list[dict]
    prompt: str
    completion: str
    thinking: str
    answer: str
    summary: str | None
    tool_calls: list[dict]
    finish_reason: str
    completion_tokens: int
    reasoning_tokens: int
    sampling: dict


class FeedbackStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="ponder-feedback")
        self.db: sqlite3.Connection | None = None
        self.lock = threading.Lock()
        self.pending: list[tuple[list[CompletionRow], asyncio.Future]] = []  # completions waiting to commit
        self.committing = False  # a group commit is queued or running on the worker
        self.worker.submit(self._connect).result()

    def _connect(self) -> None:
        self.db = sqlite3.connect(self.path, isolation_level=None)  # transactions are explicit
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, *args)

    def close(self) -> None:
        if self.db is None:
            return

        def shut() -> None:
            if self.db is not None:
                self.db.close()
                self.db = None

        self.worker.submit(shut).result()
        self.worker.shutdown()

    # --- completions ------------------------------------------------------------------------------

    async def save_completions(self, rows: list[CompletionRow]) -> None:
        """Returns once `rows` are committed, together with whatever else was waiting."""
        done = asyncio.get_running_loop().create_future()
        with self.lock:
            self.pending.append((rows, done))
            start, self.committing = not self.committing, True
        if start:
            self.worker.submit(self._commit_pending)
        await done

    def _commit_pending(self) -> None:
        """Commit everything waiting, in one transaction, until nothing is; if that transaction fails,
        each request's rows are tried on their own, so one bad request fails alone."""
        while True:
            with self.lock:
                batch, self.pending = self.pending, []
                if not batch:
                    self.committing = False
                    return
            try:
                self._save([row for rows, _ in batch for row in rows])
                results = [None] * len(batch)
            except Exception:
                results = [_attempt(self._save, rows) for rows, _ in batch]
            for (_, done), error in zip(batch, results, strict=True):
                try:
                    done.get_loop().call_soon_threadsafe(_settle, done, error)
                except RuntimeError:  # its event loop has closed (a server shut down mid-request)
                    pass

    def _save(self, rows: list[CompletionRow]) -> None:
        now = time.time()
        with _transaction(self.db):
            for row in rows:
                values = asdict(row)
                for name in ("messages", "tool_calls", "sampling"):
                    values[name] = json.dumps(values[name], ensure_ascii=False)
                self.db.execute(
                    f"INSERT OR REPLACE INTO completions ({', '.join(values)}, created) "
                    f"VALUES ({', '.join('?' * len(values))}, ?)",
                    [*values.values(), now],
                )

    # --- feedback ---------------------------------------------------------------------------------

    async def record(self, feedback: ThumbsFeedback | PairwiseFeedback) -> tuple[str, int]:
        """Store one piece of feedback; (its id, created). 404 for a completion never returned."""
        return await self._run(self._record, feedback)

    def _record(self, feedback: ThumbsFeedback | PairwiseFeedback) -> tuple[str, int]:
        feedback_id, now = f"fb-{uuid.uuid4().hex}", time.time()
        with _transaction(self.db):
            if isinstance(feedback, ThumbsFeedback):
                self._prompt_of(feedback.completion, "completion")
                row = {"completion_id": feedback.completion.id, "completion_choice": feedback.completion.choice,
                       "rating": 1 if feedback.rating == "up" else -1}  # fmt: skip
            else:
                chosen = self._prompt_of(feedback.chosen, "chosen")
                if chosen != self._prompt_of(feedback.rejected, "rejected"):
                    raise bad_request("chosen and rejected answer different conversations: compare two "
                                      "completions of the same messages", "rejected")  # fmt: skip
                row = {"chosen_id": feedback.chosen.id, "chosen_choice": feedback.chosen.choice,
                       "rejected_id": feedback.rejected.id, "rejected_choice": feedback.rejected.choice}  # fmt: skip
            row.update(
                id=feedback_id, created=now, kind=feedback.type, comment=feedback.comment, source=feedback.source
            )
            self.db.execute(
                f"INSERT INTO feedback ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )
        return feedback_id, int(now)

    def _prompt_of(self, ref: CompletionRef, param: str) -> str:
        found = self.db.execute("SELECT prompt FROM completions WHERE id = ? AND choice = ?", (ref.id, ref.choice))
        row = found.fetchone()
        if row is None:
            raise not_found(
                f"no completion {ref.id!r} choice {ref.choice} was returned by this server (feedback can only "
                "name a completion it returned, by its response id and choice index)",
                param,
            )
        return row[0]


def _attempt(fn, *args) -> Exception | None:
    try:
        fn(*args)
    except Exception as e:
        return e
    return None


def _settle(done: asyncio.Future, error: Exception | None) -> None:
    if done.cancelled():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error: each write lands whole or not at all."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, traceback):
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        return False
