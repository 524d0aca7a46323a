"""`ponder tool NAME`: run one tool call with its input on stdin and print the observation exactly as
the model would see it (for debugging a tool, and for checking the sandbox from outside).

    echo 'print(6 * 7)' | ponder tool python
    echo '2**100 / 3' | ponder tool calculator
    echo 'Vellmarsh founded' | ponder tool search --corpus docs/
"""

from __future__ import annotations

import sys

from ponder.cli.args import add_config_flags, build_config
from ponder.cli.console import console


def register(sub) -> None:
    from ponder.tools import TOOLS
    from ponder.tools.base import ToolConfig

    p = sub.add_parser("tool", help="run one tool call (input on stdin); print the observation")
    p.add_argument("name", choices=sorted(TOOLS), help="the tool to run")
    add_config_flags(p, ToolConfig)
    p.set_defaults(handler=run)


def run(args) -> None:
    from ponder.tools import format_observation, run_tool_cli
    from ponder.tools.base import ToolConfig

    config = build_config(ToolConfig, args)
    observation = run_tool_cli(args.name, sys.stdin.read(), config)
    print(format_observation(observation))
    meta = ", ".join(f"{k}={v}" for k, v in observation.metadata.items())
    console.print(
        f"[dim]{observation.status}, {observation.seconds:.2f} s{'; ' + meta if meta else ''}[/]", highlight=False
    )
