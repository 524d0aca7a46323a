"""`ChatFormat`: how one model's chat template turns messages into prompt ids, and how a completion
splits into thinking, answer and tool calls. Built from the tokenizer, so any model's own template
is used as it is (ponder's, Qwen3's, Llama 3's, ...):

    fmt = ChatFormat(tokenizer)
    ids = fmt.render([{"role": "user", "content": "What is 2+3?"}])      # the model's own template
    fmt.start_phase(ids)      # THINKING (the template opened <think>), BEFORE (the model may open
                              # it itself) or ANSWER (thinking switched off: "<think>\\n\\n</think>")
    fmt.parse(completion_text, fmt.start_phase(ids))   # -> ParsedCompletion(thinking, answer, ...)

The markers are held as token *sequences*: in Qwen3 and ponder's tokenizer `</think>` is one token;
in Llama 3 it is plain text of several ordinary tokens. The engine follows the thinking state by
matching these sequences at the end of what a sequence wrote (token in, token out: it never
re-tokenizes text), and the parser works on the decoded text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum

from ponder.errors import PonderError

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_RESPONSE_OPEN = "<tool_response>"
TOOL_RESPONSE_CLOSE = "</tool_response>"
MARKERS = (THINK_OPEN, THINK_CLOSE, TOOL_CALL_OPEN, TOOL_CALL_CLOSE)


class Phase(IntEnum):
    """Where a sequence is in its answer: before any thinking, inside it, or past it."""

    BEFORE = 0  # the model may open <think> itself (Qwen3 with thinking on, a model without markers)
    THINKING = 1  # inside <think>: the template opened it, or the model did
    ANSWER = 2  # thinking closed (or switched off by the template)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict
    error: str = ""  # why the call could not be read ("" = a well-formed call)


@dataclass(frozen=True)
class ParsedCompletion:
    thinking: str
    answer: str
    closed_thinking: bool  # the model got to an answer; False: it was still thinking when it stopped
    tool_calls: tuple[ToolCall, ...] = field(default=())


class ChatFormat:
    """One tokenizer's chat template and markers."""

    def __init__(self, tokenizer, end_ids: set[int] | None = None):
        self.tokenizer = tokenizer
        self.think_open = self.encode(THINK_OPEN)
        self.think_close = self.encode(THINK_CLOSE)
        self.tool_call_open = self.encode(TOOL_CALL_OPEN)
        self.tool_call_close = self.encode(TOOL_CALL_CLOSE)
        self.newline = self.encode("\n")
        self.end_ids = set(end_ids or ()) | _eos_ids(tokenizer)
        # whether `</think>` is a token of its own (Qwen3, ponder) or plain text (Llama 3)
        self.native_thinking = len(self.think_open) == 1 and len(self.think_close) == 1
        self.takes_thinking_switch = "enable_thinking" in (getattr(tokenizer, "chat_template", None) or "")

    def encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(text, add_special_tokens=False))

    # --- prompts ------------------------------------------------------------------------------------

    def render(self, messages: list[dict], thinking: bool = True, tools: list[dict] | None = None) -> list[int]:
        """Prompt ids for `messages` through the model's own template, ending in the generation prompt.
        `thinking=False` is passed as `enable_thinking` where the template takes it (Qwen3); elsewhere
        thinking is steered by the engine (a budget of 1 closes it at once)."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise PonderError(
                "this tokenizer has no chat template: set `tokenizer.chat_template` (a Jinja string, as "
                "tokenizer_config.json carries it) so prompts are rendered the way the model was trained"
            )
        if not messages or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise PonderError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
        extra = {"enable_thinking": thinking} if self.takes_thinking_switch else {}
        text = self.tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True, tokenize=False, **extra
        )
        return list(self.encode(text))

    def prompt(self, question: str, thinking: bool = True) -> list[int]:
        """Prompt ids for one user question."""
        return self.render([{"role": "user", "content": question}], thinking=thinking)

    def completion(self, thinking: str, answer: str, start: Phase) -> list[int]:
        """The ids a model should write for a worked answer (SFT targets), in this template's layout:
        after a prompt that opened the thinking, "thinking\n</think>{sep}answer<eos>"; where the model
        opens it itself, "<think>\n" first; with thinking off, the answer alone."""
        eos = self.tokenizer.eos_token or ""
        if start == Phase.ANSWER:
            return list(self.encode(f"{answer.strip()}{eos}"))
        body = f"{thinking.strip()}\n{THINK_CLOSE}{self.answer_separator}{answer.strip()}{eos}"
        return list(self.encode(body if start == Phase.THINKING else f"{THINK_OPEN}\n{body}"))

    @property
    def answer_separator(self) -> str:
        """What the template writes between "</think>" and the answer ("" for ponder, "\n\n" for
        Qwen3), read off the template by rendering one assistant turn; "\n\n" if it shows no thinking."""
        template = getattr(self.tokenizer, "chat_template", None)
        if not template:
            return "\n\n"
        turn = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "ANSWER", "reasoning_content": "R"}]
        try:
            text = self.tokenizer.apply_chat_template(turn, tokenize=False)
        except Exception:  # a template that rejects the extra field: the common layout
            return "\n\n"
        if THINK_CLOSE not in text or "ANSWER" not in text:
            return "\n\n"
        return text.split(THINK_CLOSE, 1)[1].split("ANSWER", 1)[0]

    def start_phase(self, prompt_ids: list[int]) -> Phase:
        """Whether a completion of this prompt starts inside the thinking, after it, or before it."""
        tail = self.tokenizer.decode(prompt_ids[-24:], skip_special_tokens=False).rstrip()
        if tail.endswith(THINK_OPEN):
            return Phase.THINKING
        if tail.endswith(THINK_CLOSE):
            return Phase.ANSWER
        return Phase.BEFORE

    # --- completions --------------------------------------------------------------------------------

    def parse(self, text: str, start: Phase = Phase.THINKING) -> ParsedCompletion:
        """Split a completion into thinking / answer / tool calls. Total: never raises."""
        thinking, answer, closed = self.split(text, start)
        calls = tuple(parse_tool_calls(thinking)) + tuple(parse_tool_calls(answer))
        answer = answer.split(THINK_OPEN, 1)[0]  # a second <think> block after the answer is noise
        return ParsedCompletion(thinking.strip(), answer.strip(), closed, calls)

    def split(self, text: str, start: Phase) -> tuple[str, str, bool]:
        """(thinking text, answer text, closed) without stripping: streamed deltas are cut from these."""
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        if start == Phase.ANSWER:
            return "", text, True
        if start == Phase.BEFORE:
            body = text.lstrip()
            if not body.startswith(THINK_OPEN):
                if THINK_OPEN.startswith(body) and body:  # still writing the opening marker
                    return "", "", False
                return "", text, True  # answered without thinking
            text = body[len(THINK_OPEN) :]
        if THINK_CLOSE not in text:
            return text, "", False
        thinking, answer = text.split(THINK_CLOSE, 1)
        return thinking, answer, True


def encode_prompt(tokenizer, prompt: str | list[int], allow_empty: bool = False) -> list[int]:
    """Prompt ids: token ids as given, or text (already in the chat format) encoded as it is. Every
    engine client and `Engine` take prompts this way."""
    ids = tokenizer.encode(prompt, add_special_tokens=False) if isinstance(prompt, str) else list(prompt)
    if not ids and not allow_empty:
        raise PonderError("an empty prompt cannot be generated from: give at least one token")
    return ids


def held_back(text: str) -> int:
    """How many trailing characters of a streamed text to hold back: a marker may be half-written
    there (`</thi`), or a multi-byte character cut in two (decoded as U+FFFD)."""
    hold = 0
    for marker in MARKERS:
        for k in range(min(len(marker) - 1, len(text)), 0, -1):
            if text.endswith(marker[:k]):
                hold = max(hold, k)
                break
    if text.endswith("\ufffd"):
        hold = max(hold, 1)
    return hold


def parse_tool_calls(text: str) -> list[ToolCall]:
    """Every complete `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` in `text`."""
    calls = []
    for chunk in text.split(TOOL_CALL_OPEN)[1:]:
        if TOOL_CALL_CLOSE not in chunk:
            continue  # only a complete call counts
        body = chunk.split(TOOL_CALL_CLOSE, 1)[0].strip()
        try:
            data = json.loads(body)
            name, arguments = data["name"], data.get("arguments", {})
            if not isinstance(name, str) or not isinstance(arguments, dict):
                raise TypeError("name must be a string and arguments an object")
            calls.append(ToolCall(name, arguments))
        except (ValueError, KeyError, TypeError) as e:
            calls.append(ToolCall("", {}, error=f"unreadable tool call {body[:80]!r}: {e}"))
    return calls


def _eos_ids(tokenizer) -> set[int]:
    eos = tokenizer.eos_token_id
    if eos is None:
        return set()
    return {eos} if isinstance(eos, int) else set(eos)
