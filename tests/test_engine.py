"""The sampling engine against Hugging Face's reference implementation, and its own contracts."""

from __future__ import annotations

import pytest
import torch
from conftest import biased_model
from transformers import GPT2Config, GPT2LMHeadModel

from ponder.engine import Engine, SamplingParams
from ponder.engine.sequence import WAIT_TEXT
from ponder.errors import PonderError
from ponder.format import END, THINK_CLOSE, render_prompt
from ponder.tasks.mix import TaskMix

QUESTIONS = [
    "What is 7+8?",
    "How many times does the letter 'a' appear in 'banana'?",
    "Using the numbers 3, 5, 7 and 2 once each with + - * /, make 24. Show the expression.",
]
PROMPTS = [render_prompt(q) for q in QUESTIONS]
GREEDY = SamplingParams(temperature=0.0, max_tokens=24)


@pytest.fixture(scope="module")
def engine(trained):
    model, tok = trained
    return Engine(model, tok)


@pytest.fixture(scope="module")
def fresh_engine(model, tok):
    return Engine(model, tok)


def hf_greedy(model, tok, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    """HF `generate` greedy continuations, cut after the first end token (as the engine stops)."""
    tok.padding_side = "left"
    batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(
            **batch,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    continuations = []
    for row in out[:, batch["input_ids"].shape[1] :].tolist():
        if tok.eos_token_id in row:
            row = row[: row.index(tok.eos_token_id) + 1]
        continuations.append(row)
    return continuations


def token_ids(groups) -> list[list[int]]:
    return [g[0].token_ids for g in groups]


# --- (1) agreement with HF generate --------------------------------------------------------------


@pytest.mark.parametrize("which", ["trained", "fresh"])
def test_greedy_matches_hf_generate_for_single_prompts(which, engine, fresh_engine):
    eng = engine if which == "trained" else fresh_engine
    for prompt in PROMPTS:
        ours = token_ids(eng.generate([prompt], GREEDY))
        assert ours == hf_greedy(eng.model, eng.tokenizer, [prompt], GREEDY.max_tokens)


@pytest.mark.parametrize("which", ["trained", "fresh"])
def test_greedy_matches_hf_generate_for_a_left_padded_batch(which, engine, fresh_engine):
    eng = engine if which == "trained" else fresh_engine
    ours = token_ids(eng.generate(PROMPTS, GREEDY))
    assert ours == hf_greedy(eng.model, eng.tokenizer, PROMPTS, GREEDY.max_tokens)


def test_greedy_matches_hf_when_rows_finish_at_different_steps(engine):
    """The trained model ends some answers early, so finished rows are compacted out mid-batch."""
    problems = TaskMix("letters:1,arithmetic:1").eval_set(per_cell=3)
    prompts = [render_prompt(p.prompt) for p in problems]
    groups = engine.generate(prompts, SamplingParams(temperature=0, max_tokens=80))
    lengths = {g[0].num_tokens for g in groups}
    assert len(lengths) > 1 and min(lengths) < 80, "the fixture should finish rows at different steps"
    for prompt, group in zip(prompts, groups, strict=True):
        assert group[0].token_ids == hf_greedy(engine.model, engine.tokenizer, [prompt], 80)[0]


def test_progress_counts_every_finished_sequence_once(engine):
    problems = TaskMix("letters:1,arithmetic:1").eval_set(per_cell=2)
    prompts = [render_prompt(p.prompt) for p in problems]
    counts = []
    engine.generate(prompts, SamplingParams(n=2, max_tokens=60, seed=0), progress=counts.append)
    assert sum(counts) == 2 * len(prompts)


# --- (2) batching invariance ---------------------------------------------------------------------


def test_greedy_output_is_the_same_alone_or_batched_with_longer_prompts(engine):
    alone = token_ids(engine.generate([PROMPTS[0]], GREEDY))[0]
    batched = token_ids(engine.generate(PROMPTS, GREEDY))[0]
    batched_last = token_ids(engine.generate(PROMPTS[::-1], GREEDY))[-1]
    assert alone == batched == batched_last


def test_prompts_may_be_token_ids(engine):
    ids = engine.tokenizer.encode(PROMPTS[1], add_special_tokens=False)
    assert token_ids(engine.generate([ids], GREEDY)) == token_ids(engine.generate([PROMPTS[1]], GREEDY))


# --- (3) seeds and groups ------------------------------------------------------------------------


def test_same_seed_gives_the_same_samples(fresh_engine):
    params = SamplingParams(temperature=1.0, max_tokens=16, n=2, seed=123)
    first = [[r.token_ids for r in g] for g in fresh_engine.generate(PROMPTS, params)]
    again = [[r.token_ids for r in g] for g in fresh_engine.generate(PROMPTS, params)]
    assert first == again


def test_different_seeds_give_different_samples(fresh_engine):
    a = fresh_engine.generate(PROMPTS, SamplingParams(max_tokens=16, seed=1))
    b = fresh_engine.generate(PROMPTS, SamplingParams(max_tokens=16, seed=2))
    assert token_ids(a) != token_ids(b)


def test_n_samples_per_prompt_form_groups_with_the_right_prompt_index(fresh_engine):
    groups = fresh_engine.generate(PROMPTS, SamplingParams(n=3, max_tokens=8, seed=0))
    assert len(groups) == len(PROMPTS)
    for i, group in enumerate(groups):
        assert len(group) == 3
        assert all(r.prompt_index == i for r in group)
        expected = fresh_engine.tokenizer.encode(PROMPTS[i], add_special_tokens=False)
        assert all(r.prompt_ids == expected for r in group)
    samples = [r.token_ids for r in groups[0]]
    assert len({tuple(s) for s in samples}) > 1  # the n samples of a group are independent draws


def test_chunking_by_max_batch_keeps_prompt_indices(model, tok):
    engine = Engine(model, tok, max_batch=2)
    groups = engine.generate(PROMPTS, SamplingParams(n=2, max_tokens=4, seed=0))
    assert [[r.prompt_index for r in g] for g in groups] == [[0, 0], [1, 1], [2, 2]]


# --- (4) log-probs -------------------------------------------------------------------------------


def hf_logprobs(model, prompt_ids, completion_ids, temperature: float) -> torch.Tensor:
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    start = len(prompt_ids) - 1  # logits at position t predict token t + 1
    positions = torch.arange(start, start + len(completion_ids))
    logprobs = torch.log_softmax(logits[positions] / temperature, dim=-1)
    return logprobs.gather(-1, torch.tensor(completion_ids)[:, None]).squeeze(-1)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_equal_a_full_hf_forward(temperature, fresh_engine):
    params = SamplingParams(temperature=temperature, max_tokens=20, n=2, seed=7)
    for group in fresh_engine.generate(PROMPTS[:2], params):
        for r in group:
            expected = hf_logprobs(fresh_engine.model, r.prompt_ids, r.token_ids, temperature)
            torch.testing.assert_close(torch.tensor(r.logprobs), expected, atol=1e-4, rtol=0)


# --- (5) stopping --------------------------------------------------------------------------------


def test_max_tokens_is_respected_with_finish_reason_length(fresh_engine):
    for r in fresh_engine.generate(PROMPTS, SamplingParams(max_tokens=5, n=2, seed=0))[0]:
        assert r.num_tokens == len(r.logprobs) == len(r.mask) == 5
        assert r.finish_reason == "length"


def test_stop_string_ends_generation_and_is_cut_from_the_text(fresh_engine):
    full = fresh_engine.generate([PROMPTS[0]], SamplingParams(temperature=0, max_tokens=30))[0][0]
    stop = fresh_engine.tokenizer.decode(full.token_ids[10:12])
    assert stop.strip(), "the fixture's greedy text should have visible characters here"
    cut = fresh_engine.generate([PROMPTS[0]], SamplingParams(temperature=0, max_tokens=30, stop=[stop]))[0][0]
    assert cut.finish_reason == "stop"
    assert cut.num_tokens < full.num_tokens
    assert cut.text == full.text[: full.text.index(stop)]
    assert stop not in cut.text


def test_stop_may_be_given_as_a_single_string():
    assert SamplingParams(stop="\n\n").stop == ["\n\n"]


def test_end_token_finishes_with_stop_and_is_not_in_the_text(model, tok):
    engine = Engine(biased_model(model, tok.convert_tokens_to_ids(END)), tok)
    r = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=10, seed=0))[0][0]
    assert r.token_ids == [tok.eos_token_id]
    assert r.finish_reason == "stop"
    assert r.text == ""


