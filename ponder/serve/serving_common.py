"""What both endpoints share: the server's state, a request prepared for the engine, and its run.

    job = prepare(state, request_id=..., messages=..., plan=request.to_plan(), ...)   # 400 / 404 here
    run = Run(state, job)
    await run.start(stream=False)          # engine requests open now: a full queue is a 429 here
    outputs = await run.complete()         # or: async for piece in run.pieces(): ...
    await run.save()                       # every returned completion, for feedback to name

A prompt is rendered by the model's own chat template (so `usage.prompt_tokens` is exactly what the
model reads) and checked against its context before anything is queued. A request that returns every
sample it draws (no best-of, no auto effort) streams live; one that must choose first streams the
chosen samples once they are drawn and ranked. No FastAPI here: the app maps `APIError`s to HTTP.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ponder.engine.chat_format import TOOL_CALL_CLOSE
from ponder.engine.client import AsyncEngineClient, Delta, usage_of
from ponder.errors import PonderError
from ponder.serve.feedback import CompletionRow, FeedbackStore
from ponder.serve.outputs import LiveOutput, Output, OutputBuilder, Piece, whole_piece
from ponder.serve.protocol_common import Plan, PonderOptions, bad_request, default_max_tokens, not_found
from ponder.serve.ranking import Ranking, TextRanker, ranking_for
from ponder.serve.sampler import SampleStream, auto_draw, finish_all, merged, open_streams
from ponder.tools import get_tool


@dataclass
class ServerState:
    """The one model a server serves, and what every request may use."""

    client: AsyncEngineClient
    model_name: str
    context_len: int  # the model's max_position_embeddings: prompt + completion must fit
    default_max_tokens: int = 256  # a request without max tokens or an effort gets this many
    show_thinking: bool = False  # send the raw thinking to every request (else only when asked)
    tool_names: tuple[str, ...] = ()  # built-in tools the server runs (the client's on_tool_call)
    rankers: dict[str, TextRanker] = field(default_factory=dict)  # "verifier", "reward_model"
    store: FeedbackStore | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def format(self):
        return self.client.format

    def check_model(self, name: str) -> None:
        if name != self.model_name:
            raise not_found(
                f"the model {name!r} is not served here; this server serves {self.model_name!r} (GET /v1/models)",
                "model",
                "model_not_found",
            )


@dataclass
class Job:
    """One request, ready for the engine."""

    request_id: str
    endpoint: str  # chat.completions | responses
    messages: list[dict]  # as the chat template saw them
    prompt_ids: list[int]
    plan: Plan
    ranking: Ranking
    builder: OutputBuilder
    show_thinking: bool

    @property
    def prompt_text(self) -> str:
        return self.builder.fmt.tokenizer.decode(self.prompt_ids, skip_special_tokens=False)


def prepare(
    state: ServerState,
    *,
    request_id: str,
    endpoint: str,
    model: str,
    messages: list[dict],
    plan: Plan,
    options: PonderOptions,
    functions: list[dict],
    summary: str,
) -> Job:
    """Check the model, the tools and the context; render the prompt; choose the ranking."""
    state.check_model(model)
    unknown = sorted(set(options.tools) - set(state.tool_names))
    if unknown:
        enabled = ", ".join(state.tool_names) or "none (start the server with --tools calculator,search,...)"
        raise bad_request(f"built-in tool(s) {', '.join(unknown)} are not enabled; enabled: {enabled}", "ponder.tools")
    tools = functions + [get_tool(name).spec() for name in options.tools]
    fmt = state.format
    try:
        prompt_ids = fmt.render(messages, thinking=plan.thinking, tools=tools or None)
    except PonderError as e:
        raise bad_request(str(e), "messages")
    except Exception as e:  # a template that raises on this conversation (jinja's own errors)
        raise bad_request(f"the model's chat template cannot render these messages: {e}", "messages")
    plan.fit(len(prompt_ids), state.context_len, default_max_tokens(plan, state.default_max_tokens))
    if functions:
        plan.params.stop.append(TOOL_CALL_CLOSE)  # the client runs its functions: stop at a call
    user_text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    names = {f["function"]["name"] for f in functions}
    return Job(
        request_id=request_id,
        endpoint=endpoint,
        messages=messages,
        prompt_ids=prompt_ids,
        plan=plan,
        ranking=ranking_for(options, user_text, state.rankers),
        builder=OutputBuilder(fmt, fmt.start_phase(prompt_ids), summary, names),
        show_thinking=state.show_thinking if options.show_thinking is None else options.show_thinking,
    )


class Run:
    """Drawing a job's samples and turning the chosen ones into outputs."""

    def __init__(self, state: ServerState, job: Job):
        self.state = state
        self.job = job
        self.streams: list[SampleStream] | None = None
        self.finals: list[Delta] = []  # every sample drawn (their tokens are all paid for)
        self.outputs: list[Output] = []  # the returned ones, best first

    @property
    def live(self) -> bool:
        """Every sample drawn is returned, in draw order, so it can stream as it decodes."""
        return not self.job.plan.auto and self.job.plan.draws == self.job.plan.choices

    async def start(self, stream: bool = True) -> None:
        """Queue the engine requests (auto effort queues its first one when it runs). Unless the
        answer streams as it decodes, the engine sends each sample's text once, when it ends."""
        if self.streams is None and not self.job.plan.auto:
            job = self.job
            self.streams = await open_streams(
                self.state.client,
                job.prompt_ids,
                job.plan.params,
                job.request_id,
                range(job.plan.draws),
                deltas=stream and self.live,
            )

    async def complete(self) -> list[Output]:
        """Draw, rank, and build the returned outputs (best first)."""
        job, plan = self.job, self.job.plan
        if plan.auto:
            self.finals = await auto_draw(
                self.state.client, job.prompt_ids, plan.anchor, plan.params, job.request_id, job.ranking.key
            )
        else:
            await self.start(stream=False)
            self.finals = await finish_all(self.streams)
        order = await job.ranking.order([f.rollout for f in self.finals], job.prompt_text)
        self.outputs = [job.builder.final(i, self.finals[k].rollout) for i, k in enumerate(order[: plan.choices])]
        return self.outputs

    async def pieces(self) -> AsyncIterator[Piece]:
        """The outputs as they stream; `outputs` is complete once this ends."""
        if not self.live:
            for output in await self.complete():
                yield whole_piece(output)
            return
        await self.start()
        lives = [LiveOutput(i, s.request_id, self.job.builder, self.state.client) for i, s in enumerate(self.streams)]
        done: dict[int, Output] = {}
        async for i, delta in merged(self.streams):
            piece = lives[i].feed(delta)
            if piece.output is not None:
                done[i] = piece.output
                self.finals.append(delta)
            yield piece
        self.outputs = [done[i] for i in sorted(done)]

    def usage(self) -> tuple[int, int, int]:
        """(prompt, completion, reasoning) tokens: the prompt once, every drawn sample's tokens."""
        used = [usage_of(f.rollout) for f in self.finals]
        return len(self.job.prompt_ids), sum(u.completion_tokens for u in used), sum(u.reasoning_tokens for u in used)

    async def save(self) -> None:
        if self.state.store is not None and self.outputs:
            await self.state.store.save_completions([self._row(o) for o in self.outputs])

    def _row(self, output: Output) -> CompletionRow:
        job, params = self.job, self.job.plan.params
        return CompletionRow(
            id=job.request_id,
            choice=output.index,
            endpoint=job.endpoint,
            model=self.state.model_name,
            messages=job.messages,
            prompt=job.prompt_text,
            completion=output.rollout.text,
            thinking=output.thinking,
            answer=output.answer,
            summary=output.summary,
            tool_calls=[{"name": c.name, "arguments": c.arguments} for c in output.function_calls],
            finish_reason=output.finish_reason,
            completion_tokens=usage_of(output.rollout).completion_tokens,
            reasoning_tokens=output.rollout.thinking_tokens,
            sampling={
                "reasoning_effort": job.plan.effort,
                "temperature": params.temperature,
                "top_p": params.top_p,
                "seed": params.seed,
                "max_tokens": params.max_tokens,
                "drawn": len(self.finals),
                "rank": job.plan.rank,
            },
        )
