"""One request's decode state, the per-sequence state machine every caller drives.

    seq = Sequence(id, prompt_ids, params, fmt, seed)
    token, logprob, written = seq.choose(sampled, logprob)   # the sample, or a token forced for it
    seq.write(token, logprob, written)                       # follows the thinking phase
    seq.outcome()                                            # None, "finished" or "paused"

Phases (`chat_format.Phase`): BEFORE -> THINKING when the model writes the opening marker (or it is
forced: thinking on), THINKING -> ANSWER when the closing marker's token sequence ends what it wrote.
Budget forcing writes "\\n</think>" at the thinking cap and "wait," for a close below the minimum;
forced tokens have mask 0, so the RL loss mask comes for free. With `params.tools` a sequence that
completes "</tool_call>" pauses; the tool loop writes the tool's output for it (mask 0) and resumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.engine.chat_format import TOOL_CALL_CLOSE, ChatFormat, ParsedCompletion, Phase
from ponder.engine.sampling import SamplingParams
from ponder.format import parse_completion

WAIT_TEXT = "\nwait,"  # budget forcing writes this when the model stops thinking too early: the
# words ponder's corpus uses to reopen a step it doubts ("wait, 27+56 is not 84, let me recheck")
TAIL = 16  # tokens decoded to look for a stop string or a closing tool-call marker


@dataclass
class Rollout:
    """One sampled completion, with everything RL and evals need."""

    prompt_index: int
    prompt_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # log-prob of each token when it was chosen
    mask: list[int] = field(default_factory=list)  # 1 = the model wrote it, 0 = written for it
    text: str = ""
    finish_reason: str = ""  # "stop" (end token or stop string), "length" or "abort"
    thinking_tokens: int = 0  # tokens the model spent inside its thinking (markers and tool output not counted)
    completion: ParsedCompletion | None = None  # set by the engine with the model's own chat format
    tool_calls: int = 0  # times it paused for a tool
    tool_tokens: int = 0  # tokens of tool output written for it (mask 0, not chosen by decoding)
    tool_statuses: list[str] = field(default_factory=list)  # each tool call's outcome: ok, error, timeout, ...
    policy_version: int = 0  # the weights it was sampled from (rollout workers stamp it)

    @property
    def parsed(self) -> ParsedCompletion:
        """Thinking / answer / tool calls; a rollout made by hand is read in ponder's own format."""
        return self.completion if self.completion is not None else parse_completion(self.text)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