# --- (6) truncation ------------------------------------------------------------------------------


def test_top_k_1_equals_greedy(fresh_engine):
    greedy = token_ids(fresh_engine.generate(PROMPTS, GREEDY))
    top1 = token_ids(fresh_engine.generate(PROMPTS, SamplingParams(top_k=1, max_tokens=24, seed=3)))
    assert top1 == greedy


def test_tiny_top_p_equals_greedy(fresh_engine):
    greedy = token_ids(fresh_engine.generate(PROMPTS, GREEDY))
    nucleus = token_ids(fresh_engine.generate(PROMPTS, SamplingParams(top_p=1e-6, max_tokens=24, seed=3)))
    assert nucleus == greedy


# --- (7) budget forcing --------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [1, 3, 8])
def test_max_thinking_tokens_caps_thinking_and_forces_close_with_mask_0(budget, fresh_engine):
    tok = fresh_engine.tokenizer
    params = SamplingParams(max_tokens=20, max_thinking_tokens=budget, n=2, seed=0)
    close_id = tok.convert_tokens_to_ids(THINK_CLOSE)
    for r in fresh_engine.generate(PROMPTS, params)[0]:
        assert r.thinking_tokens <= budget
        assert THINK_CLOSE in r.text
        at = r.token_ids.index(close_id)
        assert r.mask[at] == 0  # the random model never wrote it: it was forced
        assert at <= budget  # no more than `budget` tokens before the closing tag
        assert r.parsed.closed_thinking


