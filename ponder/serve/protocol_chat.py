"""Chat Completions on the wire: the request, the response and the stream chunk, in OpenAI's field order.

ponder's additions are where open servers put them: the raw thinking in `message.reasoning` and
`message.reasoning_content` (vLLM sends the first, SGLang and llama.cpp the second; both are sent,
both are accepted back in assistant messages), only when asked for; a `reasoning_summary` (shown by
default, derived from the thinking, see summary.py); ponder's options under `ponder`.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from ponder.serve.protocol_common import (
    MAX_N,
    MAX_STOP,
    SEED,
    OpenAIModel,
    Plan,
    PonderOptions,
    ReasoningEffort,
    UsageInfo,
    bad_request,
    sampling_plan,
)

FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class FunctionCall(BaseModel):
    name: str
    arguments: str  # a JSON object, as text


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(OpenAIModel):
    """One message of the conversation, any role."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # assistant
    tool_call_id: str | None = None  # tool
    reasoning: str | None = None  # assistant: its thinking (vLLM's name)
    reasoning_content: str | None = None  # assistant: its thinking (SGLang's, llama.cpp's name)

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""

    def for_template(self) -> dict:
        """The message as chat templates read it (system for developer; thinking as reasoning_content)."""
        out: dict = {"role": "system" if self.role == "developer" else self.role, "content": self.text}
        thinking = self.reasoning_content or self.reasoning
        if self.role == "assistant" and thinking:
            out["reasoning_content"] = thinking
        if self.tool_calls:
            out["tool_calls"] = [
                {
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": _arguments(c.function.arguments)},
                }
                for c in self.tool_calls
            ]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out


class FunctionDefinition(BaseModel):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict | None = None
    strict: bool | None = None


class ChatTool(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(BaseModel):
    include_usage: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]


class ChatCompletionRequest(OpenAIModel):
    messages: list[ChatMessage] = Field(min_length=1)
    model: str
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1, description="generated tokens, thinking included")
    max_tokens: int | None = Field(default=None, ge=1, description="the older name of max_completion_tokens")
    metadata: dict[str, str] | None = None
    n: int = Field(default=1, ge=1, le=MAX_N)
    parallel_tool_calls: bool | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    reasoning_effort: ReasoningEffort | None = None
    response_format: ResponseFormat | None = None
    seed: int | None = SEED
    stop: str | list[str] | None = None
    store: bool | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    tools: list[ChatTool] | None = Field(default=None, max_length=64)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    top_p: float | None = Field(default=None, gt=0, le=1)
    user: str | None = None
    ponder: PonderOptions = Field(default_factory=PonderOptions)

    @model_validator(mode="after")
    def _stop_list(self):
        if isinstance(self.stop, list) and len(self.stop) > MAX_STOP:
            raise ValueError(f"stop takes at most {MAX_STOP} strings")
        return self

    def to_plan(self) -> Plan:
        """The sampling plan; parameters ponder's sampler cannot honour are refused, never ignored."""
        self._refuse_unsupported()
        given = self.max_completion_tokens is not None
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return sampling_plan(
            effort=self.reasoning_effort,
            max_tokens=self.max_completion_tokens if given else self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            n=self.n,
            stop=stop,
            seed=self.seed,
            ponder=self.ponder,
            max_tokens_param="max_completion_tokens" if given else "max_tokens",
        )

    def template_messages(self) -> list[dict]:
        return [m.for_template() for m in self.messages]

    def function_tools(self) -> list[dict]:
        """The client's function tools the model is offered (none with tool_choice "none")."""
        if not self.tools or self.tool_choice == "none":
            return []
        return [t.model_dump(exclude_none=True) for t in self.tools]

    def _refuse_unsupported(self) -> None:
        refused = [
            ("frequency_penalty", bool(self.frequency_penalty), "send 0 or leave it out"),
            ("presence_penalty", bool(self.presence_penalty), "send 0 or leave it out"),
            ("logit_bias", bool(self.logit_bias), "leave it out"),
            ("logprobs", bool(self.logprobs) or bool(self.top_logprobs), "leave logprobs and top_logprobs out"),
            ("response_format", self.response_format is not None and self.response_format.type != "text",
             "structured output is not supported; ask for JSON in the message instead"),
            ("tool_choice", self.tool_choice == "required" or isinstance(self.tool_choice, NamedToolChoice),
             "ponder cannot force a call: send auto (the model decides) or none"),
        ]  # fmt: skip
        for param, used, fix in refused:
            if used:
                raise bad_request(f"{param} is not supported by ponder's sampler: {fix}", param, "unsupported_value")
        if self.tool_choice == "auto" and not self.tools:
            raise bad_request(
                "tool_choice is set but no tools are given: send tools, or leave tool_choice out", "tools"
            )
        if self.tools and self.ponder.tools:
            raise bad_request(
                "a request runs either the client's function tools or the server's built-in tools "
                "(ponder.tools), not both",
                "tools",
            )


def _arguments(text: str):
    """Tool-call arguments as templates want them: the JSON object when it parses, else the text."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    return value if isinstance(value, dict) else text


# ---------------------------------------------------------------------------------------------------
# responses


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None
    reasoning_summary: str | None = None


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    logprobs: None = None
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter"]


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageInfo
    system_fingerprint: str | None = None


class DeltaFunction(BaseModel):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunction


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None
    reasoning_summary: str | None = None
    tool_calls: list[DeltaToolCall] | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: DeltaMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageInfo | None = None
