"""`ponder chat`: a terminal REPL. The thinking is shown dimmed, then the answer in bold."""

from __future__ import annotations

from rich.console import Console

from ponder import model as models
from ponder.engine import Engine, SamplingParams
from ponder.errors import PonderError
from ponder.format import render_prompt


def chat_params(max_tokens: int = 256, temperature: float = 0.0, effort: str | None = None) -> SamplingParams:
    """What one chat answer samples with: the flags, or a `reasoning_effort` preset's thinking
    (low = off, medium = on within 64 tokens, high = on), which then sets the temperature too."""
    if not effort:
        return SamplingParams(temperature=temperature, max_tokens=max_tokens)
    from ponder.ttc.effort import resolve_effort

    preset = resolve_effort(effort)
    if preset.samples > 1:
        raise PonderError(
            f"reasoning_effort {preset.name!r} votes over samples by a task's answer keys, and a chat "
            "question has no task: use low, medium or high here (ponder scale --effort measures auto)"
        )
    params = preset.params()
    params.max_tokens = max(max_tokens, params.max_tokens)
    return params


def chat_loop(
    model_dir, console: Console, max_tokens: int = 256, temperature: float = 0.0, effort: str | None = None
) -> None:
    from ponder.assets import base_model_path

    params = chat_params(max_tokens, temperature, effort)  # a bad effort fails before the model loads
    model_dir = model_dir or base_model_path()
    model, tokenizer = models.load(model_dir)
    engine = Engine(model, tokenizer)
    mode = f", reasoning_effort {effort}" if effort else ""
    console.print(f"[bold]ponder chat[/] with {model_dir}{mode}. Ask a question; empty line or Ctrl-D quits.")
    while True:
        try:
            question = console.input("[bold cyan]you>[/] ").strip()
        except EOFError:
            break
        if not question:
            break
        rollout = engine.generate([render_prompt(question)], params)[0][0]
        parsed = rollout.parsed
        console.print(f"[dim]{parsed.thinking}[/]")
        answer = parsed.answer if parsed.closed_thinking else "(no answer: the thinking ran out of tokens)"
        console.print(f"[bold green]ponder>[/] [bold]{answer}[/]")