def test_min_thinking_tokens_writes_wait_instead_of_an_early_close(model, tok):
    close_id = tok.convert_tokens_to_ids(THINK_CLOSE)
    engine = Engine(biased_model(model, close_id), tok)  # always wants to close its thinking
    r = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=60, min_thinking_tokens=12, seed=0))[0][0]
    assert WAIT_TEXT.strip() in r.text
    assert r.thinking_tokens >= 12
    first_close = r.token_ids.index(close_id)
    assert r.mask[first_close] == 1  # once the budget is met the model's own close is kept
    assert 0 in r.mask[:first_close]  # the "wait,"s were forced


def test_min_thinking_tokens_on_a_trained_model(engine):
    problems = TaskMix("letters:1,arithmetic:1").eval_set(per_cell=2)
    prompts = [render_prompt(p.prompt) for p in problems]
    free = [g[0] for g in engine.generate(prompts, SamplingParams(temperature=0, max_tokens=80))]
    assert any(r.parsed.closed_thinking and r.thinking_tokens < 30 for r in free), "nothing to force"
    params = SamplingParams(temperature=0, max_tokens=80, min_thinking_tokens=30)
    forced = [g[0] for g in engine.generate(prompts, params)]
    for before, r in zip(free, forced, strict=True):
        assert r.thinking_tokens >= 30 or r.finish_reason == "length"
        if before.parsed.closed_thinking and before.thinking_tokens < 30:
            assert WAIT_TEXT.strip() in r.text


@pytest.mark.parametrize("skip_with", ["\n", THINK_CLOSE])
def test_force_thinking_forbids_skipping_the_thinking_and_nothing_else(skip_with, model, tok):
    skip_id = tok.encode(skip_with, add_special_tokens=False)[-1]
    engine = Engine(biased_model(model, skip_id), tok)  # always wants to skip (or close) its thinking
    free = engine.generate(PROMPTS, SamplingParams(max_tokens=12, n=2, seed=0))
    assert all(g[0].token_ids[0] == skip_id for g in free), "the biased model should start with the skip"
    params = SamplingParams(max_tokens=12, n=2, seed=0, force_thinking=True)
    for group in engine.generate(PROMPTS, params):
        for r in group:
            assert r.token_ids[0] not in (skip_id, engine.format.think_close[-1], *engine.end_ids)
            assert r.thinking_tokens >= 1
            assert set(r.mask) == {1}  # the model wrote every token: it was steered, not written for
            assert r.token_ids[1] == skip_id  # from the second token on, its choice is its own again


