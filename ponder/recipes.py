"""Named configs, each for one command (`RECIPE_COMMANDS`).

`base` (`ponder pretrain --recipe base`) is the recipe of the shipped base model (ponder/assets/base):
6,000 steps from scratch on difficulties 1-3 of every family, half the examples worked step by step
(10% of those with a corrected mistake) and half answered at once with empty thinking. The model can
answer both ways; which way pays on which task is what reinforcement learning finds out
(docs/RESULTS.md).

`gpu-500m` (`ponder pretrain --recipe gpu-500m`) is the base recipe's data on the 0.5B-class preset
for one GPU (docs/gpu.md); it has not been run yet.

`tools` (`ponder sft --recipe tools`) made the shipped tool model (ponder/assets/tools): the base
fine-tuned on arithmetic at levels 1-5 worked through the calculator and lookups at levels 1-3 through
search (10% of the traces show a failed first call made again). Its no-tool twin, the same steps on
the same problems with arithmetic worked by hand and lookups answered from memory, is
`ponder sft --recipe tools --tools ""` (docs/tools.md compares the two).
"""

from ponder.errors import PonderError
from ponder.tasks.mix import CORPUS_MIX

TOOL_MIX = "arithmetic:1-5,lookup:1-3"

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
    "tools": {
        "tasks": TOOL_MIX,
        "tools": "calculator,search",
        "tool_retry_rate": 0.1,
        "steps": 1200,
        "batch_size": 32,
        "max_len": 640,
        "save_every": 200,
        "lr": 1e-3,
        "warmup": 30,
        "mistake_rate": 0.1,
        "direct_rate": 0.0,
        "seed": 0,
    },
    # one GPU, the 0.5B-class preset (docs/gpu.md): the base recipe's data, a learning rate for a
    # model of this size, bf16 autocast. Its memory estimate, 37 GiB (9.4 GiB with
    # --gradient-checkpointing), fits an 80 GB card; on a smaller one add checkpointing.
    # A starting point that has not been run on a GPU yet.
    "gpu-500m": {
        "preset": "500m",
        "tasks": CORPUS_MIX,
        "steps": 3000,
        "batch_size": 64,
        "max_len": 384,
        "lr": 3e-4,
        "warmup": 100,
        "save_every": 250,
        "mistake_rate": 0.1,
        "direct_rate": 0.5,
        "autocast": "bf16",
        "device": "cuda",
        "seed": 0,
    },
}
RECIPE_COMMANDS = {"base": "pretrain", "tools": "sft", "gpu-500m": "pretrain"}


def recipe(name: str, command: str) -> dict:
    """The config of recipe `name`, which must be one of `command`'s (pretrain or sft)."""
    if name not in RECIPES:
        raise PonderError(f"unknown --recipe {name!r}; known: {sorted(RECIPES)}")
    if RECIPE_COMMANDS[name] != command:
        raise PonderError(f"recipe {name!r} is for `ponder {RECIPE_COMMANDS[name]}`, not `ponder {command}`")
    return dict(RECIPES[name])


def recipe_examples(name: str) -> int:
    """Training examples a recipe shows the model (steps x batch): what the contamination check reads."""
    return RECIPES[name]["steps"] * RECIPES[name]["batch_size"]
