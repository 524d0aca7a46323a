"""`POST /v1/chat/completions`: a request through the engine client and back, whole or streamed.

A streamed answer is Server-Sent Events in OpenAI's chunk format: a first chunk per choice with the
role, then deltas (`content`; `reasoning_summary` as the summary grows; `reasoning` and
`reasoning_content` with the raw thinking when it is shown; `tool_calls` once a function call is
complete), a chunk with the finish reason, the usage chunk (`stream_options.include_usage`: empty
`choices`), and `data: [DONE]`. An error after the stream began is sent as a `data: {"error": ...}`
event, as OpenAI does, since the status line is gone by then.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

from ponder.serve.outputs import Output, Piece
from ponder.serve.protocol_chat import (
    ChatChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessageOut,
    ChunkChoice,
    DeltaFunction,
    DeltaMessage,
    DeltaToolCall,
    FunctionCall,
    ToolCall,
)
from ponder.serve.protocol_common import APIError, CompletionTokensDetails, UsageInfo
from ponder.serve.serving_common import Run, ServerState, prepare


class ServingChat:
    def __init__(self, state: ServerState):
        self.state = state

    async def create(self, request: ChatCompletionRequest) -> ChatCompletionResponse | AsyncIterator[str]:
        """The whole response, or (`stream`) an iterator of SSE lines. Errors before the first byte
        (bad input, unknown model, a full queue) raise `APIError`."""
        job = prepare(
            self.state,
            request_id=f"chatcmpl-{uuid.uuid4().hex}",
            endpoint="chat.completions",
            model=request.model,
            messages=request.template_messages(),
            plan=request.to_plan(),
            options=request.ponder,
            functions=request.function_tools(),
            summary=request.ponder.summary or "auto",
        )
        run = Run(self.state, job)
        await run.start(stream=bool(request.stream))
        if request.stream:
            return self._stream(request, run)
        await run.complete()
        await run.save()
        return ChatCompletionResponse(
            id=job.request_id,
            created=int(time.time()),
            model=self.state.model_name,
            choices=[
                ChatChoice(index=o.index, message=message(o, job.show_thinking), finish_reason=o.finish_reason)
                for o in run.outputs
            ],
            usage=usage_info(run),
        )

    async def _stream(self, request: ChatCompletionRequest, run: Run) -> AsyncIterator[str]:
        created, show = int(time.time()), run.job.show_thinking

        def chunk(choices: list[ChunkChoice], usage: UsageInfo | None = None) -> str:
            body = ChatCompletionChunk(
                id=run.job.request_id, created=created, model=self.state.model_name, choices=choices, usage=usage
            )
            return f"data: {body.model_dump_json(exclude_none=True)}\n\n"

        for i in range(run.job.plan.choices):
            yield chunk([ChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])
        try:
            async for piece in run.pieces():
                delta = piece_delta(piece, show)
                if delta is not None:
                    yield chunk([ChunkChoice(index=piece.index, delta=delta)])
                if piece.output is not None:
                    calls = tool_call_deltas(piece.output)
                    if calls:
                        yield chunk([ChunkChoice(index=piece.index, delta=DeltaMessage(tool_calls=calls))])
                    finish = ChunkChoice(
                        index=piece.index, delta=DeltaMessage(), finish_reason=piece.output.finish_reason
                    )
                    yield chunk([finish])
            await run.save()
            if request.stream_options and request.stream_options.include_usage:
                yield chunk([], usage_info(run))
        except APIError as e:
            yield f"data: {json.dumps(e.body())}\n\n"
        yield "data: [DONE]\n\n"


def message(output: Output, show_thinking: bool) -> ChatMessageOut:
    thinking = output.thinking if show_thinking and output.thinking else None
    calls = [
        ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments)) for c in output.function_calls
    ]
    return ChatMessageOut(
        content=output.answer if output.answer or not calls else None,
        tool_calls=calls or None,
        reasoning=thinking,
        reasoning_content=thinking,
        reasoning_summary=output.summary,
    )


def piece_delta(piece: Piece, show_thinking: bool) -> DeltaMessage | None:
    thinking = piece.thinking if show_thinking and piece.thinking else None
    if not (piece.answer or piece.summary or thinking):
        return None
    return DeltaMessage(
        content=piece.answer or None,
        reasoning=thinking,
        reasoning_content=thinking,
        reasoning_summary=piece.summary or None,
    )


def tool_call_deltas(output: Output) -> list[DeltaToolCall]:
    return [
        DeltaToolCall(index=k, id=c.id, type="function", function=DeltaFunction(name=c.name, arguments=c.arguments))
        for k, c in enumerate(output.function_calls)
    ]


def usage_info(run: Run) -> UsageInfo:
    prompt, completion, reasoning = run.usage()
    return UsageInfo(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=reasoning),
    )
