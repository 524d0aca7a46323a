"""The tool loop: what runs when a sequence pauses at "</tool_call>".

    loop = ToolLoop.of(["calculator", "python"], ToolConfig(), ToolLimits(max_calls=4))
    engine.generate(prompts, SamplingParams(tools=True), on_tool_call=loop)

`loop(rollout)` reads the call the rollout just closed, runs it (the engine calls it from a worker
thread, so the other sequences keep decoding), and returns the text written for the model:
"<tool_response>...</tool_response>" (mask 0, never trained on). Past `max_calls` the call is not
run and the model is told so. Every call's status is appended to `rollout.tool_statuses` ("ok",
"error", "timeout", "limit"), which the RL metrics count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.engine.chat_format import TOOL_CALL_OPEN
from ponder.engine.sequence import Rollout
from ponder.tools import Observation, Tool, ToolConfig, format_observation, get_tool, run_call
from ponder.tools.faults import FaultyTool


@dataclass
class ToolLimits:
    max_calls: int = field(default=4, metadata={"help": "tool calls per rollout; later calls are refused"})
    fault_rate: float = field(default=0.0, metadata={"help": "share of tool calls made to fail or time out"})


class ToolLoop:
    def __init__(self, tools: dict[str, Tool], limits: ToolLimits | None = None):
        self.tools = tools
        self.limits = limits or ToolLimits()

    @staticmethod
    def of(names: list[str], config: ToolConfig | None = None, limits: ToolLimits | None = None, seed: int = 0):
        """Built-in tools by name; with `limits.fault_rate` > 0 each is wrapped to fail at that rate."""
        limits = limits or ToolLimits()
        tools = {name: get_tool(name, config) for name in names}
        if limits.fault_rate > 0:
            tools = {n: FaultyTool(t, limits.fault_rate, seed=seed + i) for i, (n, t) in enumerate(tools.items())}
        return ToolLoop(tools, limits)

    def __call__(self, rollout: Rollout) -> str:
        if len(rollout.tool_statuses) >= self.limits.max_calls:
            observation = Observation(f"Error: at most {self.limits.max_calls} tool calls; answer now.", "limit")
        else:
            text = rollout.text  # the completion so far: set by the engine when it paused
            observation = run_call(text[text.rfind(TOOL_CALL_OPEN) :], self.tools)
        rollout.tool_statuses.append(observation.status)
        return format_observation(observation)
