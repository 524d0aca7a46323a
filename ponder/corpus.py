"""The training corpus: worked traces of task problems in the chat format.

Example i of a mix is problem i of the train split, solved step by step by its task's trace
writer; a `mistake_rate` share of them contain a wrong step followed by "wait, ... let me
recheck", so backtracking exists in what the model learns from.

A `direct_rate` share skip the working: empty thinking, then the (correct) answer, the way most
text on the web states results without deriving them. A model pretrained on such a mix can answer
in either mode; for a small model guessing directly is far less reliable than working it out, and
reinforcement learning has to discover that thinking pays (response length grows as it does).

Tool traces (`ToolUse`, off by default). Families with a trace through a tool (`TRACE_TOOLS`:
arithmetic through `calculator` or `python`, lookup through `search`) are worked through it in a
`rate` share of their examples when the tool is named; those always think (the call is inside the
thinking). A lookup's first search asks the question itself (`ask_the_question`). A lookup example
without `search` answers directly: its facts are in no other trace. Every observation in a trace is
the one the engine would write at run time, right after the call, from tools set up as
`TOOL_CONFIG` (search shows its best document only: a 1M model reads one document, not three). A
`retry_rate` share of tool traces show a failed first call (an injected error or time-out, as
`FaultyTool` writes them) and the call made again. The loss never covers a `<tool_response>`:
`ponder.train.lm.collate` masks it, so the model learns to call and to read, not to write
observations.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ponder.errors import PonderError
from ponder.format import render_completion, render_prompt
from ponder.tasks import Problem, Task
from ponder.tasks.base import _rng
from ponder.tasks.mix import TaskMix
from ponder.tools import (
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    TOOL_RESPONSE_CLOSE,
    TOOL_RESPONSE_OPEN,
    FaultyTool,
    ToolConfig,
    format_observation,
    get_tool,
    parse_call,
    render_call,
    run_call,
)

# How the corpus's tools answer, and so how a model trained on it must be run (evals, RL, scale, chat).
TOOL_CONFIG = ToolConfig(top_k=1)
# family -> the tools it has a trace through (arithmetic's first is the one used when several are named)
TRACE_TOOLS: dict[str, tuple[str, ...]] = {"arithmetic": ("calculator", "python"), "lookup": ("search",)}
# families whose only trace goes through a tool: without it they answer directly
TOOL_ONLY = ("lookup",)
# a call and the observation after it, if any (a newline between is what some traces write)
_CALL = re.compile(
    f"({re.escape(TOOL_CALL_OPEN)}.*?{re.escape(TOOL_CALL_CLOSE)})\n?"
    f"(?:{re.escape(TOOL_RESPONSE_OPEN)}.*?{re.escape(TOOL_RESPONSE_CLOSE)})?",
    re.S,
)


@dataclass(frozen=True)
class Example:
    prompt: str  # rendered in ponder's own format, ending inside <think> (tokenizer training, overlap)
    completion: str  # thinking, </think>, answer, end token
    question: str = ""  # the parts, for rendering through any model's chat format (ChatFormat)
    thinking: str = ""
    answer: str = ""


@dataclass(frozen=True)
class ToolUse:
    """Which tools the corpus's traces use, and how often (`LMConfig.tools`, `tool_rate`)."""

    tools: tuple[str, ...] = ()
    rate: float = 1.0  # share of a tool family's examples worked through its tool
    retry_rate: float = 0.0  # share of tool traces whose first call fails and is made again

    @staticmethod
    def parse(names: str, rate: float = 1.0, retry_rate: float = 0.0) -> ToolUse:
        """From a comma list ("calculator,search"); unknown names fail with the list of known ones."""
        tools = tuple(n.strip() for n in names.split(",") if n.strip())
        known = sorted({t for ts in TRACE_TOOLS.values() for t in ts})
        unknown = [t for t in tools if t not in known]
        if unknown:
            raise PonderError(f"no task has traces through {unknown}; the corpus's tools are: {', '.join(known)}")
        return ToolUse(tools, rate, retry_rate)

    def tool_for(self, family: str) -> str | None:
        return next((t for t in TRACE_TOOLS.get(family, ()) if t in self.tools), None)


