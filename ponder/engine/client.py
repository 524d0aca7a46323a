"""`AsyncEngineClient`: the engine as a server and the tool loop see it (vLLM's `EngineClient`, scaled down).

    client = AsyncEngineClient(engine, max_batch=32)
    async for delta in client.generate(prompt_ids, SamplingParams(max_tokens=256, seed=7)):
        print(delta.thinking, delta.answer, delta.tool_call)     # text added to each channel
    # the last delta has finish_reason, usage and the rollout
    await client.abort(request_id)                                # frees its slot at the next step

One background thread owns the model and steps the running batch (`live.LiveBatch`); the asyncio
side only queues commands and reads deltas, so blocking work never runs on the event loop. Requests
beyond `max_batch` wait in the batch's queue; beyond `max_waiting` more, `generate` raises
`QueueFull` at once (a server answers 429). A consumer that stops reading (a client that
disconnects, a cancelled task) aborts its request. A sequence that closes a tool call pauses; the
`on_tool_call` callback runs in a worker thread (never on the decode thread, so the batch keeps
decoding) and its output resumes the sequence.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field

from ponder.engine.chat_format import held_back
from ponder.engine.sampling import SamplingParams
from ponder.engine.sequence import Rollout, Sequence
from ponder.errors import PonderError


class QueueFull(PonderError):
    """The engine's waiting queue is full; retry later."""


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int  # tokens chosen by decoding (a tool's output is not counted)
    reasoning_tokens: int  # of those, the thinking

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Delta:
    """What one request gained since its last delta, split by channel."""

    request_id: str
    thinking: str = ""
    answer: str = ""
    tool_call: str = ""  # text inside <tool_call> ... </tool_call>
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str | None = None  # set on the last delta: "stop", "length" or "abort"
    usage: Usage | None = None  # on the last delta
    rollout: Rollout | None = None  # on the last delta


@dataclass
class DeltaCursor:
    """How much of one request's completion its consumer has been sent."""

    sent_tokens: int = 0
    sent: tuple[str, str, str] = ("", "", "")  # thinking, answer, tool-call text already sent


@dataclass
class _Stream(DeltaCursor):
    loop: asyncio.AbstractEventLoop | None = None  # None: a request added by `submit` (its deltas go to the sink)
    queue: asyncio.Queue | None = None
    deltas: bool = True  # False: only the last delta (a whole answer: no per-step decoding or wake-ups)


