"""Serving throughput: concurrent clients against the same requests sent one after another.

    python bench/serve.py [--model DIR] [--requests 64] [--concurrency 16] [--runs 3] [--effort high]

Starts `ponder serve` in a subprocess on 127.0.0.1 and a free port (the server has its own process
and event loop, as in production; this script only sends requests). Each request is the chat
completion of one held-out task problem at a fixed `reasoning_effort` (greedy by default, so both
sides generate the same tokens: the script counts any answer that differs). After a warm-up, every
run sends the N requests one after another from one client, then the same N from `--concurrency`
clients at once, which the server decodes together in its running batch. Prints per run: requests/s,
completion tokens/s, p50 / p95 latency, the server's CPU time per request and the cores it kept busy
(its HTTP process and its engine process, from /proc, on Linux), and concurrent over sequential
throughput; then the median ratio and its spread (min-max over the runs). 256 requests a pass by
default: a concurrent pass then lasts about 2 s on a 2-core machine, long enough for a stable ratio
(with 64, one pass took under a second and the ratio moved by ±15% between runs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import openai

from ponder.tasks import get_task

TASKS = ("arithmetic", "countdown", "letters", "decimals", "sudoku")


@dataclass
class Pass:
    seconds: float
    latencies: list[float]
    tokens: int
    answers: list[str]
    server_cpu_s: float | None = None  # CPU time the server's processes spent during the pass
    engine_cpu_s: float | None = None  # of which its engine process (None: the engine runs in-process)

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    def latency(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def questions(count: int) -> list[str]:
    return [get_task(TASKS[i % len(TASKS)]).problem("eval", i, 2).prompt for i in range(count)]


def fresh_model(preset: str | None, workdir: str) -> str | None:
    """A random model of `preset` size saved for the server (None: serve the shipped base)."""
    if preset is None:
        return None
    from ponder.assets import base_model_path
    from ponder.model import load, new_model, save

    _, tokenizer = load(base_model_path())
    return str(save(new_model(preset, tokenizer).eval(), tokenizer, f"{workdir}/{preset}"))


def start_server(model: str | None, workdir: str, engine_process: bool = True) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "ponder.cli", "serve", "--port", "0", "--feedback-db", f"{workdir}/fb.sqlite"]
    command += ["--model", model] if model else []
    command += [] if engine_process else ["--engine-process", "false"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            raise SystemExit(f"ponder serve exited with code {process.returncode}")
        found = re.search(r"(http://127\.0\.0\.1:\d+) \(web chat\)", line)
        if found:
            return process, found.group(1)
    process.kill()
    raise SystemExit("ponder serve did not start within 300 s")


async def ask(client, model: str, question: str, effort: str) -> tuple[float, int, str]:
    start = time.perf_counter()
    reply = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], reasoning_effort=effort
    )
    return time.perf_counter() - start, reply.usage.completion_tokens, reply.choices[0].message.content or ""


async def one_pass(client, model: str, items: list[str], effort: str, concurrency: int, server_pid: int = 0) -> Pass:
    """All `items`, `concurrency` requests in flight at a time (1: one after another)."""
    results: list = [None] * len(items)
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(len(items)):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            results[i] = await ask(client, model, items[i], effort)

    engine_pid = child_pid(server_pid) if server_pid else None
    before = [process_cpu_s(pid) for pid in (server_pid, engine_pid) if pid]
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    after = [process_cpu_s(pid) for pid in (server_pid, engine_pid) if pid]
    spent = [b - a for a, b in zip(before, after, strict=True)] if None not in before + after else []
    done = Pass(seconds, [r[0] for r in results], sum(r[1] for r in results), [r[2] for r in results])
    if spent:
        done.server_cpu_s, done.engine_cpu_s = sum(spent), (spent[1] if len(spent) == 2 else None)
    return done


def child_pid(pid: int) -> int | None:
    """The server's engine process (its child, Linux /proc); None when it has none."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc); None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def row(name: str, p: Pass) -> str:
    line = (
        f"  {name:<13} {p.requests_per_s:7.2f} req/s {p.tokens_per_s:9.1f} tok/s   "
        f"p50 {p.latency(0.5) * 1000:7.0f} ms   p95 {p.latency(0.95) * 1000:7.0f} ms"
    )
    if p.server_cpu_s is not None:
        per_request = p.server_cpu_s / len(p.latencies) * 1000
        line += f"   server CPU {per_request:5.1f} ms/req ({p.server_cpu_s / p.seconds:.2f} cores"
        if p.engine_cpu_s is not None:
            line += f", engine process {p.engine_cpu_s / p.seconds:.2f}"
        line += ")"
    return line


async def bench(args, url: str, server_pid: int) -> list[float]:
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0, timeout=600)
    model = (await client.models.list()).data[0].id
    items = questions(args.requests)
    await one_pass(client, model, items[: args.concurrency], args.effort, args.concurrency)  # warm-up
    ratios = []
    for run in range(1, args.runs + 1):
        alone = await one_pass(client, model, items, args.effort, 1, server_pid)
        together = await one_pass(client, model, items, args.effort, args.concurrency, server_pid)
        ratios.append(together.tokens_per_s / alone.tokens_per_s)
        differ = sum(a != b for a, b in zip(alone.answers, together.answers, strict=True))
        print(f"run {run}: {len(items)} requests, reasoning_effort {args.effort}")
        print(row("sequential", alone))
        print(row(f"{args.concurrency} clients", together))
        print(f"  throughput ratio {ratios[-1]:.2f}x; answers that differ between the two: {differ}")
    await client.close()
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the shipped base)")
    ap.add_argument(
        "--preset",
        default=None,
        help="serve a freshly initialised model of this size (5m, 25m) with the base's tokenizer",
    )
    ap.add_argument("--requests", type=int, default=256, help="requests per pass")
    ap.add_argument("--concurrency", type=int, default=16, help="clients sending at once in the concurrent pass")
    ap.add_argument("--runs", type=int, default=3, help="runs (each: one sequential and one concurrent pass)")
    ap.add_argument("--effort", default="high", help="reasoning_effort of every request")
    ap.add_argument(
        "--one-process", action="store_true", help="serve with --engine-process false (decoding in a thread)"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        process, url = start_server(args.model or fresh_model(args.preset, workdir), workdir, not args.one_process)
        try:
            layout = "one process" if args.one_process else "HTTP and engine processes"
            print(f"ponder serve at {url}, {layout} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
            ratios = asyncio.run(bench(args, url, process.pid))
        finally:
            process.terminate()
            process.wait(timeout=60)
    spread = f"{min(ratios):.2f}-{max(ratios):.2f}x" if len(ratios) > 1 else "one run"
    print(f"concurrent / sequential throughput: median {statistics.median(ratios):.2f}x over {len(ratios)} runs "
          f"(spread {spread}; target >= 4x)")  # fmt: skip


if __name__ == "__main__":
    main()
