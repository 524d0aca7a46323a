"""`ponder <command>`: thin wrappers over the library that render progress and tables.

ponder demo                       the shipped base: evaluate it, RL it, trade compute for accuracy
ponder pretrain --recipe base     reproduce the shipped base model from scratch
ponder sft --init DIR             supervised fine-tuning (loss on the answer only)
ponder reward-model --data SRC    a reward model from preference pairs (or --from-feedback DB)
ponder eval --model DIR           held-out accuracy per task
ponder chat --model DIR           talk to a model in the terminal
ponder scale --model DIR          accuracy against test-time compute (--effort: low/medium/high/auto)
ponder contamination              n-gram overlap of eval prompts with the training corpora
ponder tool NAME                  run one tool call (input on stdin) and print what the model would see
ponder serve                      an OpenAI-compatible reasoning server and web chat (--model DIR, --port P)
"""

from __future__ import annotations

import argparse
import importlib

from rich.markup import escape

from ponder.cli.console import console
from ponder.errors import PonderError

# One module per command (ponder/cli/<name>.py), each with `register(subparsers)`, which adds its
# parser(s) and sets `handler`. A new command is a new module and a name here, in --help order.
COMMAND_MODULES = ("demo", "train", "rl", "reward_model", "eval", "chat", "scale", "contamination", "tool", "serve")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ponder", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"ponder.cli.{name}").register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run one command; a PonderError (bad input) is one red line and exit code 2, Ctrl-C exit 130."""
    args = parser().parse_args(argv)
    try:
        args.handler(args)
    except PonderError as e:
        console.print(f"[red]error:[/] {escape(str(e))}")  # "pip install 'ponder[vllm]'" is text, not markup
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    return 0
