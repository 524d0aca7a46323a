"""/v1/responses over a real socket with the official openai client: a reasoning item whose summary
holds summary_text parts, then the message; the stream's events in OpenAI's order, its summary and
text deltas adding up to the final response; reasoning tokens in usage; the raw thinking only when
asked for; summaries off on request."""

from __future__ import annotations

import openai
import pytest

from ponder import model as models
from ponder.assets import base_model_path
from ponder.cli.serve import context_length
from ponder.engine import Engine
from ponder.engine.client import AsyncEngineClient
from ponder.serve.background import BackgroundServer
from ponder.serve.serving_common import ServerState

QUESTION = "Compute 27+56."


@pytest.fixture(scope="module")
def engine():
    return Engine(*models.load(base_model_path()))


@pytest.fixture(scope="module")
def client(engine):
    state = ServerState(AsyncEngineClient(engine), "ponder-base", context_length(engine.model))
    with BackgroundServer(state) as server:
        yield openai.OpenAI(base_url=server.base_url, api_key="-", max_retries=0, timeout=120)


def test_a_response_has_a_reasoning_summary_then_the_message(client, engine):
    response = client.responses.create(
        model="ponder-base", input=QUESTION, reasoning={"effort": "high", "summary": "auto"}
    )
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and message.type == "message"
    assert [part.type for part in reasoning.summary] == ["summary_text"]
    tokens = response.usage.output_tokens_details.reasoning_tokens
    assert tokens > 0 and reasoning.summary[0].text.endswith(f"Thought for {tokens} tokens.\n")
    assert not getattr(reasoning, "content", None), "the raw thinking stays on the server by default"
    assert response.output_text == message.content[0].text and response.output_text
    assert response.usage.input_tokens == len(engine.format.render([{"role": "user", "content": QUESTION}]))
    assert response.status == "completed" and response.reasoning.effort == "high"


def test_the_stream_follows_openais_event_order_and_adds_up(client):
    plain = client.responses.create(model="ponder-base", input=QUESTION, reasoning={"effort": "high"})
    events = list(
        client.responses.create(
            model="ponder-base", input=QUESTION, reasoning={"effort": "high", "summary": "auto"}, stream=True
        )
    )
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == "response.completed"
    order = [
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
    ]
    assert [kinds.index(k) for k in order] == sorted(kinds.index(k) for k in order)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    done = next(e for e in events if e.type == "response.reasoning_summary_text.done")
    final = events[-1].response
    assert summary == done.text == final.output[0].summary[0].text == plain.output[0].summary[0].text
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.strip() == final.output_text == plain.output_text
    assert final.usage.output_tokens_details.reasoning_tokens == plain.usage.output_tokens_details.reasoning_tokens


def test_raw_thinking_on_request_and_summaries_off(client):
    shown = client.responses.create(
        model="ponder-base",
        input=QUESTION,
        reasoning={"effort": "high"},
        extra_body={"ponder": {"show_thinking": True}},
    )
    reasoning = shown.output[0]
    assert reasoning.content[0].type == "reasoning_text" and "27" in reasoning.content[0].text
    events = list(
        client.responses.create(
            model="ponder-base",
            input=QUESTION,
            reasoning={"effort": "high", "summary": "none"},
            stream=True,
            extra_body={"ponder": {"show_thinking": True}},
        )
    )
    kinds = {e.type for e in events}
    assert "response.reasoning_text.delta" in kinds and "response.reasoning_summary_text.delta" not in kinds
    assert events[-1].response.output[0].summary == []


def test_instructions_and_a_conversation_as_input_items(client, engine):
    items = [
        {"role": "user", "content": "Compute 1+1."},
        {"role": "assistant", "content": [{"type": "output_text", "text": "2"}]},
        {"role": "user", "content": [{"type": "input_text", "text": QUESTION}]},
    ]
    response = client.responses.create(model="ponder-base", input=items, max_output_tokens=12)
    rendered = [{"role": "user", "content": "Compute 1+1."}, {"role": "assistant", "content": "2"}]
    expected = engine.format.render([*rendered, {"role": "user", "content": QUESTION}])
    assert response.usage.input_tokens == len(expected)
    assert response.usage.output_tokens <= 12
    if response.status == "incomplete":
        assert response.incomplete_details.reason == "max_output_tokens"
