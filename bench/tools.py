"""Does a slow tool stall the batch? Decode throughput of the other sequences while one waits 2 s.

    python bench/tools.py [--model DIR] [--batch 64] [--new-tokens 256] [--tool-seconds 2] [--repeats 3]

One `engine.generate` call with tools on, greedy, every sequence decoding exactly `--new-tokens`
tokens (end tokens do not stop it, so the work is fixed). Sequence 0 is an arithmetic problem the
tool model hands to the calculator; its calls take `--tool-seconds` longer (the tool sleeps first).
Every other call (any the others make) answers at once. The same call is timed with the slow tool
and without it (sleep 0): greedy decoding and the same tool outputs give both runs the same tokens,
so the only difference is the wait. Reported: the tokens/s of the others (their tokens over the time
until all of them finished), with and without the slow tool, each side's median over `--repeats`
rounds (taken in turn, so a busy moment of the machine hits both), the spread, and the ratio. A loop
that waited for the tool would lose the whole wait; the engine runs the call in a worker thread and
keeps decoding the rest.
"""

from __future__ import annotations

import argparse
import statistics
import time

from ponder.engine import Engine, SamplingParams
from ponder.evals import tool_loop
from ponder.model import load
from ponder.tasks import get_task

OTHER_TASKS = ("letters", "decimals", "countdown", "sudoku", "arithmetic", "lookup")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model directory (default: the shipped tool model)")
    p.add_argument("--batch", type=int, default=64, help="sequences in the call, the slow one included")
    p.add_argument("--new-tokens", type=int, default=256, help="tokens each sequence decodes")
    p.add_argument("--tool-seconds", type=float, default=2.0, help="how much longer sequence 0's tool calls take")
    p.add_argument("--repeats", type=int, default=3, help="rounds, each timing both sides once")
    args = p.parse_args(argv)
    if args.batch < 2 or args.new_tokens < 1 or args.repeats < 1 or args.tool_seconds < 0:
        p.error("need --batch >= 2, --new-tokens >= 1, --repeats >= 1 and --tool-seconds >= 0")
    return args


def prompts(engine, batch: int) -> list[list[int]]:
    """Sequence 0: a level-5 arithmetic problem (the tool model calls the calculator on it); the others
    held-out problems of every family in turn."""
    first = get_task("arithmetic").problem("eval", 0, 5).prompt
    others = [get_task(OTHER_TASKS[i % len(OTHER_TASKS)]).problem("eval", i, 2).prompt for i in range(batch - 1)]
    return [engine.format.prompt(q) for q in [first, *others]]


class SlowForFirst:
    """The tool loop, with `seconds` of waiting added to sequence 0's calls."""

    def __init__(self, loop, seconds: float):
        self.loop, self.seconds = loop, seconds

    def __call__(self, rollout) -> str:
        if rollout.prompt_index == 0:
            time.sleep(self.seconds)
        return self.loop(rollout)


def timed_call(engine, ids, new_tokens: int, on_tool_call) -> tuple[float, list]:
    """Seconds until every sequence but one had finished (the slow one finishes last), and the rollouts."""
    finished, others_done = [0], [None]
    start = time.perf_counter()

    def progress(k: int) -> None:
        finished[0] += k
        if others_done[0] is None and finished[0] >= len(ids) - 1:
            others_done[0] = time.perf_counter() - start

    end_ids, engine.format.end_ids = engine.format.end_ids, set()  # no early stop: fixed work
    try:
        params = SamplingParams(temperature=0, max_tokens=new_tokens, tools=True)
        groups = engine.generate(ids, params, progress=progress, on_tool_call=on_tool_call)
    finally:
        engine.format.end_ids = end_ids
    return others_done[0], [g[0] for g in groups]


def others_tokens(rollouts) -> int:
    """Tokens the other sequences decoded (tool responses written for them not counted)."""
    return sum(r.num_tokens - r.tool_tokens for r in rollouts[1:])


def main(argv=None) -> dict:
    from ponder.assets import tools_model_path

    args = parse_args(argv)
    model_dir = args.model or tools_model_path()
    engine = Engine(*load(model_dir))
    loop = tool_loop("calculator,search", max_calls=4)
    ids = prompts(engine, args.batch)
    sides = {"slow tool": SlowForFirst(loop, args.tool_seconds), "no wait": SlowForFirst(loop, 0.0)}
    timed_call(engine, ids, 8, sides["no wait"])  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, on_call in sides.items():
            seconds, rollouts = timed_call(engine, ids, args.new_tokens, on_call)
            rates[name].append(others_tokens(rollouts) / seconds)
    first = rollouts[0]
    print(f"model {model_dir}; {args.batch} sequences x {args.new_tokens} tokens, greedy, tools on")
    statuses = ", ".join(first.tool_statuses) or "none"
    other_calls = sum(r.tool_calls for r in rollouts[1:])
    print(f"sequence 0 made {first.tool_calls} tool call(s) ({statuses}), each {args.tool_seconds:g} s longer; "
          f"the others made {other_calls}")  # fmt: skip
    for name, values in rates.items():
        spread = ", ".join(f"{v:,.0f}" for v in values)
        print(f"{name:>9}: others decode {statistics.median(values):,.0f} tok/s (rounds: {spread})")
    ratios = [s / n for s, n in zip(rates["slow tool"], rates["no wait"], strict=True)]
    ratio = statistics.median(ratios)
    print(f"ratio (slow tool / no wait): {ratio:.3f} (rounds: {', '.join(f'{r:.3f}' for r in ratios)})")
    if first.tool_calls == 0:
        print("warning: sequence 0 made no tool call, so nothing waited; use a model that calls tools (--model)")
    return {"rates": rates, "ratios": ratios, "calls": first.tool_calls}


if __name__ == "__main__":
    main()
