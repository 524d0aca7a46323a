"""Tools a model can call inside its thinking: `python`, `calculator`, `search`.

The markup follows Qwen3's template: the model writes

    <tool_call>{"name": "search", "arguments": {"query": "Vellmarsh founded"}}</tool_call>

generation pauses at the closing marker, the tool runs, and what it returns is appended as

    <tool_response>[1] Vellmarsh ...</tool_response>

before the model goes on. `render_call` / `parse_call` write and read the first part,
`format_observation` the second; `run_call` does parse, look-up and run in one step and, like every
tool, never raises: a malformed call is an error observation the model can learn from.

    get_tool("calculator").run({"expression": "2**10"})       -> Observation(text="1024", ...)
    run_tool_cli("python", "print(6 * 7)", ToolConfig())      -> what `ponder tool python` prints
"""

from __future__ import annotations

import json

from ponder.errors import PonderError
from ponder.tools.base import Observation, Tool, ToolConfig, cut_middle
from ponder.tools.calculator import CalculatorTool
from ponder.tools.faults import FaultyTool
from ponder.tools.python import PythonTool
from ponder.tools.search import SearchTool

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_RESPONSE_OPEN = "<tool_response>"
TOOL_RESPONSE_CLOSE = "</tool_response>"

TOOLS: dict[str, type[Tool]] = {cls.name: cls for cls in (PythonTool, CalculatorTool, SearchTool)}


class CallError(str):
    """What `parse_call` returns for text that is not a well-formed call: the reason, as a string."""


def get_tool(name: str, config: ToolConfig | None = None) -> Tool:
    """A built-in tool by name. Unknown names raise an error that lists the known ones."""
    if name not in TOOLS:
        raise PonderError(f"unknown tool {name!r}; the tools are: {', '.join(sorted(TOOLS))}")
    return TOOLS[name](config)


def render_call(name: str, arguments: dict) -> str:
    """The text of a call, as the model writes it (and as worked traces show it)."""
    body = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}"


def parse_call(text: str) -> tuple[str, dict] | CallError:
    """(name, arguments) of the last complete call in `text` (markers optional), else a CallError
    that says what is wrong. Total: any string in, never an exception."""
    if not isinstance(text, str):
        return CallError(f"a tool call must be text, got {type(text).__name__}")
    body = text.strip()
    start = body.rfind(TOOL_CALL_OPEN)
    if start >= 0:
        end = body.find(TOOL_CALL_CLOSE, start)
        if end < 0:
            return CallError(f"the tool call has no closing {TOOL_CALL_CLOSE}")
        body = body[start + len(TOOL_CALL_OPEN) : end].strip()
    try:
        call = json.loads(body)
    except (json.JSONDecodeError, RecursionError) as e:
        return CallError(f"the tool call is not valid JSON: {getattr(e, 'msg', e)}")
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return CallError('a tool call is {"name": "<tool>", "arguments": {...}}')
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):  # OpenAI's wire format sends the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as e:
            return CallError(f"the tool call's arguments are not valid JSON: {e.msg}")
    if not isinstance(arguments, dict):
        return CallError("the tool call's arguments must be a JSON object")
    return call["name"], arguments


def format_observation(obs: Observation) -> str:
    """The observation as the model sees it, appended after its call."""
    return f"{TOOL_RESPONSE_OPEN}{obs.text}{TOOL_RESPONSE_CLOSE}"


def run_call(text: str, tools: dict[str, Tool]) -> Observation:
    """Parse a call the model wrote and run it on one of `tools` (name -> tool). Never raises."""
    parsed = parse_call(text)
    if isinstance(parsed, CallError):
        return Observation(f"Error: {parsed}", "error", metadata={"tool": None})
    name, arguments = parsed
    if name not in tools:
        known = ", ".join(sorted(tools)) or "none"
        return Observation(
            f"Error: there is no tool {name!r}; the tools are: {known}", "error", metadata={"tool": name}
        )
    return tools[name].run(arguments)


def cli_arguments(tool: Tool, stdin_text: str) -> dict:
    """Arguments from command-line input: a JSON object of this tool's arguments, else the whole text
    as its main argument (code for python, an expression for calculator, a query for search)."""
    stripped = stdin_text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict) and value and set(value) <= set(tool.parameters.get("properties", {})):
            return value
    return {tool.primary: stdin_text if tool.name == "python" else stripped}


def run_tool_cli(name: str, stdin_text: str, config: ToolConfig | None = None) -> Observation:
    """What a `ponder tool NAME` command runs: one call of a built-in tool on its standard input."""
    tool = get_tool(name, config)
    return tool.run(cli_arguments(tool, stdin_text))


__all__ = [
    "TOOLS",
    "TOOL_CALL_CLOSE",
    "TOOL_CALL_OPEN",
    "TOOL_RESPONSE_CLOSE",
    "TOOL_RESPONSE_OPEN",
    "CalculatorTool",
    "CallError",
    "FaultyTool",
    "Observation",
    "PythonTool",
    "SearchTool",
    "Tool",
    "ToolConfig",
    "cli_arguments",
    "cut_middle",
    "format_observation",
    "get_tool",
    "parse_call",
    "render_call",
    "run_call",
    "run_tool_cli",
]
