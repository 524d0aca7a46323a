"""The engine in its own process (`EngineProcess`): the same tokens and deltas as the in-process
client, abort and a full queue across the pipe, tools run in the calling process, and a clear error
for a model that cannot load or an engine process that dies."""

from __future__ import annotations

import asyncio
import os

import pytest

from ponder.engine import Engine, SamplingParams
from ponder.engine.client import AsyncEngineClient, QueueFull
from ponder.engine.process import EngineProcess
from ponder.errors import PonderError
from ponder.tasks import get_task

# the model must think 2,990 tokens (seconds of decoding): a request that runs until it is aborted
LONG = SamplingParams(temperature=1.0, max_tokens=3000, force_thinking=True, min_thinking_tokens=2990, seed=0)


def run(coro):
    return asyncio.run(coro)


async def collect(client, prompt, params, request_id=None, deltas=True):
    return [d async for d in client.generate(prompt, params, request_id, deltas=deltas)]


@pytest.fixture(scope="module")
def one_slot(trained_run):
    """An engine process with room for one running and one waiting request."""
    client = EngineProcess(trained_run / "model", device="cpu", max_batch=1, max_waiting=1)
    yield client
    client.close()


def test_the_same_tokens_and_deltas_as_the_in_process_client(trained_run, trained):
    local = AsyncEngineClient(Engine(*trained))
    remote = EngineProcess(trained_run / "model", device="cpu")
    prompts = [local.format.prompt(q) for q in ("Compute 27+56.", "How many r are in strawberry?")]
    params = SamplingParams(temperature=1.0, max_tokens=60, seed=7)

    async def both(client):
        streamed = await asyncio.gather(*(collect(client, p, params, f"s{i}") for i, p in enumerate(prompts)))
        whole = await collect(client, prompts[0], params, "w", deltas=False)
        return streamed, whole

    try:
        (here, _), (there, whole) = run(both(local)), run(both(remote))
    finally:
        local.close()
        remote.close()
    assert remote.process.returncode == 0, "close() stops the engine process cleanly"
    for mine, theirs in zip(here, there, strict=True):
        assert [d.token_ids for d in theirs] != [] and theirs[-1].rollout.token_ids == mine[-1].rollout.token_ids
        assert theirs[-1].rollout.text == mine[-1].rollout.text and theirs[-1].usage == mine[-1].usage
        assert "".join(d.thinking for d in theirs) == "".join(d.thinking for d in mine)
        assert "".join(d.answer for d in theirs) == "".join(d.answer for d in mine)
    assert sum(1 for d in there[0] if d.thinking or d.answer) > 3, "it streams, not only the last delta"
    assert len(whole) == 1 and whole[0].rollout.token_ids == there[0][-1].rollout.token_ids


def test_an_abort_ends_the_running_request_and_frees_its_slot(one_slot):
    client = one_slot
    prompt = client.format.prompt("How many r are in strawberry?")

    async def scenario():
        first = client.generate(prompt, LONG, "first")
        await first.__anext__()  # running, in the only slot
        second = asyncio.ensure_future(collect(client, prompt, SamplingParams(max_tokens=3, seed=1), "second"))
        assert client.thinking_tokens("first") is not None
        await client.abort("first")
        rest = [d async for d in first]
        return rest[-1], await asyncio.wait_for(second, timeout=60)

    aborted, second = run(scenario())
    assert aborted.finish_reason == "abort" and len(aborted.rollout.token_ids) < 2990
    assert second[-1].finish_reason == "length" and len(second[-1].rollout.token_ids) == 3
    assert client.streams == {}


def test_a_reader_that_goes_away_aborts_its_request(one_slot):
    client = one_slot
    prompt = client.format.prompt("Compute 1+1.")

    async def scenario():
        first = client.generate(prompt, LONG, "gone")
        await first.__anext__()
        waiting = asyncio.ensure_future(collect(client, prompt, SamplingParams(max_tokens=3, seed=1)))
        await first.aclose()  # a client that disconnects
        return await asyncio.wait_for(waiting, timeout=60)

    assert len(run(scenario())[-1].rollout.token_ids) == 3


def test_a_full_queue_is_refused_at_once(one_slot):
    client = one_slot
    prompt = client.format.prompt("Compute 1+1.")

    async def scenario():
        running = client.generate(prompt, LONG)
        await running.__anext__()
        queued = asyncio.ensure_future(collect(client, prompt, SamplingParams(max_tokens=3, seed=0)))
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull, match="retry later"):
            await client.generate(prompt, SamplingParams(max_tokens=3)).__anext__()
        await running.aclose()
        return await asyncio.wait_for(queued, timeout=60)

    assert run(scenario())[-1].finish_reason == "length"


def test_tools_run_in_the_calling_process():
    """The shipped tool model calls the calculator on 4-digit sums; the call reaches this process."""
    from ponder.assets import tools_model_path
    from ponder.tools.loop import ToolLoop

    calculator = ToolLoop.of(["calculator"])
    seen: list[int] = []

    def on_tool_call(rollout):
        seen.append(os.getpid())
        return calculator(rollout)

    client = EngineProcess(tools_model_path(), device="cpu", on_tool_call=on_tool_call)
    question = get_task("arithmetic").problem("eval", 0, 5).prompt
    try:
        deltas = run(collect(client, client.format.prompt(question), SamplingParams(temperature=0, tools=True)))
    finally:
        client.close()
    rollout = deltas[-1].rollout
    assert rollout.tool_calls >= 1 and seen == [os.getpid()] * rollout.tool_calls
    assert rollout.tool_statuses == ["ok"] * rollout.tool_calls and "<tool_response>" in rollout.text


def test_a_dead_engine_process_fails_open_and_new_requests(trained_run):
    client = EngineProcess(trained_run / "model", device="cpu", max_batch=2)
    prompt = client.format.prompt("Compute 1+1.")

    async def scenario():
        running = client.generate(prompt, LONG)
        await running.__anext__()
        client.process.kill()
        with pytest.raises(PonderError, match="engine process exited"):
            async for _ in running:
                pass
        with pytest.raises(PonderError, match="engine process exited"):
            await client.generate(prompt, SamplingParams(max_tokens=3)).__anext__()

    try:
        run(asyncio.wait_for(scenario(), timeout=60))
    finally:
        client.close()


def test_a_model_that_cannot_load_fails_at_start_with_the_reason(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(PonderError, match="could not start.*config.json"):
        EngineProcess(tmp_path, device="cpu")


def test_the_engine_process_exits_when_the_process_that_started_it_is_killed(trained_run):
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = (
        "import time\nfrom ponder.engine.process import EngineProcess\n"
        f"client = EngineProcess({str(trained_run / 'model')!r}, device='cpu')\n"
        "print(client.process.pid, flush=True)\ntime.sleep(600)\n"
    )
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    engine_pid = int(server.stdout.readline())
    server.kill()  # no shutdown: the engine process only sees its pipe close
    server.wait()

    def alive() -> bool:
        try:
            return Path(f"/proc/{engine_pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 30
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(), "the engine process outlived the process that started it"
