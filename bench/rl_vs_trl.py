"""GRPO seconds per step and held-out accuracy: ponder's `train_rl` against TRL's `GRPOTrainer`.

    pip install -e '.[bench]'          # trl, peft, accelerate, datasets
    OMP_NUM_THREADS=1 python bench/rl_vs_trl.py [--steps 20] [--prompts-per-step 16] [--group-size 8]
        [--max-tokens 256] [--lr 1e-3] [--tasks MIX] [--eval-per-task 20] [--threads N] [--seeds 3]

What it measures. Both trainers start from the same model directory and run `--steps` GRPO steps;
each step samples `--group-size` completions for each of `--prompts-per-step` train problems and
takes one optimizer step. Seconds per step is the wall time between the end of step 1 and the end
of the last step, divided by steps - 1: model loading, start-up and the first (warm-up) step are
left out, everything a step really costs (sampling, rewards, backward, logging) is in. Then the
base model and both trained models are scored by ponder's `evaluate` on the same held-out set,
greedily, so accuracy differences come from training alone. With `--seeds N` each trainer runs N
times (seeds 0..N-1: ponder's problem stream and sampler, TRL's `seed`); the report gives each run
and the mean and spread, since one run's accuracy moves by a few points with the seed.

What "same setup" means. Same model and tokenizer, the same train problems in the same order
(`TaskMix(tasks).problems("train", 0, steps * prompts_per_step, seed)`, TRL's shuffle off), the
same prompt text (`render_prompt`, given to TRL as plain text so no chat template is applied), the
same reward (the task's verifier), group size, completions per step, completion length limit,
temperature 1.0, learning rate, no KL (beta 0), one update per batch (on-policy: the ratio is 1 and
the clip is inactive on both sides), group-std reward scaling and, by default, the same
per-sequence loss normalisation (TRL `loss_type="grpo"` = ponder `algorithm="grpo"`). Everything
else is each library's own default; the header lists the defaults that differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from ponder.engine import Engine, SamplingParams
from ponder.evals import EvalReport, evaluate
from ponder.format import render_prompt
from ponder.model import count_parameters, load
from ponder.tasks import Problem, get_task
from ponder.tasks.mix import DEFAULT_MIX, TaskMix
from ponder.train.rl import RLConfig, train_rl

PONDER_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RLConfig)}
# transformers 5 renames gradient_checkpointing; TRL still uses the old name on every step
warnings.filterwarnings("ignore", message=r".*is deprecated and will be removed in v6", category=FutureWarning)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model directory both start from (default: the shipped base)")
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps for each trainer (>= 2)")
    ap.add_argument("--prompts-per-step", type=int, default=16, help="train problems per step")
    ap.add_argument("--group-size", type=int, default=8, help="completions per problem (G)")
    ap.add_argument("--max-tokens", type=int, default=PONDER_DEFAULTS["max_tokens"], help="tokens per completion")
    ap.add_argument("--lr", type=float, default=PONDER_DEFAULTS["lr"], help="learning rate of both")
    ap.add_argument("--tasks", default=DEFAULT_MIX, help="task mix of train and held-out problems")
    ap.add_argument("--eval-per-task", type=int, default=20, help="held-out problems per task and difficulty")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument(
        "--trl-loss-type",
        default="grpo",
        help="TRL loss_type; 'grpo' matches ponder's per-sequence GRPO loss (TRL's own default is 'dapo')",
    )
    ap.add_argument(
        "--trl-gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="override TRL's default (on) to check how much of its time recomputation costs",
    )
    ap.add_argument("--seeds", type=int, default=1, help="runs of each trainer, seeds 0..N-1")
    ap.add_argument("--out", help="keep both runs here (default: a temporary directory, removed after)")
    args = ap.parse_args(argv)
    if args.steps < 2:
        ap.error("--steps must be >= 2: the first step is a warm-up and is not timed")
    if args.group_size < 2:
        ap.error("--group-size must be >= 2: GRPO compares samples of one group")
    if args.seeds < 1:
        ap.error("--seeds must be >= 1")
    return args


def default_model_dir() -> Path:
    from ponder.assets import base_model_path

    return base_model_path()


def seconds_per_step(step_ends: list[float]) -> float:
    """Mean step time from end-of-step timestamps, leaving out step 1 (warm-up)."""
    if len(step_ends) < 2:
        raise ValueError("need at least two step timestamps")
    return (step_ends[-1] - step_ends[0]) / (len(step_ends) - 1)


def accuracy_se(report: EvalReport) -> float:
    """Rough standard error of the overall accuracy (binomial, over all held-out problems)."""
    p, n = report.overall, max(1, report.problems)
    return math.sqrt(p * (1 - p) / n)


# --- ponder ----------------------------------------------------------------------------------------


def ponder_config(args: argparse.Namespace, model_dir: Path, out: Path, seed: int = 0) -> RLConfig:
    return RLConfig(
        seed=seed,
        out=str(out),
        init=str(model_dir),
        tasks=args.tasks,
        algorithm="grpo",
        steps=args.steps,
        prompts_per_step=args.prompts_per_step,
        group_size=args.group_size,
        max_tokens=args.max_tokens,
        temperature=1.0,
        lr=args.lr,
        eval_every=0,  # only its built-in start/end evals, which run outside the timed steps
        eval_per_task=1,  # ... and are kept tiny: the benchmark's own eval is the one reported
        save_every=args.steps,  # no checkpoint inside the timed window
        device="cpu",
    )


def run_ponder(args: argparse.Namespace, model_dir: Path, out: Path, seed: int = 0) -> dict:
    step_ends, records = [], []

    def on_step(record: dict) -> None:
        if "gen_s" in record:  # a step record, not an eval record
            step_ends.append(time.perf_counter())
            records.append(record)
            print(
                f"  ponder step {record['step']:3d}: reward {record['reward']:.3f}  "
                f"len {record['response_len']:6.1f}  gen {record['gen_s']:.2f}s  train {record['train_s']:.2f}s",
                flush=True,
            )

    final = train_rl(ponder_config(args, model_dir, out, seed), on_step=on_step)
    timed = records[1:]
    return {
        "s_per_step": seconds_per_step(step_ends),
        "tokens_per_step": sum(r["tokens"] for r in timed) / len(timed),
        "constant_groups": sum(r["constant_groups"] for r in records) / len(records),
        "model_dir": final,
    }


# --- TRL -------------------------------------------------------------------------------------------


def trl_dataset(problems: list[Problem]):
    """Plain-text prompts (no chat template), plus each problem's identity for the reward function."""
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "prompt": [render_prompt(p.prompt) for p in problems],  # the text ponder's format renders
            "problem_index": list(range(len(problems))),
            "task": [p.task for p in problems],
        }
    )


