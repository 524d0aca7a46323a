"""evaluate(): accuracy by the task verifiers, and how often the model worked the problem out."""

from __future__ import annotations

from ponder.engine import Rollout
from ponder.evals import evaluate
from ponder.format import render_prompt
from ponder.tasks.mix import TaskMix


class TextFormat:
    def prompt(self, question: str) -> str:
        return render_prompt(question)


class ScriptedEngine:
    """Answers each prompt with a fixed completion text (one rollout per prompt)."""

    format = TextFormat()

    def __init__(self, texts):
        self.texts = texts

    def generate(self, prompts, params=None, progress=None):
        return [[Rollout(i, [0], [1] * 5, [0.0] * 5, [1] * 5, text, "stop")] for i, text in enumerate(self.texts)]


def test_evaluate_scores_answers_and_counts_the_ones_that_thought():
    problems = TaskMix("arithmetic:1").eval_set(per_cell=4)
    a = [p.answer for p in problems]
    texts = [
        f"{a[0]}\n</think>{a[0]}",  # worked, right
        f"\n</think>{a[1]}",  # direct, right
        "\n</think>-99999",  # direct, wrong
        "1+1=2\n</think>-99999",  # worked, wrong
    ]
    report = evaluate(ScriptedEngine(texts), problems)
    score = report.by_task["arithmetic"]
    assert (score.problems, score.accuracy, score.thinking_share) == (4, 0.5, 0.5)
    assert [s["thought"] for s in report.samples] == [True, False, False, True]
    assert report.to_json()["by_task"]["arithmetic"]["thinking_share"] == 0.5
    assert report.thinking_share == report.to_json()["thinking_share"] == 0.5
