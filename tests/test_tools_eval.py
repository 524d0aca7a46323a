"""Tools at evaluation and test time: the tool loop behind evaluate and every strategy, pass@k and
pass^k, the curve fit per doubling of tokens, and the commands that take --tools."""

from __future__ import annotations

import json
import math

import pytest

from ponder.engine import Rollout, SamplingParams
from ponder.errors import PonderError
from ponder.evals import ToolEngine, evaluate, tool_loop
from ponder.format import render_prompt
from ponder.tasks.mix import TaskMix
from ponder.ttc.scale import doubling_gain, doubling_gains


class TextFormat:
    def prompt(self, question: str) -> str:
        return render_prompt(question)


class ScriptedEngine:
    """n rollouts per prompt, their texts given per prompt; records what generate was called with."""

    format = TextFormat()

    def __init__(self, texts: list[list[str]]):
        self.texts, self.calls = texts, []

    def generate(self, prompts, params=None, progress=None, on_tool_call=None):
        self.calls.append((params, on_tool_call))
        return [
            [Rollout(i, [0], [1, 2], [0.0, 0.0], [1, 1], t, "stop", tool_calls=1) for t in self.texts[i][: params.n]]
            for i in range(len(prompts))
        ]


def test_tool_loop_names_and_limits():
    assert tool_loop("") is None and tool_loop(" , ") is None
    loop = tool_loop("calculator, search", max_calls=2, fault_rate=0.2, seed=3)
    assert sorted(loop.tools) == ["calculator", "search"] and loop.limits.max_calls == 2
    assert loop.tools["search"].config.top_k == 1  # as the corpus's traces show it
    with pytest.raises(PonderError, match="calculator, python, search"):
        tool_loop("calculator,browser")
    with pytest.raises(PonderError, match="max_tool_calls"):
        tool_loop("calculator", max_calls=0)


def test_tool_engine_turns_tools_on_for_every_strategy():
    from ponder.ttc import strategies

    problems = TaskMix("arithmetic:1").eval_set(2)
    inner = ScriptedEngine([[f"</think>{p.answer}"] * 4 for p in problems])
    loop = tool_loop("calculator")
    engine = ToolEngine(inner, loop)
    assert engine.format is inner.format  # everything but generate is the wrapped engine's
    out = strategies.majority(engine, problems, n=4)
    assert strategies.accuracy(out) == 1.0
    params, on_call = inner.calls[-1]
    assert params.tools and params.n == 4 and on_call is loop
    with pytest.raises(PonderError, match="own tool loop"):
        engine.generate(["x"], SamplingParams(), on_tool_call=loop)


def test_pass_at_k_and_pass_hat_k_per_task_and_difficulty():
    problems = TaskMix("arithmetic:1-2").eval_set(2)  # cells: (arithmetic, 1) x 2, (arithmetic, 2) x 2
    right, wrong = (lambda p: f"</think>{p.answer}"), (lambda p: "</think>-99999")
    texts = [
        [right(problems[0])] * 3,  # level 1: all right
        [right(problems[1]), wrong(problems[1]), wrong(problems[1])],  # level 2: some right
        [wrong(problems[2])] * 3,  # level 1: none
        [right(problems[3])] * 3,  # level 2: all right
    ]
    report = evaluate(ScriptedEngine(texts), problems, SamplingParams(n=3, temperature=1.0), tools=tool_loop("search"))
    rates = report.pass_rates()
    levels = {p.difficulty for p in problems}
    assert set(rates) == {("arithmetic", d) for d in levels}
    by_problem = {i: problems[i].difficulty for i in range(4)}
    for level in levels:
        rows = [i for i, d in by_problem.items() if d == level]
        some = sum(i != 2 for i in rows) / len(rows)
        every = sum(i in (0, 3) for i in rows) / len(rows)
        assert (rates[("arithmetic", level)].pass_at_k, rates[("arithmetic", level)].pass_hat_k) == (some, every)
        assert rates[("arithmetic", level)].k == 3
    assert report.by_task["arithmetic"].accuracy == pytest.approx((1 + 1 / 3 + 0 + 1) / 4)
    assert report.calls_per_answer == 1.0
    assert report.to_json()["pass_rates"][0]["k"] == 3


