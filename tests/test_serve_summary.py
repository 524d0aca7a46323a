"""The reasoning summary and the request -> plan conversion, without a server: a summary keeps the
steps' conclusions, never quotes tool output, ends with the token count, and a streamed summary is
the same text as a whole one, however the thinking is cut into pieces."""

from __future__ import annotations

import pytest

from ponder.serve.protocol_chat import ChatCompletionRequest
from ponder.serve.protocol_common import APIError
from ponder.serve.summary import Summarizer, conclusion, summarize

THINKING = """57-54: 7-4=3, 5-5=0, so 2
wait, 57-54 is not 2, let me recheck
57-54: 7-4=3, 5-5=0, so 3
3+83: 3+3=6, 0+8=8, so 86
r1c3 col 2 3 4 -> 1
8+5=13
h=1 u n d r e d
<tool_response>1024
x=5
</tool_response>
So the answer is 86.
"""
CALL = '<tool_call>{"name": "calculator", "arguments": {"expression": "2**10"}}</tool_call>'


@pytest.mark.parametrize(
    "line, summary",
    [
        ("27+56: 7+6=13, 2+5+1=8, so 83", "27+56 = 83"),
        ("66-90=-(90-66): 10-6=4, 9-6-1=2, so -24", "66-90 = -24"),
        ("r1c3 col 2 3 4 -> 1", "r1c3 = 1"),
        ("8+5=13", "8+5 = 13"),
        ("230>126", "230>126"),
        ("wait, 12 is not 8, let me try again", "Rechecked: 12 is not 8"),
        ("Therefore, the total is 12.", "so the total is 12"),
        ("h=1 u n d r e d", None),
        ("4.230 vs 4.126", None),
        ("", None),
    ],
)
def test_a_line_concludes_a_step_or_is_left_out(line, summary):
    assert conclusion(line) == summary


def test_the_summary_keeps_conclusions_and_tools_never_tool_output_and_ends_with_the_count():
    text = summarize(THINKING, CALL, 55)
    assert text.splitlines() == [
        "57-54 = 2",
        "Rechecked: 57-54 is not 2",
        "57-54 = 3",
        "3+83 = 86",
        "r1c3 = 1",
        "8+5 = 13",
        "so the answer is 86",
        "Called calculator(expression='2**10')",
        "Thought for 55 tokens.",
    ]
    assert "1024" not in text and "x = 5" not in text


@pytest.mark.parametrize("cut", [1, 3, 7, 1000])
def test_a_streamed_summary_equals_the_whole_one(cut):
    summarizer = Summarizer("auto")
    pieces = [THINKING[i : i + cut] for i in range(0, len(THINKING), cut)]
    streamed = "".join(summarizer.feed(piece) for piece in pieces) + summarizer.close(55)
    assert streamed == summarize(THINKING, "", 55)


def test_detail_levels():
    long = "".join(f"{i}+1: {i}+1={i + 1}, so {i + 1}\n" for i in range(12))
    assert summarize(long, "", 99, "detailed").count("\n") == 13
    auto = summarize(long, "", 99, "auto").splitlines()
    assert len(auto) == 10 and auto[-2] == "…and 4 more steps"
    assert summarize(long, "", 99, "concise").splitlines() == ["11+1 = 12", "Thought for 99 tokens."]
    assert summarize("", "", 0) == "Answered without thinking.\n"


def test_a_request_converts_itself_into_a_plan():
    request = ChatCompletionRequest(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        reasoning_effort="none",
        temperature=0.5,
        n=2,
        seed=3,
        stop="x",
        ponder={"best_of": 4},
    )
    plan = request.to_plan()
    assert (plan.choices, plan.draws, plan.thinking, plan.effort) == (2, 4, False, "none")
    assert (plan.params.temperature, plan.params.seed, plan.params.stop) == (0.5, 3, ["x"])
    plan.fit(prompt_tokens=10, context=512, default=96)
    assert plan.params.max_tokens == 96


@pytest.mark.parametrize(
    "changes, param",
    [
        ({"n": 2, "ponder": {"best_of": 1}}, "ponder.best_of"),
        ({"reasoning_effort": "auto", "n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"tool_choice": "required", "tools": [{"type": "function", "function": {"name": "f"}}]}, "tool_choice"),
        ({"presence_penalty": 1.0}, "presence_penalty"),
    ],
)
def test_combinations_a_plan_cannot_honour_are_refused_by_name(changes, param):
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], **changes)
    with pytest.raises(APIError) as error:
        request.to_plan()
    assert error.value.status == 400 and error.value.param == param


def test_the_context_bounds_the_prompt_and_an_explicit_max_tokens():
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=100)
    with pytest.raises(APIError, match="at most 12 can be generated") as error:
        request.to_plan().fit(prompt_tokens=500, context=512, default=256)
    assert error.value.param == "max_completion_tokens"
    with pytest.raises(APIError, match="shorten the conversation"):
        request.to_plan().fit(prompt_tokens=512, context=512, default=256)


def test_a_streamed_summary_waits_for_the_count_when_the_request_already_left_the_batch():
    """The answer's first delta can arrive after its request finished: the count then comes with the
    last delta, and the answer is held until the summary can close (the Responses API needs the
    reasoning item closed before the message opens)."""
    from types import SimpleNamespace

    from ponder import model as models
    from ponder.assets import base_model_path
    from ponder.engine import Rollout
    from ponder.engine.chat_format import ChatFormat
    from ponder.engine.client import Delta
    from ponder.serve.outputs import LiveOutput, OutputBuilder

    fmt = ChatFormat(models.load(base_model_path())[1])
    prompt = fmt.prompt("Compute 27+56.")
    gone = SimpleNamespace(thinking_tokens=lambda request_id: None)  # the request has left the batch
    live = LiveOutput(0, "r-0", OutputBuilder(fmt, fmt.start_phase(prompt), "auto", set()), gone)
    thinking = "27+56: 7+6=13, 2+5+1=8, so 83\n"
    first = live.feed(Delta("r-0", thinking=thinking))
    assert first.summary == "27+56 = 83\n" and not first.thinking_done
    held = live.feed(Delta("r-0", answer="8"))
    assert held.answer == "" and held.summary == "" and not held.thinking_done
    rollout = Rollout(0, prompt, text=thinking + "</think>83", finish_reason="stop", thinking_tokens=19)
    last = live.feed(Delta("r-0", answer="3", finish_reason="stop", rollout=rollout))
    assert last.thinking_done and last.summary == "Thought for 19 tokens.\n" and last.answer == "83"
    assert last.output.summary == first.summary + last.summary and last.output.answer == "83"