def make_reward(problems: list[Problem], tokenizer):
    """The task verifier as a TRL reward function.

    TRL hands reward functions `completions` decoded with skip_special_tokens=True, which deletes
    ponder's `</think>` (a special token), so every answer would parse as empty and score 0. The
    completion is decoded here from `completion_ids` with the special tokens kept, exactly as
    ponder's engine decodes its rollouts."""

    def ponder_verifier(prompts, completions, completion_ids, problem_index, **_) -> list[float]:
        texts = tokenizer.batch_decode(completion_ids, skip_special_tokens=False)
        scores = []
        for text, i in zip(texts, problem_index, strict=True):
            problem = problems[i]
            try:
                scores.append(float(get_task(problem.task).score(problem, text)))
            except Exception:  # noqa: BLE001 - as ponder's rewards: a verifier failure scores that sample 0
                scores.append(0.0)
        return scores

    return ponder_verifier


def trl_config(args: argparse.Namespace, out: Path, seed: int = 0):
    from trl import GRPOConfig

    overrides = {}
    if args.trl_gradient_checkpointing is not None:
        overrides["gradient_checkpointing"] = args.trl_gradient_checkpointing
    return GRPOConfig(
        output_dir=str(out),
        # one optimizer step = one generation batch = prompts_per_step x G completions: in TRL 1.16
        # per_device_train_batch_size counts completions, and with gradient_accumulation_steps=1
        # steps_per_generation = 1 and generation_batch_size = per_device_train_batch_size
        per_device_train_batch_size=args.prompts_per_step * args.group_size,
        gradient_accumulation_steps=1,
        num_generations=args.group_size,
        max_steps=args.steps,
        max_completion_length=args.max_tokens,
        temperature=1.0,
        learning_rate=args.lr,
        beta=0.0,
        loss_type=args.trl_loss_type,
        shuffle_dataset=False,  # the same problems in the same steps as ponder
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=seed,
        **overrides,
    )


