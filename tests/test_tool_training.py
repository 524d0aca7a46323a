"""Tools in training: tool traces in the corpus, no loss on tool responses, RL with tools (void
turns out of the loss, per-step tool metrics), and the recipe that made the shipped tool model."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from ponder.corpus import TOOL_CONFIG, ToolUse, example, examples, reobserve, tool_levels
from ponder.engine import Rollout
from ponder.errors import PonderError
from ponder.tasks import get_task
from ponder.tasks.mix import TaskMix
from ponder.tools import TOOL_RESPONSE_CLOSE, TOOL_RESPONSE_OPEN, SearchTool, format_observation, parse_call
from ponder.train.lm import LMConfig, collate, train_lm

TOOL_MIX = TaskMix("arithmetic:4-5,lookup:1-5,letters:1")
USE = ToolUse.parse("calculator,search")


# --- (1) tool traces in the corpus -----------------------------------------------------------------


@pytest.mark.parametrize("tool", ["calculator", "python"])
def test_arithmetic_tool_trace_hands_the_expression_to_the_tool_and_reads_the_result_off(tool):
    task = get_task("arithmetic")
    problem = task.problem("train", 3, 5)
    trace = task.tool_trace(problem, tool)
    name, arguments = parse_call(trace[: trace.index("</tool_call>") + len("</tool_call>")])
    expression = problem.prompt.removeprefix("Compute ").removesuffix(".")
    if tool == "calculator":
        assert (name, arguments) == ("calculator", {"expression": expression})
    else:  # the response is what the code prints, run here by a plain interpreter
        assert name == "python"
        printed = subprocess.run([sys.executable, "-c", arguments["code"]], capture_output=True, text=True).stdout
        assert printed.strip() == problem.answer
    assert trace.endswith(f"</tool_call><tool_response>{problem.answer}</tool_response>\nso {problem.answer}")
    with pytest.raises(ValueError, match="calculator and python"):
        task.tool_trace(problem, "search")


def test_tool_families_use_their_tool_and_others_are_unchanged():
    plain = examples(TOOL_MIX, 0, 33, 0.1, seed=0, direct_rate=0.3)
    tooled = examples(TOOL_MIX, 0, 33, 0.1, seed=0, direct_rate=0.3, tools=USE)
    for without, with_tools in zip(plain, tooled, strict=True):
        family = with_tools.question.split()[0]
        if with_tools.question.startswith("Compute"):
            assert '{"name": "calculator"' in with_tools.thinking and "<tool_call>" not in without.thinking
        elif "<tool_call>" in with_tools.thinking:  # lookup
            assert '{"name": "search"' in with_tools.thinking
            assert without.thinking == ""  # without search, a lookup is answered from memory
        else:  # letters: no tool trace, the same example either way
            assert with_tools == without, family
    assert tool_levels(TOOL_MIX, USE) == {"arithmetic": [4, 5], "lookup": [1, 2, 3, 4, 5]}
    assert tool_levels(TOOL_MIX, ToolUse.parse("python")) == {"arithmetic": [4, 5]}


def test_observations_are_the_run_time_ones_written_right_after_the_call():
    lookup = next(e for e in examples(TOOL_MIX, 0, 33, 0.0, tools=USE) if '"search"' in e.thinking)
    call_end = lookup.thinking.index("</tool_call>") + len("</tool_call>")
    assert lookup.thinking[call_end:].startswith(TOOL_RESPONSE_OPEN)  # as the engine writes it: no newline
    query = parse_call(lookup.thinking[:call_end])[1]["query"]
    expected = format_observation(SearchTool(TOOL_CONFIG).run({"query": query}))
    assert lookup.thinking[call_end:].startswith(expected) and expected.count("\n[") == 0  # one document
    spaced = '<tool_call>{"name": "calculator", "arguments": {"expression": "2+3"}}</tool_call>\n<tool_response>9'
    assert reobserve(spaced + "</tool_response>\nso 5") == spaced.replace("\n<tool_response>9", "") + (
        "<tool_response>5</tool_response>\nso 5"
    )


def test_a_lookup_asks_its_question_where_that_finds_the_same_document():
    task, search = get_task("lookup"), SearchTool(TOOL_CONFIG)
    finds = []
    for level, index in [(1, 0), (3, 0), (4, 0)] + [(5, i) for i in range(12)]:
        problem = task.problem("train", index, level)
        thinking = example(TaskMix(f"lookup:{level}"), index, 0.0, tools=USE).thinking
        query = parse_call(thinking[: thinking.index("</tool_call>") + len("</tool_call>")])[1]["query"]
        question_finds = search.run({"query": problem.prompt}).metadata["ids"] == [problem.meta["doc_id"]]
        assert (query == problem.prompt) == question_finds  # else the task's own query ("Vellmarsh town")
        assert search.run({"query": query}).metadata["ids"] == [problem.meta["doc_id"]]
        finds.append(question_finds)
    assert True in finds and False in finds  # both occur: a question naming two towns can find another first


def test_retried_traces_show_a_failed_call_then_the_same_call():
    use = ToolUse.parse("calculator", retry_rate=1.0)
    ex = example(TaskMix("arithmetic:5"), 0, 0.0, tools=use)
    first, second = ex.thinking.split("</tool_call>")[:2]
    assert first == second.split("\n", 1)[1]  # the same call, made again after the failure
    failure = second.split("\n", 1)[0]
    assert failure.startswith(TOOL_RESPONSE_OPEN) and ("Error:" in failure or "Timed out" in failure)


def test_unknown_corpus_tools_fail_naming_the_known_ones():
    with pytest.raises(PonderError, match="calculator, python, search"):
        ToolUse.parse("calculator,browser")
    with pytest.raises(PonderError, match="browser"):
        LMConfig(tools="browser")
    assert LMConfig().tool_use is None and LMConfig(tools="search").tool_use.tools == ("search",)


# --- (1) no loss on tool responses -----------------------------------------------------------------


def _check_masking(tok, batch):
    inputs = collate(batch, tok, "completion", max_len=2048, device="cpu")
    for ex, row, labels in zip(batch, inputs["input_ids"], inputs["labels"], strict=True):
        ids, lab = row.tolist(), labels.tolist()
        masked = [i for i, (t, v) in enumerate(zip(ids, lab, strict=True)) if v == -100 and t != tok.pad_token_id]
        prompt_len = len(tok.encode(ex.prompt, add_special_tokens=False))
        response_ids = [ids[i] for i in masked if i >= prompt_len]
        expected = [p.split(TOOL_RESPONSE_OPEN, 1)[1] for p in ex.thinking.split(TOOL_RESPONSE_CLOSE)[:-1]]
        decoded = tok.decode(response_ids, skip_special_tokens=False)
        assert decoded == "".join(f"{TOOL_RESPONSE_OPEN}{e}{TOOL_RESPONSE_CLOSE}" for e in expected)
        trained = tok.decode([t for t, v in zip(ids, lab, strict=True) if v != -100], skip_special_tokens=False)
        assert TOOL_RESPONSE_OPEN not in trained  # the model never learns to write a response
        assert ("</tool_call>" in trained) == ("<tool_call>" in ex.thinking)  # but does learn to call


def test_collate_takes_no_loss_on_tool_responses(tok):
    _check_masking(tok, examples(TOOL_MIX, 0, 12, 0.0, tools=ToolUse.parse("calculator,search", retry_rate=0.5)))


def test_collate_masks_responses_whose_markers_are_single_tokens(tok):
    tok = copy.deepcopy(tok)  # as in Qwen3's vocabulary: each marker one special token
    tok.add_special_tokens({"additional_special_tokens": [TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE]})
    assert len(tok.encode(TOOL_RESPONSE_OPEN, add_special_tokens=False)) == 1
    _check_masking(tok, examples(TOOL_MIX, 0, 6, 0.0, tools=USE))


def test_sft_with_tool_traces_trains(model_dir, tmp_path):
    cfg = LMConfig(
        out=str(tmp_path / "sft"), init=str(model_dir), loss_on="completion", tasks="arithmetic:4,lookup:1",
        tools="calculator,search", steps=3, batch_size=4, max_len=256, warmup=1, device="cpu",
    )  # fmt: skip
    out = train_lm(cfg)
    assert (out / "config.json").is_file()


# --- (2) RL with tools -----------------------------------------------------------------------------


def _rollout(text: str, calls: int, statuses: list[str]) -> Rollout:
    return Rollout(0, [0, 1], [3, 4, 5], [-0.5, 0.0, -0.5], [1, 0, 1], text, "stop", tool_calls=calls,
                   tool_statuses=statuses)  # fmt: skip


def test_void_turns_and_tool_metrics():
    from ponder.train.rl import tool_metrics, void_turn

    answered = _rollout("<tool_call>{}</tool_call><tool_response>5</tool_response>\nso 5\n</think>5", 1, ["ok"])
    void = _rollout("<tool_call>{}</tool_call><tool_response>Error: x</tool_response>\nblah", 1, ["error"])
    no_tools = _rollout("1+1=2", 0, [])  # unfinished, but no tool turn: not void
    timed_out = _rollout("<tool_call>{}</tool_call><tool_response>Timed out</tool_response></think>", 2,
                         ["timeout", "limit"])  # fmt: skip
    rollouts = [answered, void, no_tools, timed_out]
    flags = torch.tensor([void_turn(r) for r in rollouts])
    assert flags.tolist() == [False, True, False, True]  # closed thinking with an empty answer is void too
    metrics = tool_metrics(rollouts, flags)
    assert metrics == {"tool_calls": 1.0, "tool_errors": 0.25, "tool_timeouts": 0.25, "tool_refused": 0.25,
                       "void_turns": 0.5}  # fmt: skip


def test_rl_step_with_tools_drops_void_rollouts_from_the_loss(model_dir, tmp_path, monkeypatch):
    from ponder.train import rl

    cfg = rl.RLConfig(
        out=str(tmp_path / "rl"), init=str(model_dir), tasks="arithmetic:4", tools="calculator", steps=1,
        prompts_per_step=2, group_size=2, max_tokens=16, eval_per_task=1, device="cpu",
    )  # fmt: skip
    assert cfg.drop_void_turns and rl.RLConfig(tools="").drop_void_turns is False
    run = rl.RLRun(cfg, resume=False)
    problems = rl.draw_problems(run, 0)
    right = f"</think>{problems[0].answer}"
    texts = [[right, "no answer"], ["</think>0", "no answer"]]  # rewards 1, 0 | 0, 0 (a constant group)
    calls = [[1, 1], [0, 1]]
    seen = {}

    def scripted(engine, prompts, params, tools, progress=None):
        assert tools is run.tools and params.n == 2
        return [
            [_rollout(t, c, ["ok"] * c) for t, c in zip(ts, cs, strict=True)]
            for ts, cs in zip(texts, calls, strict=True)
        ]

    def capture(run_, batch, rewards, step):
        seen["mask"], seen["rewards"] = batch.mask.clone(), rewards.clone()
        return {"loss": 0.0}

    monkeypatch.setattr(rl, "generate", scripted)
    monkeypatch.setattr(rl, "policy_update", capture)
    metrics = rl.rl_step(run, 0)
    assert seen["rewards"].tolist() == [1.0, 0.0]  # the first group only: the second is constant
    assert seen["mask"][0].sum() > 0 and seen["mask"][1].sum() == 0  # its void rollout is out of the loss
    assert metrics["void_turns"] == 0.5 and metrics["tool_calls"] == 0.75


# --- (5) the recipe of the shipped tool model ------------------------------------------------------


def test_the_tools_recipe_is_an_sft_of_the_base_with_tool_traces():
    from ponder.assets import tools_model_path
    from ponder.recipes import recipe

    cfg = LMConfig(**recipe("tools", "sft"), loss_on="completion")
    assert cfg.tool_use.tools == ("calculator", "search") and cfg.init is None  # sft starts from the base
    twin = LMConfig(**{**recipe("tools", "sft"), "tools": ""})  # the no-tool twin: same steps, same problems
    assert twin.tool_use is None and (twin.steps, twin.tasks) == (cfg.steps, cfg.tasks)
    with pytest.raises(PonderError, match="ponder sft"):
        recipe("tools", "pretrain")
    with pytest.raises(PonderError, match="known"):
        recipe("nosuch", "sft")
    assert (tools_model_path() / "model.safetensors").stat().st_size < 8 << 20  # a few MB
