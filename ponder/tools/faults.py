"""Fault injection: wrap any tool so a share of its calls fail or time out, deterministically.

Real tools fail: a sandbox is busy, a search backend is down, a call runs out of time. A policy
trained only on tools that always answer never learns to retry or to fall back on its own
reasoning; one evaluated only that way overstates what it will do in deployment. `FaultyTool`
makes those failures happen at a chosen rate. Call n's fate depends only on (seed, n), so a run
is reproducible call for call, and the injected observations look like real ones to the model
(only their metadata says `fault`).
"""

from __future__ import annotations

import hashlib
import random
import threading

from ponder.tools.base import Observation, Tool

_ERRORS = (
    "the tool backend is unavailable (connection reset); try again",
    "the tool backend is overloaded; try again",
    "internal error while running the tool",
)


class FaultyTool(Tool):
    """`tool`, except that each call fails with probability `rate`: an error observation, or (a
    `timeout_share` of the failures) a time-out one. The wrapped tool is not run for a failed call."""

    def __init__(self, tool: Tool, rate: float, seed: int = 0, timeout_share: float = 0.5):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be in [0, 1], got {rate!r}")
        if not 0.0 <= timeout_share <= 1.0:
            raise ValueError(f"timeout_share must be in [0, 1], got {timeout_share!r}")
        super().__init__(tool.config)
        self.tool, self.rate, self.seed, self.timeout_share = tool, rate, seed, timeout_share
        self.name, self.description, self.parameters, self.primary = (
            tool.name,
            tool.description,
            tool.parameters,
            tool.primary,
        )
        self._calls = 0
        self._lock = threading.Lock()

    def fate(self, call_number: int) -> str:
        """What call number `call_number` does: "ok", "error" or "timeout". Pure in (seed, number)."""
        digest = hashlib.blake2b(repr(("fault", self.seed, call_number)).encode(), digest_size=8).digest()
        rng = random.Random(int.from_bytes(digest, "big"))
        if rng.random() >= self.rate:
            return "ok"
        return "timeout" if rng.random() < self.timeout_share else "error"

    def call(self, arguments: dict) -> Observation:
        return self.tool.call(arguments)

    def run(self, arguments: dict) -> Observation:
        with self._lock:
            number = self._calls
            self._calls += 1
        fate = self.fate(number)
        if fate == "ok":
            return self.tool.run(arguments)
        meta = {"tool": self.name, "fault": fate, "call": number}
        if fate == "timeout":
            text = f"Timed out: the {self.name} tool did not answer within {self.config.timeout_s:g} s."
            return Observation(text, "timeout", seconds=self.config.timeout_s, metadata=meta)
        message = random.Random(f"{self.seed}:{number}").choice(_ERRORS)
        return Observation(f"Error: {message}", "error", metadata=meta)
