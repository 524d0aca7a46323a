"""The running batch: requests that join late and sequences that pause for a tool and resume get
exactly the tokens `Engine.generate` gives for the same prefix (greedy, a trained tiny model)."""

from __future__ import annotations

import pytest
import torch

from ponder.engine import Engine, SamplingParams
from ponder.engine.live import LiveBatch
from ponder.errors import PonderError
from ponder.format import render_prompt
from ponder.tasks.mix import TaskMix

GREEDY = SamplingParams(temperature=0.0, max_tokens=40)


@pytest.fixture(scope="module")
def engine(trained):
    return Engine(*trained)


def prompts() -> list[str]:
    problems = TaskMix("arithmetic:1,letters:1,sudoku:1").eval_set(per_cell=1)
    return [render_prompt(p.prompt) for p in problems]


def run(batch: LiveBatch, schedule: dict[int, list[str]], on_pause=None) -> dict[int, object]:
    """Step until idle, adding schedule[step]'s prompts at that step; {request id: rollout}."""
    done, ids, step = {}, [], 0
    while step <= max(schedule) or not batch.idle or batch.paused:
        ids += [batch.add(p) for p in schedule.get(step, [])]
        for event in batch.step():
            if event.kind == "finished":
                done[event.request] = event.rollout
            else:
                on_pause(batch, event)
        step += 1
        assert step < 500, "the batch never went idle"
    return {i: done[i] for i in ids}


def test_requests_joining_a_running_batch_get_the_tokens_they_get_alone(engine):
    p = prompts()
    sudoku = next(x for x in p if len(x) == max(map(len, p)))  # the longest prompt
    short = [x for x in p if x != sudoku]
    reference = {x: g[0].token_ids for x, g in zip(p, engine.generate(p, GREEDY), strict=True)}
    # a short prompt starts; the long one joins at step 2 (the batch is padded to it); the last
    # short one joins at step 9, behind a batch longer than itself (it is padded to the batch)
    out = run(LiveBatch(engine, GREEDY), {0: [short[0]], 2: [sudoku], 9: [short[1]]})
    for prompt, rollout in zip([short[0], sudoku, short[1]], out.values(), strict=True):
        assert rollout.token_ids == reference[prompt]
        assert rollout.text and rollout.finish_reason in ("stop", "length")


def test_a_finished_sequence_frees_its_slot_for_a_waiting_one_and_no_other_row_moves(engine):
    p = sorted(prompts(), key=len)
    reference = {x: g[0].token_ids for x, g in zip(p, engine.generate(p, GREEDY), strict=True)}
    batch = LiveBatch(engine, GREEDY, max_batch=2)
    short = batch.add(p[0], max_tokens=3)  # leaves first
    long, late = batch.add(p[1]), batch.add(p[2])  # `late` waits: only two slots
    batch.step()
    slots = {q: batch.sequence(q).slot for q in (short, long)}
    assert batch.sequence(late).status == "waiting" and sorted(slots.values()) == [0, 1]
    keys_before = batch.pool.k[0][slots[long], :, :5].clone()
    done = {}
    while not batch.idle:
        done.update({e.request: e.rollout for e in batch.step()})
        if late in batch.requests and long in batch.requests and batch.sequence(late).slot is not None:
            assert batch.sequence(late).slot == slots[short]  # it took the freed slot
            assert batch.sequence(long).slot == slots[long]  # the running row stayed where it was
            assert torch.equal(batch.pool.k[0][slots[long], :, :5], keys_before)
    assert done[long].token_ids == reference[p[1]] and done[late].token_ids == reference[p[2]]
    assert done[short].token_ids == reference[p[0]][:3] and done[short].finish_reason == "length"


def test_the_cache_grows_when_sequences_outrun_their_room(engine):
    p = prompts()
    reference = [g[0].token_ids for g in engine.generate(p, GREEDY)]
    batch = LiveBatch(engine, GREEDY)
    batch.reserve(1, 8)  # room for 8 tokens: every prompt outgrows it, and decoding grows it again
    out = run(batch, {0: [p[0]], 1: [p[1]], 4: [p[2]]})
    assert [r.token_ids for r in out.values()] == reference
    assert batch.pool.capacity > 8


def test_aborting_a_request_frees_its_slot_at_once_and_ends_it(engine):
    p = prompts()
    batch = LiveBatch(engine, GREEDY, max_batch=1)
    first, second = batch.add(p[0]), batch.add(p[1])
    batch.step()
    slot = batch.sequence(first).slot
    rollout = batch.abort(first)
    assert rollout.finish_reason == "abort" and len(rollout.token_ids) == 1
    events = batch.step()  # the waiting request takes the slot at the very next step
    assert batch.sequence(second).slot == slot and batch.sequence(second).status == "running"
    assert not events and first not in batch.requests
    assert batch.abort("no such request") is None


