"""/v1/chat/completions over a real socket with the official openai client, on the shipped base:
plain and streamed answers that agree, usage counted by the model's own chat template, the raw
thinking hidden unless asked for (then in both fields), every reasoning_effort value, n samples
ranked by vote, best-of by the task verifier and by a pluggable learned ranker, auto effort."""

from __future__ import annotations

import json
import sqlite3

import openai
import pytest

from ponder import model as models
from ponder.assets import base_model_path
from ponder.cli.serve import context_length
from ponder.engine import Engine
from ponder.engine.client import AsyncEngineClient
from ponder.serve.background import BackgroundServer
from ponder.serve.feedback import FeedbackStore
from ponder.serve.ranking import LockedRanker
from ponder.serve.serving_common import ServerState
from ponder.tasks import get_task
from ponder.tasks.answers import answer_key

MESSAGES = [{"role": "user", "content": "Compute 27+56."}]
EFFORTS = ["none", "minimal", "low", "medium", "high", "xhigh", "max", "auto"]


class ShortestFirst:
    """A learned ranker stand-in with a known order: shorter completions score higher."""

    def __init__(self):
        self.calls = 0

    def score_texts(self, texts):
        self.calls += 1
        return [-float(len(t)) for t in texts]


@pytest.fixture(scope="module")
def engine():
    return Engine(*models.load(base_model_path()))


@pytest.fixture(scope="module")
def ranker():
    return ShortestFirst()


@pytest.fixture(scope="module")
def server(engine, ranker, tmp_path_factory):
    state = ServerState(
        AsyncEngineClient(engine),
        "ponder-base",
        context_length(engine.model),
        rankers={"reward_model": LockedRanker(ranker)},
        store=FeedbackStore(tmp_path_factory.mktemp("serve") / "feedback.sqlite"),
    )
    with BackgroundServer(state) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)


def extra(message, name):
    return (message.model_extra or {}).get(name)


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list().data] == ["ponder-base"]
    assert client.models.retrieve("ponder-base").id == "ponder-base"


def test_a_plain_answer_counts_usage_by_the_models_own_template_and_hides_the_thinking(client, engine):
    reply = client.chat.completions.create(model="ponder-base", messages=MESSAGES, reasoning_effort="high")
    message, usage = reply.choices[0].message, reply.usage
    assert usage.prompt_tokens == len(engine.format.render(MESSAGES))
    assert 0 < usage.completion_tokens_details.reasoning_tokens < usage.completion_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert message.content and reply.choices[0].finish_reason == "stop"
    assert extra(message, "reasoning") is None and extra(message, "reasoning_content") is None
    summary = extra(message, "reasoning_summary")
    assert summary.endswith(f"Thought for {usage.completion_tokens_details.reasoning_tokens} tokens.\n")
    assert "=" in summary, "the worked step's conclusion should be in the summary"


