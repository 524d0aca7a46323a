"""`ponder chat`: a terminal REPL. The thinking is shown dimmed, then the answer in bold."""

from __future__ import annotations

from rich.console import Console

from ponder import model as models
from ponder.engine import Engine, SamplingParams
from ponder.format import render_prompt


def chat_loop(model_dir, console: Console, max_tokens: int = 256, temperature: float = 0.0) -> None:
    from ponder.assets import base_model_path

    model_dir = model_dir or base_model_path()
    model, tokenizer = models.load(model_dir)
    engine = Engine(model, tokenizer)
    params = SamplingParams(temperature=temperature, max_tokens=max_tokens)
    console.print(f"[bold]ponder chat[/] with {model_dir}. Ask a question; empty line or Ctrl-D quits.")
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
