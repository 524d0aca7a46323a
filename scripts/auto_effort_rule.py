"""Choose auto effort's stopping rule on TRAIN-split problems, never on the eval split.

    python scripts/auto_effort_rule.py [--models ponder/assets/base runs/v2_seed0/model] [--problems 500]

For each model: 16 samples (temperature 1) and the greedy answer with thinking on for each problem,
drawn once; every candidate rule is then replayed on random orders of those samples (auto effort's
samples are i.i.d., so a replay is an exact simulation of drawing in rounds) and reported as accuracy
and tokens relative to maj@16 on the same samples. The rule in `strategies.AUTO_RULE` is the cheapest
that matched maj@16's accuracy on the base; docs/test-time-compute.md has the table this prints.
"""

from __future__ import annotations

import argparse

from ponder import model as models
from ponder.cli.console import progress_bar
from ponder.engine import Engine, SamplingParams
from ponder.errors import PonderError
from ponder.tasks.mix import DEFAULT_MIX, TaskMix
from ponder.ttc import strategies
from ponder.ttc.answers import plurality
from ponder.ttc.scale import replay_auto_effort

# (label, anchored on greedy with thinking on, round size, min votes, min share)
RULES = [
    ("rounds of 4, >= 3 votes, >= 70% (no anchor)", False, 4, 3, 0.7),
    ("rounds of 2, >= 2 votes, >= 70% (no anchor)", False, 2, 2, 0.7),
    ("greedy first, rounds of 1, >= 2 votes, >= 60%", True, 1, 2, 0.6),
    ("greedy first, rounds of 1, >= 2 votes, >= 70%", True, 1, 2, 0.7),
    ("greedy first, rounds of 1, >= 3 votes, >= 70%", True, 1, 3, 0.7),
    ("greedy first, rounds of 2, >= 2 votes, >= 70%", True, 2, 2, 0.7),
]


def draw(model_dir: str, problems, n: int = 16) -> dict:
    model, tokenizer = models.load(model_dir)
    engine = Engine(model, tokenizer)
    with progress_bar() as bar:  # about 25 s a model on 2 CPU cores
        job = bar.add_task(f"samples, {model_dir}", total=len(problems) * (n + 1), info="")
        advance = lambda k: bar.advance(job, k)  # noqa: E731
        params = SamplingParams(temperature=1.0, max_tokens=256, n=n, seed=1)
        groups = strategies.draw(engine, problems, params, advance)
        greedy = strategies.anchor_params(SamplingParams(max_tokens=256))
        anchor = strategies.greedy(engine, problems, greedy, advance)
    return {
        "keys": [strategies.keys_of(p, g) for p, g in zip(problems, groups, strict=True)],
        "correct": [
            [strategies.outcome(p, g, i).correct for i in range(n)] for p, g in zip(problems, groups, strict=True)
        ],
        "tokens": [[r.num_tokens for r in g] for g in groups],
        "anchor": anchor,
    }


def replay(d: dict, anchored: bool, round_size: int, min_count: int, min_share: float, orders: int = 8):
    """(accuracy, tokens per problem) of one rule, averaged over `orders` random sample orders."""
    rule = strategies.AutoRule(round_size, 16, min_count, min_share)
    anchor = d["anchor"] if anchored else None
    acc, tokens, _ = replay_auto_effort(d["keys"], d["correct"], d["tokens"], anchor, orders, 0, rule)
    return acc, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["ponder/assets/base", "runs/v2_seed0/model"])
    ap.add_argument("--problems", type=int, default=500)
    args = ap.parse_args()
    problems = TaskMix(DEFAULT_MIX).problems("train", 10_000, args.problems, seed=7)
    for model_dir in args.models:
        d = draw(model_dir, problems)
        count = len(problems)
        maj = sum(c[plurality(k)] for k, c in zip(d["keys"], d["correct"], strict=True)) / count
        maj_tokens = sum(map(sum, d["tokens"])) / count
        greedy = sum(o.correct for o in d["anchor"]) / count
        print(f"\n{model_dir}: maj@16 {maj:.1%} ({maj_tokens:.0f} tokens/problem), greedy thinking on {greedy:.1%}")
        for label, *rule in RULES:
            acc, tokens = replay(d, *rule)
            print(f"  {label:<48} {acc:6.1%}  {tokens / maj_tokens:5.0%} of maj@16's tokens")


if __name__ == "__main__":
    try:
        main()
    except (PonderError, OSError) as error:  # a missing model or file: say which, no traceback
        raise SystemExit(f"error: {error}") from None