class AsyncEngineClient:
    def __init__(
        self,
        engine,
        max_batch: int = 64,
        max_waiting: int = 256,
        on_tool_call: Callable[[Rollout], str] | None = None,
        tool_workers: int = 4,
        sink: Callable[[list[tuple[str, object]]], None] | None = None,
    ):
        from ponder.engine.live import LiveBatch

        self.engine = engine
        self.batch = LiveBatch(engine, max_batch=max_batch)
        self.max_waiting = max_waiting
        self.on_tool_call = on_tool_call
        # where the deltas of requests added by `submit` go: [(request id, delta or exception), ...],
        # called on the decode thread once per step (the engine process sends them on at once)
        self.sink = sink
        self.tools = ThreadPoolExecutor(tool_workers, thread_name_prefix="ponder-tool")
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.wake = threading.Event()
        self.streams: dict[str, _Stream] = {}
        self.ids = itertools.count()
        self.queued = 0  # requests sent to the decode thread and not yet admitted
        self.mailbox = LoopMailbox()
        self.closed = False
        self.thread = threading.Thread(target=self._run, name="ponder-engine", daemon=True)
        self.thread.start()

    # --- the asyncio side ---------------------------------------------------------------------------

    async def generate(
        self,
        prompt: str | list[int],
        params: SamplingParams,
        request_id: str | None = None,
        sample_index: int = 0,
        deltas: bool = True,
    ) -> AsyncIterator[Delta]:
        """Token deltas of one request, the last one with finish_reason, usage and the rollout.
        For n samples of one prompt, call it n times with sample_index 0..n-1: their random streams
        differ (the same seed, mixed with the index), and joining at one step they share a prefill.
        `deltas=False` yields only the last delta (whole text), for a consumer that does not stream."""
        if self.closed:
            raise PonderError("the engine client is closed")
        if len(self.batch.waiting) + self.queued >= self.max_waiting:
            raise QueueFull(f"{self.max_waiting} requests are already waiting; retry later")
        request_id = request_id or f"req-{next(self.ids)}"
        stream = _Stream(loop=asyncio.get_running_loop(), queue=asyncio.Queue(), deltas=deltas)
        self.streams[request_id] = stream
        self.queued += 1
        self._send("add", request_id, self.engine.encode(prompt), params, sample_index)
        async with aclosing(read_deltas(stream.queue, on_stop=lambda: self._send("abort", request_id))) as deltas:
            async for delta in deltas:
                yield delta

    async def abort(self, request_id: str) -> None:
        self.abort_nowait(request_id)

    def abort_nowait(self, request_id: str) -> None:
        """`abort` from any thread: the request ends at the next step."""
        self._send("abort", request_id)

    def submit(self, request_id: str, prompt_ids: list[int], params: SamplingParams, sample_index: int = 0,
               deltas: bool = True) -> None:  # fmt: skip
        """Add a request whose deltas go to the sink, from any thread and without an event loop (the
        engine process's way in: no asyncio hop between the decode thread and the pipe)."""
        if self.sink is None:
            raise PonderError("submit needs an engine client made with a sink")
        self.streams[request_id] = _Stream(deltas=deltas)
        self.queued += 1
        self._send("add", request_id, prompt_ids, params, sample_index)

    @property
    def format(self):
        """The model's chat format: how the server renders prompts and splits completions."""
        return self.engine.format

    def thinking_tokens(self, request_id: str) -> int | None:
        """Thinking tokens a running request has written so far; None once it left the batch."""
        seq = self.batch.sequence(request_id)
        return seq.rollout.thinking_tokens if seq is not None else None

    def close(self) -> None:
        self.closed = True
        self._send("stop")
        self.thread.join(timeout=10)
        self.tools.shutdown(wait=False, cancel_futures=True)

    def _send(self, *command) -> None:
        self.inbox.put(command)
        self.wake.set()

    # --- the decode thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            if not self._drain():
                return
            if self.batch.idle:
                self.wake.wait(timeout=0.5)
                self.wake.clear()
                continue
            try:
                events = self.batch.step()
            except Exception as e:  # a broken model or input: fail every running request, keep serving
                self._fail_all(e)
                continue
            self._publish(events)

    def _drain(self) -> bool:
        """Apply queued commands; False once asked to stop."""
        while True:
            try:
                command, *args = self.inbox.get_nowait()
            except queue.Empty:
                return True
            if command == "stop":
                return False
            if command == "add":
                self.queued -= 1
                self._add(*args)
            elif command == "abort":
                self._abort(args[0])
            elif command == "resume":
                self.batch.resume(*args)

    def _add(self, request_id: str, prompt_ids: list[int], params: SamplingParams, sample_index: int) -> None:
        try:
            self.batch.add(prompt_ids, params, request_id=request_id, sample_index=sample_index)
        except Exception as e:
            self._push(request_id, e)
            self.streams.pop(request_id, None)

    def _abort(self, request_id: str) -> None:
        rollout = self.batch.abort(request_id)
        stream = self.streams.pop(request_id, None)
        if rollout is not None and stream is not None:
            delta = Delta(request_id, finish_reason="abort", rollout=rollout, usage=usage_of(rollout))
            self._deliver_one(request_id, stream, delta)

    def _publish(self, events) -> None:
        """Send every streaming request what it gained this step, one wake-up per event loop per
        step (not one per token per stream); run tools for the paused."""
        ended = {e.request: e for e in events}
        outbox: dict[asyncio.AbstractEventLoop, list] = {}
        sunk: list[tuple[str, object]] = []
        for request_id, stream in list(self.streams.items()):
            event = ended.get(request_id)
            seq = self.batch.sequence(request_id)
            delta = None
            if event is not None and event.kind == "finished":
                delta = self._delta(request_id, stream, None, event.rollout)
                self.streams.pop(request_id)
            elif stream.deltas and seq is not None and len(seq.rollout.token_ids) > stream.sent_tokens:
                delta = self._delta(request_id, stream, seq, None)
            if delta is not None:
                self._route(outbox, sunk, request_id, stream, delta)
            if event is not None and event.kind == "paused":
                self._call_tool(request_id, event.rollout)
        self._flush(outbox, sunk)

    @staticmethod
    def _route(outbox: dict, sunk: list, request_id: str, stream: _Stream, item) -> None:
        """File one delta (or exception) for its consumer: its event loop's batch, or the sink's."""
        if stream.loop is None:
            sunk.append((request_id, item))
        else:
            outbox.setdefault(stream.loop, []).append((stream.queue, item))

    def _deliver_one(self, request_id: str, stream: _Stream, item) -> None:
        outbox: dict = {}
        sunk: list = []
        self._route(outbox, sunk, request_id, stream, item)
        self._flush(outbox, sunk)

    def _flush(self, outbox: dict, sunk: list) -> None:
        for loop, items in outbox.items():
            self.mailbox.post(loop, items)
        if sunk:
            self.sink(sunk)

    def _delta(self, request_id: str, stream: _Stream, seq: Sequence | None, final: Rollout | None) -> Delta:
        rollout = final if final is not None else seq.rollout
        return next_delta(self.engine.format, request_id, stream, rollout, final is not None)

    def _call_tool(self, request_id: str, rollout: Rollout) -> None:
        if self.on_tool_call is None:
            self._send("resume", request_id, "\nerror: no tools are enabled on this engine\n")
            return

        def run() -> None:
            self._send("resume", request_id, tool_output(self.on_tool_call, rollout))

        self.tools.submit(run)

    def _push(self, request_id: str, item) -> None:
        stream = self.streams.get(request_id)
        if stream is not None:
            self._deliver_one(request_id, stream, item)

    def _fail_all(self, error: Exception) -> None:
        for request_id in list(self.streams):
            self.batch.abort(request_id)
            self._push(request_id, PonderError(f"the engine failed while decoding: {error}"))
        self.streams.clear()


