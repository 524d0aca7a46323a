"""What one sample becomes on the wire, for both endpoints: the answer, the thinking (sent only when
asked for), its summary, the client's function calls and the finish reason.

    output = builder.final(index, rollout)         # a finished sample, whole
    live = LiveOutput(index, request_id, builder, client)
    piece = live.feed(delta)                        # what a streamed sample gained: summary, thinking, answer

The text is split by the engine's own channels (`client.channel_texts`: thinking, answer, tool-call
text), the same split the streamed deltas are cut from, so a streamed sample adds up to its whole
form and its summary is the same text (summary.py). The summary closes when the answer starts: the
thinking's token count is final then.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from ponder.engine import Rollout
from ponder.engine.chat_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, ChatFormat, parse_tool_calls
from ponder.engine.client import AsyncEngineClient, Delta, channel_texts
from ponder.serve.sampler import thinking_tokens_so_far
from ponder.serve.summary import Summarizer, summarize


@dataclass
class FunctionCall:
    """A call of one of the client's function tools: the client runs it and sends the result back."""

    name: str
    arguments: str  # a JSON object, as text
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")


@dataclass
class Output:
    """One returned sample."""

    index: int
    thinking: str  # raw; sent only when the request or the server asks for it
    answer: str
    summary: str | None  # None: summaries are off
    function_calls: list[FunctionCall]
    finish_reason: str  # stop | length | tool_calls
    rollout: Rollout


@dataclass
class Piece:
    """What one returned sample gained in a streamed response."""

    index: int
    summary: str = ""
    thinking: str = ""
    answer: str = ""
    thinking_done: bool = False  # the thinking (and its summary) ended with this piece
    output: Output | None = None  # on the sample's last piece


class OutputBuilder:
    """Turns finished samples into outputs: one request's format, summary detail and functions."""

    def __init__(self, fmt: ChatFormat, start, summary: str, functions: set[str]):
        self.fmt = fmt
        self.start = start  # the prompt's thinking phase (where the completion begins)
        self.summary = summary  # auto | concise | detailed | none
        self.functions = functions  # the client's function names (empty: no function tools)

    def final(self, index: int, rollout: Rollout, summary: str | None = None) -> Output:
        thinking, answer, calls = channel_texts(self.fmt, rollout.text, self.start)
        if summary is None and self.summary != "none":
            summary = summarize(thinking, calls, rollout.thinking_tokens, self.summary)
        function_calls = self.function_calls(calls)
        finish = "tool_calls" if function_calls else rollout.finish_reason
        return Output(index, thinking.strip(), answer.strip(), summary, function_calls, finish, rollout)

    def function_calls(self, calls_text: str) -> list[FunctionCall]:
        """The client's function calls in the tool-call text. Generation stops at "</tool_call>" (a
        stop string, not part of the text), so the last call arrives open: it is closed here."""
        if not self.functions:
            return []
        if calls_text.rfind(TOOL_CALL_OPEN) > calls_text.rfind(TOOL_CALL_CLOSE):
            calls_text += TOOL_CALL_CLOSE
        return [
            FunctionCall(c.name, json.dumps(c.arguments, ensure_ascii=False))
            for c in parse_tool_calls(calls_text)
            if not c.error and c.name in self.functions
        ]


class LiveOutput:
    """One streamed sample: turns its engine deltas into pieces."""

    def __init__(self, index: int, request_id: str, builder: OutputBuilder, client: AsyncEngineClient):
        self.index = index
        self.request_id = request_id
        self.builder = builder
        self.client = client
        self.summarizer = Summarizer(builder.summary) if builder.summary != "none" else None
        self.thinking_done = False
        self.pending = ""  # answer text not sent yet (held while the thinking's count is unknown)
        self.answering = False  # the first non-blank answer text was sent (leading blanks are dropped)

    def feed(self, delta: Delta) -> Piece:
        piece = Piece(self.index, thinking=delta.thinking)
        if self.summarizer is not None and not self.thinking_done:
            piece.summary = self.summarizer.feed(delta.thinking, delta.tool_call)
        self.pending += delta.answer
        if not self.thinking_done and (self.pending or delta.finish_reason is not None):
            closing = self._close_summary(delta)
            if closing is None:  # the request just left the batch: its last delta, next, has the count
                return piece
            self.thinking_done = piece.thinking_done = True
            piece.summary += closing
        if self.thinking_done:
            answer = self.pending if self.answering else self.pending.lstrip()
            self.pending = ""
            if answer:
                self.answering = True
                piece.answer = answer
        if delta.finish_reason is not None:
            summary = self.summarizer.text if self.summarizer is not None else None
            piece.output = self.builder.final(self.index, delta.rollout, summary)
        return piece

    def _close_summary(self, delta: Delta) -> str | None:
        """The summary's last lines, with the thinking's token count (None while it is unknown)."""
        if self.summarizer is None:
            return ""
        tokens = delta.rollout.thinking_tokens if delta.rollout is not None else None
        if tokens is None:
            tokens = thinking_tokens_so_far(self.client, self.request_id)
        return None if tokens is None else self.summarizer.close(tokens)


def whole_piece(output: Output) -> Piece:
    """A sample chosen after drawing (best-of, auto effort) streams as one piece."""
    return Piece(
        output.index,
        summary=output.summary or "",
        thinking=output.thinking,
        answer=output.answer,
        thinking_done=True,
        output=output,
    )
