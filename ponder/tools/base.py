"""What a tool is: a name, a JSON-schema of its arguments, and `run(arguments) -> Observation`.

A tool call comes from a model, so anything can arrive: a missing argument, a wrong type, code that
loops forever. The contract that keeps a rollout alive is that `Tool.run` never raises: bad arguments,
a crash inside the tool and a time-out all come back as an `Observation` whose `status` says so and
whose `text` tells the model what went wrong. The text is also bounded (`max_output_chars`, cut in the
middle so both the start and the traceback's last line survive), because every character of it is
fed back into the model's context.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any

STATUSES = ("ok", "error", "timeout")
_JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict}


@dataclass(frozen=True)
class Observation:
    """What one tool call gives back. `text` is what the model sees; the rest is for the caller."""

    text: str
    status: str = "ok"  # one of STATUSES
    seconds: float = 0.0  # wall-clock time of the call
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class ToolConfig:
    """Limits and sources shared by the built-in tools. Each field is also a command-line flag."""

    timeout_s: float = field(default=10.0, metadata={"help": "wall-clock seconds one call may take"})
    cpu_s: int = field(default=10, metadata={"help": "CPU seconds the python sandbox may use"})
    memory_mb: int = field(default=1024, metadata={"help": "address space of the python sandbox, MiB"})
    file_size_mb: int = field(default=16, metadata={"help": "largest file the python sandbox may write, MiB"})
    disk_mb: int = field(default=64, metadata={"help": "size of each scratch file system (/tmp, work dir), MiB"})
    max_processes: int = field(default=32, metadata={"help": "processes and threads in the python sandbox"})
    max_open_files: int = field(default=64, metadata={"help": "open file descriptors in the python sandbox"})
    max_read_bytes: int = field(default=1 << 20, metadata={"help": "stdout bytes read before the code is stopped"})
    max_output_chars: int = field(default=1000, metadata={"help": "observation text longer than this is cut"})
    stderr_lines: int = field(default=5, metadata={"help": "last lines of stderr (the traceback) shown"})
    isolation: str = field(
        default="auto",
        metadata={"help": "python sandbox: auto (namespaces if the host allows), namespaces, or rlimits"},
    )
    python: str = field(default="", metadata={"help": "interpreter the python tool runs ('' = this one)"})
    sandbox_uid: int = field(default=60000, metadata={"help": "first uid of the sandbox pool, when run as root"})
    max_digits: int = field(default=1000, metadata={"help": "largest calculator result, in digits"})
    corpus: str = field(default="", metadata={"help": "search corpus: .jsonl or folder of .txt/.md ('' = shipped)"})
    top_k: int = field(default=3, metadata={"help": "documents the search tool returns"})


class ToolInputError(ValueError):
    """The arguments of a call are unusable; the message is shown to the model as is."""


def cut_middle(text: str, limit: int) -> str:
    """`text` at most `limit` characters long, cut in the middle with a note of how much is gone.

    The middle goes because the start (what was printed first) and the end (the traceback's last
    line, the final result) are what a reader needs."""
    if limit <= 0 or len(text) <= limit:
        return text
    # The note's length depends on the count; sizing it for the whole text keeps the result <= limit.
    keep = max(limit - len(_cut_note(len(text))), 0)
    head, tail = (keep + 1) // 2, keep // 2
    return text[:head] + _cut_note(len(text) - keep) + text[len(text) - tail :]


def _cut_note(count: int) -> str:
    return f"\n...[cut {count} characters]...\n"


def check_arguments(arguments: Any, schema: dict) -> dict:
    """`arguments` checked against a flat JSON schema (required keys, known keys, basic types).

    Only what the built-in tools declare is supported: an object of scalar properties."""
    if not isinstance(arguments, dict):
        raise ToolInputError(f"arguments must be a JSON object, got {type(arguments).__name__}")
    properties = schema.get("properties", {})
    unknown = sorted(set(arguments) - set(properties))
    if unknown:
        raise ToolInputError(f"unknown argument(s) {unknown}; this tool takes {sorted(properties)}")
    missing = [name for name in schema.get("required", []) if name not in arguments]
    if missing:
        raise ToolInputError(f"missing argument(s) {missing}; this tool takes {sorted(properties)}")
    for name, value in arguments.items():
        expected = _JSON_TYPES.get(properties[name].get("type", ""), object)
        if isinstance(value, bool) and expected is not bool or not isinstance(value, expected):
            raise ToolInputError(f"argument {name!r} must be a {properties[name]['type']}, got {value!r:.60}")
    return arguments


class Tool(ABC):
    """A tool a model can call. Subclasses set `name`, `description`, `parameters` and `primary`
    (the argument that plain text on the command line fills) and implement `call`."""

    name: str = ""
    description: str = ""
    parameters: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    primary: str = ""

    def __init__(self, config: ToolConfig | None = None):
        self.config = config or ToolConfig()

    @abstractmethod
    def call(self, arguments: dict) -> Observation:
        """Do the work for checked arguments. May raise: `run` turns any exception into an error."""

    def run(self, arguments: dict) -> Observation:
        """The call as a model makes it: never raises, always timed, text cut to `max_output_chars`."""
        start = time.monotonic()
        try:
            obs = self.call(check_arguments(arguments, self.parameters))
        except ToolInputError as e:
            obs = Observation(f"Error: {e}", "error", metadata={"tool": self.name})
        except Exception as e:  # noqa: BLE001 - a broken tool costs one call, never the rollout
            obs = Observation(f"Error: the {self.name} tool failed: {type(e).__name__}: {e}", "error")
        seconds = round(time.monotonic() - start, 4)
        text = cut_middle(obs.text, self.config.max_output_chars)
        metadata = {"tool": self.name, **obs.metadata}
        if len(text) < len(obs.text):
            metadata["cut_chars"] = len(obs.text) - len(text)
        return replace(obs, text=text, seconds=seconds, metadata=metadata)

    def spec(self) -> dict:
        """The tool as an OpenAI-style function tool, for a server's tool list or a chat template."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


def error(text: str, **metadata: Any) -> Observation:
    return Observation(f"Error: {text}", "error", metadata=metadata)
