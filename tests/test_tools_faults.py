"""Fault injection fails the chosen share of calls, the same calls for the same seed, and looks like
real failures to the model."""

from __future__ import annotations

import pytest

from ponder.tools import CalculatorTool, FaultyTool, ToolConfig


def statuses(tool: FaultyTool, calls: int) -> list[str]:
    return [tool.run({"expression": "1+1"}).status for _ in range(calls)]


def test_rate_is_met_over_many_calls():
    runs = statuses(FaultyTool(CalculatorTool(), rate=0.2, seed=1), 2000)
    failed = sum(s != "ok" for s in runs) / len(runs)
    assert 0.17 < failed < 0.23
    assert runs.count("timeout") > 0 and runs.count("error") > 0


def test_same_seed_same_faults_other_seed_other_faults():
    a = statuses(FaultyTool(CalculatorTool(), rate=0.3, seed=7), 300)
    b = statuses(FaultyTool(CalculatorTool(), rate=0.3, seed=7), 300)
    c = statuses(FaultyTool(CalculatorTool(), rate=0.3, seed=8), 300)
    assert a == b and a != c


def test_faults_look_real_and_are_marked_in_metadata():
    tool = FaultyTool(CalculatorTool(ToolConfig(timeout_s=3)), rate=1.0, seed=0, timeout_share=0.5)
    seen = {}
    for _ in range(40):
        obs = tool.run({"expression": "1+1"})
        seen[obs.status] = obs
    assert set(seen) == {"error", "timeout"}
    assert seen["timeout"].text.startswith("Timed out") and seen["timeout"].seconds == 3
    assert seen["error"].text.startswith("Error: ") and "inject" not in seen["error"].text
    assert seen["error"].metadata["fault"] == "error" and seen["error"].metadata["tool"] == "calculator"


def test_rate_zero_is_the_plain_tool_and_it_keeps_the_spec():
    inner = CalculatorTool()
    tool = FaultyTool(inner, rate=0.0)
    assert tool.run({"expression": "6*7"}).text == "42"
    assert tool.spec() == inner.spec()


def test_bad_rates_are_refused():
    with pytest.raises(ValueError, match="fault rate"):
        FaultyTool(CalculatorTool(), rate=1.5)
