"""Tools over a real socket: the client's function tools come back as OpenAI tool calls (Chat
Completions and Responses, plain and streamed), and the server's built-in tools run inside the
thinking. The shipped base never calls tools, so the test first teaches a copy of it two answers
that do (a few dozen steps of fine-tuning on exactly those texts): the calls it makes are then the
model's own tokens, through the real engine."""

from __future__ import annotations

import copy
import json

import openai
import pytest
import torch

from ponder import model as models
from ponder.assets import base_model_path
from ponder.cli.serve import context_length
from ponder.engine import Engine
from ponder.engine.client import AsyncEngineClient
from ponder.serve.background import BackgroundServer
from ponder.serve.serving_common import ServerState
from ponder.tools.loop import ToolLoop

WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
ADDITION = [{"role": "user", "content": "Compute 27+56 with the calculator."}]
GET_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "today's weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
LESSONS = [
    (WEATHER, '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'),
    (ADDITION, '<tool_call>{"name": "calculator", "arguments": {"expression": "27+56"}}</tool_call>'
               "<tool_response>83</tool_response>\nso 83\n</think>83<|end|>"),
]  # fmt: skip


def taught(model, tokenizer, fmt, steps: int = 70):
    """A copy of `model` fine-tuned until it writes each lesson's completion after its prompt."""
    torch.manual_seed(0)
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    data = [(fmt.render(m), tokenizer.encode(c, add_special_tokens=False)) for m, c in LESSONS]
    for _ in range(steps):
        loss = 0.0
        for prompt, completion in data:
            ids = torch.tensor([prompt + completion])
            labels = ids.clone()
            labels[0, : len(prompt)] = -100  # loss on the completion only
            loss = loss + model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def engine():
    model, tokenizer = models.load(base_model_path())
    return Engine(taught(model, tokenizer, Engine(model, tokenizer).format), tokenizer)


@pytest.fixture(scope="module")
def client(engine):
    tools = ToolLoop.of(["calculator"])
    state = ServerState(
        AsyncEngineClient(engine, on_tool_call=tools),
        "ponder-base",
        context_length(engine.model),
        tool_names=("calculator",),
    )
    with BackgroundServer(state) as server:
        yield openai.OpenAI(base_url=server.base_url, api_key="-", max_retries=0, timeout=60)


def test_a_function_call_comes_back_as_an_openai_tool_call(client, engine):
    reply = client.chat.completions.create(model="ponder-base", messages=WEATHER, tools=[GET_WEATHER], temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert reply.usage.prompt_tokens == len(engine.format.render(WEATHER, tools=[GET_WEATHER]))
    answered = [
        *WEATHER,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ]
    after = client.chat.completions.create(model="ponder-base", messages=answered, tools=[GET_WEATHER], temperature=0)
    assert after.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_a_streamed_function_call(client):
    chunks = list(
        client.chat.completions.create(
            model="ponder-base", messages=WEATHER, tools=[GET_WEATHER], temperature=0, stream=True
        )
    )
    calls = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
    assert [(c.index, c.function.name) for c in calls] == [(0, "get_weather")]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_tool_choice_none_offers_no_tools(client):
    reply = client.chat.completions.create(
        model="ponder-base", messages=WEATHER, tools=[GET_WEATHER], tool_choice="none", max_completion_tokens=30
    )
    assert reply.choices[0].finish_reason != "tool_calls" and not reply.choices[0].message.tool_calls


def test_a_function_call_through_the_responses_api(client):
    tool = {"type": "function", **GET_WEATHER["function"]}
    response = client.responses.create(model="ponder-base", input=WEATHER[0]["content"], tools=[tool], temperature=0)
    calls = [item for item in response.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather"] and json.loads(calls[0].arguments) == {"city": "Paris"}
    events = list(
        client.responses.create(
            model="ponder-base", input=WEATHER[0]["content"], tools=[tool], temperature=0, stream=True
        )
    )
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and json.loads(done[0].arguments) == {"city": "Paris"}


def test_a_built_in_tool_runs_inside_the_thinking(client):
    reply = client.chat.completions.create(
        model="ponder-base",
        messages=ADDITION,
        temperature=0,
        max_completion_tokens=200,
        extra_body={"ponder": {"tools": ["calculator"], "show_thinking": True}},
    )
    message = reply.choices[0].message
    assert message.content == "83" and reply.choices[0].finish_reason == "stop"
    thinking = message.model_extra["reasoning_content"]
    assert "<tool_response>83</tool_response>" in thinking, "the server ran the call and wrote its output"
    assert "Called calculator(expression='27+56')" in message.model_extra["reasoning_summary"]
    assert "tool_response" not in message.model_extra["reasoning_summary"], "tool output is never quoted"
