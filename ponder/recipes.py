"""Named configs. `base` is the recipe of the shipped base model (ponder/assets/base): 6,000 steps
from scratch on difficulties 1-3 of every family, half the examples worked step by step (10% of those
with a corrected mistake) and half answered at once with empty thinking. The model can answer both
ways; which way pays on which task is what reinforcement learning finds out (docs/RESULTS.md)."""

from ponder.tasks.mix import CORPUS_MIX

RECIPES: dict[str, dict] = {
    "base": {
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
}


def recipe_examples(name: str) -> int:
    """Training examples a recipe shows the model (steps x batch): what the contamination check reads."""
    return RECIPES[name]["steps"] * RECIPES[name]["batch_size"]
