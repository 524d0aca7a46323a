"""`ponder contamination`: n-gram overlap of the eval prompts with the training corpora.

ponder contamination --tasks MIX --train-examples 32000 [--corpus extra.jsonl]
    one row per task; exit 3 when a task's share of contaminated prompts is above --threshold
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.cli.args import add_config_flags, build_config, require_count
from ponder.cli.console import console, progress_bar, table
from ponder.tasks.mix import CORPUS_MIX, DEFAULT_MIX


@dataclass
class ContaminationOptions:
    tasks: str = field(default=DEFAULT_MIX, metadata={"help": "task mix of the eval set"})
    corpus_tasks: str = field(default=CORPUS_MIX, metadata={"help": "task mix of the pretraining corpus"})
    per_task: int = field(default=200, metadata={"help": "eval prompts per task and difficulty"})
    train_examples: int | None = field(
        default=None,
        metadata={"help": "corpus examples the model trained on (steps x batch); none = the base recipe's, 6000 x 32"},
    )
    corpus: tuple[str, ...] = field(
        default=(), metadata={"help": "extra training JSONL files (repeatable, or comma-separated)"}
    )
    n: int = field(default=8, metadata={"help": "n-gram size in words (shorter prompts: whole prompt)"})
    threshold: float = field(default=0.0, metadata={"help": "largest allowed share of contaminated prompts per task"})
    json: str | None = field(default=None, metadata={"help": "write the report to this JSON file"})

    def __post_init__(self):
        require_count("per_task", self.per_task, "eval prompts per task and difficulty")


def register(sub) -> None:
    p = sub.add_parser("contamination", help="n-gram overlap of eval prompts with the training corpora")
    add_config_flags(p, ContaminationOptions)
    p.set_defaults(handler=run)


def run(args) -> None:
    from ponder import contamination as c
    from ponder.io import atomic_write_json
    from ponder.recipes import recipe_examples
    from ponder.tasks.mix import TaskMix

    options = build_config(ContaminationOptions, args)
    eval_prompts: dict[str, list[str]] = {}
    for p in TaskMix(options.tasks).eval_set(options.per_task):
        eval_prompts.setdefault(p.task, []).append(p.prompt)
    count = recipe_examples("base") if options.train_examples is None else options.train_examples

    def training(bar, job):
        for prompt in c.mix_training_prompts(options.corpus_tasks, count):
            bar.advance(job)
            yield prompt
        for path in options.corpus:
            yield from c.jsonl_texts(path)

    with progress_bar() as bar:  # the base recipe's 192,000 prompts take about 20 s to generate
        job = bar.add_task("training prompts", total=count, info="")
        report = c.check(eval_prompts, training(bar, job), n=options.n)
    rows = [
        (o.task, str(o.prompts), str(o.contaminated), f"{o.fraction:.2%}", f"{o.mean_overlap:.3f}")
        for o in report.by_task.values()
    ]
    title = f"{options.n}-gram overlap of eval prompts with {report.training_texts} training texts"
    console.print(table(title, ("task", "eval prompts", "contaminated", "share", "mean overlap"), rows))
    if options.json:
        atomic_write_json(options.json, report.to_json())
    try:
        report.raise_if_above(options.threshold)
    except c.ContaminationError as e:
        console.print(f"[bold red]{e}[/]")
        raise SystemExit(3)
    console.print(f"[green]clean[/]: no task above {options.threshold:.1%}")
