"""Test-time strategies on a scripted fake engine, and budget forcing on a real tiny model."""

from __future__ import annotations

import dataclasses

from ponder.engine import Engine, Rollout, SamplingParams
from ponder.format import render_prompt
from ponder.tasks import get_task
from ponder.ttc import strategies
from ponder.ttc.strategies import auto_effort, best_of_n, budget_forcing, majority, oracle_ranker, revision


class TextFormat:
    """A chat format that renders prompts as ponder's text (the fakes read the question back)."""

    def prompt(self, question: str) -> str:
        return render_prompt(question)


class FakeEngine:
    """Mimics `Engine.generate(prompts, params) -> list[list[Rollout]]` with scripted answers:
    `script[prompt_index]` is the list of answers that prompt's successive samples give."""

    format = TextFormat()

    def __init__(self, problems, script):
        self.index = {f"{p.prompt}": i for i, p in enumerate(problems)}
        self.script = script
        self.drawn = [0] * len(problems)
        self.calls = []
        self.params = []

    def generate(self, prompts, params=None, progress=None):
        self.calls.append((len(prompts), params.n))
        self.params.append(params)
        groups = []
        for text in prompts:
            i = next(i for p, i in self.index.items() if p in text)
            group = []
            for _ in range(params.n):
                answer = self.script[i][self.drawn[i] % len(self.script[i])]
                self.drawn[i] += 1
                tokens = [1] * 10
                group.append(Rollout(i, [0], tokens, [0.0] * 10, [1] * 10, f"think\n</think>{answer}", "stop"))
            groups.append(group)
        return groups


def _problems(n=3):
    task = get_task("arithmetic")
    return [task.problem("eval", i, 1) for i in range(n)]


def test_majority_picks_the_plurality_and_scores_after_choosing():
    problems = _problems(2)
    a0, a1 = problems[0].answer, problems[1].answer
    script = [[a0, "", "", "999", a0, ""], ["998", a1, "998", "", "", ""]]
    out = majority(FakeEngine(problems, script), problems, n=6)
    assert [o.answer for o in out] == [a0, "998"]
    assert [o.correct for o in out] == [True, False]
    assert [o.tokens for o in out] == [60, 60]


def test_best_of_n_with_the_oracle_finds_a_right_sample():
    problems = _problems(1)
    out = best_of_n(FakeEngine(problems, [["1", "2", problems[0].answer, "3"]]), problems, n=4, ranker=oracle_ranker)
    assert out[0].correct


def test_auto_effort_starts_from_greedy_thinking_and_samples_until_the_vote_is_confident():
    problems = _problems(2)
    agree = [problems[0].answer] * 16  # the first answer of each script is the greedy anchor
    disagree = [str(i) for i in range(16)]
    engine = FakeEngine(problems, [agree, disagree])
    out = auto_effort(engine, problems, round_size=1, max_n=16, min_count=2, min_share=0.7)
    assert out[0].samples == 2 and out[0].correct  # greedy, then one sample that agrees
    assert out[1].samples == 16  # greedy and 15 samples, never confident
    assert out[1].tokens == 8 * out[0].tokens
    anchor = engine.params[0]
    assert anchor.temperature == 0 and anchor.force_thinking and anchor.n == 1
    assert all(p.temperature == 1.0 and not p.force_thinking for p in engine.params[1:])
    # batched: every round is one generate call, the first two over both problems
    assert engine.calls[:2] == [(2, 1), (2, 1)] and all(c == (1, 1) for c in engine.calls[2:])


def test_auto_effort_rounds_can_be_larger():
    problems = _problems(1)
    engine = FakeEngine(problems, [[problems[0].answer] * 16])
    out = auto_effort(engine, problems, round_size=4, max_n=16, min_count=3, min_share=0.7)
    assert out[0].samples == 5 and engine.calls == [(1, 1), (1, 4)]