def test_a_paused_sequence_resumes_as_if_the_tool_output_had_been_in_its_prompt(engine):
    tok = engine.tokenizer
    prompt = prompts()[0]
    free = engine.generate([prompt], GREEDY)[0][0]
    # pause on the first token (after the first two) whose text the model has not written before
    cut = next(
        k
        for k in range(3, len(free.token_ids))
        if tok.decode(free.token_ids[k - 1 : k]).strip()
        and tok.decode(free.token_ids[k - 1 : k]) not in tok.decode(free.token_ids[: k - 1])
    )
    pause_on = tok.decode(free.token_ids[cut - 1 : cut])
    tool_ids = tok.encode(" 1234 ", add_special_tokens=False)

    def tool(batch, event):
        assert event.rollout.token_ids == free.token_ids[:cut]  # it stopped right after the string
        batch.resume(event.request, tool_ids)

    (rollout,) = run(LiveBatch(engine, GREEDY, pause_on=[pause_on]), {0: [prompt]}, on_pause=tool).values()
    prefix = tok.encode(prompt, add_special_tokens=False) + free.token_ids[:cut] + tool_ids
    rest = engine.generate([prefix], SamplingParams(temperature=0.0, max_tokens=GREEDY.max_tokens - cut))[0][0]
    assert rollout.token_ids == free.token_ids[:cut] + tool_ids + rest.token_ids
    assert rollout.mask == [1] * cut + [0] * len(tool_ids) + [1] * len(rest.token_ids)
    assert sum(rollout.mask) <= GREEDY.max_tokens  # tool output does not use up the token budget


def test_other_sequences_run_on_while_one_waits_for_its_tool(engine):
    p = prompts()
    reference = {x: g[0].token_ids for x, g in zip(p, engine.generate(p, GREEDY), strict=True)}
    batch = LiveBatch(engine, GREEDY, pause_on=[engine.tokenizer.decode(reference[p[0]][2:3])])
    first, second = batch.add(p[0]), batch.add(p[1])
    finished = {}
    for _ in range(GREEDY.max_tokens + 1):
        for event in batch.step():
            if event.kind == "finished":
                finished[event.request] = event.rollout
    assert first in batch.paused and second in finished  # one waits; the other finished meanwhile
    assert finished[second].token_ids == reference[p[1]]
    assert batch.idle  # nothing runs while the paused one waits for its tool


def test_resuming_a_request_that_is_not_paused_names_the_paused_ones(engine):
    batch = LiveBatch(engine, GREEDY)
    with pytest.raises(PonderError, match="request 7 is not paused; paused: none"):
        batch.resume(7, "x")


def test_n_samples_per_request_is_refused_with_the_way_out(engine):
    with pytest.raises(PonderError, match="add a request n times"):
        LiveBatch(engine, SamplingParams(n=4))


@pytest.mark.parametrize("seed", [0, 1])
def test_sampling_with_budgets_joins_and_pauses_keeps_every_rollout_consistent(engine, seed):
    import random

    rng = random.Random(seed)
    params = SamplingParams(temperature=1.0, max_tokens=30, max_thinking_tokens=12, force_thinking=True)
    batch = LiveBatch(engine, params, pause_on=["+"], seed=seed)
    p = prompts()
    finished, added, pauses = {}, 0, 0
    for _ in range(400):
        if added < 12 and rng.random() < 0.3:
            batch.add(p[added % len(p)], max_tokens=rng.choice([10, 30]))
            added += 1
        for event in batch.step():
            if event.kind == "finished":
                finished[event.request] = event.rollout
            else:  # a "tool" answers at once; every other answer is empty (it printed nothing)
                pauses += 1
                batch.resume(event.request, " 7 " if pauses % 2 else "")
        if added == 12 and batch.idle and not batch.paused:
            break
    assert len(finished) == 12 and pauses > 2, "the schedule should pause some sequences"
    for r in finished.values():
        assert len(r.token_ids) == len(r.logprobs) == len(r.mask)
        assert r.mask[0] == 1  # thinking on: the model started it itself
        assert r.thinking_tokens >= 1 and r.finish_reason in ("stop", "length")
        written = [t for t, m in zip(r.token_ids, r.mask, strict=True) if m == 1]
        assert len(written) <= 30