def test_a_streamed_answer_adds_up_to_the_plain_one(client):
    plain = client.chat.completions.create(model="ponder-base", messages=MESSAGES, reasoning_effort="high")
    stream = client.chat.completions.create(
        model="ponder-base",
        messages=MESSAGES,
        reasoning_effort="high",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    # role, summary, answer, finish, usage: at least five chunks (how the answer's tokens group into
    # chunks depends on how far decoding ran ahead of the event loop; tests/test_client.py checks deltas)
    assert sum(1 for d in deltas if d.content) >= 1 and len(chunks) >= 5
    assert "".join(d.content or "" for d in deltas).strip() == plain.choices[0].message.content
    summary = "".join(extra(d, "reasoning_summary") or "" for d in deltas)
    assert summary == extra(plain.choices[0].message, "reasoning_summary")
    assert not any(extra(d, "reasoning") or extra(d, "reasoning_content") for d in deltas)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == plain.usage.model_dump()


def test_show_thinking_sends_the_raw_thinking_in_both_fields_plain_and_streamed(client):
    show = {"ponder": {"show_thinking": True}}
    plain = client.chat.completions.create(
        model="ponder-base", messages=MESSAGES, reasoning_effort="high", extra_body=show
    )
    message = plain.choices[0].message
    assert extra(message, "reasoning") and extra(message, "reasoning") == extra(message, "reasoning_content")
    chunks = list(
        client.chat.completions.create(
            model="ponder-base", messages=MESSAGES, reasoning_effort="high", stream=True, extra_body=show
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert all(extra(d, "reasoning") == extra(d, "reasoning_content") for d in deltas)
    assert "".join(extra(d, "reasoning") or "" for d in deltas).strip() == extra(message, "reasoning")


@pytest.mark.parametrize("effort", EFFORTS)
def test_every_reasoning_effort_value_answers(client, effort):
    reply = client.chat.completions.create(model="ponder-base", messages=MESSAGES, reasoning_effort=effort)
    reasoning = reply.usage.completion_tokens_details.reasoning_tokens
    assert len(reply.choices) == 1 and reply.choices[0].finish_reason in ("stop", "length")
    if effort in ("none", "minimal", "low"):
        assert reasoning <= 1, "thinking off: at most the forced line break"
    elif effort == "medium":
        assert 0 < reasoning <= 64
    elif effort != "auto":
        assert reasoning > 1


def test_max_completion_tokens_includes_the_reasoning_and_max_tokens_is_its_old_name(client):
    for limit in ({"max_completion_tokens": 9}, {"max_tokens": 9}):
        reply = client.chat.completions.create(model="ponder-base", messages=MESSAGES, reasoning_effort="high", **limit)
        assert reply.choices[0].finish_reason == "length"
        assert reply.usage.completion_tokens == 9 and reply.usage.completion_tokens_details.reasoning_tokens <= 9


def test_seed_and_stop(client):
    def ask(seed):
        return client.chat.completions.create(
            model="ponder-base", messages=MESSAGES, temperature=1.0, seed=seed, reasoning_effort="high"
        )

    assert ask(5).choices[0].message.content == ask(5).choices[0].message.content
    stopped = client.chat.completions.create(
        model="ponder-base", messages=MESSAGES, reasoning_effort="high", stop=[":"]
    )
    assert stopped.choices[0].finish_reason == "stop" and stopped.usage.completion_tokens < 10


def test_streams_of_n_samples_and_of_a_chosen_sample(client):
    ask = dict(model="ponder-base", messages=MESSAGES, temperature=1.0, seed=9, max_completion_tokens=60)
    chunks = list(client.chat.completions.create(**ask, n=2, stream=True))
    finished = sorted(c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason)
    assert finished == [0, 1], "two samples stream side by side, each to its own finish"
    best = dict(ask, extra_body={"ponder": {"best_of": 3}})
    plain = client.chat.completions.create(**best)
    streamed = list(client.chat.completions.create(**best, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == plain.choices[0].message.content, "the chosen sample streams once it is chosen"


def test_n_samples_come_back_ranked_by_vote(client):
    reply = client.chat.completions.create(
        model="ponder-base", messages=MESSAGES, n=6, temperature=1.0, seed=11, max_completion_tokens=80
    )
    assert [c.index for c in reply.choices] == list(range(6))
    keys = [answer_key(c.message.content or "") for c in reply.choices]
    votes = {k: keys.count(k) for k in keys if k}
    assert votes and votes[keys[0]] == max(votes.values())
    assert [votes.get(k, 0) for k in keys[1:]] == sorted((votes.get(k, 0) for k in keys[1:]), reverse=True)


def test_best_of_by_the_task_verifier_puts_correct_answers_first(client):
    problem = get_task("arithmetic").problem("eval", 3, 2)
    reply = client.chat.completions.create(
        model="ponder-base",
        messages=[{"role": "user", "content": problem.prompt}],
        n=8,
        temperature=1.0,
        seed=2,
        reasoning_effort="high",
        extra_body={
            "ponder": {"best_of": 8, "rank": "verifier", "task": "arithmetic", "problem": {"index": 3, "difficulty": 2}}
        },
    )
    correct = [get_task("arithmetic").check(problem, c.message.content or "") for c in reply.choices]
    assert any(correct), "the seeded draw should hold a correct answer"
    assert correct == sorted(correct, reverse=True)
    with pytest.raises(openai.BadRequestError, match="is not the prompt of arithmetic problem"):
        client.chat.completions.create(
            model="ponder-base",
            messages=MESSAGES,
            extra_body={"ponder": {"task": "arithmetic", "problem": {"index": 3, "difficulty": 2}}},
        )


def test_best_of_by_a_learned_ranker_returns_its_best(client, ranker):
    reply = client.chat.completions.create(
        model="ponder-base",
        messages=MESSAGES,
        n=2,
        temperature=1.0,
        seed=4,
        max_completion_tokens=60,
        extra_body={"ponder": {"best_of": 5, "rank": "reward_model", "show_thinking": True}},
    )
    lengths = [len(extra(c.message, "reasoning") or "") + len(c.message.content or "") for c in reply.choices]
    assert len(reply.choices) == 2 and ranker.calls >= 1
    assert lengths[0] <= lengths[1] or not reply.choices[1].message.content
    with pytest.raises(openai.BadRequestError, match="--verifier"):
        client.chat.completions.create(
            model="ponder-base", messages=MESSAGES, extra_body={"ponder": {"rank": "verifier"}}
        )


def test_ponder_serve_loads_a_learned_verifier_as_the_ranker(tmp_path):
    from ponder.cli.serve import ServeOptions, build_state
    from ponder.ttc.verifier import Verifier

    Verifier.from_policy(base_model_path()).save(tmp_path / "verifier")
    options = ServeOptions(verifier=str(tmp_path / "verifier"), feedback_db=str(tmp_path / "feedback.sqlite"))
    with BackgroundServer(build_state(options)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="-", max_retries=0, timeout=60)
        reply = client.chat.completions.create(
            model="ponder-base",
            messages=MESSAGES,
            n=2,
            temperature=1.0,
            max_completion_tokens=60,
            extra_body={"ponder": {"best_of": 3, "rank": "verifier"}},
        )
    assert len(reply.choices) == 2 and reply.usage.completion_tokens > 0


def test_auto_effort_draws_until_the_vote_is_confident(client, server):
    reply = client.chat.completions.create(model="ponder-base", messages=MESSAGES, reasoning_effort="auto")
    rows = sqlite3.connect(server.state.store.path).execute(
        "SELECT sampling, completion_tokens FROM completions WHERE id = ?", (reply.id,)
    )
    sampling, tokens = rows.fetchone()
    drawn = json.loads(sampling)["drawn"]
    assert 2 <= drawn <= 16, "auto stops once two answers agree, at 16 at most"
    assert reply.usage.completion_tokens > tokens, "every drawn sample is counted in usage"
