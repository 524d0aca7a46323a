"""Effort presets vs the docs, the contamination check, the learned verifier, and the report."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ponder.contamination import ContaminationError, check
from ponder.errors import PonderError
from ponder.tasks.mix import TaskMix
from ponder.ttc.effort import EFFORT_PRESETS, effort_table, resolve_effort

DOCS = Path(__file__).parent.parent / "docs" / "test-time-compute.md"


def test_effort_table_in_docs_matches_presets():
    assert effort_table() in DOCS.read_text(), "regenerate the table: python -c 'from ponder.ttc.effort ...'"


def test_resolve_effort_names_and_aliases():
    assert resolve_effort("HIGH") is EFFORT_PRESETS["high"]
    assert resolve_effort("minimal").name == "low" and resolve_effort("max").name == "high"
    with pytest.raises(PonderError, match="low, medium, high, auto"):
        resolve_effort("extreme")


def test_effort_presets_set_thinking_off_on_and_the_budget(trained):
    from ponder.engine import Engine
    from ponder.ttc.effort import run_effort

    engine = Engine(*trained)
    problems = TaskMix("arithmetic:1-2,letters:1,decimals:1").eval_set(per_cell=3)
    thinking = {}
    for name in ("low", "medium", "high"):
        out = run_effort(engine, problems, name)
        thinking[name] = [o.rollout.thinking_tokens for o in out]
    assert all(t <= 1 for t in thinking["low"])  # thinking off: closed at once
    assert all(t > 1 for t in thinking["high"])  # thinking on: every answer works the problem
    assert all(1 < t <= 64 for t in thinking["medium"])  # thinking on, within the budget


def _eval_prompts(mix, per_cell=10):
    out: dict[str, list[str]] = {}
    for p in mix.eval_set(per_cell):
        out.setdefault(p.task, []).append(p.prompt)
    return out


def test_contamination_disjoint_passes_and_planted_duplicate_fails():
    mix = TaskMix()
    prompts = _eval_prompts(mix)
    train = [p.prompt for p in mix.problems("train", 0, 2000)]
    report = check(prompts, train)
    report.raise_if_above(0.0)
    assert all(o.contaminated == 0 for o in report.by_task.values())
    planted = train + [f"{prompts['sudoku'][3]}\nwhatever"]  # one eval prompt on a line of its own
    bad = check(prompts, planted)
    assert bad.by_task["sudoku"].contaminated == 1
    with pytest.raises(ContaminationError, match=r"(?s)CONTAMINATED.*sudoku: 1/20"):
        bad.raise_if_above(0.0)


def test_contamination_long_prompts_use_ngrams_not_templates():
    template = "please read the following passage carefully and then answer the question about it"
    prompts = {"t": [template + " what is the colour of the sky in the passage"]}
    assert check(prompts, [template + " how many birds are there"]).by_task["t"].contaminated == 0
    assert check(prompts, ["x " + prompts["t"][0] + " y"]).by_task["t"].contaminated == 1


def test_verifier_trains_and_round_trips(model_dir, tmp_path):
    from ponder.ttc.verifier import Verifier, auc, fit

    v = Verifier.from_policy(model_dir, max_len=64)
    texts = ["<|user|>Compute 1+1.<|end|><|assistant|><think>\n1+1=2\n</think>2"] * 4
    texts += ["<|user|>Compute 1+1.<|end|><|assistant|><think>\n1+1=3\n</think>3"] * 4
    labels = [1.0] * 4 + [0.0] * 4
    losses = fit(v, texts, labels, epochs=6, batch_size=8, lr=3e-3)
    assert losses[-1] < losses[0]
    assert auc(v.score_texts(texts), labels) == 1.0
    v.meta = {"heldout_auc": 1.0}
    v.save(tmp_path / "v")
    again = Verifier.load(tmp_path / "v")
    assert again.score_texts(texts) == pytest.approx(v.score_texts(texts), abs=1e-5)
    assert again.meta["heldout_auc"] == 1.0


def test_pairwise_loss_batches_whole_problems_and_ranks_within_them(model_dir):
    from ponder.ttc.verifier import Verifier, fit, within_problem_auc

    torch.manual_seed(0)  # the head's initialisation must not depend on which tests ran before
    v = Verifier.from_policy(model_dir, max_len=64)
    texts, labels, owner = [], [], []
    for q, (a, b) in enumerate(((1, 1), (2, 2), (1, 2))):
        for answer, right in ((a + b, 1.0), (a + b + 1, 0.0)):
            texts.append(f"<|user|>Compute {a}+{b}.<|end|><|assistant|><think>\n</think>{answer}")
            labels.append(right)
            owner.append(q)
    seen = []
    losses = fit(v, texts, labels, epochs=8, batch_size=4, lr=3e-3, owner=owner, pairwise=1.0, on_step=seen.append)
    assert len(losses) == len(seen) == seen[-1]["total_steps"]
    assert sum(losses[-2:]) < sum(losses[:2])  # the last epoch (two batches) against the first
    assert within_problem_auc(v.score_texts(texts), labels, owner) == 1.0
    assert within_problem_auc([0.2, 0.9, 0.5], [1.0, 0.0, 1.0], [0, 0, 1]) == 0.0  # problem 1 has one class
    assert within_problem_auc([0.5], [1.0], [0]) is None


def test_auc():
    from ponder.ttc.verifier import auc

    assert auc([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0
    assert auc([0.1, 0.9], [1, 0]) == 0.0
    assert auc([0.5, 0.5], [1, 0]) == 0.5


def test_report_writes_png_and_html(tmp_path):
    from ponder.ttc.report import write_report

    points = [
        {
            "strategy": "majority",
            "level": n,
            "accuracy": 0.3 + 0.05 * i,
            "tokens": 0.0,
            "tokens_per_problem": 30.0 * n,
        }
        for i, n in enumerate((1, 2, 4, 8))
    ] + [{"strategy": "greedy", "level": 1, "accuracy": 0.4, "tokens": 0.0, "tokens_per_problem": 30.0}]
    dist = {
        "prompt": "Compute 1+1.",
        "reference": "2",
        "task": "arithmetic",
        "samples": 100,
        "histogram": [
            {"key": "2", "count": 70, "correct": True},
            {"key": "3", "count": 30, "correct": False},
        ],
    }
    html = write_report(tmp_path, {"problems": 4, "points": points}, distribution=dist, efforts=[])
    for name in ("scaling.png", "histogram.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    page = html.read_text()
    assert "data:image/png;base64," in page and "Compute 1+1." in page
    assert "<li>majority of 8 vs greedy: 45.0% vs 40.0% (+5.0 points)</li>" in page  # the headline
