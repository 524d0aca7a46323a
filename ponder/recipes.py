"""Named configs. A recipe is a list of stages; each stage after the first starts from the model the
stage before it saved. `base` is the recipe of the shipped base model (ponder/assets/base):

1. `both-modes`: 6,000 steps from scratch on difficulties 1-3 of every family, half the examples
   answered at once (empty thinking) and half worked step by step, so the model can do both;
2. `always-think`: 1,200 more steps, every example worked step by step (new problems: seed 1), so
   the shipped model always thinks (as o1 / R1-style models do) and budget forcing has thinking to
   cut; what the first stage taught about answering at once is what a capped thinking falls back on.

`ponder pretrain --recipe base --out runs/base` writes runs/base/both-modes and runs/base/always-think;
the shipped weights are runs/base/always-think/model. `--resume` skips finished stages.
"""

from ponder.tasks.mix import CORPUS_MIX

RECIPES: dict[str, list[dict]] = {
    "base": [
        {
            "stage": "both-modes",
            "preset": "1m",
            "tasks": CORPUS_MIX,
            "steps": 6000,
            "batch_size": 32,
            "lr": 3e-3,
            "warmup": 50,
            "mistake_rate": 0.1,
            "direct_rate": 0.5,
            "seed": 0,
        },
        {
            "stage": "always-think",
            "tasks": CORPUS_MIX,
            "steps": 1200,
            "batch_size": 32,
            "lr": 1e-3,
            "warmup": 20,
            "mistake_rate": 0.1,
            "direct_rate": 0.0,
            "seed": 1,
        },
    ],
}


def recipe_corpora(name: str) -> list[tuple[str, int, int]]:
    """(task mix, examples, seed) of each stage's training stream: what the model saw, for the
    contamination check. Example i of a stream is problem i of its mix's train split."""
    return [(s["tasks"], s["steps"] * s["batch_size"], s["seed"]) for s in RECIPES[name]]