def test_doubling_gain_is_the_least_squares_slope_on_log2_tokens():
    points = [
        {"strategy": "majority", "accuracy": 0.40 + 0.05 * i, "tokens_per_problem": 30.0 * 2**i} for i in range(4)
    ] + [{"strategy": "greedy", "accuracy": 0.5, "tokens_per_problem": 25.0}]
    assert doubling_gain(points, "majority") == pytest.approx(0.05)
    assert doubling_gain(points, "greedy") is None  # one point: no curve
    bent = [{"strategy": "s", "accuracy": a, "tokens_per_problem": t} for a, t in ((0.1, 1), (0.4, 2), (0.4, 4))]
    xs, ys = [0, 1, 2], [0.1, 0.4, 0.4]
    slope = sum((x - 1) * (y - 0.3) for x, y in zip(xs, ys, strict=True)) / 2
    assert doubling_gain(bent, "s") == pytest.approx(slope)
    gains = doubling_gains({"no tools": {"points": points}, "tools": {"points": bent}})
    assert gains == {"majority": {"no tools": pytest.approx(0.05), "tools": None}, "s": {"no tools": None,
                     "tools": pytest.approx(slope)}}  # fmt: skip
    assert not math.isnan(slope)


# --- the commands ----------------------------------------------------------------------------------


def run(capsys, *argv: str) -> tuple[int, str]:
    from ponder.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


def test_eval_with_tools_and_samples_prints_both_and_pass_rates(capsys, model_dir, tmp_path):
    report = tmp_path / "r.json"
    code, out = run(
        capsys, "eval", "--model", str(model_dir), "--tasks", "arithmetic:4,letters:1", "--per-task", "2",
        "--max-tokens", "12", "--tools", "calculator", "--samples", "2", "--json", str(report),
    )  # fmt: skip
    assert code == 0, out
    assert "without and with calculator" in out and "pass@2 and pass^2 per task and difficulty" in out
    data = json.loads(report.read_text())
    assert data["pass_rates"][0]["k"] == 2 and data["with_tools"]["pass_rates"][0]["k"] == 2
    assert len(data["samples"]) == len(data["with_tools"]["samples"]) == 4


def test_eval_unknown_tool_exits_2_listing_the_tools(capsys, model_dir):
    code, out = run(capsys, "eval", "--model", str(model_dir), "--tools", "browser")
    assert code == 2 and "calculator, python, search" in out


def test_scale_with_tools_draws_both_curves_on_the_same_problems(capsys, model_dir, tmp_path):
    out_dir = tmp_path / "scale"
    code, out = run(
        capsys, "scale", "--model", str(model_dir), "--tasks", "arithmetic:4", "--per-task", "2", "--max-n", "2",
        "--max-tokens", "12", "--strategies", "greedy,majority", "--tools", "calculator", "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0, out
    data = json.loads((out_dir / "tools.json").read_text())
    assert set(data["points"]) == {"no tools", "tools"} and data["tools"] == ["calculator"]
    assert set(data["accuracy_per_doubling"]) == {"majority"}
    assert "accuracy points per doubling of tokens" in out
    for label in ("no_tools", "tools"):
        assert (out_dir / label / "scale.json").is_file()


# --- the shipped tool model: the demo's tools stage and the slow-tool benchmark, in small ----------


def test_demo_tools_stage_shows_accuracy_and_both_curves(capsys, tmp_path):
    from ponder.cli.demo import DemoOptions, demo_tools

    options = DemoOptions(per_task=1, out=str(tmp_path), tool_tasks="arithmetic:5,lookup:1")
    results = demo_tools(options, tmp_path / "tools")
    out = " ".join(capsys.readouterr().out.split())
    assert set(results) == {"no tools", "tools"}
    assert "held-out greedy accuracy of the tool model, without and with calculator,search" in out
    assert "accuracy points per doubling of tokens" in out
    data = json.loads((tmp_path / "tools" / "tools.json").read_text())
    assert "majority" in data["accuracy_per_doubling"]
    greedy = {label: next(p for p in pts if p["strategy"] == "greedy") for label, pts in data["points"].items()}
    assert greedy["tools"]["accuracy"] >= greedy["no tools"]["accuracy"]


def test_bench_tools_runs_and_the_first_sequence_calls_a_tool(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "bench" / "tools.py"
    spec = importlib.util.spec_from_file_location("bench_tools", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--batch", "3", "--new-tokens", "128", "--tool-seconds", "0.2", "--repeats", "1"])
    assert result["calls"] >= 1 and len(result["ratios"]) == 1
    assert "ratio (slow tool / no wait)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.parse_args(["--batch", "1"])
