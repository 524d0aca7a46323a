"""The Responses API on the wire: the request, the response object and its output items.

`reasoning: {effort, summary}` asks for an effort and a summary; the answer comes as output items:
a `reasoning` item whose `summary` holds `summary_text` parts (and, when the raw thinking is shown,
`content` with a `reasoning_text` part, as open-weight servers send it), then the `message` (or the
client's `function_call`s). ponder shows a summary unless `reasoning.summary` or `ponder.summary`
turns it off ("none"). Stream events are written by serving_responses.py.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, Field

from ponder.serve.protocol_chat import FUNCTION_NAME
from ponder.serve.protocol_common import (
    SEED,
    OpenAIModel,
    Plan,
    PonderOptions,
    ReasoningEffort,
    SummaryDetail,
    bad_request,
    sampling_plan,
)


class InputText(BaseModel):
    type: Literal["input_text", "output_text", "text"]
    text: str


class InputMessage(OpenAIModel):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputText]


class FunctionCallItem(OpenAIModel):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str


class FunctionCallOutputItem(OpenAIModel):
    type: Literal["function_call_output"]
    call_id: str
    output: str


class ReasoningInputItem(OpenAIModel):
    """A reasoning item sent back: it carries only a summary, which the template does not read."""

    type: Literal["reasoning"]
    summary: list[dict] = Field(default_factory=list)


InputItem = InputMessage | FunctionCallItem | FunctionCallOutputItem | ReasoningInputItem


class Reasoning(BaseModel):
    effort: ReasoningEffort | None = None
    summary: SummaryDetail | None = None


class FunctionTool(BaseModel):
    type: Literal["function"]
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict | None = None
    strict: bool | None = None


class TextFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"] = "text"


class TextConfig(BaseModel):
    format: TextFormat = Field(default_factory=TextFormat)


class ResponsesRequest(OpenAIModel):
    input: str | list[InputItem] = Field(min_length=1)
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, description="generated tokens, reasoning included")
    metadata: dict[str, str] | None = None
    model: str
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    reasoning: Reasoning | None = None
    seed: int | None = SEED
    store: bool | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    text: TextConfig | None = None
    tool_choice: Literal["none", "auto", "required"] | dict | None = None
    tools: list[FunctionTool] | None = Field(default=None, max_length=64)
    top_p: float | None = Field(default=None, gt=0, le=1)
    user: str | None = None
    ponder: PonderOptions = Field(default_factory=PonderOptions)

    @property
    def summary_detail(self) -> str:
        chosen = self.reasoning.summary if self.reasoning else None
        return chosen or self.ponder.summary or "auto"

    def to_plan(self) -> Plan:
        self._refuse_unsupported()
        return sampling_plan(
            effort=self.reasoning.effort if self.reasoning else None,
            max_tokens=self.max_output_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            n=1,
            stop=[],
            seed=self.seed,
            ponder=self.ponder,
            max_tokens_param="max_output_tokens",
        )

    def template_messages(self) -> list[dict]:
        """The instructions and input as chat-template messages."""
        messages = [{"role": "system", "content": self.instructions}] if self.instructions else []
        if isinstance(self.input, str):
            return messages + [{"role": "user", "content": self.input}]
        for item in self.input:
            if isinstance(item, InputMessage):
                role = "system" if item.role == "developer" else item.role
                text = item.content if isinstance(item.content, str) else "".join(p.text for p in item.content)
                messages.append({"role": role, "content": text})
            elif isinstance(item, FunctionCallItem):
                call = {"type": "function", "function": {"name": item.name, "arguments": _arguments(item.arguments)}}
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
            elif isinstance(item, FunctionCallOutputItem):
                messages.append({"role": "tool", "content": item.output, "tool_call_id": item.call_id})
        if not messages:
            raise bad_request("input holds no message: send at least one user message", "input")
        return messages

    def function_tools(self) -> list[dict]:
        """The client's function tools in the chat-completions form templates read."""
        if not self.tools or self.tool_choice == "none":
            return []
        return [
            {"type": "function", "function": t.model_dump(exclude_none=True, exclude={"type", "strict"})}
            for t in self.tools
        ]

    def _refuse_unsupported(self) -> None:
        if self.previous_response_id is not None:
            raise bad_request(
                "previous_response_id is not supported: ponder keeps no conversation state, send the whole "
                "conversation in input",
                "previous_response_id",
                "unsupported_value",
            )
        if self.text is not None and self.text.format.type != "text":
            raise bad_request(
                "structured output is not supported: leave text.format as text", "text", "unsupported_value"
            )
        if self.tool_choice not in (None, "none", "auto"):
            raise bad_request(
                "ponder cannot force a call: send tool_choice auto (the model decides) or none",
                "tool_choice",
                "unsupported_value",
            )
        if self.tools and self.ponder.tools:
            raise bad_request("send either function tools or ponder.tools (built-in), not both", "tools")


def _arguments(text: str):
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    return value if isinstance(value, dict) else text


# ---------------------------------------------------------------------------------------------------
# the response object


class SummaryText(BaseModel):
    type: Literal["summary_text"] = "summary_text"
    text: str


class ReasoningText(BaseModel):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class ReasoningItem(BaseModel):
    type: Literal["reasoning"] = "reasoning"
    id: str
    summary: list[SummaryText] = Field(default_factory=list)
    content: list[ReasoningText] | None = None
    status: Literal["in_progress", "completed", "incomplete"] = "completed"


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list = Field(default_factory=list)
    logprobs: list = Field(default_factory=list)


class MessageItem(BaseModel):
    type: Literal["message"] = "message"
    id: str
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    role: Literal["assistant"] = "assistant"
    content: list[OutputText] = Field(default_factory=list)


class FunctionCallOut(BaseModel):
    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"] = "completed"


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseObject(BaseModel):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["completed", "incomplete", "in_progress", "failed"]
    error: dict | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[ReasoningItem | MessageItem | FunctionCallOut] = Field(default_factory=list)
    parallel_tool_calls: bool = False
    previous_response_id: str | None = None
    reasoning: Reasoning = Field(default_factory=Reasoning)
    temperature: float | None = None
    text: TextConfig = Field(default_factory=TextConfig)
    tool_choice: str | dict = "auto"
    tools: list[FunctionTool] = Field(default_factory=list)
    top_p: float | None = None
    truncation: Literal["disabled"] = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
