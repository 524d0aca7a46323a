"""Drawing samples through the engine client, the only way the server reaches the model.

    streams = await open_streams(client, prompt_ids, params, "chatcmpl-1", range(n))   # 429 if full
    async for i, delta in merged(streams): ...         # n live samples, interleaved as they decode
    finals = await finish_all(streams)                 # or only their last deltas

Each sample is one `AsyncEngineClient.generate` request (sample_index j: a distinct seeded stream),
so concurrent requests join the running batch. A full queue is detected before any byte of the
answer is sent (the first step of each generator runs at once and raises `QueueFull` there), so a
streamed request still gets a proper 429. A reader that stops — a client that disconnects and has
its handler cancelled — cancels the streams it opened, and each cancelled generator aborts its
request in the engine, freeing the slot at the next step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable

from ponder.engine import Rollout, SamplingParams
from ponder.engine.client import AsyncEngineClient, Delta, QueueFull
from ponder.errors import PonderError
from ponder.serve.protocol_common import queue_full, server_error
from ponder.ttc.answers import leader
from ponder.ttc.strategies import AUTO_RULE

RETRY_AFTER_S = 1  # what a 429 asks the client to wait


class SampleStream:
    """One sample's deltas; its first step already ran (so a full queue is known at once)."""

    def __init__(self, generator: AsyncIterator[Delta], request_id: str):
        self.generator = generator
        self.request_id = request_id
        self.first = asyncio.ensure_future(generator.__anext__())

    async def deltas(self) -> AsyncIterator[Delta]:
        try:
            yield await self.first
            async for delta in self.generator:
                yield delta
        except PonderError as e:  # the engine failed on input that passed every check: a server fault
            raise server_error(f"generation failed: {e}")

    async def final(self) -> Delta:
        last = None
        async for delta in self.deltas():
            last = delta
        return last

    async def close(self) -> None:
        """Stop reading: a request still running is aborted by its generator."""
        if not self.first.done():
            self.first.cancel()
        await asyncio.gather(self.first, return_exceptions=True)
        await self.generator.aclose()


async def open_streams(
    client: AsyncEngineClient,
    prompt_ids: list[int],
    params: SamplingParams,
    request_id: str,
    indices: Iterable[int],
    deltas: bool = True,
) -> list[SampleStream]:
    """Start one engine request per sample index; a full queue aborts them all and raises 429.
    `deltas=False`: each stream yields only its last delta (for an answer sent whole)."""
    streams: list[SampleStream] = []
    try:
        for j in indices:
            rid = f"{request_id}-{j}"
            streams.append(SampleStream(client.generate(prompt_ids, params, rid, sample_index=j, deltas=deltas), rid))
        await asyncio.sleep(0)  # each generator runs to its first wait: a full queue raises now
        for stream in streams:
            if stream.first.done() and not stream.first.cancelled() and stream.first.exception() is not None:
                raise stream.first.exception()
    except QueueFull:
        await close_all(streams)
        raise queue_full(RETRY_AFTER_S)
    except BaseException:
        await close_all(streams)
        raise
    return streams


async def close_all(streams: list[SampleStream]) -> None:
    for stream in streams:
        await stream.close()


async def finish_all(streams: list[SampleStream]) -> list[Delta]:
    """The last delta of every stream (finish reason, usage, rollout), read concurrently."""
    try:
        return list(await asyncio.gather(*(s.final() for s in streams)))
    finally:
        await close_all(streams)


async def merged(streams: list[SampleStream]) -> AsyncIterator[tuple[int, Delta]]:
    """(stream index, delta) from all streams as they arrive; closing it closes every stream."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, stream: SampleStream) -> None:
        try:
            async for delta in stream.deltas():
                await queue.put((i, delta))
        except Exception as e:  # handed to the reader, which raises it
            await queue.put((i, e))
        await queue.put((i, None))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            i, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield i, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_all(streams)


def thinking_tokens_so_far(client: AsyncEngineClient, request_id: str) -> int | None:
    """The thinking tokens of a running request, read when its answer starts (the count is final
    then: the engine stops counting once the thinking closes). None once the request has left the
    batch: its last delta carries the count."""
    return client.thinking_tokens(request_id)


async def auto_draw(
    client: AsyncEngineClient,
    prompt_ids: list[int],
    anchor: SamplingParams,
    params: SamplingParams,
    request_id: str,
    key: Callable[[Rollout], str],
) -> list[Delta]:
    """Auto effort over a client request: the greedy answer with thinking on is the first vote, then
    one sample at a time until the leading answer holds `AUTO_RULE.min_count` votes and
    `AUTO_RULE.min_share` of all, or `AUTO_RULE.max_n` answers are in (the rule `ponder scale` chose)."""
    finals = await finish_all(await open_streams(client, prompt_ids, anchor, request_id, [0], deltas=False))
    keys = [key(finals[0].rollout)]
    while not auto_done(keys):
        j = len(finals)
        finals += await finish_all(await open_streams(client, prompt_ids, params, request_id, [j], deltas=False))
        keys.append(key(finals[-1].rollout))
    return finals


def auto_done(keys: list[str]) -> bool:
    _, count, share = leader(keys)
    return len(keys) >= AUTO_RULE.max_n or (count >= AUTO_RULE.min_count and share >= AUTO_RULE.min_share)
