"""Does voting over samples help once thinking is on? Majority of n thinking-on samples against
greedy with thinking on, on the held-out default mix (the numbers docs/test-time-compute.md quotes).

    python scripts/thinking_on_vote.py [--model DIR] [--per-task 50]
"""

from __future__ import annotations

import argparse

from ponder import model as models
from ponder.assets import base_model_path
from ponder.cli.console import progress_bar
from ponder.engine import Engine, SamplingParams
from ponder.errors import PonderError
from ponder.tasks.mix import DEFAULT_MIX, TaskMix
from ponder.ttc import strategies
from ponder.ttc.answers import plurality
from ponder.ttc.metrics import mean_pass_at_k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the shipped base)")
    ap.add_argument("--per-task", type=int, default=50)
    args = ap.parse_args()
    model, tokenizer = models.load(args.model or base_model_path())
    engine = Engine(model, tokenizer)
    problems = TaskMix(DEFAULT_MIX).eval_set(args.per_task)
    with progress_bar() as bar:  # about 30 s on 2 CPU cores
        job = bar.add_task("greedy and 16 samples", total=len(problems) * 17, info="")
        advance = lambda k: bar.advance(job, k)  # noqa: E731
        greedy = strategies.greedy(engine, problems, strategies.anchor_params(SamplingParams(max_tokens=256)), advance)
        params = SamplingParams(temperature=1.0, max_tokens=256, n=16, seed=0, force_thinking=True)
        groups = strategies.draw(engine, problems, params, advance)
    print(f"{len(problems)} problems; greedy, thinking on: {strategies.accuracy(greedy):.1%}")
    for k in (1, 2, 4, 8, 16):
        votes = [
            strategies.outcome(p, g[:k], plurality(strategies.keys_of(p, g[:k])))
            for p, g in zip(problems, groups, strict=True)
        ]
        correct = [
            [strategies.outcome(p, g, i).correct for i in range(k)] for p, g in zip(problems, groups, strict=True)
        ]
        tokens = sum(r.num_tokens for g in groups for r in g[:k]) / len(problems)
        passed = mean_pass_at_k([(len(c), sum(c)) for c in correct], k)
        print(
            f"  thinking-on samples, n = {k:>2}: majority {strategies.accuracy(votes):.1%}, "
            f"pass@n {passed:.1%}, {tokens:.0f} tokens/problem"
        )


if __name__ == "__main__":
    try:
        main()
    except (PonderError, OSError) as error:  # a missing model or file: say which, no traceback
        raise SystemExit(f"error: {error}") from None