def test_each_request_samples_under_its_own_rule(engine):
    p = prompts()
    greedy = {x: g[0].token_ids for x, g in zip(p, engine.generate(p, GREEDY), strict=True)}
    thinking = SamplingParams(temperature=0.0, max_tokens=40, force_thinking=True)
    forced = {x: g[0].token_ids for x, g in zip(p, engine.generate(p, thinking), strict=True)}
    sampled = SamplingParams(temperature=1.0, max_tokens=40, seed=3)
    alone = LiveBatch(engine, sampled)
    alone_id = alone.add(p[2])
    while not alone.idle:
        alone_out = {e.request: e.rollout for e in alone.step()}
    batch = LiveBatch(engine, sampled)
    ids = {
        "greedy": batch.add(p[0], GREEDY),
        "thinking": batch.add(p[1], thinking),
        "sampled": batch.add(p[2]),  # the batch's rule: temperature 1, seed 3
        "capped": batch.add(p[0], SamplingParams(temperature=0.0, max_tokens=40, max_thinking_tokens=4)),
    }
    done = {}
    while not batch.idle:
        done.update({e.request: e.rollout for e in batch.step()})
    assert done[ids["greedy"]].token_ids == greedy[p[0]]
    assert done[ids["thinking"]].token_ids == forced[p[1]]
    assert done[ids["capped"]].thinking_tokens <= 4
    # sampled under its own seed: the same tokens as alone, and not the greedy ones
    assert done[ids["sampled"]].token_ids == alone_out[alone_id].token_ids
    assert done[ids["sampled"]].token_ids != greedy[p[2]]


def test_n_samples_of_one_prompt_share_one_prefill(engine, monkeypatch):
    p = prompts()[0]
    prefilled = []
    forward = engine.runner.forward

    def counting(pool, slots, chunks, starts):
        prefilled.extend(len(chunk) for chunk in chunks if len(chunk) > 1)  # prompts, not decoded tokens
        return forward(pool, slots, chunks, starts)

    monkeypatch.setattr(engine.runner, "forward", counting)
    batch = LiveBatch(engine, GREEDY)
    ids = [batch.add(p) for _ in range(4)]
    done = {}
    while not batch.idle:
        done.update({e.request: e.rollout for e in batch.step()})
    assert prefilled == [len(engine.encode(p))]  # one row prefilled for the four requests
    reference = engine.generate([p], GREEDY)[0][0].token_ids
    assert all(done[i].token_ids == reference for i in ids)


def test_rows_of_very_different_lengths_attend_in_two_passes_with_the_same_logits(engine):
    """Most rows short and one long: short rows read keys up to a cut, the long row its own length
    again (`runner._long_rows`); the logits equal one pass over the longest length."""
    from ponder.engine import runner as runner_module

    short = [engine.encode(p) for p in prompts()] * 4
    long = short[0] * 6  # a prompt several times longer than the others
    pool = engine.runner.new_pool(lazy=False)  # torch's step reads the pool's unwritten slots
    pool.allocate(len(short) + 1, len(long) + 8)
    chunks = [*short, long]
    slots = list(range(len(chunks)))
    engine.runner.prefill(pool, slots, chunks, [0] * len(chunks))
    positions = [len(c) for c in chunks]
    lengths = [position + 1 for position in positions]
    split = runner_module._long_rows(lengths, max(positions) + 1)
    assert split is not None and split[1].tolist() == [len(chunks) - 1]  # the long row reads twice
    two_pass = engine.runner.decode(pool, slots, [5] * len(chunks), positions)
    original = runner_module._long_rows
    runner_module._long_rows = lambda lengths, end, device=None: None
    try:
        one_pass = engine.runner.decode(pool, slots, [5] * len(chunks), positions)
    finally:
        runner_module._long_rows = original
    torch.testing.assert_close(two_pass, one_pass, rtol=1e-5, atol=1e-5)


def test_one_token_chunks_of_rows_of_different_lengths_prefill_as_each_does_alone(engine):
    """Two tool outputs of one token each resume two rows of different lengths in one prefill: each
    row reads only its own keys (an additive mask), as when it resumes alone."""
    short, long = (engine.encode(p) for p in prompts()[:2])
    short, long = sorted((short, long * 3), key=len)
    token = engine.encode(" 7")[:1]

    def resume(rows: list[int]) -> torch.Tensor:
        pool = engine.runner.new_pool(lazy=False)  # torch's step reads the pool's unwritten slots
        pool.allocate(2, len(long) + 8)
        engine.runner.prefill(pool, [0, 1], [short, long], [0, 0])
        return engine.runner.prefill(pool, rows, [token] * len(rows), [[len(short), len(long)][r] for r in rows])

    together = resume([0, 1])
    torch.testing.assert_close(together[0], resume([0])[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(together[1], resume([1])[0], rtol=1e-5, atol=1e-5)
