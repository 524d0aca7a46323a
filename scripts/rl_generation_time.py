"""Time one RL step's worth of generation: 16 train problems x 8 samples, up to 256 tokens, T = 1.

    OMP_NUM_THREADS=1 python scripts/rl_generation_time.py [--rounds 5]

Prints the best and the median of `--rounds` calls (each with its own seed) and the tokens drawn.
Run it on two checkouts to compare engines on the shape RL uses (groups whose samples end at
different steps), which `bench/engine.py` (no early stop) does not exercise.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ponder.assets import base_model_path
from ponder.engine import Engine, SamplingParams
from ponder.format import render_prompt
from ponder.model import load
from ponder.tasks.mix import TaskMix


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    engine = Engine(*load(base_model_path()))
    prompts = [render_prompt(p.prompt) for p in TaskMix().problems("train", 0, 16, 0)]
    engine.generate(prompts, SamplingParams(n=8, temperature=1.0, max_tokens=256, seed=0))  # warm-up
    times, tokens = [], 0
    for seed in range(args.rounds):
        start = time.perf_counter()
        groups = engine.generate(prompts, SamplingParams(n=8, temperature=1.0, max_tokens=256, seed=seed))
        times.append(time.perf_counter() - start)
        tokens = sum(r.num_tokens for g in groups for r in g)
    print(f"best {min(times):.3f} s, median {statistics.median(times):.3f} s, {tokens} tokens in the last round")


if __name__ == "__main__":
    main()
