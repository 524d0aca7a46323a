"""The calculator is exact, bounded and never evaluates code; with it, the machinery every tool shares:
the call markup, argument checks, failures as observations, middle cuts, the registry and the CLI."""

from __future__ import annotations

import re
import time

import pytest

from ponder.errors import PonderError
from ponder.tools import (
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    TOOLS,
    CalculatorTool,
    CallError,
    Observation,
    Tool,
    ToolConfig,
    cut_middle,
    format_observation,
    get_tool,
    parse_call,
    render_call,
    run_call,
    run_tool_cli,
)


def calc(expression: str, **config) -> Observation:
    return CalculatorTool(ToolConfig(**config)).run({"expression": expression})


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("0.1 + 0.2", "0.3"),
        ("1/3", "1/3"),
        ("-7/8", "-0.875"),
        ("2**100", "1267650600228229401496703205376"),
        ("(17 * 23 - 5) / 4", "96.5"),
        ("2**-3", "0.125"),
        ("10 // 3 + 10 % 3", "4"),
        ("-5 % 3", "1"),
        ("1/3 + 1/6", "0.5"),
        ("3 \u00d7 4 \u2212 2", "10"),
        ("1e3 / 8", "125"),
    ],
)
def test_exact_results_in_the_plainest_form(expression, expected):
    obs = calc(expression)
    assert obs.ok and obs.text == expected


@pytest.mark.parametrize(
    "expression, message",
    [
        ("9**9**9", "digits"),
        ("2**(10**100)", "digits"),
        ("10**999 * 10**999", "more than 1000 digits"),
        ("1/0", "division by zero"),
        ("0**-1", "division by zero"),
        ("2**0.5", "not a whole number"),
        ("2^10", "write 2**10"),
        ("1e400", "too large"),
        ("1 +", "cannot parse"),
        ("9" * 1200, "the limit is 1000"),
    ],
)
def test_too_big_or_malformed_is_an_error_returned_at_once(expression, message):
    start = time.monotonic()
    obs = calc(expression)
    assert time.monotonic() - start < 0.5
    assert obs.status == "error" and obs.text.startswith("Error: ") and message in obs.text


@pytest.mark.parametrize("code", ["__import__('os').system('echo hi')", "open('/etc/passwd')", "x", "(1).real", "'a'"])
def test_nothing_is_evaluated(code):
    obs = calc(code)
    assert obs.status == "error"
    assert "not allowed" in obs.text or "not a number" in obs.text


def test_digit_limit_is_configurable():
    assert calc("2**200", max_digits=50).status == "error"
    assert calc("2**200", max_digits=100).ok


def test_bad_arguments_are_error_observations_not_exceptions():
    tool = CalculatorTool()
    assert "unknown argument" in tool.run({"expr": "1"}).text
    assert "missing argument" in tool.run({}).text
    assert "must be a string" in tool.run({"expression": 7}).text
    assert "must be a JSON object" in tool.run(["1+1"]).text


def test_a_crashing_tool_gives_an_error_observation():
    class Broken(Tool):
        name = "broken"

        def call(self, arguments):
            raise KeyError("boom")

    obs = Broken().run({})
    assert obs.status == "error" and "the broken tool failed: KeyError" in obs.text
    assert obs.seconds >= 0 and obs.metadata["tool"] == "broken"


def test_long_text_is_cut_in_the_middle_within_the_limit():
    text = "START" + "x" * 5000 + "END"
    cut = cut_middle(text, 200)
    assert len(cut) <= 200 and cut.startswith("START") and cut.endswith("END")
    head, note, tail = cut.split("\n")
    assert len(head) + int(re.search(r"cut (\d+) characters", note).group(1)) + len(tail) == len(text)
    assert cut_middle("short", 200) == "short"
    obs = calc("2**3000", max_output_chars=100, max_digits=5000)
    assert len(obs.text) <= 100 and "cut" in obs.text and obs.metadata["cut_chars"] > 800


def test_call_markup_round_trips():
    text = render_call("search", {"query": "Vellmarsh founded"})
    assert text == '<tool_call>{"name": "search", "arguments": {"query": "Vellmarsh founded"}}</tool_call>'
    assert parse_call("thinking first\n" + text) == ("search", {"query": "Vellmarsh founded"})
    assert parse_call('{"name": "calculator", "arguments": "{\\"expression\\": \\"1+1\\"}"}') == (
        "calculator",
        {"expression": "1+1"},
    )
    assert format_observation(Observation("42")) == "<tool_response>42</tool_response>"


@pytest.mark.parametrize(
    "text, reason",
    [
        (TOOL_CALL_OPEN + '{"name": "search"', "no closing"),
        (TOOL_CALL_OPEN + "not json" + TOOL_CALL_CLOSE, "not valid JSON"),
        (TOOL_CALL_OPEN + '{"arguments": {}}' + TOOL_CALL_CLOSE, '{"name"'),
        (TOOL_CALL_OPEN + '{"name": "x", "arguments": [1]}' + TOOL_CALL_CLOSE, "JSON object"),
        (None, "must be text"),
    ],
)
def test_malformed_calls_say_what_is_wrong(text, reason):
    parsed = parse_call(text)
    assert isinstance(parsed, CallError) and reason in parsed


def test_run_call_never_raises():
    tools = {"calculator": CalculatorTool()}
    assert run_call(render_call("calculator", {"expression": "6*7"}), tools).text == "42"
    assert "there is no tool 'rm'" in run_call(render_call("rm", {}), tools).text
    assert run_call("<tool_call>{", tools).status == "error"


def test_registry_lists_function_specs():
    assert set(TOOLS) == {"python", "calculator", "search"}
    spec = get_tool("calculator").spec()
    assert spec["type"] == "function" and spec["function"]["parameters"]["required"] == ["expression"]
    with pytest.raises(PonderError, match="the tools are: calculator, python, search"):
        get_tool("shell")


def test_cli_takes_plain_text_or_a_json_object():
    assert run_tool_cli("calculator", "2**10\n", ToolConfig()).text == "1024"
    assert run_tool_cli("calculator", '{"expression": "1/4"}', ToolConfig()).text == "0.25"
    assert run_tool_cli("calculator", "{1: 2}", ToolConfig()).status == "error"  # not JSON: an expression