class Sequence:
    """Decode-time state of one request: its rollout, thinking phase, forcing and place in the cache."""

    def __init__(
        self,
        request_id,
        prompt_ids: list[int],
        params: SamplingParams,
        fmt: ChatFormat,
        seed: int,
        prompt_index: int = 0,
        pause_on: tuple[str, ...] = (),
    ):
        self.id = request_id
        self.params = params
        self.fmt = fmt
        self.seed = seed
        self.rollout = Rollout(prompt_index, list(prompt_ids))
        self.start = self.phase = fmt.start_phase(prompt_ids)
        self.forced: list[int] = []  # tokens to write for the model before sampling again
        self.opened = 0  # BEFORE: how many tokens of the opening marker it has written
        self.steps = 0  # tokens chosen by decoding (tool output not counted against max_tokens)
        self.position = 0  # tokens the cache holds
        self.pending = list(prompt_ids)  # tokens to run through the model when it (re-)joins
        self.slot: int | None = None
        self.status = "waiting"  # waiting | running | paused | finished
        self.pause_on = list(pause_on) + ([TOOL_CALL_CLOSE] if params.tools else [])

    # --- choosing the next token -------------------------------------------------------------------

    @property
    def must_think(self) -> bool:
        """Thinking on, and it has not written a thinking token yet: the end of thinking (and of the
        answer) is masked for it this step."""
        return (
            self.params.force_thinking
            and self.phase == Phase.THINKING
            and self.rollout.thinking_tokens == 0
            and not self.forced
        )

    def choose(self, sampled: int, logprob: float) -> tuple[int, float, bool]:
        """The token this sequence writes: the sample (written, True) or one forced for it."""
        if not self.forced:
            self.forced = self._forcing(sampled)
        if self.forced:
            return self.forced.pop(0), 0.0, False
        return sampled, logprob, True

    def _forcing(self, sampled: int) -> list[int]:
        """Tokens to write instead of the sample, if a rule says so (thinking on, budgets)."""
        p, fmt = self.params, self.fmt
        if self.phase == Phase.BEFORE and p.force_thinking and not self.rollout.token_ids:
            return list(fmt.think_open)  # thinking on, where the model opens it itself
        if self.phase != Phase.THINKING or not p.has_budget:
            return []
        count = self.rollout.thinking_tokens
        wants_to_close = sampled == fmt.think_close[0] or sampled in fmt.end_ids
        if wants_to_close and count < p.min_thinking_tokens:
            return list(fmt.encode(WAIT_TEXT))
        if p.max_thinking_tokens is not None and count + len(fmt.newline) >= p.max_thinking_tokens:
            return list(fmt.newline + fmt.think_close)  # the "\n" is a thinking token: start within budget
        return []

    # --- writing it ---------------------------------------------------------------------------------

    def write(self, token: int, logprob: float, written: bool, decoded: bool = True) -> None:
        """Append one token (mask 1 if the model wrote it) and follow the thinking phase.
        `decoded=False`: a tool's output, written for the model, not counted as its thinking."""
        r = self.rollout
        r.token_ids.append(token)
        r.logprobs.append(logprob)
        r.mask.append(1 if written else 0)
        if decoded:
            self.steps += 1
        if self.phase == Phase.BEFORE:
            self._follow_opening(token)
        elif self.phase == Phase.THINKING:
            r.thinking_tokens += decoded
            close = self.fmt.think_close
            if tuple(r.token_ids[-len(close) :]) == close:
                self.phase = Phase.ANSWER
                r.thinking_tokens -= len(close)  # the marker is not thinking

    def _follow_opening(self, token: int) -> None:
        opening = self.fmt.think_open
        if token == opening[self.opened]:
            self.opened += 1
            if self.opened == len(opening):
                self.phase = Phase.THINKING
        else:
            self.phase = Phase.ANSWER  # it answers without thinking

    def outcome(self) -> str | None:
        """After a step: "finished" (end token, stop string, max_tokens), "paused" (closed a tool call)."""
        r = self.rollout
        if r.token_ids[-1] in self.fmt.end_ids or (self.params.stop and self._wrote_any(self.params.stop)):
            r.finish_reason = "stop"
            return "finished"
        if self.steps >= self.params.max_tokens:
            r.finish_reason = "length"
            return "finished"
        if self.pause_on and self._wrote_any(self.pause_on):
            return "paused"
        return None

    def _wrote_any(self, texts: list[str]) -> bool:
        """One of `texts` is completed by the last token (not merely still in view after a resume)."""
        ids, decode = self.rollout.token_ids, self.fmt.tokenizer.decode
        tail, before = decode(ids[-TAIL:]), decode(ids[-TAIL:-1])
        return any(t in tail and t not in before for t in texts)

    def finish(self, reason: str | None = None) -> Rollout:
        """Decode the text (end token dropped, cut at a stop string) and parse it."""
        r = self.rollout
        if reason:
            r.finish_reason = reason
        r.finish_reason = r.finish_reason or "length"
        ids = r.token_ids[:-1] if r.token_ids and r.token_ids[-1] in self.fmt.end_ids else r.token_ids
        text = self.fmt.tokenizer.decode(ids, skip_special_tokens=False)
        for stop in self.params.stop:  # OpenAI semantics: the stop string is not part of the text
            if stop in text:
                text = text[: text.index(stop)]
        r.text = text
        r.completion = self.fmt.parse(text, self.start)
        self.status = "finished"
        return r
