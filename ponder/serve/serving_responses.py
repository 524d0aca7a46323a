"""`POST /v1/responses`: a reasoning item with the summary, then the message, whole or streamed.

The stream is OpenAI's event sequence, each event numbered (`sequence_number`):

    response.created, response.in_progress
    response.output_item.added                      the reasoning item (output_index 0)
      response.reasoning_summary_part.added         once the summary has text
      response.reasoning_summary_text.delta ...     as the thinking's steps conclude
      response.reasoning_summary_text.done, response.reasoning_summary_part.done
      response.reasoning_text.delta ... / .done     the raw thinking, only when it is shown
    response.output_item.done                       the reasoning item, when the answer starts
    response.output_item.added, response.content_part.added       the message (output_index 1)
      response.output_text.delta ... , response.output_text.done, response.content_part.done
    response.output_item.done
    (a client's function call: output_item.added, function_call_arguments.delta / .done, output_item.done)
    response.completed  (response.incomplete when max_output_tokens cut it)
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

from ponder.serve.outputs import Output, Piece
from ponder.serve.protocol_common import APIError
from ponder.serve.protocol_responses import (
    FunctionCallOut,
    IncompleteDetails,
    MessageItem,
    OutputText,
    OutputTokensDetails,
    Reasoning,
    ReasoningItem,
    ReasoningText,
    ResponseObject,
    ResponsesRequest,
    ResponseUsage,
    SummaryText,
)
from ponder.serve.serving_common import Run, ServerState, prepare


class ServingResponses:
    def __init__(self, state: ServerState):
        self.state = state

    async def create(self, request: ResponsesRequest) -> ResponseObject | AsyncIterator[str]:
        job = prepare(
            self.state,
            request_id=f"resp_{uuid.uuid4().hex}",
            endpoint="responses",
            model=request.model,
            messages=request.template_messages(),
            plan=request.to_plan(),
            options=request.ponder,
            functions=request.function_tools(),
            summary=request.summary_detail,
        )
        run = Run(self.state, job)
        await run.start(stream=bool(request.stream))
        if request.stream:
            return Events(self, request, run).stream()
        await run.complete()
        await run.save()
        return self.response(request, run, "completed")

    def response(self, request: ResponsesRequest, run: Run, status: str) -> ResponseObject:
        """The response object; `status` in_progress gives the empty snapshot a stream opens with."""
        body = ResponseObject(
            id=run.job.request_id,
            created_at=int(time.time()),
            status=status,
            instructions=request.instructions,
            max_output_tokens=request.max_output_tokens,
            model=self.state.model_name,
            reasoning=Reasoning(
                effort=request.reasoning.effort if request.reasoning else None,
                summary=None if run.job.builder.summary == "none" else run.job.builder.summary,
            ),
            temperature=run.job.plan.params.temperature,
            top_p=run.job.plan.params.top_p,
            tools=request.tools or [],
            tool_choice=request.tool_choice or "auto",
            user=request.user,
            metadata=request.metadata or {},
        )
        if status == "in_progress" or not run.outputs:
            return body
        output = run.outputs[0]
        body.output = output_items(output, run.job.show_thinking, run.job.request_id)
        if output.finish_reason == "length":
            body.status, body.incomplete_details = "incomplete", IncompleteDetails(reason="max_output_tokens")
        prompt, completion, reasoning = run.usage()
        body.usage = ResponseUsage(
            input_tokens=prompt,
            output_tokens=completion,
            output_tokens_details=OutputTokensDetails(reasoning_tokens=reasoning),
            total_tokens=prompt + completion,
        )
        return body


def item_ids(request_id: str) -> tuple[str, str]:
    suffix = request_id.removeprefix("resp_")
    return f"rs_{suffix}", f"msg_{suffix}"


def reasoning_item(done: bool, show_thinking: bool, request_id: str, summary: str, thinking: str) -> ReasoningItem:
    item = ReasoningItem(id=item_ids(request_id)[0], status="completed" if done else "in_progress")
    item.summary = [SummaryText(text=summary)] if summary else []
    if show_thinking and thinking:
        item.content = [ReasoningText(text=thinking)]
    return item


def output_items(output: Output, show_thinking: bool, request_id: str) -> list:
    items: list = [reasoning_item(True, show_thinking, request_id, output.summary or "", output.thinking)]
    if output.answer or not output.function_calls:
        text = [OutputText(text=output.answer)]
        items.append(MessageItem(id=item_ids(request_id)[1], content=text))
    items += [
        FunctionCallOut(id=f"fc_{c.id}", call_id=c.id, name=c.name, arguments=c.arguments)
        for c in output.function_calls
    ]
    return items


class Events:
    """One streamed response: pieces in, numbered SSE events out."""

    def __init__(self, serving: ServingResponses, request: ResponsesRequest, run: Run):
        self.serving, self.request, self.run = serving, request, run
        self.show = run.job.show_thinking
        self.rs_id, self.msg_id = item_ids(run.job.request_id)
        self.sequence = 0
        self.summary = self.thinking = self.answer = ""
        self.message_open = False

    def event(self, kind: str, **fields) -> str:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    async def stream(self) -> AsyncIterator[str]:
        snapshot = self.serving.response(self.request, self.run, "in_progress").model_dump(mode="json")
        yield self.event("response.created", response=snapshot)
        yield self.event("response.in_progress", response=snapshot)
        item = reasoning_item(False, self.show, self.run.job.request_id, "", "")
        yield self.event("response.output_item.added", output_index=0, item=item.model_dump(exclude_none=True))
        try:
            async for piece in self.run.pieces():
                for line in self.on_piece(piece):
                    yield line
            await self.run.save()
        except APIError as e:
            yield self.event("error", code=e.code, message=e.message, param=e.param)
            return
        final = self.serving.response(self.request, self.run, "completed")
        kind = "response.incomplete" if final.status == "incomplete" else "response.completed"
        yield self.event(kind, response=final.model_dump(mode="json"))

    def on_piece(self, piece: Piece) -> list[str]:
        lines = []
        where = {"item_id": self.rs_id, "output_index": 0}
        if piece.summary:
            if not self.summary:
                part = {"type": "summary_text", "text": ""}
                lines.append(self.event("response.reasoning_summary_part.added", **where, summary_index=0, part=part))
            self.summary += piece.summary
            lines.append(
                self.event("response.reasoning_summary_text.delta", **where, summary_index=0, delta=piece.summary)
            )
        if piece.thinking and self.show:
            self.thinking += piece.thinking
            lines.append(self.event("response.reasoning_text.delta", **where, content_index=0, delta=piece.thinking))
        if piece.thinking_done:
            lines += self.close_reasoning(piece)
        if piece.answer:
            lines += self.open_message()
            self.answer += piece.answer
            at = {"item_id": self.msg_id, "output_index": 1, "content_index": 0}
            lines.append(self.event("response.output_text.delta", **at, delta=piece.answer, logprobs=[]))
        if piece.output is not None:
            lines += self.close_output(piece.output)
        return lines

    def close_reasoning(self, piece: Piece) -> list[str]:
        where = {"item_id": self.rs_id, "output_index": 0}
        lines = []
        if self.summary:
            part = {"type": "summary_text", "text": self.summary}
            lines.append(
                self.event("response.reasoning_summary_text.done", **where, summary_index=0, text=self.summary)
            )
            lines.append(self.event("response.reasoning_summary_part.done", **where, summary_index=0, part=part))
        if self.thinking:
            lines.append(self.event("response.reasoning_text.done", **where, content_index=0, text=self.thinking))
        item = reasoning_item(True, self.show, self.run.job.request_id, self.summary, self.thinking)
        lines.append(self.event("response.output_item.done", output_index=0, item=item.model_dump(exclude_none=True)))
        return lines

    def open_message(self) -> list[str]:
        if self.message_open:
            return []
        self.message_open = True
        item = MessageItem(id=self.msg_id, status="in_progress").model_dump()
        part = OutputText(text="").model_dump()
        return [
            self.event("response.output_item.added", output_index=1, item=item),
            self.event("response.content_part.added", item_id=self.msg_id, output_index=1, content_index=0, part=part),
        ]

    def close_output(self, output: Output) -> list[str]:
        lines = []
        if output.answer or not output.function_calls:
            lines += self.open_message()
            at = {"item_id": self.msg_id, "output_index": 1, "content_index": 0}
            part = OutputText(text=output.answer).model_dump()
            lines.append(self.event("response.output_text.done", **at, text=output.answer, logprobs=[]))
            lines.append(self.event("response.content_part.done", **at, part=part))
            item = MessageItem(id=self.msg_id, content=[OutputText(text=output.answer)]).model_dump()
            lines.append(self.event("response.output_item.done", output_index=1, item=item))
        first = 1 + int(self.message_open)
        for k, call in enumerate(output.function_calls, start=first):
            item = FunctionCallOut(id=f"fc_{call.id}", call_id=call.id, name=call.name, arguments=call.arguments)
            added = item.model_copy(update={"status": "in_progress", "arguments": ""}).model_dump()
            lines.append(self.event("response.output_item.added", output_index=k, item=added))
            lines.append(self.event("response.function_call_arguments.delta", item_id=item.id, output_index=k,
                                    delta=call.arguments))  # fmt: skip
            lines.append(self.event("response.function_call_arguments.done", item_id=item.id, output_index=k,
                                    arguments=call.arguments))  # fmt: skip
            lines.append(self.event("response.output_item.done", output_index=k, item=item.model_dump()))
        return lines
