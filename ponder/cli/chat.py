"""`ponder chat`: a terminal REPL. The thinking is shown dimmed, then the answer in bold.

With `--tools calculator,search` the model may call them inside its thinking; the calls and the
responses the tools wrote show in the dimmed thinking (no --model: the shipped tool model)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.cli.args import add_config_flags, build_config
from ponder.cli.console import console
from ponder.cli.runs import DeviceOptions, ToolOptions, default_model


@dataclass
class ChatOptions(ToolOptions, DeviceOptions):
    model: str | None = field(
        default=None, metadata={"help": "model directory; none = the shipped base (with --tools: the tool model)"}
    )
    max_tokens: int = field(
        default=256, metadata={"help": "tokens per answer at most (a reasoning_effort preset may allow more)"}
    )
    temperature: float = field(default=0.0, metadata={"help": "sampling temperature; 0 = greedy"})
    reasoning_effort: str | None = field(
        default=None,
        metadata={"help": "low (thinking off) / medium (on, 64 tokens at most) / high (on); sets the temperature too"},
    )


def register(sub) -> None:
    p = sub.add_parser("chat", help="talk to a model in the terminal")
    add_config_flags(p, ChatOptions)
    p.set_defaults(handler=run)


def run(args) -> None:
    chat_loop(build_config(ChatOptions, args))


def chat_params(options: ChatOptions):
    """What one chat answer samples with: the flags, or a `reasoning_effort` preset's thinking
    (low = off, medium = on within 64 tokens, high = on), which then sets the temperature too.
    auto samples several answers (see `answer`); its preset's params are the samples' rule."""
    from ponder.engine import SamplingParams

    if not options.reasoning_effort:
        return SamplingParams(temperature=options.temperature, max_tokens=options.max_tokens)
    from ponder.ttc.effort import resolve_effort

    params = resolve_effort(options.reasoning_effort).params()
    params.max_tokens = max(options.max_tokens, params.max_tokens)
    return params


def answer(engine, question: str, params, effort: str | None = None):
    """One question, one answer: the parsed thinking and answer. With a `reasoning_effort`, the
    preset's strategy runs on the question as on a task problem (auto: greedy with thinking on, then
    samples until their answers agree; votes by the normalised answer text)."""
    from ponder.ttc.effort import resolve_effort, run_effort
    from ponder.ttc.questions import Question

    if effort:
        preset = resolve_effort(effort)
        return run_effort(engine, [Question(question)], preset)[0].rollout.parsed
    return engine.generate([engine.format.prompt(question)], params)[0][0].parsed


def chat_loop(options: ChatOptions) -> None:
    """Read questions until an empty line or end of input; print each thinking dimmed, then the answer."""
    from ponder import model as models
    from ponder.engine import Engine
    from ponder.evals import ToolEngine
    from ponder.train.lm import resolve_device

    params = chat_params(options)  # a bad effort fails before the model loads
    tools = options.loop()  # and so do unknown tool names
    model_dir = default_model(options.model, options.tools)
    model, tokenizer = models.load(model_dir, device=resolve_device(options.device))
    engine = Engine(model, tokenizer) if tools is None else ToolEngine(Engine(model, tokenizer), tools)
    mode = f", reasoning_effort {options.reasoning_effort}" if options.reasoning_effort else ""
    mode += f", tools {options.tools}" if tools is not None else ""
    console.print(f"[bold]ponder chat[/] with {model_dir}{mode}. Ask a question; empty line or Ctrl-D quits.")
    while True:
        try:
            question = console.input("[bold cyan]you>[/] ").strip()
        except EOFError:
            break
        if not question:
            break
        parsed = answer(engine, question, params, options.reasoning_effort)
        console.print(f"[dim]{parsed.thinking}[/]")
        reply = parsed.answer if parsed.closed_thinking else "(no answer: the thinking ran out of tokens)"
        console.print(f"[bold green]ponder>[/] [bold]{reply}[/]")
