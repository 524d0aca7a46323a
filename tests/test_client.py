"""The async engine client: streamed deltas add up to the final text, a seeded request gets the same
tokens alone and among 16 others, an abort frees its slot within a step, a full queue says so."""

from __future__ import annotations

import asyncio

import pytest

from ponder.engine import Engine, SamplingParams
from ponder.engine.client import AsyncEngineClient, QueueFull, channel_texts
from ponder.tasks.mix import TaskMix


@pytest.fixture(scope="module")
def engine(trained):
    return Engine(*trained)


@pytest.fixture(scope="module")
def endless(trained):
    """An engine whose model never ends a sequence by itself (no end token): it runs to max_tokens."""
    engine = Engine(*trained)
    engine.format.end_ids = set()
    return engine


async def collect(client, prompt, params, request_id=None):
    return [d async for d in client.generate(prompt, params, request_id)]


def run(coro):
    return asyncio.run(coro)


def test_streamed_deltas_concatenate_to_the_final_text(engine):
    client = AsyncEngineClient(engine)
    prompt = engine.format.prompt("Compute 27+56.")
    try:
        deltas = run(collect(client, prompt, SamplingParams(temperature=1.0, max_tokens=60, seed=1)))
    finally:
        client.close()
    final = deltas[-1]
    assert final.finish_reason in ("stop", "length") and final.rollout is not None
    assert sum(1 for d in deltas if d.thinking or d.answer) > 3, "it should stream, not answer at once"
    thinking, answer, calls = channel_texts(engine.format, final.rollout.text, engine.format.start_phase(prompt))
    assert "".join(d.thinking for d in deltas) == thinking
    assert "".join(d.answer for d in deltas) == answer
    assert [t for d in deltas for t in d.token_ids] == final.rollout.token_ids
    assert final.usage.prompt_tokens == len(prompt)
    assert final.usage.completion_tokens == len(final.rollout.token_ids)
    assert final.usage.reasoning_tokens == final.rollout.thinking_tokens


def test_a_request_without_deltas_gets_one_whole_delta_equal_to_the_streamed_text(engine):
    prompt = engine.format.prompt("Compute 27+56.")
    params = SamplingParams(temperature=1.0, max_tokens=60, seed=1)

    async def both(client):
        streamed = [d async for d in client.generate(prompt, params, "streamed")]
        whole = [d async for d in client.generate(prompt, params, "whole", deltas=False)]
        return streamed, whole

    client = AsyncEngineClient(engine)
    try:
        streamed, whole = run(both(client))
    finally:
        client.close()
    assert len(streamed) > 3 and len(whole) == 1
    (last,) = whole
    assert last.rollout.token_ids == streamed[-1].rollout.token_ids and last.finish_reason is not None
    assert last.thinking == "".join(d.thinking for d in streamed)
    assert last.answer == "".join(d.answer for d in streamed)
    assert last.token_ids == last.rollout.token_ids and last.usage == streamed[-1].usage


def test_a_seeded_request_gets_the_same_tokens_alone_and_in_a_batch_of_16(engine):
    problems = TaskMix("arithmetic:1-2,letters:1,decimals:1").eval_set(per_cell=5)
    prompts = [engine.format.prompt(p.prompt) for p in problems][:17]
    seeded = SamplingParams(temperature=1.0, max_tokens=40, seed=1234)

    async def alone():
        client = AsyncEngineClient(engine)
        try:
            return (await collect(client, prompts[0], seeded))[-1].rollout.token_ids
        finally:
            client.close()

    async def crowded():
        client = AsyncEngineClient(engine)
        try:
            others = [
                collect(client, p, SamplingParams(temperature=1.0, max_tokens=40, seed=i))
                for i, p in enumerate(prompts[1:])
            ]
            results = await asyncio.gather(collect(client, prompts[0], seeded), *others)
            return results[0][-1].rollout.token_ids
        finally:
            client.close()

    assert len(prompts) == 17
    assert run(alone()) == run(crowded())


def test_an_aborted_request_frees_its_slot_within_one_step(endless):
    engine = endless
    params = SamplingParams(temperature=1.0, max_tokens=20_000, seed=0)
    prompt = engine.format.prompt("How many r are in strawberry?")

    async def scenario():
        client = AsyncEngineClient(engine, max_batch=1)
        try:
            first = client.generate(prompt, params, "first")
            await first.__anext__()  # it is running and holds the only slot
            waiting = asyncio.ensure_future(collect(client, prompt, SamplingParams(max_tokens=3, seed=1), "second"))
            await asyncio.sleep(0.05)
            assert client.batch.sequence("second").status == "waiting"
            await first.aclose()  # the reader goes away (a client that disconnects): it is aborted
            deltas = await asyncio.wait_for(waiting, timeout=30)
            return deltas
        finally:
            client.close()

    deltas = run(scenario())
    assert deltas[-1].finish_reason == "length" and len(deltas[-1].rollout.token_ids) == 3


def test_a_full_queue_is_refused_at_once(endless):
    engine = endless

    async def scenario():
        client = AsyncEngineClient(engine, max_batch=1, max_waiting=1)
        prompt = engine.format.prompt("Compute 1+1.")
        try:
            running = client.generate(prompt, SamplingParams(max_tokens=20_000, seed=0))
            await running.__anext__()
            queued = client.generate(prompt, SamplingParams(max_tokens=5, seed=0))
            task = asyncio.ensure_future(queued.__anext__())
            await asyncio.sleep(0.05)
            with pytest.raises(QueueFull, match="retry later"):
                await client.generate(prompt, SamplingParams(max_tokens=5)).__anext__()
            await running.aclose()
            await task
        finally:
            client.close()

    run(scenario())
