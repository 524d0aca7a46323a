"""The jobs more than one command runs, with their progress bars and tables: a held-out eval
(`ponder eval`, the demo's first stage), an RL run (`ponder rl`, the demo's second) and a scaling
sweep (`ponder scale`, the demo's third). Command modules share these instead of importing each
other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ponder.cli.args import require_count
from ponder.cli.console import before_after_table, console, points_table, progress_bar
from ponder.tasks.mix import DEFAULT_MIX


@dataclass
class HeldOutOptions:
    """Which held-out problems a model answers, and how long it may answer (eval, demo)."""

    tasks: str = field(default=DEFAULT_MIX, metadata={"help": "task mix"})
    per_task: int = field(default=20, metadata={"help": "held-out problems per task and difficulty"})
    max_tokens: int = field(default=256, metadata={"help": "tokens per answer at most"})

    def __post_init__(self):
        require_count("per_task", self.per_task, "held-out problems per task and difficulty")


def run_eval(model_dir, held: HeldOutOptions, label: str, force_thinking: bool = False):
    """Greedy answers of `model_dir` on the held-out set, with a progress bar; the EvalReport."""
    from ponder import model as models
    from ponder.engine import Engine, SamplingParams
    from ponder.evals import evaluate
    from ponder.tasks.mix import TaskMix

    model, tokenizer = models.load(model_dir)
    problems = TaskMix(held.tasks).eval_set(held.per_task)
    with progress_bar() as bar:
        job = bar.add_task(f"eval {label}", total=len(problems), info="greedy")
        return evaluate(
            Engine(model, tokenizer),
            problems,
            SamplingParams(temperature=0.0, max_tokens=held.max_tokens, force_thinking=force_thinking),
            progress=lambda k: bar.advance(job, k),
        )


def run_rl(cfg, resume: bool = False) -> Path:
    """Train with a live progress line, then print before/after and write the run report."""
    from ponder.rl.report import read_metrics, write_rl_report
    from ponder.train.rl import train_rl

    with progress_bar() as bar:
        job = bar.add_task(f"rl {cfg.algorithm}", total=cfg.steps, info="")

        def on_step(m: dict) -> None:
            if "eval_accuracy" in m:
                console.print(f"step {m['step']:>4}  held-out greedy accuracy {m['eval_accuracy']:.1%}")
                return
            info = (
                f"reward {m['reward']:.2f}  acc {m['accuracy']:.2f}  len {m['response_len']:.0f}  "
                f"gen {m['gen_s']:.1f}s train {m['train_s']:.1f}s"
            )
            bar.update(job, completed=m["step"], info=info)

        out = train_rl(cfg, resume=resume, on_step=on_step)
    run_dir = Path(cfg.out)
    _, evals = read_metrics(run_dir)
    console.print(before_after_table(evals[0], evals[-1]))
    report = write_rl_report(run_dir)
    console.print(f"policy saved to [bold]{out}[/]; metrics in {run_dir / 'metrics.jsonl'}; report {report}")
    return out


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


def _histogram_problem(problems, result):
    """The prompt whose samples disagree most while some are right: the most telling distribution."""
    draw = result.get("draw") or {}
    keys, correct = draw.get("keys"), draw.get("correct")
    if not keys:
        return problems[0]
    best = max(range(len(problems)), key=lambda i: (any(correct[i]), len(set(keys[i]))))
    return problems[best]
