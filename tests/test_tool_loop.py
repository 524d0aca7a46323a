"""The tool loop inside generate: a sequence that closes a tool call pauses, the tool runs in a worker
thread while the others decode, and its observation is written for the model (mask 0)."""

from __future__ import annotations

import copy
import threading
import time

from ponder.engine import Engine, SamplingParams
from ponder.tools import Observation, Tool
from ponder.tools.loop import ToolLimits, ToolLoop
from tests.conftest import biased_model


class SlowEcho(Tool):
    name = "echo"
    description = "returns its text after a delay"
    parameters = {"type": "object", "properties": {"text": {"type": "string"}}}
    primary = "text"

    def __init__(self, delay: float):
        super().__init__(None)
        self.delay = delay
        self.threads: set[str] = set()

    def call(self, arguments: dict) -> Observation:
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        return Observation("echo")


def with_tool_tokens(model, tok):
    """The fixture's tokenizer and model plus single tokens for the tool-call markers (as Qwen3 has)."""
    tok = copy.deepcopy(tok)
    tok.add_tokens(["<tool_call>", "</tool_call>"])
    model = copy.deepcopy(model)
    model.resize_token_embeddings(len(tok))
    return model, tok


def test_a_closed_tool_call_pauses_runs_the_tool_off_the_decode_thread_and_resumes(model, tok):
    model, tok = with_tool_tokens(model, tok)
    close = tok.convert_tokens_to_ids("</tool_call>")
    engine = Engine(biased_model(model, close), tok)  # writes "</tool_call>" at every step
    tool = SlowEcho(delay=0.01)
    loop = ToolLoop({"echo": tool}, ToolLimits(max_calls=2))
    prompts = [engine.format.prompt("Compute 2+3."), engine.format.prompt("Compute 4+4.")]
    params = SamplingParams(temperature=0, max_tokens=5, tools=True)
    groups = engine.generate(prompts, params, on_tool_call=loop)
    for (r,) in groups:
        # no opening marker: an error observation; past 2 calls, refused; the 5th token ends it (length)
        assert r.tool_statuses == ["error", "error", "limit", "limit"]
        assert r.tool_calls == 4 and r.finish_reason == "length"
        written = [t for t, m in zip(r.token_ids, r.mask, strict=True) if m]
        assert written == [close] * 5  # every token the model chose; the observations are mask 0
        assert "<tool_response>Error: at most 2 tool calls" in r.text
        assert r.num_tokens - r.tool_tokens == 5
    assert tool.threads == set()  # the calls were malformed: the tool itself never ran