def test_force_thinking_makes_a_two_mode_model_work_the_problem(engine):
    problems = TaskMix("arithmetic:1-2,letters:1,decimals:1").eval_set(per_cell=3)
    prompts = [render_prompt(p.prompt) for p in problems]
    free = [g[0] for g in engine.generate(prompts, SamplingParams(temperature=0, max_tokens=100))]
    assert any(not r.parsed.thinking.strip() for r in free), "the fixture should answer some at once"
    params = SamplingParams(temperature=0, max_tokens=100, force_thinking=True)
    forced = [g[0] for g in engine.generate(prompts, params)]
    for before, r in zip(free, forced, strict=True):
        assert r.parsed.thinking.strip()
        if before.parsed.thinking.strip():  # it thought anyway: the mask changed nothing
            assert r.token_ids == before.token_ids


# --- weights pushed from elsewhere ----------------------------------------------------------------


def stale_copy(model):
    """Another process's copy of the model, its weights out of date (scrambled here)."""
    import copy

    stale = copy.deepcopy(model)
    with torch.no_grad():
        for p in stale.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return stale


def test_pushed_weights_make_another_engine_sample_what_the_trainer_samples(trained):
    import io

    trainer_model, tok = trained
    actor = Engine(stale_copy(trainer_model), tok)
    prompts = PROMPTS[:2]
    want = token_ids(Engine(trainer_model, tok).generate(prompts, GREEDY))
    assert token_ids(actor.generate(prompts, GREEDY)) != want, "the two models should differ before the push"
    wire = io.BytesIO()
    torch.save(trainer_model.state_dict(), wire)  # what would cross the process boundary
    wire.seek(0)
    actor.load_weights(torch.load(wire))
    assert token_ids(actor.generate(prompts, GREEDY)) == want


def test_pushed_weights_that_do_not_fit_are_named(trained):
    trainer_model, tok = trained
    actor = Engine(stale_copy(trainer_model), tok)
    weights = dict(trainer_model.state_dict())
    weights["model.norm.weight"] = torch.ones(3)
    weights["extra.bias"] = torch.zeros(1)
    del weights["model.layers.0.mlp.up_proj.weight"]
    with pytest.raises(PonderError, match=r"unknown: extra.bias; missing: model.layers.0.mlp.up_proj.weight; "
                       r"wrong shape: model.norm.weight"):  # fmt: skip
        actor.load_weights(weights)


# --- (8) / (9) errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_tokens", 0),
        ("temperature", -1.0),
        ("top_p", 0.0),
        ("top_k", -1),
        ("n", 0),
        ("min_thinking_tokens", -2),
        ("max_thinking_tokens", 0),
    ],
)
def test_sampling_params_validation_names_the_field(field, value):
    with pytest.raises(PonderError, match=field):
        SamplingParams(**{field: value})


def test_an_architecture_outside_the_llama_family_gets_the_models_own_forward(tok):
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tok), n_positions=64))
    with pytest.raises(PonderError, match="gpt2"):
        Engine(gpt2, tok, backend="lean")
    assert "own forward" in Engine(gpt2, tok).backend


def test_empty_prompt_is_rejected(fresh_engine):
    with pytest.raises(ValueError, match="empty prompt"):
        fresh_engine.generate([""], GREEDY)


@pytest.mark.parametrize(
    "model_type",
    ["qwen2", "qwen3", "mistral"],
)
def test_greedy_matches_hf_generate_for_other_llama_family_architectures(tok, model_type):
    """Qwen2 (QKV bias), Qwen3 (per-head q/k norms) and Mistral run through the same lean forward."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        model_type, vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    prompts = [render_prompt("Compute 12+7."), render_prompt("Which is larger, 9.11 or 9.9?")]
    groups = Engine(model, tok).generate(prompts, SamplingParams(temperature=0.0, max_tokens=12))
    for prompt, group in zip(prompts, groups, strict=True):
        ids = torch.tensor([tok.encode(prompt, add_special_tokens=False)])
        out = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
        expected = out[0, ids.shape[1] :].tolist()
        assert group[0].token_ids == expected[: len(group[0].token_ids)]
