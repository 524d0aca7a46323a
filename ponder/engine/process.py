"""`EngineProcess`: the engine client with the model in a process of its own (vLLM V1's split).

    client = EngineProcess("runs/rl/model", max_batch=64, on_tool_call=tools)
    async for delta in client.generate(prompt_ids, SamplingParams(max_tokens=256, seed=7)):
        ...                                         # the same deltas as AsyncEngineClient's
    await client.abort(request_id)
    client.close()

Why a process: in one process the decode thread and a server's event loop share one interpreter
lock. Every small torch call of a decode step gives the lock up and waits to get it back while the
event loop parses HTTP, so a busy server slows every step (a 14-row step took 2.6 ms inside the
server against 1.2 ms alone), and the server as a whole never uses more than one core. Here the
engine process runs `AsyncEngineClient` itself (the same batch, sampling and deltas, so the two
clients cannot drift apart), and this process only encodes prompts, sends commands and routes
deltas: the HTTP side and decoding run on separate cores.

Over one `multiprocessing` pipe (pickled tuples):

    here -> engine   ("add", request_id, prompt_ids, params, sample_index, deltas)
                     ("abort", request_id)   ("tool_result", call_id, text, statuses)   ("stop",)
    engine -> here   ("ready", end_ids) or ("failed", message), once
                     ("out", [(request_id, delta or exception, thinking tokens so far), ...])
                     ("tool", call_id, rollout): run `on_tool_call` here on a copy of the rollout,
                     answer with tool_result (the output, and the copy's tool_statuses, which the
                     callback extends: the engine's rollout takes them)

The engine process's decode thread sends one "out" message per decode step, whatever the number of
streams, straight to the pipe (no event loop in that process). Tools
run in this process (their sandboxes and indexes belong to the server), on a thread pool. If the
engine process dies, every open request fails with a PonderError naming its exit code and new ones
are refused; when this process dies, the engine process sees its pipe close and exits.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from ponder.engine.chat_format import encode_prompt
from ponder.engine.client import AsyncEngineClient, LoopMailbox, QueueFull, read_deltas, tool_output
from ponder.engine.sampling import SamplingParams
from ponder.engine.sequence import Rollout
from ponder.errors import PonderError

START_TIMEOUT_S = 300.0  # loading a large checkpoint onto a GPU can take minutes


@dataclass
class _Remote:
    """One request as this process sees it: where its deltas go, and its thinking so far."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    thinking_tokens: int = 0


