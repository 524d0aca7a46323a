"""`ponder scale` and `ponder contamination`: the test-time compute commands (registered in cli.py).

ponder scale --model DIR --per-task 20 --max-n 16 --verifier runs/verifier --out runs/scale
    every strategy at every compute level -> runs/scale/{scale.json, scaling.png, histogram.png, report.html}
ponder scale --model DIR --effort
    low / medium / high / auto side by side: accuracy and tokens, one table
ponder contamination --tasks MIX --train-examples 32000 [--corpus extra.jsonl]
    n-gram overlap of the eval prompts with the training corpora; exit 3 above the threshold
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.table import Table

from ponder.cli import console, progress_bar


def add_parsers(sub) -> None:
    from ponder.tasks.mix import CORPUS_MIX, DEFAULT_MIX
    from ponder.ttc.scale import STRATEGY_NAMES

    p = sub.add_parser("scale", help="accuracy against test-time compute, one curve per strategy")
    p.add_argument("--model", help="model directory (default: the shipped base)")
    p.add_argument("--tasks", default=DEFAULT_MIX, help="task mix (default: %(default)s)")
    p.add_argument("--per-task", type=int, default=20, help="held-out problems per task and difficulty")
    p.add_argument("--strategies", default=",".join(STRATEGY_NAMES), help="comma-separated curves (default: all)")
    p.add_argument("--max-n", type=int, default=16, help="largest number of samples (levels 1, 2, 4, ...)")
    p.add_argument("--temperature", type=float, default=1.0, help="temperature of the sampled strategies")
    p.add_argument("--max-tokens", type=int, default=256, help="tokens per sample at most")
    p.add_argument(
        "--verifier",
        help="learned verifier directory: loaded if it exists, else trained from --model and saved there "
        "(no flag = no verifier curves)",
    )
    p.add_argument("--effort", action="store_true", help="compare the reasoning_effort presets instead")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/scale", help="run directory for JSON, charts and report.html")
    p = sub.add_parser("contamination", help="n-gram overlap of eval prompts with the training corpora")
    p.add_argument("--tasks", default=DEFAULT_MIX, help="task mix of the eval set (default: %(default)s)")
    p.add_argument(
        "--corpus-tasks", default=CORPUS_MIX, help="task mix of the pretraining corpus (default: %(default)s)"
    )
    p.add_argument("--per-task", type=int, default=200, help="eval prompts per task and difficulty")
    p.add_argument(
        "--train-examples",
        type=int,
        help="corpus examples the model trained on (steps x batch; default: the base recipe's, 6000 x 32)",
    )
    p.add_argument("--corpus", action="append", default=[], help="extra training JSONL (repeatable)")
    p.add_argument("--n", type=int, default=8, help="n-gram size in words (shorter prompts: whole prompt)")
    p.add_argument(
        "--threshold", type=float, default=0.0, help="largest allowed share of contaminated prompts per task"
    )
    p.add_argument("--json", help="write the report to this JSON file")


# ---------------------------------------------------------------------------------------------------


def _load(args):
    from ponder import model as models
    from ponder.assets import base_model_path
    from ponder.engine import Engine

    model_dir = args.model or base_model_path()
    model, tokenizer = models.load(model_dir)
    return model_dir, Engine(model, tokenizer)


def _verifier(args, model_dir):
    from ponder.ttc.verifier import Verifier, VerifierConfig, train_verifier

    if not args.verifier:
        return None
    if (Path(args.verifier) / "config.json").is_file():
        v = Verifier.load(args.verifier)
    else:
        cfg = VerifierConfig(policy=str(model_dir), out=args.verifier, tasks=args.tasks, seed=args.seed)
        with progress_bar() as bar:
            job = bar.add_task("verifier rollouts", total=cfg.problems * cfg.samples, info="")

            def on_step(m):
                bar.update(job, description="verifier fit", completed=m["step"], total=m["total_steps"])
                bar.update(job, info=f"loss {m['loss']:.3f}")

            v = train_verifier(cfg, on_step=on_step, progress=lambda k: bar.advance(job, k))
    console.print(
        f"verifier {args.verifier}: held-out AUC {v.meta.get('heldout_auc')}, "
        f"{v.meta.get('rollouts')} rollouts, {v.meta.get('positive_rate', 0):.1%} correct"
    )
    return v


def cmd_scale(args) -> None:
    from ponder.io import atomic_write_json
    from ponder.tasks.mix import TaskMix
    from ponder.ttc import scale

    model_dir, engine = _load(args)
    problems = TaskMix(args.tasks).eval_set(args.per_task)
    out = Path(args.out)
    command = "ponder " + " ".join(sys.argv[1:])
    if args.effort:
        with progress_bar() as bar:
            job = bar.add_task("efforts", total=None, info="")
            rows = scale.compare_efforts(engine, problems, seed=args.seed, progress=lambda k: bar.advance(job, k))
        table = Table(title=f"reasoning_effort on {len(problems)} held-out problems, {model_dir}")
        for col in ("effort", "accuracy", "tokens/problem", "samples/problem", "wall s"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(
                r["effort"],
                f"{r['accuracy']:.1%}",
                f"{r['tokens_per_problem']:.0f}",
                f"{r['samples_per_problem']:.1f}",
                f"{r['wall_s']:.0f}",
            )
        console.print(table)
        by = {r["effort"]: r for r in rows}
        ordered = all(
            by[a][m] > by[b][m] for a, b in (("high", "medium"), ("medium", "low")) for m in ("accuracy", "tokens")
        )
        console.print(f"high > medium > low in accuracy and tokens: [bold]{'yes' if ordered else 'NO'}[/]")
        atomic_write_json(out / "effort.json", {"command": command, "model": str(model_dir), "efforts": rows})
        console.print(f"written to {out / 'effort.json'}")
        return
    verifier = _verifier(args, model_dir)
    cfg = scale.ScaleConfig(
        max_n=args.max_n,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        strategies=tuple(s.strip() for s in args.strategies.split(",") if s.strip()),
        seed=args.seed,
    )
    run_sweep(engine, problems, cfg, out, command, model_dir, verifier, args.verifier)


def run_sweep(
    engine, problems, cfg, out, command: str, model_dir, verifier=None, verifier_path=None, table: bool = True
) -> dict:
    """The sweep with a progress bar, its table printed (unless `table` is False), and
    out/{scale.json, scaling.png, report.html} written (`ponder scale` and the demo's last stage)."""
    from ponder.io import atomic_write_json
    from ponder.ttc import scale
    from ponder.ttc.report import write_report

    with progress_bar() as bar:
        job = bar.add_task("scale", total=None, info="")
        result = scale.sweep(
            engine,
            problems,
            cfg,
            verifier,
            on_stage=lambda s: bar.update(job, description=s, completed=0),
            progress=lambda k: bar.advance(job, k),
        )
        bar.update(job, description="distribution")
        dist = scale.answer_distribution(
            engine, _histogram_problem(problems, result), temperature=cfg.temperature, seed=cfg.seed
        )
    if table:
        console.print(points_table(result["points"], f"{len(problems)} held-out problems, {model_dir}"))
        for line in scale.headline(result["points"]):
            console.print(f"  {line}")
    if verifier is not None:
        result["verifier"] = {"path": verifier_path, **{k: v for k, v in verifier.meta.items() if k != "config"}}
    atomic_write_json(
        Path(out) / "scale.json", {"command": command, "model": str(model_dir), **result, "distribution": dist}
    )
    html = write_report(out, result, distribution=dist, command=command)
    console.print(f"report: [bold]{html}[/] (scale.json, scaling.png, histogram.png beside it)")
    return result


# the demo's test-time stage: about 11 s a model on 2 CPU cores (200 problems; runs/v4_demo)
DEMO_PER_TASK = 20
DEMO_STRATEGIES = (
    "greedy",
    "greedy:thinking",
    "sample",
    "majority",
    "best_of_n:oracle",
    "budget_forcing",
    "auto_effort",
    "auto_effort:paired",
)
DEMO_BUDGETS = (1, 16, 32, 64, 128)


def points_table(points: list[dict], where: str) -> Table:
    table = Table(title=f"accuracy against test-time compute, {where}")
    for col in ("strategy", "level", "accuracy", "tokens/problem"):
        table.add_column(col, justify="right")
    for p in points:
        table.add_row(p["strategy"], f"{p['level']:g}", f"{p['accuracy']:.1%}", f"{p['tokens_per_problem']:.0f}")
    return table


# the rows of the demo's side-by-side table: (label, strategy, level; None = the largest level)
DEMO_ROWS = (
    ("greedy", "greedy", 1),
    ("greedy, thinking on", "greedy:thinking", 1),
    ("one sample", "sample", 1),
    ("majority of 8", "majority", 8),
    ("pass@8 (oracle)", "best_of_n:oracle", 8),
    ("auto effort", "auto_effort", None),
)


def demo_compare(models: dict[str, Path], tasks: str, out: Path, per_task: int = DEMO_PER_TASK) -> dict:
    """`ponder demo` stage 3: the small sweep on each model (the base and the RL-trained one), a
    report each under out/<label>, and one table side by side: where test-time compute pays on a
    model that often skips its thinking, and what RL already moved into its greedy answer."""
    from ponder.ttc.scale import point_at

    results = {label: demo_scale(path, tasks, out / label, per_task, table=False) for label, path in models.items()}
    count = next(iter(results.values()))["problems"]
    table = Table(title=f"test-time compute on {count} held-out problems: accuracy and tokens per problem")
    table.add_column("strategy")
    for label in results:
        table.add_column(label, justify="right")
    for name, strategy, level in DEMO_ROWS:
        cells = []
        for result in results.values():
            found = point_at(result["points"], strategy, level)
            cells.append(f"{found['accuracy']:.1%}  {found['tokens_per_problem']:.0f}" if found else "-")
        table.add_row(name, *cells)
    console.print(table)
    return results


def demo_scale(model_dir, tasks: str, out, per_task: int = DEMO_PER_TASK, table: bool = True) -> dict:
    """A small sweep of `model_dir` (greedy, majority at n = 1..8, budget forcing, auto effort), its
    chart and report written to `out` (its table printed unless `table` is False)."""
    from ponder import model as models
    from ponder.engine import Engine
    from ponder.tasks.mix import TaskMix
    from ponder.ttc.scale import ScaleConfig

    model, tokenizer = models.load(model_dir)
    problems = TaskMix(tasks).eval_set(per_task)
    cfg = ScaleConfig(max_n=8, strategies=DEMO_STRATEGIES, budgets=DEMO_BUDGETS)
    command = f"ponder scale --model {model_dir} --tasks {tasks} --per-task {per_task} --max-n 8 (demo stage)"
    return run_sweep(Engine(model, tokenizer), problems, cfg, out, command, model_dir, table=table)


def _histogram_problem(problems, result):
    """The prompt whose samples disagree most while some are right: the most telling distribution."""
    draw = result.get("draw") or {}
    keys, correct = draw.get("keys"), draw.get("correct")
    if not keys:
        return problems[0]
    best = max(range(len(problems)), key=lambda i: (any(correct[i]), len(set(keys[i]))))
    return problems[best]


def cmd_contamination(args) -> None:
    from ponder import contamination as c
    from ponder.io import atomic_write_json
    from ponder.recipes import recipe_examples
    from ponder.tasks.mix import TaskMix

    eval_prompts: dict[str, list[str]] = {}
    for p in TaskMix(args.tasks).eval_set(args.per_task):
        eval_prompts.setdefault(p.task, []).append(p.prompt)

    count = recipe_examples("base") if args.train_examples is None else args.train_examples

    def training(bar, job):
        for prompt in c.mix_training_prompts(args.corpus_tasks, count):
            bar.advance(job)
            yield prompt
        for path in args.corpus:
            yield from c.jsonl_texts(path)

    with progress_bar() as bar:  # the base recipe's 192,000 prompts take about 20 s to generate
        job = bar.add_task("training prompts", total=count, info="")
        report = c.check(eval_prompts, training(bar, job), n=args.n)
    table = Table(title=f"{args.n}-gram overlap of eval prompts with {report.training_texts} training texts")
    for col in ("task", "eval prompts", "contaminated", "share", "mean overlap"):
        table.add_column(col, justify="right")
    for o in report.by_task.values():
        table.add_row(o.task, str(o.prompts), str(o.contaminated), f"{o.fraction:.2%}", f"{o.mean_overlap:.3f}")
    console.print(table)
    if args.json:
        atomic_write_json(args.json, report.to_json())
    try:
        report.raise_if_above(args.threshold)
    except c.ContaminationError as e:
        console.print(f"[bold red]{e}[/]")
        raise SystemExit(3)
    console.print(f"[green]clean[/]: no task above {args.threshold:.1%}")
