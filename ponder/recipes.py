"""Named configs. `base` is the recipe of the shipped base model (ponder/assets/base)."""

RECIPES: dict[str, dict] = {
    "base": {
        "preset": "1m",
        "steps": 1000,
        "batch_size": 32,
        "lr": 3e-3,
        "warmup": 50,
        "mistake_rate": 0.1,
        "direct_rate": 0.5,
        "seed": 0,
    },
}
