"""`ponder <command>`: thin wrappers over the library that render progress and tables.

ponder demo                       the shipped base: evaluate it, RL it, trade compute for accuracy
ponder pretrain --recipe base     reproduce the shipped base model from scratch
ponder sft --init DIR             supervised fine-tuning (loss on the answer only)
ponder eval --model DIR           held-out accuracy per task
ponder chat --model DIR           talk to a model in the terminal
ponder scale --model DIR          accuracy against test-time compute (--effort: low/medium/high/auto)
ponder contamination              n-gram overlap of eval prompts with the training corpora
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ponder.cliargs import add_config_flags, build_config
from ponder.errors import PonderError

console = Console()


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )


# ---------------------------------------------------------------------------------------------------
# pretrain / sft


def cmd_train(args, loss_on: str) -> None:
    from ponder.recipes import RECIPES
    from ponder.train.lm import LMConfig, train_lm

    base = {"loss_on": loss_on, "out": f"runs/{'pretrain' if loss_on == 'all' else 'sft'}"}
    if getattr(args, "recipe", None):
        if args.recipe not in RECIPES:
            raise PonderError(f"unknown --recipe {args.recipe!r}; known: {sorted(RECIPES)}")
        base.update(RECIPES[args.recipe])
    cfg = build_config(LMConfig, args, base)
    if loss_on == "completion" and not cfg.init:
        from ponder.assets import base_model_path

        cfg.init = str(base_model_path())
    with progress_bar() as bar:
        job = bar.add_task("pretrain" if loss_on == "all" else "sft", total=cfg.steps, info="")

        def on_step(m: dict) -> None:
            info = f"loss {m['loss']:.3f}  {m['tokens_per_s']:.0f} tok/s  lr {m['lr']:.1e}"
            bar.update(job, completed=m["step"], info=info)

        out = train_lm(cfg, resume=args.resume, on_step=on_step)
    console.print(f"model saved to [bold]{out}[/]; metrics in {Path(cfg.out) / 'metrics.jsonl'}")


# ---------------------------------------------------------------------------------------------------
# rl


def cmd_rl(args) -> None:
    from ponder.train.rl import RLConfig

    run_rl(build_config(RLConfig, args), resume=args.resume)


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


def before_after_table(before: dict, after: dict) -> Table:
    table = Table(title=f"held-out greedy accuracy: before RL and after {after['step']} steps")
    for column in ("task", "before", "after", "change"):
        table.add_column(column, justify="left" if column == "task" else "right")
    rows = [(t, before["eval_by_task"][t], after["eval_by_task"].get(t, 0.0)) for t in before["eval_by_task"]]
    rows.append(("[bold]overall", before["eval_accuracy"], after["eval_accuracy"]))
    for task, b, a in rows:
        table.add_row(task, f"{b:.1%}", f"{a:.1%}", f"{100 * (a - b):+.1f} pts")
    return table


# ---------------------------------------------------------------------------------------------------
# eval


def eval_table(title: str, reports: dict) -> Table:
    """Columns per model (e.g. before / after RL): accuracy, tokens per answer, and the share of answers
    that worked it out (non-empty thinking); one row per task."""
    table = Table(title=title)
    table.add_column("task")
    for name in reports:
        table.add_column(f"{name} acc", justify="right")
        table.add_column(f"{name} tok/ans", justify="right")
        table.add_column(f"{name} thinks", justify="right")
    tasks = sorted({t for r in reports.values() for t in r.by_task})
    for task in tasks:
        cells = []
        for r in reports.values():
            s = r.by_task.get(task)
            cells += [f"{s.accuracy:.1%}", f"{s.tokens_per_answer:.0f}", f"{s.thinking_share:.0%}"] if s else ["-"] * 3
        table.add_row(task, *cells)
    overall = []
    for r in reports.values():
        overall += [f"[bold]{r.overall:.1%}", f"{r.tokens / max(1, r.problems):.0f}", f"{r.thinking_share:.0%}"]
    table.add_row("[bold]overall", *overall)
    return table


def run_eval(model_dir, tasks: str, per_cell: int, max_tokens: int, label: str, force_thinking: bool = False):
    from ponder import model as models
    from ponder.engine import Engine, SamplingParams
    from ponder.evals import evaluate
    from ponder.tasks.mix import TaskMix

    model, tokenizer = models.load(model_dir)
    problems = TaskMix(tasks).eval_set(per_cell)
    with progress_bar() as bar:
        job = bar.add_task(f"eval {label}", total=len(problems), info="greedy")
        report = evaluate(
            Engine(model, tokenizer),
            problems,
            SamplingParams(temperature=0.0, max_tokens=max_tokens, force_thinking=force_thinking),
            progress=lambda k: bar.advance(job, k),
        )
    return report


def cmd_eval(args) -> None:
    from ponder.assets import base_model_path

    model_dir = args.model or base_model_path()
    report = run_eval(model_dir, args.tasks, args.per_task, args.max_tokens, "model", args.force_thinking)
    mode = ", thinking on" if args.force_thinking else ""
    console.print(eval_table(f"held-out accuracy{mode}, {model_dir}", {"model": report}))
    console.print(f"{report.problems} problems, {report.tokens} tokens, {report.wall_s:.1f} s")
    if args.json:
        from ponder.io import atomic_write_json

        atomic_write_json(args.json, {**report.to_json(), "samples": report.samples})
        console.print(f"JSON written to {args.json}")


# ---------------------------------------------------------------------------------------------------
# chat and demo


def cmd_chat(args) -> None:
    from ponder.chat import chat_loop

    chat_loop(
        args.model, console, max_tokens=args.max_tokens, temperature=args.temperature, effort=args.reasoning_effort
    )


def cmd_demo(args) -> None:
    from ponder.assets import base_model_path
    from ponder.train.rl import RLConfig

    base = base_model_path()
    console.rule("[bold]1) the shipped base model")
    report = run_eval(base, args.tasks, args.per_task, args.max_tokens, "base")
    console.print(eval_table("held-out greedy accuracy of the shipped base", {"base": report}))
    console.print(f"{report.problems} held-out problems, {report.tokens} tokens, {report.wall_s:.1f} s")
    out_dir = Path(args.out)
    model = base
    if args.rl_steps > 0:
        console.rule(f"[bold]2) reinforcement learning: {args.rl_steps} GRPO steps from the base")
        cfg = RLConfig(
            out=str(out_dir / "rl"),
            init=str(base),
            tasks=args.tasks,
            steps=args.rl_steps,
            eval_every=max(1, args.rl_steps // 3),
            eval_per_task=args.per_task,
        )
        run_rl(cfg, resume=(out_dir / "rl" / "checkpoint").exists())
        model = out_dir / "rl" / "model"
    console.rule("[bold]3) test-time compute: accuracy against generated tokens")
    from ponder.cli_ttc import demo_compare

    models = {"base": Path(base), "RL": Path(model)} if model != base else {"base": Path(base)}
    demo_compare(models, args.tasks, out_dir / "scale", args.per_task)


# ---------------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    from ponder.tasks.mix import DEFAULT_MIX
    from ponder.train.lm import LMConfig
    from ponder.train.rl import RLConfig

    ap = argparse.ArgumentParser(prog="ponder", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    def eval_flags(p, per_task=20):
        p.add_argument("--tasks", default=DEFAULT_MIX, help="task mix (default: %(default)s)")
        p.add_argument("--per-task", type=int, default=per_task, help="held-out problems per task and difficulty")
        p.add_argument("--max-tokens", type=int, default=256, help="tokens per answer at most")

    p = sub.add_parser(
        "demo", help="the pipeline in minutes: evaluate the shipped base, RL it, scale its test-time compute"
    )
    eval_flags(p)
    p.add_argument("--rl-steps", type=int, default=60, help="RL steps of the demo's RL stage; 0 = skip it")
    p.add_argument("--out", default="runs/demo", help="run directory of the demo's stages")
    for name, loss_on in (("pretrain", "all"), ("sft", "completion")):
        p = sub.add_parser(name, help=f"next-token training, loss on {loss_on} tokens")
        add_config_flags(p, LMConfig, skip=("loss_on",))
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
        if name == "pretrain":
            p.add_argument("--recipe", help="a named config, e.g. 'base' (the shipped base model)")
    p = sub.add_parser("rl", help="reinforcement learning with verifiable rewards")
    add_config_flags(p, RLConfig)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p = sub.add_parser("eval", help="held-out accuracy per task")
    p.add_argument("--model", help="model directory (default: the shipped base)")
    p.add_argument("--json", help="write the report (and every completion) to this JSON file")
    p.add_argument(
        "--force-thinking",
        action="store_true",
        help="the model may not skip its thinking (it must work each problem out; reasoning_effort high)",
    )
    eval_flags(p)
    p = sub.add_parser("chat", help="talk to a model in the terminal")
    p.add_argument("--model", help="model directory (default: the shipped base)")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument(
        "--reasoning-effort",
        help="low (thinking off) / medium (on, 64 tokens at most) / high (on); sets the temperature too",
    )
    from ponder import cli_ttc

    cli_ttc.add_parsers(sub)  # scale, contamination
    return ap


def main(argv: list[str] | None = None) -> int:
    from ponder import cli_ttc

    args = parser().parse_args(argv)
    commands = {
        "demo": cmd_demo,
        "pretrain": lambda a: cmd_train(a, "all"),
        "sft": lambda a: cmd_train(a, "completion"),
        "rl": cmd_rl,
        "eval": cmd_eval,
        "chat": cmd_chat,
        "scale": cli_ttc.cmd_scale,
        "contamination": cli_ttc.cmd_contamination,
    }
    try:
        commands[args.command](args)
    except PonderError as e:
        console.print(f"[red]error:[/] {e}")
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
