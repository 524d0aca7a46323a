"""Pretraining and RL throughput and MFU of one model preset on this machine's device, with the
memory estimate beside the measured peak: the GPU figures docs/gpu.md asks for.

    python bench/gpu.py --preset 500m [--steps 30] [--batch-size 64] [--max-len 384] [--rl-steps 6]
        [--prompts-per-step 64] [--group-size 8] [--max-tokens 512] [--minibatches 16] [--gradient-checkpointing]
        [--peak-tflops T] [--skip 2] [--device auto] [--out runs/bench-gpu-500m]

What it runs. (1) `train_lm`: a fresh model of `--preset` (its tokenizer trained first, untimed) for
`--steps` steps of `--batch-size` corpus examples cut at `--max-len` tokens. (2) `train_rl` from
that model for `--rl-steps` steps with REINFORCE++, which has no group baseline and so never skips a
batch: every step trains on every sample (GRPO skips groups of equal rewards, and a barely trained
model's groups are all wrong), in `--minibatches` optimizer steps (ponder has no gradient
accumulation: a minibatch is what the backward pass holds at once). A barely trained model's
rollouts mostly run to `--max-tokens`, close to the worst case. The first `--skip` steps of each
(CUDA's lazy start, kernel selection, the allocator growing) are left out; the rest give the median
tokens/s and MFU, and on a GPU the largest measured peak memory next to the estimate.

MFU needs a peak: a GPU named in `ponder.train.flops.PEAK_BF16_TFLOPS`, or `--peak-tflops`. The
table is printed and written to OUT/bench.json with the run directories beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from ponder.cli.console import console, print_memory_estimate, table
from ponder.train.lm import LMConfig, resolve_device, train_lm
from ponder.train.memory import GIB, device_memory, estimate_lm, estimate_rl
from ponder.train.rl import RLConfig, train_rl


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="500m", help="model preset (ponder.model.PRESETS)")
    ap.add_argument("--steps", type=int, default=30, help="pretraining steps")
    ap.add_argument("--batch-size", type=int, default=64, help="pretraining examples per step")
    ap.add_argument("--max-len", type=int, default=384, help="pretraining tokens per example at most")
    ap.add_argument("--rl-steps", type=int, default=6, help="RL steps")
    ap.add_argument("--prompts-per-step", type=int, default=64, help="RL problems per step")
    ap.add_argument("--group-size", type=int, default=8, help="RL samples per problem")
    ap.add_argument("--max-tokens", type=int, default=512, help="RL tokens per sample at most")
    ap.add_argument("--minibatches", type=int, default=16, help="RL optimizer steps per step (micro-batch size)")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="recompute layers in the backward")
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="device peak; 0 = the GPU's by name")
    ap.add_argument("--skip", type=int, default=2, help="first steps of each phase left out of the medians")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--out", default=None, help="run directory (default runs/bench-gpu-PRESET); must not exist")
    args = ap.parse_args(argv)
    if min(args.steps, args.rl_steps) <= args.skip:
        ap.error(f"--steps and --rl-steps must exceed --skip ({args.skip}): some steps must be timed")
    args.out = Path(args.out or f"runs/bench-gpu-{args.preset}")
    return args


def configs(args) -> tuple[LMConfig, RLConfig]:
    common = dict(device=args.device, gradient_checkpointing=args.gradient_checkpointing, peak_tflops=args.peak_tflops)
    lm = LMConfig(out=str(args.out / "pretrain"), preset=args.preset, steps=args.steps, batch_size=args.batch_size,
                  max_len=args.max_len, lr=3e-4, warmup=min(10, args.steps), save_every=args.steps,
                  **common)  # fmt: skip
    rl = RLConfig(out=str(args.out / "rl"), init=str(args.out / "pretrain" / "model"), algorithm="reinforce_pp",
                  steps=args.rl_steps, prompts_per_step=args.prompts_per_step, group_size=args.group_size,
                  max_tokens=args.max_tokens, minibatches=args.minibatches, lr=1e-6, warmup=1, eval_every=0,
                  eval_per_task=1, save_every=args.rl_steps, **common)  # fmt: skip
    return lm, rl


def steps(run_dir: Path, skip: int) -> list[dict]:
    """The step records of a run (not its evals), less the first `skip`."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "tokens_per_s" in r][skip:]


def median(records: list[dict], value) -> float | None:
    """The median of `value(record)` over the records that have what it reads (None: none do)."""
    values = []
    for r in records:
        try:
            values.append(value(r))
        except (KeyError, ZeroDivisionError):
            continue
    return statistics.median(values) if values else None


def summary(lm_records: list[dict], rl_records: list[dict], estimates: dict) -> dict:
    peak = lambda records: max((r["peak_mem_gib"] for r in records if "peak_mem_gib" in r), default=None)  # noqa: E731
    return {
        "pretrain": {
            "tokens_per_s": median(lm_records, lambda r: r["tokens_per_s"]),
            "mfu": median(lm_records, lambda r: r["mfu"]),
            "peak_mem_gib": peak(lm_records),
            "estimate_gib": estimates["pretrain"],
        },
        "rl": {
            "gen_tokens_per_s": median(rl_records, lambda r: r["tokens"] / r["gen_s"]),
            "train_tokens_per_s": median(rl_records, lambda r: r["trained_tokens"] / r["train_s"]),
            "step_s": median(rl_records, lambda r: r["gen_s"] + r["train_s"]),
            "gen_mfu": median(rl_records, lambda r: r["gen_mfu"]),
            "train_mfu": median(rl_records, lambda r: r["train_mfu"]),
            "mfu": median(rl_records, lambda r: r["mfu"]),
            "peak_mem_gib": peak(rl_records),
            "estimate_gib": estimates["rl"],
        },
    }


def cell(name: str, value) -> str:
    if value is None:
        return "-"
    if "mfu" in name:
        return f"{value:.1%}"
    return f"{value:,.0f}" if "per_s" in name else f"{value:,.2f}"


def show(result: dict, title: str) -> None:
    rows = [(phase, name, cell(name, value)) for phase, values in result.items() for name, value in values.items()]
    console.print(table(title, ("phase", "measure", "value"), rows, left=2))


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    lm_cfg, rl_cfg = configs(args)
    device = resolve_device(args.device)
    estimates = {}
    lm_estimate = estimate_lm(lm_cfg, device, free=device_memory(device))
    print_memory_estimate(lm_estimate)
    estimates["pretrain"] = round(lm_estimate.peak / GIB, 3)
    train_lm(lm_cfg)
    rl_estimate = estimate_rl(rl_cfg, device, free=device_memory(device))
    print_memory_estimate(rl_estimate)
    estimates["rl"] = round(rl_estimate.peak / GIB, 3)
    train_rl(rl_cfg)
    result = summary(steps(args.out / "pretrain", args.skip), steps(args.out / "rl", args.skip), estimates)
    show(result, f"throughput and MFU, {args.preset} on {device_name(device)}")
    record = {"device": device_name(device), "args": {k: str(v) for k, v in vars(args).items()}, **result}
    (args.out / "bench.json").write_text(json.dumps(record, indent=1))
    console.print(f"written to {args.out / 'bench.json'}")
    return result


if __name__ == "__main__":
    main()
