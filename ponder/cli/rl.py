"""`ponder rl`: reinforcement learning with verifiable rewards (grpo, dr_grpo, dapo, rloo, ...)."""

from __future__ import annotations

from ponder.cli.args import add_config_flags, build_config
from ponder.cli.console import print_memory_estimate
from ponder.cli.runs import run_rl


def register(sub) -> None:
    from ponder.train.rl import RLConfig

    p = sub.add_parser("rl", help="reinforcement learning with verifiable rewards")
    add_config_flags(p, RLConfig)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.set_defaults(handler=run)


def run(args) -> None:
    from ponder.train.lm import resolve_device
    from ponder.train.memory import device_memory, estimate_rl
    from ponder.train.rl import RLConfig

    cfg = build_config(RLConfig, args)
    device = resolve_device(cfg.device)
    print_memory_estimate(estimate_rl(cfg, device, args.resume, device_memory(device)))
    run_rl(cfg, resume=args.resume)