class EngineProcess:
    def __init__(
        self,
        model_dir: str | Path,
        device: str = "auto",
        max_batch: int = 64,
        max_waiting: int = 256,
        on_tool_call: Callable[[Rollout], str] | None = None,
        tool_workers: int = 4,
        start_timeout: float = START_TIMEOUT_S,
    ):
        from transformers import AutoConfig, AutoTokenizer

        from ponder.engine.chat_format import ChatFormat

        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.on_tool_call = on_tool_call
        # a fresh interpreter that imports only ponder (not the caller's script, as multiprocessing's
        # spawn would), joined to this one by a socket pair wrapped as a multiprocessing Connection
        here, there = socket.socketpair()
        command = [sys.executable, "-c", "from ponder.engine.process import main; main()", str(there.fileno()),
                   str(model_dir), device, str(max_batch), "tools" if on_tool_call else "no-tools"]  # fmt: skip
        self.process = subprocess.Popen(command, pass_fds=[there.fileno()])
        there.close()
        self.conn = Connection(here.detach())
        end_ids = self._wait_ready(start_timeout)
        self.config = AutoConfig.from_pretrained(model_dir)  # the model's context length, for the server
        self.format = ChatFormat(AutoTokenizer.from_pretrained(model_dir), end_ids=set(end_ids))
        self.streams: dict[str, _Remote] = {}
        self.ids = itertools.count()
        self.mailbox = LoopMailbox()
        self.send_lock = threading.Lock()
        self.tools = ThreadPoolExecutor(tool_workers, thread_name_prefix="ponder-tool")
        self.failure: str | None = None  # why the engine process is gone, once it is
        self.closed = False
        self.reader = threading.Thread(target=self._read, name="ponder-engine-reader", daemon=True)
        self.reader.start()

    def _wait_ready(self, timeout: float) -> list[int]:
        if not self.conn.poll(timeout):
            self._stop_process(grace=0)
            raise PonderError(f"the engine process did not load the model within {timeout:.0f} s")
        try:
            kind, payload = self.conn.recv()
        except EOFError:
            raise PonderError(f"the engine process exited before it was ready (exit code {self._stop_process()})")
        if kind == "failed":
            self._stop_process()
            raise PonderError(f"the engine process could not start: {payload}")
        return payload

    # --- the asyncio side (the same interface as AsyncEngineClient) ----------------------------------

    async def generate(
        self,
        prompt: str | list[int],
        params: SamplingParams,
        request_id: str | None = None,
        sample_index: int = 0,
        deltas: bool = True,
    ) -> AsyncIterator:
        if self.closed or self.failure:
            raise PonderError(self.failure or "the engine client is closed")
        if len(self.streams) >= self.max_batch + self.max_waiting:
            raise QueueFull(f"{self.max_waiting} requests are already waiting; retry later")
        request_id = request_id or f"req-{next(self.ids)}"
        prompt_ids = encode_prompt(self.format.tokenizer, prompt)
        self.streams[request_id] = remote = _Remote(asyncio.get_running_loop(), asyncio.Queue())
        self._send(("add", request_id, prompt_ids, params, sample_index, deltas))
        try:
            async with aclosing(read_deltas(remote.queue, on_stop=lambda: self._abort(request_id))) as stream:
                async for delta in stream:
                    yield delta
        finally:
            self.streams.pop(request_id, None)

    async def abort(self, request_id: str) -> None:
        self._abort(request_id)

    def thinking_tokens(self, request_id: str) -> int | None:
        """Thinking tokens a running request had written at its last delta; None once it has left."""
        remote = self.streams.get(request_id)
        return remote.thinking_tokens if remote is not None else None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.process.poll() is None:
            self._send(("stop",))
        self._stop_process()
        self.conn.close()
        self.tools.shutdown(wait=False, cancel_futures=True)

    def _stop_process(self, grace: float = 10.0) -> int:
        """Wait up to `grace` seconds for the engine process to exit, then kill it; its exit code."""
        try:
            return self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def _abort(self, request_id: str) -> None:
        if not self.failure and not self.closed:
            self._send(("abort", request_id))

    def _send(self, message: tuple) -> None:
        try:
            with self.send_lock:
                self.conn.send(message)
        except (OSError, ValueError) as e:  # the engine process is gone: the reader reports why
            if self.failure is None and not self.closed:
                raise PonderError(f"the engine process cannot be reached: {e}")

    # --- the reader thread --------------------------------------------------------------------------

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                break
            if message[0] == "out":
                self._route(message[1])
            elif message[0] == "tool":
                self.tools.submit(self._run_tool, *message[1:])
        self._engine_gone()

    def _route(self, items: list) -> None:
        """Hand each delta to its stream's event loop: one wake-up per loop for the whole step."""
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for request_id, item, thinking_tokens in items:
            remote = self.streams.get(request_id)
            if remote is None:  # its reader stopped: the abort is on its way
                continue
            if thinking_tokens is not None:
                remote.thinking_tokens = thinking_tokens
            by_loop.setdefault(remote.loop, []).append((remote.queue, item))
        for loop, pairs in by_loop.items():
            self.mailbox.post(loop, pairs)

    def _run_tool(self, call_id: int, rollout: Rollout) -> None:
        output = tool_output(self.on_tool_call, rollout)
        if not self.closed and not self.failure:
            self._send(("tool_result", call_id, output, rollout.tool_statuses))

    def _engine_gone(self) -> None:
        if self.closed:
            return
        self.failure = f"the engine process exited (exit code {self._stop_process(5)}); restart the server"
        self._route([(request_id, PonderError(self.failure), None) for request_id in list(self.streams)])