def tool_output(on_tool_call: Callable[[Rollout], str], rollout: Rollout) -> str:
    """What a paused sequence resumes with: the tool's output; a failing tool is an observation,
    never a crash."""
    try:
        return on_tool_call(rollout)
    except Exception as e:
        return f"\nerror: the tool failed: {e}\n"


async def read_deltas(queue: asyncio.Queue, on_stop: Callable[[], None]) -> AsyncIterator[Delta]:
    """A request's deltas from its queue, up to and including the last (an exception put there is
    raised). `on_stop` runs when the consumer stops reading before the last (it aborts the request)."""
    finished = False
    try:
        while True:
            delta = await queue.get()
            if isinstance(delta, BaseException):
                raise delta
            finished = delta.finish_reason is not None
            yield delta
            if finished:
                return
    finally:
        if not finished:  # the consumer stopped reading: free the slot
            on_stop()


class LoopMailbox:
    """Hands (asyncio.Queue, item) pairs to event loops from another thread. A wake-up costs a
    self-pipe write; when a loop has not yet run the last delivery posted to it (it is busy), new
    items join that delivery instead: one wake-up per loop per step, not one per token per stream."""

    def __init__(self):
        self.posted: dict[asyncio.AbstractEventLoop, list] = {}
        self.lock = threading.Lock()

    def post(self, loop: asyncio.AbstractEventLoop, items: list) -> None:
        """Items for a loop that has closed are dropped: no one is left to read them."""
        with self.lock:
            waiting = self.posted.get(loop)
            if waiting is not None:
                waiting.extend(items)
                return
            self.posted[loop] = list(items)
        try:
            loop.call_soon_threadsafe(self._deliver, loop)
        except RuntimeError:  # the loop is closed
            with self.lock:
                self.posted.pop(loop, None)

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the event loop: hand each queue its items, in the order they were posted."""
        with self.lock:
            items = self.posted.pop(loop, [])
        for queue_, item in items:
            queue_.put_nowait(item)


def next_delta(fmt, request_id: str, cursor: DeltaCursor, rollout: Rollout, final: bool) -> Delta:
    """What `rollout` gained since `cursor`, split by channel (the cursor moves on). A running
    completion holds back a half-written marker; a `final` one carries finish reason and usage."""
    if final:
        text = rollout.text
    else:
        text = fmt.tokenizer.decode(rollout.token_ids, skip_special_tokens=False)
        text = text[: len(text) - held_back(text)]
    channels = channel_texts(fmt, text, fmt.start_phase(rollout.prompt_ids))
    pieces = [new[len(old) :] if new.startswith(old) else new for new, old in zip(channels, cursor.sent, strict=True)]
    cursor.sent = tuple(old + piece for old, piece in zip(cursor.sent, pieces, strict=True))
    new_tokens = slice(cursor.sent_tokens, len(rollout.token_ids))
    cursor.sent_tokens = len(rollout.token_ids)
    delta = Delta(request_id, *pieces, rollout.token_ids[new_tokens], rollout.logprobs[new_tokens])
    if final:
        delta.finish_reason, delta.rollout, delta.usage = rollout.finish_reason, rollout, usage_of(rollout)
    return delta


def channel_texts(fmt, text: str, start) -> tuple[str, str, str]:
    """(thinking, answer, tool-call text) of a completion so far: tool-call blocks are taken out of
    the thinking and the answer into their own channel. Deltas are cut from these, so as text grows
    each channel only grows."""
    from ponder.engine.chat_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

    thinking, answer, _ = fmt.split(text, start)
    calls: list[str] = []
    out = []
    for part in (thinking, answer):
        plain = []
        for i, chunk in enumerate(part.split(TOOL_CALL_OPEN)):
            if i == 0:
                plain.append(chunk)
                continue
            call, _, rest = chunk.partition(TOOL_CALL_CLOSE)
            calls.append(TOOL_CALL_OPEN + call + (TOOL_CALL_CLOSE if _ else ""))
            plain.append(rest)
        out.append("".join(plain))
    return out[0], out[1], "".join(calls)


def usage_of(rollout: Rollout) -> Usage:
    """Prompt tokens, tokens chosen by decoding (a tool's output excluded) and the thinking among them."""
    return Usage(len(rollout.prompt_ids), len(rollout.token_ids) - rollout.tool_tokens, rollout.thinking_tokens)