def test_auto_stop_replays_the_rule_of_auto_effort_on_drawn_samples():
    problems = _problems(3)
    agree = [problems[0].answer] * 16
    split_then_agree = ["1", "2", "7", "7"] + ["7"] * 12  # 7 leads from the 4th answer; 70% of 7 at the 7th
    disagree = [str(i) for i in range(16)]
    script = [agree, split_then_agree, disagree]
    real = auto_effort(FakeEngine(problems, script), problems)
    replayed = [strategies.auto_stop(keys) for keys in script]
    assert [o.samples for o in real] == replayed == [2, 7, 16]


def test_sweep_pairs_auto_effort_with_majority_on_the_same_draw():
    from ponder.ttc.scale import ScaleConfig, sweep

    problems = _problems(2)
    a0 = problems[0].answer
    # greedy anchor first, then the 16-sample draw: one easy problem, one the vote cannot settle
    script = [[a0] * 17, [str(i) for i in range(17)]]
    cfg = ScaleConfig(max_n=16, trials=4, strategies=("majority", "auto_effort:paired"))
    points = {(p["strategy"], p["level"]): p for p in sweep(FakeEngine(problems, script), problems, cfg)["points"]}
    paired = next(p for (name, _), p in points.items() if name == "auto_effort:paired")
    assert paired["level"] == (2 + 16) / 2  # mean answers: greedy + one sample sufficed on the easy one
    assert paired["accuracy"] == points[("majority", 16)]["accuracy"] == 0.5
    assert paired["tokens"] == (2 + 16) * 10
    assert points[("greedy:thinking", 1)]["accuracy"] == 0.5


def test_revision_shows_the_previous_answer():
    problems = _problems(1)
    engine = FakeEngine(problems, [["41", problems[0].answer]])
    seen = []
    real = engine.generate

    def spy(prompts, params=None, progress=None):
        seen.extend(prompts)
        return real(prompts, params, progress)

    engine.generate = spy
    out = revision(engine, problems, rounds=2)
    assert "Your previous answer was 41. Check it and answer again." in seen[1]
    assert out[0].correct and out[0].samples == 2 and out[0].tokens == 20


def test_budget_forcing_caps_thinking_with_a_real_model(model, tok):
    engine = Engine(model, tok)
    problems = _problems(2)
    params = SamplingParams(temperature=1.0, max_tokens=24, seed=0)
    out = budget_forcing(engine, problems, max_thinking_tokens=5, params=params)
    for o in out:
        r = o.rollout
        assert r.thinking_tokens <= 5
        assert "</think>" in r.text  # forced closed even though a random model never closes it
        closed_at = r.token_ids.index(engine.format.think_close[-1])
        assert r.mask[closed_at] == 0
    # min_thinking_tokens: a model told to stop at once is made to go on ("wait,")
    longer = budget_forcing(engine, problems, None, 8, params=dataclasses.replace(params, max_tokens=16))
    assert all(o.rollout.thinking_tokens >= 8 or o.rollout.finish_reason == "length" for o in longer)


def test_run_strategy_rejects_unknown_names():
    import pytest

    from ponder.errors import PonderError

    with pytest.raises(PonderError, match="known"):
        strategies.run_strategy("beam", None, [])


def test_headline_states_the_vote_gain_auto_cost_budget_curve_and_verifier():
    from ponder.ttc.scale import headline, point

    points = [
        point("greedy", 1, 0.5, 100, 10),
        point("majority", 1, 0.45, 120, 10),
        point("majority", 16, 0.65, 1920, 10),
        point("auto_effort", 5.2, 0.66, 480, 10),
        point("budget_forcing", 1, 0.5, 100, 10),
        point("budget_forcing", 16, 0.4, 200, 10),
        point("budget_forcing", 32, 0.6, 300, 10),
        point("best_of_n:verifier", 16, 0.55, 1920, 10),
    ]
    assert headline(points) == [
        "majority of 16 vs greedy: 65.0% vs 50.0% (+15.0 points)",
        "auto effort: 66.0% with 25% of the tokens of majority of 16 (65.0%)",
        "budget forcing, thinking caps 16 to 32 tokens: 40.0% -> 60.0%",
        "learned verifier, best of 16: 55.0% vs majority 65.0%",
    ]
    assert headline([point("greedy", 1, 0.5, 100, 10)]) == []  # nothing to compare: nothing said
