"""The one decode loop: a running batch that requests join between steps, leave when done, pause in
for a tool and abort from. `Engine.generate`, RL rollouts, the tool loop, the async client and the
server all drive it.

    batch = LiveBatch(engine, max_batch=64)
    a = batch.add(prompt_ids, SamplingParams(temperature=0, tools=True))   # waits for a free slot
    for event in batch.step():                  # prefill whoever joins, one token for every row
        if event.kind == "paused":              # it wrote "</tool_call>": run the tool, then
            batch.resume(event.request, output) # the output is written for it (mask 0)
        elif event.kind == "finished":
            event.rollout.text
    batch.abort(a)                              # its slot is free for the next waiting request

Each request holds one slot of the KV pool (`runner.KVPool`) from the step it joins until it
finishes or is aborted (a paused one keeps its slot and its keys: resuming runs only the tool's
output). Joining writes the new row, leaving frees it; no other row's cache moves. Requests beyond
`max_batch` wait in a queue, first come first served. Identical prompts that join at one step (n
samples of a question) are prefilled once and the keys copied to their slots.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass

import torch

from ponder.engine.sampling import RowRules, SamplingParams, choose_tokens, mix_seed
from ponder.engine.sequence import Rollout, Sequence
from ponder.errors import PonderError

GROWTH = 2  # the pool grows by this factor when a sequence outruns it (rare reallocations)
EAGER_POOL_BYTES = 2**30  # a lazy pool up to this size takes every row of max_batch at its first growth


@dataclass
class Event:
    request: object  # the request id
    kind: str  # "finished" or "paused"
    rollout: Rollout


class LiveBatch:
    def __init__(
        self,
        engine,
        params: SamplingParams | None = None,
        max_batch: int | None = None,
        pause_on: tuple[str, ...] = (),
        seed: int | None = None,
    ):
        """`params`: the default rule of requests added without one; `pause_on`: strings that pause a
        sequence that writes them (with `params.tools`, "</tool_call>" does); `seed`: the default
        seed of requests whose params have none (each gets its own stream from it)."""
        self.engine = engine
        self.params = _one_sequence(params or SamplingParams())
        self.pause_on = tuple(pause_on)
        self.seed = seed
        self.max_batch = max_batch or engine.max_batch
        self.pool = engine.runner.new_pool()
        self.free: list[int] = []  # a heap of free slots: the lowest first keeps the batch dense
        self.slots_made = 0  # slots [0, slots_made) have been handed out at least once
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # each with its `pending` tokens, which the cache has not seen
        self.resumed: list[Sequence] = []
        self.paused: dict[object, Sequence] = {}
        self.requests: dict[object, Sequence] = {}
        self.next_id = 0
        self.added = 0
        self.rules: RowRules | None = None  # the running rows' sampling rules (rebuilt on change)
        engine.runner.refresh()

    # --- requests -----------------------------------------------------------------------------------

    def add(
        self,
        prompt: str | list[int],
        params: SamplingParams | None = None,
        request_id=None,
        prompt_index: int = 0,
        sample_index: int = 0,
        max_tokens: int | None = None,
        stop: list[str] | None = None,
    ):
        """Queue one sequence; it joins the running batch at the next `step` with a free slot.

        Its random stream is `params.seed` mixed with (prompt_index, sample_index), so a request with
        a seed gets the same tokens alone or among any batch mates."""
        params = _one_sequence(params or self.params)
        if max_tokens is not None or stop is not None:
            params = SamplingParams(**{**vars(params), "max_tokens": max_tokens or params.max_tokens,
                                       "stop": list(params.stop if stop is None else stop)})  # fmt: skip
        if request_id is None:
            request_id, self.next_id = self.next_id, self.next_id + 1
        if request_id in self.requests:
            raise PonderError(f"request id {request_id!r} is already in this batch")
        self.added += 1
        seed = params.seed
        if seed is None:
            seed = random.randrange(2**62) if self.seed is None else mix_seed(self.seed, self.added)
        seq = Sequence(
            request_id,
            self.engine.encode(prompt),
            params,
            self.engine.format,
            mix_seed(seed, prompt_index, sample_index),
            prompt_index,
            self.pause_on,
        )
        self.requests[request_id] = seq
        self.waiting.append(seq)
        return request_id

    def resume(self, request_id, output: str | list[int]) -> None:
        """Re-enter a paused sequence with `output` written for it (a tool's output: mask 0, never
        trained on, not counted against max_tokens); it continues at the next `step`."""
        if request_id not in self.paused:
            raise PonderError(
                f"request {request_id!r} is not paused; paused: {sorted(map(str, self.paused)) or 'none'}"
            )
        seq = self.paused.pop(request_id)
        ids = self.engine.encode(output, allow_empty=True) if isinstance(output, str) else list(output)
        for token in ids:
            seq.write(token, 0.0, written=False, decoded=False)
        seq.pending += ids  # after the token it paused on, which the cache has not seen yet
        seq.rollout.tool_calls += 1
        seq.rollout.tool_tokens += len(ids)
        self.resumed.append(seq)

    def abort(self, request_id) -> Rollout | None:
        """Stop a request wherever it is (waiting, running, paused); its slot is free at once."""
        seq = self.requests.pop(request_id, None)
        if seq is None:
            return None
        if seq in self.waiting:
            self.waiting.remove(seq)
        if seq in self.resumed:
            self.resumed.remove(seq)
        self.paused.pop(request_id, None)
        if seq.status == "running":
            keep = [i for i, s in enumerate(self.running) if s is not seq]
            self._keep(keep)
        self._release(seq)
        return seq.finish("abort")

    @property
    def idle(self) -> bool:
        """Nothing running and nothing waiting to join (paused sequences wait for `resume`)."""
        return not self.running and not self.waiting and not self.resumed

    def sequence(self, request_id) -> Sequence | None:
        return self.requests.get(request_id)

    # --- one step -----------------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> list[Event]:
        """Admit whoever joins, run one forward pass over every running sequence's pending tokens
        (the token it chose last step; a joiner's prompt; a resumed one's tool output), then choose
        each one's next token; return the sequences that finished or paused at this step (they
        leave the batch). Decode and prefill share the pass, as in vLLM's scheduler."""
        self._admit()
        if not self.running:
            return []
        return self._choose(self._forward())

    def _choose(self, logits: torch.Tensor) -> list[Event]:
        """Sample every running row's next token; rows that finish or pause leave."""
        if self.rules is None:
            self.rules = RowRules.of([s.params for s in self.running], [s.seed for s in self.running], logits.device)
        counters = torch.tensor([len(s.rollout.token_ids) for s in self.running], device=logits.device)
        sampled, logprobs = choose_tokens(self._steer(logits), self.rules, counters)
        events, keep = [], []
        for i, (seq, token, logprob) in enumerate(zip(self.running, sampled.tolist(), logprobs.tolist(), strict=True)):
            token, logprob, written = seq.choose(token, logprob)
            seq.write(token, logprob, written)
            seq.pending = [token]  # fed at the next step (or, if it pauses, when it resumes)
            outcome = seq.outcome()
            if outcome is None:
                keep.append(i)
            elif outcome == "paused":
                seq.status = "paused"
                seq.rollout.text = self.engine.tokenizer.decode(seq.rollout.token_ids, skip_special_tokens=False)
                self.paused[seq.id] = seq
                events.append(Event(seq.id, "paused", seq.rollout))
            else:
                self.requests.pop(seq.id, None)
                self._release(seq)
                events.append(Event(seq.id, "finished", seq.finish()))
        self._keep(keep)
        return events

    def _steer(self, logits: torch.Tensor) -> torch.Tensor:
        """Thinking on: rows that must think may not begin the end of thinking ("\n</think>", or the
        marker itself) or end the answer."""
        rows = [i for i, s in enumerate(self.running) if s.must_think]
        if not rows:
            return logits
        fmt = self.engine.format
        banned = torch.tensor([fmt.newline[0], fmt.think_close[0], *fmt.end_ids], device=logits.device)
        logits = logits.clone()
        logits[torch.tensor(rows, device=logits.device)[:, None], banned[None, :]] = float("-inf")
        return logits

    def _forward(self) -> torch.Tensor:
        """One forward pass over every running row's pending tokens, each from its own position;
        identical new prompts (n samples of a question) run once and their keys are copied. Returns
        the next-token logits, (running, vocab)."""
        first: dict[tuple[int, ...], Sequence] = {}
        runs, copies = [], []
        for seq in self.running:
            key = tuple(seq.pending) if seq.position == 0 else None
            if key is not None and key in first:
                copies.append((first[key], seq))
            else:
                runs.append(seq)
                if key is not None:
                    first[key] = seq
        self._make_room(max(s.position + len(s.pending) for s in runs) + 1)
        logits = self.engine.runner.forward(
            self.pool, [s.slot for s in runs], [s.pending for s in runs], [s.position for s in runs]
        )
        row_of = {id(s): i for i, s in enumerate(runs)}
        for src, dst in copies:
            self.pool.copy(src.slot, dst.slot, len(src.pending))
            row_of[id(dst)] = row_of[id(src)]
        for seq in self.running:
            seq.position += len(seq.pending)
            seq.pending = []
        if copies:
            order = [row_of[id(s)] for s in self.running]
            logits = logits.index_select(0, torch.tensor(order, device=logits.device))
        return logits

    # --- joining and leaving ------------------------------------------------------------------------

    def _admit(self) -> None:
        """Resumed sequences re-enter on their own slot; waiting ones take free slots while there are."""
        joining = self.resumed
        self.resumed = []
        while self.waiting and (self.free or self.slots_made < self.max_batch):
            seq = self.waiting[0]
            seq.slot = self._take_slot()
            self.waiting.popleft()
            joining.append(seq)
        for seq in joining:
            seq.status = "running"
        if joining:
            self.running += joining
            self.rules = None

    def _keep(self, keep: list[int]) -> None:
        """Drop the rows not in `keep` from the running list (their slots are handled by the caller)."""
        if len(keep) == len(self.running):
            return
        self.running = [self.running[i] for i in keep]
        self.rules = None

    def reserve(self, rows: int, capacity: int) -> None:
        """Size the pool up front (a caller that knows its batch: `Engine.generate`)."""
        self.pool.allocate(min(rows, self.max_batch), capacity)

    def _take_slot(self) -> int:
        if not self.free:
            rows = self.pool.rows if self.pool.rows > self.slots_made else self._grow_rows()
            self.free = list(range(self.slots_made, rows))
            self.slots_made = rows
        return heapq.heappop(self.free)

    def _grow_rows(self) -> int:
        """More slots, each long enough for the waiting requests' prompts and token budgets, so
        decoding rarely has to grow the pool again. A lazy pool (only written pages cost memory)
        that fits EAGER_POOL_BYTES takes all `max_batch` rows at once, as long as the model's
        context where that fits too: requests joining later then copy nothing. Otherwise the rows
        grow geometrically (each growth copies the pool once)."""
        need = max((len(s.pending) + s.params.max_tokens + 1 for s in self.waiting), default=0)
        capacity = max(self.pool.capacity, need, 64)
        rows = min(self.max_batch, max(self.pool.rows * GROWTH, self.pool.rows + len(self.waiting) + 1))
        if getattr(self.pool, "lazy", False):
            context = max(capacity, self.engine.runner.context or 0)
            if self.pool.bytes_for(self.max_batch, context) <= EAGER_POOL_BYTES:
                rows, capacity = self.max_batch, context
            elif self.pool.bytes_for(self.max_batch, capacity) <= EAGER_POOL_BYTES:
                rows = self.max_batch
        self.pool.allocate(rows, capacity)
        return rows

    def _release(self, seq: Sequence) -> None:
        if seq.slot is not None:
            self.pool.release(seq.slot)
            heapq.heappush(self.free, seq.slot)
            seq.slot = None

    def _make_room(self, length: int) -> None:
        if length > self.pool.capacity:
            self.pool.allocate(self.pool.rows, max(length, self.pool.capacity * GROWTH))


def _one_sequence(params: SamplingParams) -> SamplingParams:
    if params.n != 1:
        raise PonderError(
            "LiveBatch runs one sequence per request: add a request n times with sample_index 0..n-1 "
            "for n samples (added at one step, they share one prefill)"
        )
    return params