def step_timer():
    """A TrainerCallback recording the time at the end of every optimizer step and each step's logs."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.begin, self.step_ends, self.logs = 0.0, [], []

        def on_train_begin(self, args, state, control, **kwargs):
            self.begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.step_ends.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                self.logs.append(dict(logs))
                gap = self.step_ends[-1] - ([self.begin, *self.step_ends])[-2]
                print(
                    f"  trl    step {state.global_step:3d}: reward {logs['reward']:.3f}  "
                    f"len {logs.get('completions/mean_length', float('nan')):6.1f}  "
                    f"step {gap:.2f}s",
                    flush=True,
                )

    return StepTimer()


def run_trl(args: argparse.Namespace, model_dir: Path, problems: list[Problem], out: Path, seed: int = 0) -> dict:
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOTrainer

    model, tokenizer = load(model_dir)
    cfg = trl_config(args, out, seed)
    timer = step_timer()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=make_reward(problems, tokenizer),
        args=cfg,
        train_dataset=trl_dataset(problems),
        processing_class=tokenizer,
        callbacks=[timer],
    )
    for noisy in (PrinterCallback, ProgressCallback):  # our callback prints one line per step instead
        trainer.remove_callback(noisy)
    trainer.train()
    trainer.save_model(str(out / "model"))
    tokenizer.save_pretrained(str(out / "model"))
    completions = args.prompts_per_step * args.group_size
    timed = timer.logs[1:]
    return {
        "s_per_step": seconds_per_step(timer.step_ends),
        "tokens_per_step": sum(log["completions/mean_length"] for log in timed) / len(timed) * completions,
        "constant_groups": sum(log["frac_reward_zero_std"] for log in timer.logs) / len(timer.logs),
        "clip_region": max(log.get("clip_ratio/region_mean", 0.0) for log in timer.logs),
        "model_dir": out / "model",
        "config": cfg,
    }


def trl_defaults_that_differ(cfg) -> list[str]:
    """TRL settings in force that are not ponder's, read from the live config (not hard-coded)."""
    p = PONDER_DEFAULTS
    return [
        f"lr schedule: TRL {getattr(cfg.lr_scheduler_type, 'value', cfg.lr_scheduler_type)} decay to 0, "
        f"warm-up {cfg.warmup_steps} steps"
        f" | ponder {p['lr_schedule']} after a {p['warmup']}-step linear warm-up",
        f"AdamW betas: TRL ({cfg.adam_beta1}, {cfg.adam_beta2}) | ponder (0.9, 0.99)",
        f"gradient checkpointing: TRL {cfg.gradient_checkpointing} | ponder off",
        f"loss_type: TRL {cfg.loss_type!r} (TRL's default is 'dapo', token-level) | ponder 'grpo' (per-sequence)",
        f"seed: TRL {cfg.seed} | ponder {p['seed']}",
        f"sampling: TRL top_p {cfg.top_p}, top_k {cfg.top_k}, model.generate on prompts repeated G times | "
        "ponder pure temperature sampling, one shared prefill per group",
    ]


# --- evaluation and report -------------------------------------------------------------------------


def held_out(model_dir: Path, problems: list[Problem], max_tokens: int) -> EvalReport:
    model, tokenizer = load(model_dir)
    return evaluate(Engine(model, tokenizer), problems, SamplingParams(temperature=0, max_tokens=max_tokens))


