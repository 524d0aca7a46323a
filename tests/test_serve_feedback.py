"""Feedback: every returned completion is stored with its conversation, thumbs and pairwise
preferences name them, `preference_pairs` turns them into (prompt, chosen, rejected, source) rows,
and a write survives the server being killed with SIGKILL right after it answered (a real
`ponder serve` process, its API key from PONDER_API_KEY)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import openai
import pytest

from ponder import model as models
from ponder.assets import base_model_path
from ponder.cli.serve import context_length
from ponder.engine import Engine
from ponder.engine.client import AsyncEngineClient
from ponder.serve.background import BackgroundServer
from ponder.serve.feedback import CompletionRow, FeedbackStore
from ponder.serve.serving_common import ServerState

MESSAGES = [{"role": "user", "content": "Compute 27+56."}]


def post(url: str, path: str, body: dict, key: str | None = None) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {key}"} if key else {})}
    conn.request("POST", path, json.dumps(body), headers)
    response = conn.getresponse()
    status, data = response.status, json.loads(response.read())
    conn.close()
    return status, data


def thumbs(response_id: str, choice: int, rating: str) -> dict:
    return {"type": "thumbs", "completion": {"id": response_id, "choice": choice}, "rating": rating}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    engine = Engine(*models.load(base_model_path()))
    store = FeedbackStore(tmp_path_factory.mktemp("feedback") / "feedback.sqlite")
    state = ServerState(AsyncEngineClient(engine), "ponder-base", context_length(engine.model), store=store)
    with BackgroundServer(state) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="-", max_retries=0, timeout=60)


def test_thumbs_and_pairs_are_stored_with_the_conversation(server, client):
    reply = client.chat.completions.create(
        model="ponder-base", messages=MESSAGES, n=2, temperature=1.0, seed=3, max_completion_tokens=60
    )
    assert post(server.url, "/v1/feedback", thumbs(reply.id, 0, "up"))[0] == 200
    assert post(server.url, "/v1/feedback", thumbs(reply.id, 1, "down"))[0] == 200
    pair = {"type": "pairwise", "chosen": {"id": reply.id, "choice": 1}, "rejected": {"id": reply.id, "choice": 0}}
    status, body = post(server.url, "/v1/feedback", {**pair, "comment": "shorter"})
    assert status == 200 and body["object"] == "feedback" and body["id"].startswith("fb-")
    db = sqlite3.connect(server.state.store.path)
    stored = db.execute(
        "SELECT choice, messages, prompt, answer FROM completions WHERE id = ? ORDER BY choice", (reply.id,)
    )
    rows = stored.fetchall()
    assert [r[0] for r in rows] == [0, 1] and json.loads(rows[0][1]) == MESSAGES
    assert rows[0][2] == "<|user|>Compute 27+56.<|end|><|assistant|><think>\n"
    assert [r[3] for r in rows] == [c.message.content for c in reply.choices]
    pairs = db.execute("SELECT prompt, chosen_answer, rejected_answer, source FROM preference_pairs").fetchall()
    answers = [c.message.content for c in reply.choices]
    assert sorted(pairs) == sorted(
        [(rows[0][2], answers[1], answers[0], "pairwise:api"), (rows[0][2], answers[0], answers[1], "thumbs:api")]
    )


def test_feedback_names_only_completions_the_server_returned(server, client):
    status, body = post(server.url, "/v1/feedback", thumbs("chatcmpl-nope", 0, "up"))
    assert status == 404 and body["error"]["param"] == "completion"
    first = client.chat.completions.create(model="ponder-base", messages=MESSAGES, max_completion_tokens=20)
    other = client.responses.create(model="ponder-base", input="Compute 1+1.", max_output_tokens=20)
    assert post(server.url, "/v1/feedback", thumbs(other.id, 0, "down"))[0] == 200, "responses are stored too"
    pair = {"type": "pairwise", "chosen": {"id": first.id}, "rejected": {"id": other.id}}
    status, body = post(server.url, "/v1/feedback", pair)
    assert status == 400 and "different conversations" in body["error"]["message"]
    status, body = post(server.url, "/v1/feedback", {**pair, "rejected": {"id": first.id}})
    assert status == 400 and "same completion" in body["error"]["message"]
    status, body = post(server.url, "/v1/feedback", {**thumbs(first.id, 0, "meh")})
    assert status == 400 and body["error"]["param"] == "thumbs.rating"


def test_a_write_survives_a_killed_server(tmp_path):
    db_path = tmp_path / "feedback.sqlite"
    env = {**os.environ, "PONDER_API_KEY": "k3y", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "ponder.cli", "serve", "--port", "0", "--feedback-db", str(db_path)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line or process.poll() is None, "ponder serve exited before it listened"
            found = re.search(r"(http://127\.0\.0\.1:\d+) \(web chat\)", line)
            url = found.group(1) if found else None
        assert url, "ponder serve never printed its address"
        status, reply = post(url, "/v1/chat/completions", {"model": "ponder-base", "messages": MESSAGES}, "wrong")
        assert status == 401
        status, reply = post(url, "/v1/chat/completions", {"model": "ponder-base", "messages": MESSAGES}, "k3y")
        assert status == 200
        status, _ = post(url, "/v1/feedback", thumbs(reply["id"], 0, "up"), "k3y")
        assert status == 200
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    db = sqlite3.connect(db_path)
    assert (
        db.execute("SELECT answer FROM completions WHERE id = ?", (reply["id"],)).fetchone()[0]
        == (reply["choices"][0]["message"]["content"])
    )
    assert db.execute("SELECT rating, source FROM feedback WHERE completion_id = ?", (reply["id"],)).fetchall() == [
        (1, "api")
    ]


def completion_row(i: int, **overrides) -> CompletionRow:
    fields = dict(id=f"chatcmpl-{i}", choice=0, endpoint="chat.completions", model="m", messages=MESSAGES,
                  prompt="p", completion="c", thinking="", answer="c", summary=None, tool_calls=[],
                  finish_reason="stop", completion_tokens=1, reasoning_tokens=0, sampling={})  # fmt: skip
    return CompletionRow(**{**fields, **overrides})


def test_concurrent_saves_commit_together_and_a_bad_one_fails_alone(tmp_path):
    """Saves that arrive while a commit is on its way to disk share the next transaction (group
    commit); every awaited save is committed when it returns; a request whose rows cannot be written
    fails on its own, and the others in its group are still stored."""
    import asyncio

    store = FeedbackStore(tmp_path / "feedback.sqlite")
    transactions = []
    save = store._save

    def slow_save(rows):
        transactions.append(len(rows))
        time.sleep(0.02)  # a disk flush: the other requests' rows queue meanwhile
        save(rows)

    store._save = slow_save

    async def burst(rows):
        return await asyncio.gather(*(store.save_completions([row]) for row in rows), return_exceptions=True)

    try:
        results = asyncio.run(burst([completion_row(i) for i in range(40)]))
        assert results == [None] * 40
        assert len(transactions) < 10, f"40 concurrent saves took {len(transactions)} transactions: no group commit"
        bad = completion_row(99, messages=[{"unserialisable": object()}])
        results = asyncio.run(burst([completion_row(40), bad, completion_row(41)]))
    finally:
        store.close()
    assert results[0] is None and results[2] is None and isinstance(results[1], TypeError)
    with sqlite3.connect(tmp_path / "feedback.sqlite") as db:
        ids = {row[0] for row in db.execute("SELECT id FROM completions")}
    assert ids == {f"chatcmpl-{i}" for i in range(42)}


def test_a_save_whose_event_loop_closed_does_not_stop_later_saves(tmp_path):
    """A server shut down mid-request: its loop closes before the commit answers. The next save, from
    another loop, still commits (the commit worker survives answering a closed loop)."""
    import asyncio

    store = FeedbackStore(tmp_path / "feedback.sqlite")
    save = store._save

    def slow_save(rows):
        time.sleep(0.2)
        save(rows)

    store._save = slow_save

    async def give_up():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(store.save_completions([completion_row(0)]), timeout=0.01)

    try:
        asyncio.run(give_up())  # the loop closes while the commit is still on its way
        time.sleep(0.3)
        asyncio.run(asyncio.wait_for(store.save_completions([completion_row(1)]), timeout=10))
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "feedback.sqlite") as db:
        assert {row[0] for row in db.execute("SELECT id FROM completions")} == {"chatcmpl-0", "chatcmpl-1"}
