"""The `python` tool: run the code a model wrote as a script, see its stdout and its traceback.

Stateless, as in ToRL and SimpleTIR: every call is a fresh interpreter in a fresh sandbox (see
`ponder.tools.sandbox` for the layers and what each one stops), so a model that needs a value
from an earlier call prints it and recomputes it. The observation is stdout, then the last
`stderr_lines` lines of stderr (where a traceback ends with its one informative line), then one
plain sentence when the sandbox stopped the code: wall-clock time-out, CPU limit, too much output,
a fatal signal. Each observation's metadata names the isolation it ran under.
"""

from __future__ import annotations

import signal
import sys

from ponder.errors import PonderError
from ponder.tools.base import Observation, Tool, ToolConfig
from ponder.tools.sandbox import RunResult, check_host, run_code

_SIGNAL_TEXT = {
    signal.SIGXCPU: "the CPU time limit of {cpu} s was reached",
    signal.SIGXFSZ: "a file grew past the limit of {file} MiB",
    signal.SIGSEGV: "it crashed (segmentation fault)",
    signal.SIGKILL: "it was killed (SIGKILL; often the CPU or memory limit)",
}


class PythonTool(Tool):
    name = "python"
    description = (
        "Run a Python 3 script in a sandbox (no network, no files kept, standard library only "
        "guaranteed) and return what it prints. Print every value you want to see."
    )
    parameters = {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "the Python script to run"}},
        "required": ["code"],
    }
    primary = "code"

    def __init__(self, config: ToolConfig | None = None):
        super().__init__(config)
        if self.config.isolation not in ("auto", "namespaces", "rlimits"):
            raise PonderError(f"isolation must be auto, namespaces or rlimits, got {self.config.isolation!r}")
        # The host check runs once per process, at the first tool made, so its warning comes at start.
        if self.config.isolation != "rlimits":
            check_host(self.config.python or sys.executable, self.config.sandbox_uid)

    def call(self, arguments: dict) -> Observation:
        result = run_code(arguments["code"], self.config)
        return Observation(self._text(result), self._status(result), metadata=self._metadata(result))

    def isolation(self) -> str:
        """The isolation calls get on this host: "namespaces" or "rlimits-only"."""
        if self.config.isolation == "rlimits":
            return "rlimits-only"
        return check_host(self.config.python or sys.executable, self.config.sandbox_uid).isolation

    def _status(self, result: RunResult) -> str:
        if result.timed_out or result.signal == signal.SIGXCPU:
            return "timeout"
        return "ok" if result.exit_code == 0 else "error"

    def _text(self, result: RunResult) -> str:
        parts = [result.stdout.rstrip("\n")] if result.stdout.strip() else []
        tail = [line for line in result.stderr.rstrip().splitlines() if line.strip()][-self.config.stderr_lines :]
        if tail and self.config.stderr_lines > 0:
            parts.append("\n".join(tail))
        stop = self._stop_reason(result)
        if stop:
            parts.append(stop)
        return "\n".join(parts) if parts else "(no output)"

    def _stop_reason(self, result: RunResult) -> str:
        config = self.config
        if result.timed_out:
            return f"Timed out: the code ran past {config.timeout_s:g} s and was stopped."
        if result.output_capped:
            return f"Stopped: the code printed more than {config.max_read_bytes} bytes."
        if result.signal is not None:
            template = _SIGNAL_TEXT.get(result.signal, "it was ended by signal {sig}")
            return "Stopped: " + template.format(cpu=config.cpu_s, file=config.file_size_mb, sig=result.signal) + "."
        if result.exit_code not in (0, 1):  # 1 is an uncaught exception, whose traceback says it all
            return f"Exit status {result.exit_code}."
        return ""

    def _metadata(self, result: RunResult) -> dict:
        return {
            "isolation": result.isolation,
            "exit_code": result.exit_code,
            "signal": result.signal,
            "output_capped": result.output_capped,
            "seccomp": result.seccomp,
        }
