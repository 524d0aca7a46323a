"""`ponder eval`: held-out accuracy per task, tokens per answer, how often the model thinks.

ponder eval --model DIR                                   greedy, one answer per problem
ponder eval --tools calculator,search --tasks arithmetic:4-5,lookup
    the same problems without and with the tools, side by side (no --model: the shipped tool model)
ponder eval --samples 8 --tools calculator
    k = 8 samples per problem: pass@k (some sample right) and pass^k (all right) per task and level
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.cli.args import add_config_flags, build_config, require_count
from ponder.cli.console import console, eval_table, table
from ponder.cli.runs import DeviceOptions, HeldOutOptions, ToolOptions, default_model, run_eval


@dataclass
class EvalOptions(HeldOutOptions, ToolOptions, DeviceOptions):
    model: str | None = field(
        default=None, metadata={"help": "model directory; none = the shipped base (with --tools: the tool model)"}
    )
    json: str | None = field(
        default=None, metadata={"help": "write the report (and every completion) to this JSON file"}
    )
    force_thinking: bool = field(
        default=False,
        metadata={"help": "the model may not skip its thinking (it must work each problem out; reasoning_effort high)"},
    )
    samples: int = field(
        default=1, metadata={"help": "samples per problem (k); above 1, pass@k and pass^k per task and level"}
    )
    temperature: float | None = field(
        default=None, metadata={"help": "sampling temperature; none = 0 (greedy) for one sample, 1.0 for several"}
    )

    def __post_init__(self):
        super().__post_init__()
        require_count("samples", self.samples, "samples per problem")
        if self.temperature is None:
            self.temperature = 0.0 if self.samples == 1 else 1.0


def register(sub) -> None:
    p = sub.add_parser("eval", help="held-out accuracy per task (with --tools: without and with them)")
    add_config_flags(p, EvalOptions)
    p.set_defaults(handler=run)


def run(args) -> None:
    options = build_config(EvalOptions, args)
    loop = options.loop()  # unknown tool names fail before the model loads
    model_dir = default_model(options.model, options.tools)
    evaluate = dict(
        force_thinking=options.force_thinking, samples=options.samples, temperature=options.temperature,
        device=options.device,
    )  # fmt: skip
    reports = {"no tools": run_eval(model_dir, options, "no tools", **evaluate)}
    if loop is not None:
        reports["tools"] = run_eval(model_dir, options, "tools", tools=loop, **evaluate)
    mode = ", thinking on" if options.force_thinking else ""
    mode += f", without and with {options.tools}" if loop is not None else ""
    how = "greedy" if options.samples == 1 and options.temperature == 0 else f"T={options.temperature:g}"
    labels = {"model": reports["no tools"]} if loop is None else reports
    console.print(eval_table(f"held-out accuracy ({how}{mode}), {model_dir}", labels))
    for label, report in reports.items():
        calls = f", {report.calls_per_answer:.2f} tool calls per answer" if loop is not None else ""
        console.print(f"{label}: {report.problems} problems, {report.tokens} tokens, {report.wall_s:.1f} s{calls}")
    if options.samples > 1:
        console.print(pass_table(reports, options.samples, options.tools))
    if options.json:
        from ponder.io import atomic_write_json

        first, *rest = reports.values()
        extra = {"with_tools": {**rest[0].to_json(), "samples": rest[0].samples}} if rest else {}
        atomic_write_json(options.json, {**first.to_json(), "samples": first.samples, **extra})
        console.print(f"JSON written to {options.json}")


def pass_table(reports: dict, k: int, tools: str = ""):
    """Per task and difficulty, for each report: pass@k (some of the k samples right) and pass^k
    (every one right). pass^k is what a user who asks once gets every time."""
    rates = {label: report.pass_rates() for label, report in reports.items()}
    cells = sorted({cell for r in rates.values() for cell in r})
    columns = ["task", "level", "problems"]
    for label in reports:
        columns += [f"{label} pass@{k}", f"{label} pass^{k}"]
    rows = []
    for task, level in cells:
        found = [r[(task, level)] for r in rates.values() if (task, level) in r]
        row = [task, str(level), str(found[0].problems)]
        for r in rates.values():
            c = r.get((task, level))
            row += [f"{c.pass_at_k:.1%}", f"{c.pass_hat_k:.1%}"] if c else ["-", "-"]
        rows.append(row)
    where = f", without and with {tools}" if len(reports) > 1 else ""
    return table(f"pass@{k} and pass^{k} per task and difficulty{where}", columns, rows, left=2)