# --- the engine process ---------------------------------------------------------------------------


def main() -> None:
    """The engine process's entry (`EngineProcess` starts it): fd, model dir, device, max batch, tools."""
    fd, model_dir, device, max_batch, tools = sys.argv[1:]
    run_engine(Connection(int(fd)), model_dir, device, int(max_batch), tools == "tools")


def run_engine(conn, model_dir: str, device: str, max_batch: int, tools: bool) -> None:
    """Load the model, then serve the connection until told to stop or it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server stops us
    try:
        from ponder.engine import Engine
        from ponder.model import load
        from ponder.train.lm import resolve_device

        model, tokenizer = load(model_dir, device=resolve_device(device))
        engine = Engine(model, tokenizer)
    except Exception as e:
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    side = _EngineSide(conn, engine, max_batch, tools)
    freeze_startup_heap()
    side.serve()


def freeze_startup_heap() -> None:
    """Keep the objects a server made at start-up (torch, transformers, the model's modules: about
    a million) out of Python's garbage collector from now on, as vLLM does after loading. Otherwise
    every full collection walks them all: 100-200 ms pauses, measured in `bench/serve.py`'s
    concurrent passes, during which no request moves."""
    gc.collect()
    gc.freeze()


class _EngineSide:
    """The engine process's end of the pipe. Its main thread reads commands into the engine client;
    the client's decode thread sends each step's deltas straight to the pipe (its sink): no event
    loop in this process, so nothing else competes with decoding for the interpreter lock."""

    def __init__(self, conn, engine, max_batch: int, tools: bool):
        self.conn = conn
        self.send_lock = threading.Lock()
        self.tool_calls = itertools.count()
        self.tool_results: dict[int, queue.SimpleQueue] = {}
        # the other process enforces max_waiting; here every request it sends is taken
        self.client = AsyncEngineClient(
            engine, max_batch=max_batch, max_waiting=1 << 62,
            on_tool_call=self._remote_tool if tools else None, sink=self._sink,
        )  # fmt: skip

    def serve(self) -> None:
        self._send(("ready", sorted(self.client.format.end_ids)))
        while True:
            try:
                command, *args = self.conn.recv()
            except (EOFError, OSError):  # the server process is gone
                break
            if command == "add":
                self.client.submit(*args)
            elif command == "abort":
                self.client.abort_nowait(args[0])
            elif command == "tool_result":
                waiting = self.tool_results.pop(args[0], None)
                if waiting is not None:
                    waiting.put(args[1:])
            elif command == "stop":
                break
        self.client.close()
        for waiting in self.tool_results.values():  # tool calls that will get no answer now
            waiting.put(("\nerror: the server is shutting down\n", None))

    def _sink(self, items: list) -> None:
        """On the decode thread: one step's deltas, with each request's thinking so far, in one message.
        An exception goes as a PonderError (any exception type pickles as that)."""
        out = []
        for request_id, item in items:
            if isinstance(item, BaseException) and not isinstance(item, PonderError):
                item = PonderError(f"{type(item).__name__}: {item}")
            out.append((request_id, item, self.client.thinking_tokens(request_id)))
        self._send(("out", out))

    def _remote_tool(self, rollout: Rollout) -> str:
        """`on_tool_call` in the engine process: ask the server process, wait for its answer."""
        call_id = next(self.tool_calls)
        self.tool_results[call_id] = answer = queue.SimpleQueue()
        self._send(("tool", call_id, rollout))
        output, statuses = answer.get()
        if statuses is not None:
            rollout.tool_statuses[:] = statuses
        return output

    def _send(self, message: tuple) -> None:
        try:
            with self.send_lock:
                self.conn.send(message)
        except (OSError, ValueError):  # the server process is gone; serve() stops at its next read
            pass
