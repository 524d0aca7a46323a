"""`ponder demo`: the pipeline in minutes on the shipped base model.

1) evaluate the base on held-out problems, 2) improve it with a short GRPO run (before / after and
the run report), 3) spend test-time compute on the base and the RL model, one table side by side,
4) tools inside the thinking: the shipped tool model without and with the calculator and search,
accuracy and the two test-time curves side by side.
Each stage is the job its own command runs (ponder eval, rl, scale), from ponder.cli.runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ponder.cli.args import add_config_flags, build_config
from ponder.cli.console import console, eval_table, table
from ponder.cli.runs import HeldOutOptions, run_eval, run_rl, run_sweep, run_tool_sweeps

# stage 3's sweep: about 11 s a model on 2 CPU cores at the default 20 per task (200 problems; runs/v4_demo)
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
DEMO_MAX_N = 8
# stage 4: the vote's curve (and its oracle ceiling) without and with tools, on what the tool model knows
DEMO_TOOL_STRATEGIES = ("greedy", "sample", "majority", "best_of_n:oracle")
DEMO_TOOL_TASKS = "arithmetic:4-5,lookup:1-3"

# the rows of the demo's side-by-side table: (label, strategy, level; None = the largest level)
DEMO_ROWS = (
    ("greedy", "greedy", 1),
    ("greedy, thinking on", "greedy:thinking", 1),
    ("one sample", "sample", 1),
    ("majority of 8", "majority", 8),
    ("pass@8 (oracle)", "best_of_n:oracle", 8),
    ("auto effort", "auto_effort", None),
)


@dataclass
class DemoOptions(HeldOutOptions):
    rl_steps: int = field(default=60, metadata={"help": "RL steps of the demo's RL stage; 0 = skip it"})
    out: str = field(default="runs/demo", metadata={"help": "run directory of the demo's stages"})
    tools: str = field(
        default="calculator,search",
        metadata={"help": "tools of stage 4 (the shipped tool model without and with them); '' = skip it"},
    )
    tool_tasks: str = field(default=DEMO_TOOL_TASKS, metadata={"help": "task mix of stage 4"})


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="the pipeline in minutes: evaluate the shipped base, RL it, scale its test-time compute"
    )
    add_config_flags(p, DemoOptions)
    p.set_defaults(handler=run)


def run(args) -> None:
    from ponder.assets import base_model_path
    from ponder.train.rl import RLConfig

    options = build_config(DemoOptions, args)
    base = base_model_path()
    console.rule("[bold]1) the shipped base model")
    report = run_eval(base, options, "base")
    console.print(eval_table("held-out greedy accuracy of the shipped base", {"base": report}))
    console.print(f"{report.problems} held-out problems, {report.tokens} tokens, {report.wall_s:.1f} s")
    out_dir = Path(options.out)
    models = {"base": Path(base)}
    if options.rl_steps > 0:
        console.rule(f"[bold]2) reinforcement learning: {options.rl_steps} GRPO steps from the base")
        cfg = RLConfig(
            out=str(out_dir / "rl"),
            init=str(base),
            tasks=options.tasks,
            steps=options.rl_steps,
            eval_every=max(1, options.rl_steps // 3),
            eval_per_task=options.per_task,
        )
        run_rl(cfg, resume=(out_dir / "rl" / "checkpoint").exists())
        models["RL"] = out_dir / "rl" / "model"
    console.rule("[bold]3) test-time compute: accuracy against generated tokens")
    demo_compare(models, options.tasks, out_dir / "scale", options.per_task)
    if options.tools.strip():
        console.rule(f"[bold]4) tools inside the thinking: the shipped tool model without and with {options.tools}")
        demo_tools(options, out_dir / "tools")


def demo_compare(models: dict[str, Path], tasks: str, out: Path, per_task: int) -> dict:
    """Stage 3: the small sweep on each model (the base and the RL-trained one), a report each under
    out/<label>, and one table side by side: where test-time compute pays on a model that often
    skips its thinking, and what RL already moved into its greedy answer."""
    from ponder.ttc.scale import point_at

    results = {label: demo_scale(path, tasks, out / label, per_task) for label, path in models.items()}
    count = next(iter(results.values()))["problems"]
    rows = []
    for name, strategy, level in DEMO_ROWS:
        cells = [name]
        for result in results.values():
            found = point_at(result["points"], strategy, level)
            cells.append(f"{found['accuracy']:.1%}  {found['tokens_per_problem']:.0f}" if found else "-")
        rows.append(cells)
    title = f"test-time compute on {count} held-out problems: accuracy and tokens per problem"
    console.print(table(title, ("strategy", *results), rows, left=1))
    return results


def demo_scale(model_dir, tasks: str, out, per_task: int) -> dict:
    """A small sweep of `model_dir` (greedy, majority at n = 1..8, budget forcing, auto effort), its
    chart and report written to `out` (its table left to `demo_compare`)."""
    from ponder import model as models
    from ponder.engine import Engine
    from ponder.tasks.mix import TaskMix
    from ponder.ttc.scale import ScaleConfig

    model, tokenizer = models.load(model_dir)
    problems = TaskMix(tasks).eval_set(per_task)
    cfg = ScaleConfig(max_n=DEMO_MAX_N, strategies=DEMO_STRATEGIES, budgets=DEMO_BUDGETS)
    command = (
        f"ponder scale --model {model_dir} --tasks {tasks} --per-task {per_task} --max-n {DEMO_MAX_N} (demo stage)"
    )
    return run_sweep(Engine(model, tokenizer), problems, cfg, out, command, model_dir, table=False)


def demo_tools(options: DemoOptions, out: Path) -> dict:
    """Stage 4: the shipped tool model on `tool_tasks` (arithmetic past the levels its hand-worked
    traces reach, facts only the search collection holds): greedy accuracy without and with the tools,
    then the vote's test-time curve without and with them, side by side, with each curve's accuracy
    per doubling of tokens."""
    from ponder import model as models
    from ponder.assets import tools_model_path
    from ponder.engine import Engine
    from ponder.evals import tool_loop
    from ponder.tasks.mix import TaskMix
    from ponder.ttc.scale import ScaleConfig

    tools, model_dir = tool_loop(options.tools), tools_model_path()
    held = HeldOutOptions(tasks=options.tool_tasks, per_task=options.per_task, max_tokens=options.max_tokens)
    reports = {label: run_eval(model_dir, held, label, tools=t) for label, t in (("no tools", None), ("tools", tools))}
    title = f"held-out greedy accuracy of the tool model, without and with {options.tools}"
    console.print(eval_table(title, reports))
    cfg = ScaleConfig(max_n=DEMO_MAX_N, strategies=DEMO_TOOL_STRATEGIES)
    command = (
        f"ponder scale --tools {options.tools} --tasks {options.tool_tasks} --per-task {options.per_task} "
        f"--max-n {DEMO_MAX_N} --strategies {','.join(DEMO_TOOL_STRATEGIES)} (demo stage)"
    )
    engine = Engine(*models.load(model_dir))
    problems = TaskMix(options.tool_tasks).eval_set(options.per_task)
    return run_tool_sweeps(engine, tools, problems, cfg, out, command, model_dir)
