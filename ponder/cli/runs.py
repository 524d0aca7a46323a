"""The jobs more than one command runs, with their progress bars and tables: a held-out eval
(`ponder eval`, the demo's first stage), an RL run (`ponder rl`, the demo's second) and a scaling
sweep (`ponder scale`, the demo's third). Command modules share these instead of importing each
other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ponder.cli.args import require_count
from ponder.cli.console import before_after_table, console, points_table, progress_bar, table
from ponder.tasks.mix import DEFAULT_MIX


@dataclass
class HeldOutOptions:
    """Which held-out problems a model answers, and how long it may answer (eval, demo)."""

    tasks: str = field(default=DEFAULT_MIX, metadata={"help": "task mix"})
    per_task: int = field(default=20, metadata={"help": "held-out problems per task and difficulty"})
    max_tokens: int = field(default=256, metadata={"help": "tokens per answer at most"})

    def __post_init__(self):
        require_count("per_task", self.per_task, "held-out problems per task and difficulty")


@dataclass
class ToolOptions:
    """Which tools a model may call inside its thinking (eval, scale, chat, demo)."""

    tools: str = field(default="", metadata={"help": "tools the model may call, e.g. 'calculator,search'; '' = none"})
    max_tool_calls: int = field(default=4, metadata={"help": "tool calls per answer; later calls are refused"})
    tool_fault_rate: float = field(
        default=0.0, metadata={"help": "share of tool calls made to fail or time out (a flaky deployment)"}
    )

    def loop(self):
        """The tool loop (None when no tools are named); unknown names fail listing the known ones."""
        from ponder.evals import tool_loop

        return tool_loop(self.tools, self.max_tool_calls, self.tool_fault_rate)


@dataclass
class DeviceOptions:
    """Where a command's model runs (eval, chat, scale); pretrain, sft and rl take `device` from
    their configs, serve from its options."""

    device: str = field(default="auto", metadata={"help": "auto (the GPU when there is one), cpu or cuda"})


def default_model(model: str | None, tools: str = "") -> Path:
    """The model a command runs: `model` if given, else the shipped tool model when tools are named
    (the base was never trained to call them), else the shipped base."""
    from ponder.assets import base_model_path, tools_model_path

    if model:
        return Path(model)
    return tools_model_path() if tools.strip() else base_model_path()


def run_eval(
    model_dir, held: HeldOutOptions, label: str, force_thinking: bool = False, tools=None, samples: int = 1,
    temperature: float = 0.0, device: str = "cpu",
):  # fmt: skip
    """Answers of `model_dir` on the held-out set (greedy, or `samples` per problem at `temperature`),
    calling `tools` (a ToolLoop) if given, on `device` (auto, cpu, cuda), with a progress bar; the EvalReport."""
    from ponder import model as models
    from ponder.engine import Engine, SamplingParams
    from ponder.evals import evaluate
    from ponder.tasks.mix import TaskMix
    from ponder.train.lm import resolve_device

    model, tokenizer = models.load(model_dir, device=resolve_device(device))
    problems = TaskMix(held.tasks).eval_set(held.per_task)
    how = "greedy" if samples == 1 and temperature == 0 else f"{samples} samples, T={temperature:g}"
    with progress_bar() as bar:
        job = bar.add_task(f"eval {label}", total=len(problems) * samples, info=how)
        params = SamplingParams(
            n=samples, temperature=temperature, max_tokens=held.max_tokens, force_thinking=force_thinking
        )
        return evaluate(Engine(model, tokenizer), problems, params, lambda k: bar.advance(job, k), tools)


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
            if "mfu" in m:
                info += f"  MFU {m['mfu']:.1%}"
            if "tool_calls" in m:
                info += f"  calls {m['tool_calls']:.2f} err {m['tool_errors']:.0%} void {m['void_turns']:.0%}"
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


def run_tool_sweeps(
    engine, tools, problems, cfg, out, command: str, model_dir, verifier=None, verifier_path=None
) -> dict:
    """The sweep without and with `tools` (a ToolLoop) on the same problems, each written to
    out/{no_tools,tools}; the two curves printed side by side with each curve's accuracy per doubling
    of tokens (least squares on log2 tokens); out/tools.json holds both (`ponder scale --tools`, the
    demo's tools stage)."""
    from ponder.evals import ToolEngine
    from ponder.io import atomic_write_json
    from ponder.ttc.scale import doubling_gains

    engines = {"no tools": engine, "tools": ToolEngine(engine, tools)}
    results = {
        label: run_sweep(e, problems, cfg, Path(out) / label.replace(" ", "_"), command, model_dir, verifier,
                         verifier_path, table=False)
        for label, e in engines.items()
    }  # fmt: skip
    console.print(curves_table(results, f"{len(problems)} held-out problems, {model_dir}"))
    gains = doubling_gains(results)
    console.print(gains_table(gains))
    summary = {
        "command": command,
        "model": str(model_dir),
        "tools": sorted(tools.tools),
        "points": {label: r["points"] for label, r in results.items()},
        "accuracy_per_doubling": gains,
    }
    atomic_write_json(Path(out) / "tools.json", summary)
    console.print(f"written to {Path(out) / 'tools.json'}")
    return results


def curves_table(results: dict[str, dict], where: str):
    """Every point of the sweeps in `results` (label -> sweep result) side by side: accuracy and
    tokens per problem under each label, one row per (strategy, level)."""
    keys = list(dict.fromkeys((p["strategy"], p["level"]) for r in results.values() for p in r["points"]))
    rows = []
    for strategy, level in keys:
        row = [strategy, f"{level:g}"]
        for r in results.values():
            found = [p for p in r["points"] if (p["strategy"], p["level"]) == (strategy, level)]
            row.append(f"{found[0]['accuracy']:.1%}  {found[0]['tokens_per_problem']:.0f}" if found else "-")
        rows.append(row)
    return table(f"accuracy and tokens per problem, {where}", ("strategy", "level", *results), rows, left=2)


def gains_table(gains: dict[str, dict[str, float | None]]):
    """Accuracy points gained per doubling of tokens, per curve and label."""
    labels = list(dict.fromkeys(label for g in gains.values() for label in g))
    rows = [
        [strategy, *(f"{100 * g[label]:+.1f}" if g.get(label) is not None else "-" for label in labels)]
        for strategy, g in gains.items()
    ]
    return table("accuracy points per doubling of tokens (least squares on log2 tokens)", ("curve", *labels), rows, 1)


def _histogram_problem(problems, result):
    """The prompt whose samples disagree most while some are right: the most telling distribution."""
    draw = result.get("draw") or {}
    keys, correct = draw.get("keys"), draw.get("correct")
    if not keys:
        return problems[0]
    best = max(range(len(problems)), key=lambda i: (any(correct[i]), len(set(keys[i]))))
    return problems[best]
