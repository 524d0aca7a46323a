"""Where can a vote help? The problems of a `ponder scale` run bucketed by the share of their samples
that are right, with how often majority picks a right answer in each bucket; then, per task and
difficulty, the mean share of right samples against majority's accuracy (docs/test-time-compute.md
quotes both).

    python scripts/vote_buckets.py runs/v3_scale_rl/scale.json [--tasks MIX] [--per-task 50]

`--tasks` and `--per-task` must be the run's (they rebuild its problem list to label the rows).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict

from ponder.errors import PonderError
from ponder.tasks.mix import DEFAULT_MIX, TaskMix
from ponder.ttc.answers import plurality

BUCKETS = ("none right", "under 1/3 right", "1/3-2/3 right", "over 2/3 right")


def bucket_of(share: float) -> str:
    if share == 0:
        return BUCKETS[0]
    return BUCKETS[1] if share < 1 / 3 else BUCKETS[2] if share <= 2 / 3 else BUCKETS[3]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scale_json")
    ap.add_argument("--tasks", default=DEFAULT_MIX)
    ap.add_argument("--per-task", type=int, default=50)
    args = ap.parse_args()
    draw = json.load(open(args.scale_json))["draw"]
    problems = TaskMix(args.tasks).eval_set(args.per_task)
    if len(problems) != len(draw["keys"]):
        raise SystemExit(f"the run has {len(draw['keys'])} problems, --tasks/--per-task give {len(problems)}")
    total, won = Counter(), Counter()
    family: dict[tuple, list[tuple[float, bool]]] = defaultdict(list)
    for problem, keys, correct in zip(problems, draw["keys"], draw["correct"], strict=True):
        share, vote_right = sum(correct) / len(correct), correct[plurality(keys)]
        total[bucket_of(share)] += 1
        won[bucket_of(share)] += vote_right
        family[(problem.task, problem.difficulty)].append((share, vote_right))
    for bucket in BUCKETS:
        print(f"{bucket:>16}: {total[bucket]:>4} problems, majority right on {won[bucket]}")
    print("\ntask, level: right samples / majority")
    for (task, level), rows in sorted(family.items()):
        samples = sum(s for s, _ in rows) / len(rows)
        vote = sum(v for _, v in rows) / len(rows)
        print(f"  {task} {level}: {samples:.0%} / {vote:.0%}")


if __name__ == "__main__":
    try:
        main()
    except (PonderError, OSError) as error:  # a missing model or file: say which, no traceback
        raise SystemExit(f"error: {error}") from None
