"""`ponder pretrain` and `ponder sft`: next-token training, one loop with two loss masks.

pretrain puts the loss on every token (and can start from a named recipe: `--recipe base` made the
shipped model); sft puts it on the completion only and starts from the shipped base by default
(`--recipe tools` made the shipped tool model).
"""

from __future__ import annotations

from pathlib import Path

from ponder.cli.args import add_config_flags, build_config
from ponder.cli.console import console, print_memory_estimate, progress_bar

# what each command sets over LMConfig's defaults (shown in its --help, applied before any flag)
BASES = {
    "pretrain": {"loss_on": "all", "out": "runs/pretrain"},
    "sft": {"loss_on": "completion", "out": "runs/sft"},
}


def register(sub) -> None:
    from ponder.train.lm import LMConfig

    for name, base in BASES.items():
        p = sub.add_parser(name, help=f"next-token training, loss on {base['loss_on']} tokens")
        add_config_flags(p, LMConfig, skip=("loss_on",), defaults=base)
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
        example = "'base' (the shipped base model)" if name == "pretrain" else "'tools' (the shipped tool model)"
        p.add_argument("--recipe", help=f"a named config, e.g. {example}")
        p.set_defaults(handler=run)


def run(args) -> None:
    from ponder.recipes import recipe
    from ponder.train.lm import LMConfig, resolve_device, train_lm
    from ponder.train.memory import device_memory, estimate_lm

    base = dict(BASES[args.command])
    if args.recipe:
        base.update(recipe(args.recipe, args.command))
    cfg = build_config(LMConfig, args, base)
    if args.command == "sft" and not cfg.init:
        from ponder.assets import base_model_path

        cfg.init = str(base_model_path())
    device = resolve_device(cfg.device)
    print_memory_estimate(estimate_lm(cfg, device, args.resume, device_memory(device)))
    with progress_bar() as bar:
        job = bar.add_task(args.command, total=cfg.steps, info="")

        def on_step(m: dict) -> None:
            info = f"loss {m['loss']:.3f}  {m['tokens_per_s']:.0f} tok/s  lr {m['lr']:.1e}"
            if "mfu" in m:
                info += f"  MFU {m['mfu']:.1%}"
            bar.update(job, completed=m["step"], info=info)

        out = train_lm(cfg, resume=args.resume, on_step=on_step)
    console.print(f"model saved to [bold]{out}[/]; metrics in {Path(cfg.out) / 'metrics.jsonl'}")