def tool_levels(mix: TaskMix, use: ToolUse) -> dict[str, list[int]]:
    """family -> the difficulties of `mix` whose traces go through a tool under `use` (for the docs
    and the run's log: which levels each corpus covers, and how)."""
    levels: dict[str, list[int]] = {}
    for cell in mix.cells:
        if use.tool_for(cell.task.name):
            levels.setdefault(cell.task.name, []).append(cell.difficulty)
    return levels


def example(
    mix: TaskMix, i: int, mistake_rate: float, seed: int = 0, direct_rate: float = 0.0, tools: ToolUse | None = None
) -> Example:
    problem = mix.problem("train", i, seed)
    task = mix.task_of(problem)
    rng = _rng("style", seed, i)
    tool = tools.tool_for(task.name) if tools else None
    # the style draws come first, in the same order with or without tools: the two corpora differ only
    # in the examples a tool works
    direct, mistake = rng.random() < direct_rate, rng.random() < mistake_rate
    if tool and rng.random() < tools.rate:
        thinking = tool_thinking(task, problem, tool, mistake, seed, rng.random() < tools.retry_rate)
    elif direct or task.name in TOOL_ONLY:
        thinking = ""
    else:
        thinking = task.trace(problem, task.trace_rng(problem, seed), mistake=mistake)
    return Example(
        render_prompt(problem.prompt),
        render_completion(thinking, problem.answer),
        problem.prompt,
        thinking,
        problem.answer,
    )


def examples(
    mix: TaskMix,
    start: int,
    count: int,
    mistake_rate: float,
    seed: int = 0,
    direct_rate: float = 0.0,
    tools: ToolUse | None = None,
) -> list[Example]:
    return [example(mix, i, mistake_rate, seed, direct_rate, tools) for i in range(start, start + count)]


def tool_thinking(task: Task, problem: Problem, tool: str, mistake: bool, seed: int, retry: bool) -> str:
    """A problem's thinking worked through `tool`, observations as the engine writes them at run time."""
    if task.name == "arithmetic":
        thinking = task.tool_trace(problem, tool)
    else:  # lookup: its own trace is the search trace, asked with the question, observed with TOOL_CONFIG
        trace = task.trace(problem, task.trace_rng(problem, seed), mistake=mistake)
        thinking = reobserve(ask_the_question(trace, problem))
    return with_failed_first_call(thinking, tool, seed + problem.index) if retry else thinking


def ask_the_question(thinking: str, problem: Problem) -> str:
    """The trace's first search made with the question itself as the query, where that finds the same
    document first (it does for every single-fact question of the shipped collection, whose wording
    keeps a question's words in its document). A 1M-parameter model copies the question verbatim far
    more reliably than it picks a made-up name out of it ("Queiborn pump invented")."""
    match = _CALL.search(thinking)
    parsed = parse_call(match.group(1)) if match else None
    if not isinstance(parsed, tuple) or parsed[0] != "search":
        return thinking
    found = get_tool("search", TOOL_CONFIG).run({"query": problem.prompt}).metadata.get("ids", [])
    if found != [problem.meta.get("doc_id")]:
        return thinking
    asked = render_call("search", {"query": problem.prompt})
    return thinking[: match.start(1)] + asked + thinking[match.end(1) :]


def reobserve(thinking: str) -> str:
    """`thinking` with every observation rerun on `TOOL_CONFIG`'s tools and written right after its
    call, as the engine writes it (a task's trace may show other settings or a newline between)."""
    return _CALL.sub(lambda m: m.group(1) + _observe(m.group(1)), thinking)


@functools.lru_cache(maxsize=4096)
def _observe(call: str) -> str:
    return format_observation(run_call(call, _tools()))


@functools.lru_cache(maxsize=1)
def _tools() -> dict:
    return {name: get_tool(name, TOOL_CONFIG) for name in ("calculator", "search")}


def with_failed_first_call(thinking: str, tool: str, seed: int) -> str:
    """The first call of `thinking` made twice: once failing (an error or a time-out, the texts
    `FaultyTool` writes), then as it was, so a model learns to call again when a tool fails."""
    end = thinking.find(TOOL_CALL_CLOSE)
    if end < 0:
        return thinking
    start = thinking.rfind(TOOL_CALL_OPEN, 0, end)
    call = thinking[start : end + len(TOOL_CALL_CLOSE)]
    failed = FaultyTool(get_tool(tool, TOOL_CONFIG), rate=1.0, seed=seed).run({})
    return thinking[:start] + call + format_observation(failed) + "\n" + thinking[start:]
