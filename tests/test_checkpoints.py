"""Real checkpoints, tiny: a Qwen3 (its own template and thinking switch), a Llama 3 (no thinking
tokens: "</think>" is several ordinary tokens) and a GPT-2 (not the Llama family: the model's own
forward) run through the engine, the effort presets and `ponder eval`, `sft` and `rl`."""

from __future__ import annotations

import pytest
import torch

from ponder import model as models
from ponder.cli import main
from ponder.engine import Engine, Phase, SamplingParams
from ponder.tasks.mix import TaskMix
from ponder.ttc.effort import run_effort
from tests.checkpoints import build

KINDS = ["qwen3", "llama3", "gpt2"]
QUESTIONS = ["Compute 27+56.", "How many r are in strawberry?", "Which is larger, 9.11 or 9.9?"]


@pytest.fixture(scope="module", params=KINDS)
def checkpoint(request, tmp_path_factory):
    return request.param, build(request.param, tmp_path_factory.mktemp("ckpt") / request.param)


@pytest.fixture(scope="module")
def loaded(checkpoint):
    kind, path = checkpoint
    model, tok = models.load(path)
    return kind, model, tok, Engine(model, tok)


def test_the_backend_is_chosen_by_architecture(loaded):
    kind, _, _, engine = loaded
    assert ("own forward" in engine.backend) == (kind == "gpt2")


def test_greedy_tokens_equal_model_generate(loaded):
    _, model, tok, engine = loaded
    prompts = [engine.format.prompt(q) for q in QUESTIONS]
    groups = engine.generate(prompts, SamplingParams(temperature=0, max_tokens=16))
    for ids, (r,) in zip(prompts, groups, strict=True):
        out = model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id)[
            0, len(ids) :
        ].tolist()
        assert r.token_ids == out[: len(r.token_ids)]
        assert r.prompt_ids == ids


def test_rollout_ids_are_the_produced_ids_never_re_tokenized(loaded):
    _, model, tok, engine = loaded
    prompts = [engine.format.prompt(q) for q in QUESTIONS]
    rollouts = [
        r for g in engine.generate(prompts, SamplingParams(temperature=1.0, max_tokens=24, n=4, seed=0)) for r in g
    ]
    for r in rollouts:  # every token's log-prob is the model's for that very id after that very prefix
        ids = torch.tensor([r.prompt_ids + r.token_ids])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(ids).logits[0, len(r.prompt_ids) - 1 : -1].float(), -1)
        expected = logprobs.gather(-1, torch.tensor(r.token_ids)[:, None]).squeeze(-1)
        assert torch.allclose(torch.tensor(r.logprobs), expected, atol=1e-4)
    # a random model writes token sequences that text would not give back: the ids were kept as produced
    assert any(tok.encode(r.text, add_special_tokens=False) != r.token_ids[: -1 or None] for r in rollouts)


@pytest.mark.parametrize("budget", [3, 8])
def test_a_thinking_budget_is_honoured_whether_the_close_is_one_token_or_several(loaded, budget):
    kind, _, _, engine = loaded
    fmt = engine.format
    assert len(fmt.think_close) == (1 if kind == "qwen3" else 3)
    prompts = [fmt.prompt(q) for q in QUESTIONS]
    params = SamplingParams(temperature=1.0, max_tokens=40, seed=1, force_thinking=True, max_thinking_tokens=budget)
    end_ids, fmt.end_ids = fmt.end_ids, set()  # a random model may end anywhere: only the budget closes it here
    try:
        groups = engine.generate(prompts, params)
    finally:
        fmt.end_ids = end_ids
    for (r,) in groups:
        assert 1 <= r.thinking_tokens <= budget
        assert r.parsed.closed_thinking, r.text  # forced closed: a random model never closes it itself
        assert "</think>" in r.text and r.mask[0] == 0  # thinking on: the opening was written for it


def test_thinking_on_and_off_through_the_template_switch(loaded):
    kind, _, _, engine = loaded
    fmt = engine.format
    on, off = (
        fmt.render([{"role": "user", "content": "hi"}]),
        fmt.render([{"role": "user", "content": "hi"}], thinking=False),
    )
    assert fmt.start_phase(on) == Phase.BEFORE  # the model opens <think> itself in all three
    assert fmt.start_phase(off) == (Phase.ANSWER if kind == "qwen3" else Phase.BEFORE)
    ((r,),) = engine.generate([off], SamplingParams(temperature=1.0, max_tokens=12, seed=0))
    if kind == "qwen3":
        assert r.thinking_tokens == 0 and r.parsed.thinking == "" and r.parsed.closed_thinking


@pytest.mark.parametrize("effort", ["low", "medium", "high"])
def test_effort_presets_run(loaded, effort):
    _, _, _, engine = loaded
    problems = TaskMix("arithmetic:1,letters:1").eval_set(per_cell=2)
    outcomes = run_effort(engine, problems, effort)
    assert len(outcomes) == len(problems) and all(o.rollout is not None for o in outcomes)
    if effort == "low":
        assert all(o.rollout.thinking_tokens <= 1 for o in outcomes)


def test_eval_sft_and_rl_run_on_the_checkpoint(checkpoint, tmp_path):
    _, path = checkpoint
    assert main(["eval", "--model", str(path), "--tasks", "arithmetic:1", "--per-task", "2", "--max-tokens", "12"]) == 0
    sft = tmp_path / "sft"
    assert (
        main(["sft", "--init", str(path), "--out", str(sft), "--steps", "2", "--batch-size", "2", "--max-len", "96"])
        == 0
    )
    rl = tmp_path / "rl"
    args = ["rl", "--init", str(sft / "model"), "--out", str(rl), "--steps", "2", "--prompts-per-step", "2"]
    assert main([*args, "--group-size", "2", "--max-tokens", "12", "--eval-every", "0", "--tasks", "arithmetic:1"]) == 0
    assert (rl / "model" / "config.json").is_file()


def test_a_lora_adapter_changes_the_engine_exactly_as_it_changes_model_generate(tmp_path):
    from peft import LoraConfig, get_peft_model

    model, tok = models.load(build("llama3", tmp_path / "llama3"))
    base = Engine(model, tok)
    prompts = [base.format.prompt(q) for q in QUESTIONS]
    greedy = SamplingParams(temperature=0, max_tokens=12)
    before = [g[0].token_ids for g in base.generate(prompts, greedy)]
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "gate_proj", "down_proj"])
    lora = get_peft_model(model, config)
    torch.manual_seed(0)
    with torch.no_grad():  # a trained adapter, as if loaded from disk (B starts at zero: no change)
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    lora.eval()
    after = [g[0].token_ids for g in Engine(lora, tok).generate(prompts, greedy)]
    for ids, tokens in zip(prompts, after, strict=True):
        out = lora.generate(
            input_ids=torch.tensor([ids]), max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id
        )
        assert tokens == out[0, len(ids) :].tolist()[: len(tokens)]
    assert after != before, "the adapter should change the output"