def print_report(args, model_dir: Path, n_params: int, runs: dict[str, list[dict]], evals: dict) -> None:
    """`runs[name]`: one dict per seed; `evals[name]`: the held-out report of each seed's model."""
    completions = args.prompts_per_step * args.group_size
    print()
    print(
        f"model {model_dir} ({n_params / 1e6:.2f}M params); tasks {args.tasks}; {args.steps} steps x "
        f"{args.prompts_per_step} prompts x G={args.group_size} = {completions} completions/step, "
        f"<= {args.max_tokens} tokens each; lr {args.lr}; torch threads {torch.get_num_threads()}; "
        f"seeds 0..{args.seeds - 1}"
    )
    print("TRL settings that differ from ponder's:")
    for line in trl_defaults_that_differ(runs["TRL"][0]["config"]):
        print(f"  - {line}")
    n_eval = evals["base"][0].problems
    print()
    # ms/token: the policies drift apart, so their completions (and so a step's work) differ in length
    head = f"{'':12} {'s/step':>8} {'tokens/step':>12} {'ms/token':>9} {'const. groups':>14} {'held-out acc':>13}"
    print(f"{head}  (n={n_eval})")
    print(f"{'base':12} {'':>8} {'':>12} {'':>9} {'':>14} {evals['base'][0].overall:13.1%}")
    for name in ("TRL", "ponder"):
        for seed, (run, report) in enumerate(zip(runs[name], evals[name], strict=True)):
            ms_per_token = 1000 * run["s_per_step"] / run["tokens_per_step"]
            print(
                f"{name + ' s' + str(seed):12} {run['s_per_step']:8.2f} {run['tokens_per_step']:12.0f} "
                f"{ms_per_token:9.2f} {run['constant_groups']:14.1%} {report.overall:13.1%}"
            )
    speed = {name: [r["s_per_step"] for r in runs[name]] for name in runs}
    acc = {name: [r.overall for r in evals[name]] for name in ("TRL", "ponder")}
    ratios = [t / p for t, p in zip(speed["TRL"], speed["ponder"], strict=True)]
    print()
    print(
        f"speed: TRL s/step / ponder s/step = {statistics.mean(ratios):.2f}x "
        f"({min(ratios):.2f}-{max(ratios):.2f} over seeds)   target >= 2x: "
        f"{'PASS' if statistics.mean(ratios) >= 2 else 'FAIL'}"
    )
    for name in ("TRL", "ponder"):
        spread = statistics.stdev(acc[name]) if len(acc[name]) > 1 else 0.0
        print(f"held-out accuracy {name:6}: {statistics.mean(acc[name]):.1%} +/- {spread:.1%} (std over seeds)")
    diff = statistics.mean(acc["ponder"]) - statistics.mean(acc["TRL"])
    se = math.hypot(*(_mean_se(evals[name]) for name in ("ponder", "TRL")))
    verdict = "PASS" if diff >= 0 else "FAIL" + (" (within 2 s.e. of noise)" if -diff < 2 * se else "")
    print(f"accuracy: ponder - TRL = {diff * 100:+.1f} points (+/- {se * 100:.1f} s.e.)   no worse: {verdict}")
    clip = max(r["clip_region"] for r in runs["TRL"])
    print(f"TRL clip active: max clipped-token fraction {clip:.3f} (on-policy, ratio 1)")


def _mean_se(reports: list[EvalReport]) -> float:
    """Standard error of the mean accuracy over seeds: each run's binomial error, averaged."""
    return math.sqrt(sum(accuracy_se(r) ** 2 for r in reports)) / len(reports)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = Path(args.model) if args.model else default_model_dir()
    mix = TaskMix(args.tasks)
    eval_set = mix.eval_set(args.eval_per_task)
    started = time.perf_counter()
    runs: dict[str, list[dict]] = {"ponder": [], "TRL": []}
    with tempfile.TemporaryDirectory(prefix="rl_vs_trl_") as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        evals = {"base": [held_out(model_dir, eval_set, args.max_tokens)], "ponder": [], "TRL": []}
        for seed in range(args.seeds):
            print(f"ponder GRPO ({args.steps} steps, seed {seed}):", flush=True)
            runs["ponder"].append(run_ponder(args, model_dir, root / f"ponder{seed}", seed))
            evals["ponder"].append(held_out(runs["ponder"][-1]["model_dir"], eval_set, args.max_tokens))
            # the problems ponder draws with this seed, in the order it draws them
            problems = mix.problems("train", 0, args.steps * args.prompts_per_step, seed)
            print(f"TRL GRPOTrainer ({args.steps} steps, seed {seed}):", flush=True)
            runs["TRL"].append(run_trl(args, model_dir, problems, root / f"trl{seed}", seed))
            evals["TRL"].append(held_out(runs["TRL"][-1]["model_dir"], eval_set, args.max_tokens))
        n_params = count_parameters(load(model_dir)[0])
        print_report(args, model_dir, n_params, runs, evals)
    print(f"total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
