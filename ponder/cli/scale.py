"""`ponder scale`: accuracy against test-time compute, one curve per strategy.

ponder scale --model DIR --per-task 20 --max-n 16 --verifier runs/verifier --out runs/scale
    every strategy at every compute level -> runs/scale/{scale.json, scaling.png, histogram.png, report.html}
ponder scale --model DIR --effort
    low / medium / high / auto side by side: accuracy and tokens, one table
ponder scale --tools calculator,search --tasks arithmetic:4-5,lookup:1-3
    the sweep without and with the tools on the same problems, curves side by side, and each curve's
    accuracy per doubling of tokens (no --model: the shipped tool model)

The sweep's own settings (`--max-n`, `--strategies`, `--budgets`, ...) are ScaleConfig's fields.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from ponder.cli.args import add_config_flags, build_config, require_count
from ponder.cli.console import console, progress_bar, table
from ponder.cli.runs import DeviceOptions, ToolOptions, default_model, run_sweep, run_tool_sweeps
from ponder.tasks.mix import DEFAULT_MIX


@dataclass
class ScaleOptions(ToolOptions, DeviceOptions):
    """What `ponder scale` measures and where it writes; how it samples is ScaleConfig. With `tools`,
    the sweep runs without and with them (with `effort`: the presets run with them)."""

    model: str | None = field(
        default=None, metadata={"help": "model directory; none = the shipped base (with --tools: the tool model)"}
    )
    tasks: str = field(default=DEFAULT_MIX, metadata={"help": "task mix"})
    per_task: int = field(default=20, metadata={"help": "held-out problems per task and difficulty"})
    verifier: str | None = field(
        default=None,
        metadata={
            "help": "learned verifier directory: loaded if it exists, else trained from --model and saved there; "
            "none = no verifier curves"
        },
    )
    effort: bool = field(default=False, metadata={"help": "compare the reasoning_effort presets instead"})
    out: str = field(default="runs/scale", metadata={"help": "run directory for JSON, charts and report.html"})

    def __post_init__(self):
        require_count("per_task", self.per_task, "held-out problems per task and difficulty")


def register(sub) -> None:
    from ponder.ttc.scale import ScaleConfig

    p = sub.add_parser("scale", help="accuracy against test-time compute, one curve per strategy")
    add_config_flags(p, ScaleOptions, ScaleConfig)
    p.set_defaults(handler=run)


def run(args) -> None:
    from ponder.evals import ToolEngine
    from ponder.tasks.mix import TaskMix
    from ponder.ttc.scale import ScaleConfig

    options, cfg = build_config(ScaleOptions, args), build_config(ScaleConfig, args)
    tools = options.loop()  # unknown tool names fail before the model loads
    model_dir, engine = _load(options)
    problems = TaskMix(options.tasks).eval_set(options.per_task)
    command = "ponder " + " ".join(sys.argv[1:])
    if options.effort:
        engine = engine if tools is None else ToolEngine(engine, tools)
        _compare_efforts(engine, problems, cfg.seed, Path(options.out), command, model_dir)
        return
    verifier = _verifier(options, cfg.seed, model_dir)
    if tools is not None:
        run_tool_sweeps(engine, tools, problems, cfg, options.out, command, model_dir, verifier, options.verifier)
        return
    run_sweep(engine, problems, cfg, options.out, command, model_dir, verifier, options.verifier)


def _load(options: ScaleOptions):
    from ponder import model as models
    from ponder.engine import Engine
    from ponder.train.lm import resolve_device

    model_dir = default_model(options.model, options.tools)
    model, tokenizer = models.load(model_dir, device=resolve_device(options.device))
    return model_dir, Engine(model, tokenizer)


def _compare_efforts(engine, problems, seed: int, out: Path, command: str, model_dir) -> None:
    """`--effort`: the reasoning_effort presets side by side, and whether they are ordered as promised."""
    from ponder.io import atomic_write_json
    from ponder.ttc import scale

    with progress_bar() as bar:
        job = bar.add_task("efforts", total=None, info="")
        rows = scale.compare_efforts(engine, problems, seed=seed, progress=lambda k: bar.advance(job, k))
    cells = [
        (
            r["effort"],
            f"{r['accuracy']:.1%}",
            f"{r['tokens_per_problem']:.0f}",
            f"{r['samples_per_problem']:.1f}",
            f"{r['wall_s']:.0f}",
        )
        for r in rows
    ]
    columns = ("effort", "accuracy", "tokens/problem", "samples/problem", "wall s")
    console.print(table(f"reasoning_effort on {len(problems)} held-out problems, {model_dir}", columns, cells))
    by = {r["effort"]: r for r in rows}
    ordered = all(
        by[a][m] > by[b][m] for a, b in (("high", "medium"), ("medium", "low")) for m in ("accuracy", "tokens")
    )
    console.print(f"high > medium > low in accuracy and tokens: [bold]{'yes' if ordered else 'NO'}[/]")
    atomic_write_json(out / "effort.json", {"command": command, "model": str(model_dir), "efforts": rows})
    console.print(f"written to {out / 'effort.json'}")


def _verifier(options: ScaleOptions, seed: int, model_dir):
    """The learned verifier of `--verifier`: loaded, or trained from the model and saved there."""
    from ponder.ttc.verifier import Verifier, VerifierConfig, train_verifier

    if not options.verifier:
        return None
    if (Path(options.verifier) / "config.json").is_file():
        v = Verifier.load(options.verifier)
    else:
        cfg = VerifierConfig(policy=str(model_dir), out=options.verifier, tasks=options.tasks, seed=seed)
        with progress_bar() as bar:
            job = bar.add_task("verifier rollouts", total=cfg.problems * cfg.samples, info="")

            def on_step(m):
                bar.update(job, description="verifier fit", completed=m["step"], total=m["total_steps"])
                bar.update(job, info=f"loss {m['loss']:.3f}")

            v = train_verifier(cfg, on_step=on_step, progress=lambda k: bar.advance(job, k))
    console.print(
        f"verifier {options.verifier}: held-out AUC {v.meta.get('heldout_auc')}, "
        f"{v.meta.get('rollouts')} rollouts, {v.meta.get('positive_rate', 0):.1%} correct"
    )
    return v
