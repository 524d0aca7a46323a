"""Reasoning summaries: what the thinking concluded, without the thinking itself.

By default the server sends no raw thinking (as OpenAI's own API does), only a summary derived from
it. The summary is extractive, not written by a model: every line of the thinking is read once, and
only the lines that conclude a step are kept, rewritten as "subject = result":

    "27+56: 7+6=13, 2+5+1=8, so 83"   ->  "27+56 = 83"          (a worked step: what follows "so")
    "r1c3 col 2 3 4 -> 1"             ->  "r1c3 = 1"            (an arrow result)
    "8+5=13"                          ->  "8+5 = 13"            (an equation ending in a number)
    "wait, 12 is not 8, let me ..."   ->  "Rechecked: 12 is not 8"
    "So the answer is 42."            ->  "so the answer is 42" (so / therefore / thus / hence)

Tool output (inside <tool_response>) is never quoted. Then come the tools called and the thinking's
token count ("Thought for 37 tokens."). `detail`: auto keeps the first 8 conclusions and counts the
rest, detailed keeps all, concise only the last. A `Summarizer` is fed the thinking as it streams and
hands back finished lines at once, so a streamed summary and a whole one are the same text.
"""

from __future__ import annotations

import re

from ponder.engine.chat_format import TOOL_RESPONSE_CLOSE, TOOL_RESPONSE_OPEN, parse_tool_calls

AUTO_STEPS = 8  # conclusions an "auto" summary shows before it counts the rest
LINE_CHARS = 120  # a summary line is cut to this many characters
SO = re.compile(r"\b(?:so|therefore|thus|hence)\b[,:]?\s*(.+)$", re.IGNORECASE)
EQUATION = re.compile(r"^(.{1,60}?)\s*=\s*(-?\d[\d.,/]*)\s*\.?$")
COMPARISON = re.compile(r"^\S{1,30}\s*[<>]\s*\S{1,30}$")
WAIT = re.compile(r"^wait\b[,:]?\s*([^,.;]*)", re.IGNORECASE)


def conclusion(line: str) -> str | None:
    """The summary line for one thinking line, or None if it does not conclude a step."""
    line = line.strip()
    if not line:
        return None
    wait = WAIT.match(line)
    if wait:
        return f"Rechecked: {wait.group(1).strip()}" if wait.group(1).strip() else "Rechecked a step"
    so = SO.search(line)
    if so:
        result = so.group(1).strip().rstrip(".")
        subject = line.split(":", 1)[0].split("=", 1)[0].strip() if ":" in line[: so.start()] else ""
        return _cut(f"{subject} = {result}" if subject else f"so {result}")
    if "->" in line:
        subject, result = line.split()[0], line.rsplit("->", 1)[1].strip()
        return _cut(f"{subject} = {result}") if result and subject != "->" else None
    equation = EQUATION.match(line)
    if equation:
        return _cut(f"{equation.group(1).strip()} = {equation.group(2)}")
    if COMPARISON.match(line):
        return _cut(line)
    return None


def _cut(text: str) -> str:
    return text if len(text) <= LINE_CHARS else text[: LINE_CHARS - 1] + "…"


class Summarizer:
    """An incremental extractive summary: `feed` the thinking and tool-call text as it streams, then
    `close` with the thinking's token count. Each call returns only the summary text it adds."""

    def __init__(self, detail: str = "auto"):
        self.detail = detail
        self.partial = ""  # the thinking's unfinished last line
        self.in_response = False  # inside a <tool_response> block (never quoted)
        self.steps: list[str] = []  # every conclusion, in order
        self.shown = 0  # conclusions already sent
        self.call_text = ""  # tool-call text seen so far
        self.text = ""  # the summary so far

    def feed(self, thinking: str = "", tool_call: str = "") -> str:
        """Summary lines for the thinking lines these pieces complete."""
        self.call_text += tool_call
        *lines, self.partial = (self.partial + thinking).split("\n")
        for line in lines:
            self._read(line)
        return self._emit(self._take_live())

    def close(self, thinking_tokens: int) -> str:
        """The rest of the summary: the last line, what was held back, the tools called, the count."""
        if self.partial:
            self._read(self.partial)
            self.partial = ""
        lines = self._take_live()
        if self.detail == "concise" and self.steps:
            lines = [self.steps[-1]]
        hidden = len(self.steps) - self.shown
        if hidden > 0 and self.detail == "auto":
            lines.append(f"…and {hidden} more step{'s' * (hidden > 1)}")
        calls = parse_tool_calls(self.call_text)
        if calls:
            named = [f"{c.name}({_arguments(c.arguments)})" if not c.error else "an unreadable call" for c in calls]
            lines.append("Called " + ", ".join(named))
        lines.append(f"Thought for {thinking_tokens} tokens." if thinking_tokens else "Answered without thinking.")
        return self._emit(lines)

    def _read(self, line: str) -> None:
        """Take one finished thinking line: tool output is skipped, conclusions are kept."""
        if TOOL_RESPONSE_OPEN in line:
            self.in_response = TOOL_RESPONSE_CLOSE not in line.split(TOOL_RESPONSE_OPEN)[-1]
            line = line.split(TOOL_RESPONSE_OPEN, 1)[0]
        elif self.in_response:
            if TOOL_RESPONSE_CLOSE not in line:
                return
            self.in_response, line = False, line.split(TOOL_RESPONSE_CLOSE, 1)[1]
        found = conclusion(line)
        if found:
            self.steps.append(found)

    def _take_live(self) -> list[str]:
        """Conclusions that may be sent now (concise sends only its last, at the end)."""
        if self.detail == "concise":
            return []
        limit = len(self.steps) if self.detail == "detailed" else min(len(self.steps), AUTO_STEPS)
        lines = self.steps[self.shown : limit]
        self.shown += len(lines)
        return lines

    def _emit(self, lines: list[str]) -> str:
        added = "".join(f"{line}\n" for line in lines)
        self.text += added
        return added


def _arguments(arguments: dict) -> str:
    text = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in arguments.items())
    return _cut(text)


def summarize(thinking: str, tool_call_text: str, thinking_tokens: int, detail: str = "auto") -> str:
    """The whole summary of a finished completion (the same text a streamed one adds up to)."""
    summarizer = Summarizer(detail)
    summarizer.feed(thinking, tool_call_text)
    summarizer.close(thinking_tokens)
    return summarizer.text
