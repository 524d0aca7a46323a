"""A running batch that requests join between steps and sequences leave and re-enter (tool calls).

    batch = LiveBatch(engine, SamplingParams(temperature=0), pause_on=["</tool_call>"])
    a = batch.add("<|user|>What is 7+8?...")        # joins at the next step
    for event in batch.step():                      # one token for every running sequence
        if event.kind == "paused":                  # it wrote "</tool_call>": run the tool, then
            batch.resume(event.request, output)     # the output is written for it (mask 0)
        elif event.kind == "finished":
            event.rollout.text
    b = batch.add(...)                              # a late request joins the same running batch

`Engine.generate` is the closed form (a fixed set of prompts, n samples sharing each prefill); this
is the open one a server and the tool loop need. The mechanism is the KV cache's row surgery: a
joining sequence is prefilled alone (its prompt, or a paused sequence's tool output on top of its
own saved rows), then both caches are left-padded to a common length and concatenated. Positions
are per row and RoPE is applied before caching, so shifting a row's slots changes nothing it
computes: a sequence's tokens are the same whether it ran alone, joined late, or paused and resumed
(tests check this against `Engine.generate` on the same prefix). Sampling rule (temperature, top-p,
thinking budgets, thinking on) is per request, like max_tokens and stop strings; rows that share one
are sampled together.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from ponder.engine.engine import Engine, Rollout, _Sequence
from ponder.engine.runner import KVCache
from ponder.engine.sampling import SamplingParams, choose_tokens
from ponder.errors import PonderError

HEADROOM = 64  # cache slots added at a time when a batch runs out of room (fewer reallocations)


@dataclass
class Event:
    request: int
    kind: str  # "finished" or "paused"
    rollout: Rollout


@dataclass
class _Request:
    id: int
    seq: _Sequence
    params: SamplingParams  # this request's sampling rule, max_tokens and stop strings
    position: int = 0  # position of the next token
    steps: int = 0  # tokens chosen by decoding (sampled or budget-forced; tool output not counted)
    pending: list[int] = field(default_factory=list)  # tokens to prefill when it (re-)joins


class LiveBatch:
    def __init__(self, engine: Engine, params: SamplingParams | None = None, pause_on=(), seed: int = 0):
        self.engine = engine
        self.params = _one_sequence(params or SamplingParams())
        self.pause_on = list(pause_on)
        self.generator = torch.Generator(device=engine.device).manual_seed(seed)
        self.cache: KVCache | None = None  # rows = self.rows, in order
        self.rows: list[_Request] = []
        self.logits: torch.Tensor | None = None  # (rows, vocab): each row's next-token logits
        self.joining: list[tuple[_Request, KVCache | None]] = []
        self.paused: dict[int, tuple[_Request, KVCache]] = {}
        self.next_id = 0
        engine.runner.refresh()

    # --- requests ---------------------------------------------------------------------------------

    def add(
        self,
        prompt: str | list[int],
        params: SamplingParams | None = None,
        max_tokens: int | None = None,
        stop: list[str] | None = None,
    ) -> int:
        """Queue a request; it is prefilled and joins the running batch at the next `step`. It samples
        with `params` (default: the batch's), `max_tokens` and `stop` overriding those fields."""
        ids = self.engine._encode(prompt)
        params = _one_sequence(params or self.params)
        params = dataclasses.replace(
            params,
            max_tokens=max_tokens or params.max_tokens,
            stop=list(params.stop if stop is None else stop),
        )
        request = _Request(self.next_id, _Sequence(Rollout(self.next_id, ids)), params, pending=ids)
        self.next_id += 1
        self.joining.append((request, None))
        return request.id

    def resume(self, request_id: int, text: str | list[int]) -> None:
        """Re-enter a paused sequence with `text` written for it (a tool's output: mask 0, never
        trained on); it continues from there at the next `step`."""
        if request_id not in self.paused:
            raise PonderError(f"request {request_id} is not paused; paused: {sorted(self.paused) or 'none'}")
        request, cache = self.paused.pop(request_id)
        if isinstance(text, str):  # "" is a fine output (a tool that printed nothing)
            ids = self.engine.tokenizer.encode(text, add_special_tokens=False)
        else:
            ids = list(text)
        for token in ids:  # written for the model: in the rollout, masked out of the loss
            self.engine._write(request.seq, token, 0.0, written=False)
        request.pending += ids  # after the token it paused on, which the cache has not seen yet
        self.joining.append((request, cache))

    @property
    def idle(self) -> bool:
        """Nothing running and nothing waiting to join (paused sequences wait for `resume`)."""
        return not self.rows and not self.joining

    # --- one step ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> list[Event]:
        """Prefill whoever joins, then choose one token for every running sequence; return the
        sequences that finished or paused at this step (they leave the batch)."""
        new = [q for q, cache in self.joining if cache is None]
        if new:
            self._join(new, None)
        for request, cache in self.joining:
            if cache is not None:
                self._join([request], cache)
        self.joining = []
        if not self.rows:
            return []
        sampled, logprobs = self._choose()
        chosen = [
            self._append(q, token, logprob)
            for q, token, logprob in zip(self.rows, sampled.tolist(), logprobs.tolist(), strict=True)
        ]
        events = [e for e in map(self._event, self.rows) if e is not None]
        left = {e.request for e in events}
        for i, q in enumerate(self.rows):
            if q.id in left and not q.seq.done:  # paused: its rows wait aside; the token it just
                self.paused[q.id] = (q, self.cache.take([i]))  # wrote is fed when it resumes
                q.pending = [chosen[i]]
        self._feed([i for i, q in enumerate(self.rows) if q.id not in left], chosen)
        return events

    def _choose(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One token per row, each request under its own sampling rule: rows that share a rule are
        sampled together (one call for the usual case of a single rule)."""
        logits = self.logits
        thinking_on = [q.params.force_thinking for q in self.rows]
        if any(thinking_on):
            logits = self.engine._forbid_skipping(logits, [q.seq for q in self.rows], only=thinking_on)
        groups: dict[tuple, list[int]] = {}
        for i, q in enumerate(self.rows):
            groups.setdefault((q.params.temperature, q.params.top_p, q.params.top_k), []).append(i)
        if len(groups) == 1:
            return choose_tokens(logits, self.rows[0].params, self.generator)
        tokens = torch.empty(len(self.rows), dtype=torch.long, device=logits.device)
        logprobs = torch.empty(len(self.rows), device=logits.device)
        for rows in groups.values():
            index = torch.tensor(rows, device=logits.device)
            tokens[index], logprobs[index] = choose_tokens(logits[index], self.rows[rows[0]].params, self.generator)
        return tokens, logprobs

    def _append(self, request: _Request, token: int, logprob: float) -> int:
        """The token this row writes: the sample, or what budget forcing writes instead."""
        seq, engine = request.seq, self.engine
        token, logprob, written = engine._force(seq, token, logprob, request.params)
        request.steps += 1
        engine._write(seq, token, logprob, written)
        return token

    def _event(self, request: _Request) -> Event | None:
        seq, r, engine = request.seq, request.seq.rollout, self.engine
        if engine._stopped(r, request.params):
            seq.done, r.finish_reason = True, "stop"
        elif request.steps >= request.params.max_tokens:
            seq.done, r.finish_reason = True, "length"
        elif any(self._newly_written(r, s) for s in self.pause_on):
            return Event(request.id, "paused", r)
        if seq.done:
            engine._finish(seq, request.params)
            return Event(request.id, "finished", r)
        return None

    def _newly_written(self, rollout: Rollout, text: str) -> bool:
        """`text` is completed by the last token (not merely still in view after a resume)."""
        start = max(0, len(rollout.token_ids) - 16)
        decode = self.engine.tokenizer.decode
        return text in decode(rollout.token_ids[start:]) and text not in decode(rollout.token_ids[start:-1])

    # --- cache surgery ----------------------------------------------------------------------------

    def _join(self, requests: list[_Request], cache: KVCache | None) -> None:
        """Prefill each request's pending tokens, then append their rows to the batch: new requests
        together (one left-padded prefill, as `Engine.generate` does; identical prompts, such as n
        samples of one question, prefilled once and fanned out), a resumed one on its own saved rows
        (`cache`)."""
        runner, device = self.engine.runner, self.engine.device
        fan = None
        if cache is None:
            distinct: dict[tuple[int, ...], int] = {}
            fan = [distinct.setdefault(tuple(q.pending), len(distinct)) for q in requests]
            pending, starts = [list(p) for p in distinct], [0] * len(distinct)
            cache = runner.new_cache(len(pending), max(map(len, pending)) + HEADROOM)
        else:
            pending, starts = [q.pending for q in requests], [q.position for q in requests]
        longest = max(map(len, pending))
        _make_room(runner, cache, longest)
        tokens = torch.tensor([[0] * (longest - len(p)) + p for p in pending], device=device)
        valid = torch.tensor([[False] * (longest - len(p)) + [True] * len(p) for p in pending], device=device)
        positions = (torch.tensor(starts, device=device)[:, None] + valid.long().cumsum(-1) - 1).clamp(min=0)
        logits = runner.forward(tokens, positions, cache, valid)
        if fan is not None and len(pending) < len(requests):
            index = torch.tensor(fan, device=device)
            cache.select(index)
            logits = logits.index_select(0, index)
        for q in requests:
            q.position += len(q.pending)
            q.pending = []
        if self.cache is None:
            self.cache, self.rows, self.logits = cache, list(requests), logits
            return
        self.cache = _concat(runner, self.cache, cache)
        self.rows += requests
        self.logits = torch.cat([self.logits, logits])

    def _feed(self, keep: list[int], chosen: list[int]) -> None:
        """Drop the rows that left, then run the chosen tokens of the rest (next step's logits)."""
        if len(keep) < len(self.rows):
            if not keep:
                self.cache, self.rows, self.logits = None, [], None
                return
            self.cache = self.cache.take(keep)
            self.cache.trim_left()
            self.rows = [self.rows[i] for i in keep]
            chosen = [chosen[i] for i in keep]
        device = self.engine.device
        _make_room(self.engine.runner, self.cache, 1)
        tokens = torch.tensor(chosen, device=device)[:, None]
        positions = torch.tensor([q.position for q in self.rows], device=device)[:, None]
        new_valid = torch.ones_like(tokens, dtype=torch.bool)
        self.logits = self.engine.runner.forward(tokens, positions, self.cache, new_valid)
        for q in self.rows:
            q.position += 1


def _one_sequence(params: SamplingParams) -> SamplingParams:
    if params.n != 1:
        raise PonderError(
            "LiveBatch runs one sequence per request: add a request n times for n samples "
            "(added at one step, they share one prefill)"
        )
    return params


def _make_room(runner, cache: KVCache, tokens: int) -> None:
    """Grow `cache` on the right so `tokens` more fit (with headroom, so this is rare)."""
    if cache.length + tokens > cache.capacity:
        cache.grow_right(cache.length + tokens + HEADROOM - cache.capacity)
        runner.set_rope(cache)


def _concat(runner, a: KVCache, b: KVCache) -> KVCache:
    """Rows of `a` then rows of `b`, left-padded to a common length and sized to a common capacity."""
    for short, long in ((a, b), (b, a)):
        if short.length < long.length:
            short.pad_left(long.length - short.length)
    for small, big in ((a, b), (b, a)):
        if small.capacity < big.capacity:
            small.grow_right(big.capacity - small.capacity)
    out = a.stack(b)
    if len(out.cos) < out.capacity:  # `a`'s tables: recomputed only if padding outgrew them
        runner.set_rope(out)
    return out
