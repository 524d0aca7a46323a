"""RL steps per second with generation on Ray rollout workers, against the same run in one process.

    pip install -e '.[ray]'
    OMP_NUM_THREADS=1 python bench/cluster.py [--workers 2] [--steps 8] [--prompts-per-step 32]
        [--group-size 8] [--max-tokens 256] [--tasks MIX] [--model DIR] [--threads 1]
        [--importance-correction auto|on|off] [--ray-address ADDR]

What it measures. Two `RLRun`s of one config from the same model (the shipped base by default), a
step the size `ponder rl` takes by default: one samples with the trainer's own engine, the other
with `--workers` Ray rollout workers (one torch thread each; the trainer has `--threads`). Each takes
one untimed warm-up step (Ray actors starting, the first weight push, lazy initialisation), then
`--steps` timed steps, the two runs interleaved step by step so that load from other jobs on the
machine falls on both alike. Step i draws the same problems in both runs; the samples differ (each
worker shard has its own seed), so tokens per step are printed too.

Where a step goes, from the step metrics: generation (`gen_s` less the push), the weight push
(`push_s`: the trainer's weights into the object store and loaded by every worker) and training
(`train_s`: rewards, advantages and the update; with workers, also the trainer's no-grad pass for
the importance correction, on by default there). Each is the median over the timed steps with the
min-max spread; steps per second is 1 / the wall time of `rl_step`.

Reading it. Workers pay off when generation dominates a step and there are cores (or machines) to
spare. Splitting a batch over workers shortens a decode step only where the step's arithmetic, not
its fixed per-step cost, is what takes the time; a tiny model on CPU decodes at the fixed cost, and
two 1-thread workers on a 2-core machine share it with the trainer and Ray's own processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ponder.train.rl import RLConfig, RLRun, rl_step

PHASES = ("gen", "push", "train")
RL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RLConfig)}  # a step as `ponder rl` takes it


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2, help="Ray rollout workers of the distributed run")
    ap.add_argument("--steps", type=int, default=8, help="timed RL steps of each run, after one warm-up step")
    ap.add_argument("--prompts-per-step", type=int, default=RL_DEFAULTS["prompts_per_step"], help="problems per step")
    ap.add_argument("--group-size", type=int, default=RL_DEFAULTS["group_size"], help="completions per problem (G)")
    ap.add_argument("--max-tokens", type=int, default=RL_DEFAULTS["max_tokens"], help="tokens per completion at most")
    ap.add_argument("--tasks", default="arithmetic:2,countdown:2", help="task mix of the train problems")
    ap.add_argument("--model", help="model directory both runs start from (default: the shipped base)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the trainer process")
    ap.add_argument("--ray-address", default="", help="Ray cluster to join ('' = start a local one)")
    ap.add_argument(
        "--importance-correction",
        default="auto",
        choices=("auto", "on", "off"),
        help="of both runs; auto = on with workers only, as `ponder rl` runs them",
    )
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    if args.steps < 2:
        ap.error(f"--steps must be >= 2 for a median and a spread, got {args.steps}")
    return args


def run_config(args: argparse.Namespace, out: Path, workers: int) -> RLConfig:
    from ponder.assets import base_model_path

    return RLConfig(
        out=str(out),
        init=args.model or str(base_model_path()),
        tasks=args.tasks,
        steps=args.steps + 1,  # the warm-up step, then the timed ones (the LR schedule spans both)
        prompts_per_step=args.prompts_per_step,
        group_size=args.group_size,
        max_tokens=args.max_tokens,
        warmup=1,
        eval_per_task=1,  # no eval runs here; this only sizes the held-out set RLRun builds
        rollout_workers=workers,
        ray_address=args.ray_address,
        importance_correction=args.importance_correction,
    )


def timed_step(run: RLRun, step: int) -> dict:
    """One RL step: its wall time and its phases (generation without the push; push 0 in one process)."""
    started = time.perf_counter()
    record = rl_step(run, step)
    push = record.get("push_s", 0.0)
    return {
        "wall": time.perf_counter() - started,
        "gen": record["gen_s"] - push,
        "push": push,
        "train": record["train_s"],
        "tokens": record["tokens"],
    }


def spread(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def summarise(steps: list[dict]) -> dict:
    """Per quantity, (median, min, max) over the timed steps; steps/s from the wall time."""
    summary = {name: spread([s[name] for s in steps]) for name in ("wall", *PHASES, "tokens")}
    summary["steps_per_s"] = spread([1 / s["wall"] for s in steps])
    return summary


def print_report(args: argparse.Namespace, summaries: dict[str, dict], load: tuple[float, float]) -> None:
    print()
    print(
        f"{args.prompts_per_step} prompts x G={args.group_size}, <= {args.max_tokens} tokens, tasks {args.tasks}; "
        f"{args.steps} timed steps after 1 warm-up; {os.cpu_count()} CPU cores, load average {load[0]:.1f} "
        f"before, {load[1]:.1f} after; trainer threads "
        f"{torch.get_num_threads()}, 1 per worker; importance correction {args.importance_correction}; "
        "median [min-max]"
    )
    columns = ("steps/s", "gen s", "push s", "train s", "tokens/step")
    print(f"{'':16}" + "".join(f"{c:>20}" for c in columns))
    for name, s in summaries.items():
        cells = [_cell(s["steps_per_s"], 3)] + [_cell(s[p], 2) for p in PHASES] + [_cell(s["tokens"], 0)]
        print(f"{name:16}" + "".join(f"{c:>20}" for c in cells))
    single, ray = (summaries[name]["steps_per_s"][0] for name in summaries)
    print(f"\nsteps/s, {list(summaries)[1]} / {list(summaries)[0]}: {ray / single:.2f}x (medians)")


def _cell(values: tuple[float, float, float], digits: int) -> str:
    median, low, high = values
    return f"{median:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_cluster_") as tmp:
        names = ("one process", f"{args.workers} Ray workers")
        runs = {
            names[0]: RLRun(run_config(args, Path(tmp) / "single", 0), resume=False),
            names[1]: RLRun(run_config(args, Path(tmp) / "ray", args.workers), resume=False),
        }
        try:
            for run in runs.values():
                rl_step(run, 0)  # warm-up: actors start, the first push, lazy initialisation
            steps: dict[str, list[dict]] = {name: [] for name in runs}
            for step in range(1, args.steps + 1):
                for name, run in runs.items():  # interleaved: background load falls on both alike
                    steps[name].append(timed_step(run, step))
                print(f"step {step}/{args.steps}: " + ", ".join(f"{n} {s[-1]['wall']:.2f} s" for n, s in steps.items()))
        finally:
            runs[names[1]].sampler.close()
        print_report(args, {name: summarise(s) for name, s in steps.items()}, (load_before, os.getloadavg()[0]))
    print(f"total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
