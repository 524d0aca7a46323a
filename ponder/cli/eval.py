"""`ponder eval`: held-out accuracy per task, tokens per answer, how often the model thinks."""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.cli.args import add_config_flags, build_config
from ponder.cli.console import console, eval_table
from ponder.cli.runs import HeldOutOptions, run_eval


@dataclass
class EvalOptions(HeldOutOptions):
    model: str | None = field(default=None, metadata={"help": "model directory; none = the shipped base"})
    json: str | None = field(
        default=None, metadata={"help": "write the report (and every completion) to this JSON file"}
    )
    force_thinking: bool = field(
        default=False,
        metadata={"help": "the model may not skip its thinking (it must work each problem out; reasoning_effort high)"},
    )


def register(sub) -> None:
    p = sub.add_parser("eval", help="held-out accuracy per task")
    add_config_flags(p, EvalOptions)
    p.set_defaults(handler=run)


def run(args) -> None:
    from ponder.assets import base_model_path

    options = build_config(EvalOptions, args)
    model_dir = options.model or base_model_path()
    report = run_eval(model_dir, options, "model", options.force_thinking)
    mode = ", thinking on" if options.force_thinking else ""
    console.print(eval_table(f"held-out accuracy{mode}, {model_dir}", {"model": report}))
    console.print(f"{report.problems} problems, {report.tokens} tokens, {report.wall_s:.1f} s")
    if options.json:
        from ponder.io import atomic_write_json

        atomic_write_json(options.json, {**report.to_json(), "samples": report.samples})
        console.print(f"JSON written to {options.json}")
