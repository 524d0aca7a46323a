"""`ponder reward-model`: a reward model from preference pairs (synthetic, JSONL, or served feedback).

ponder reward-model --data synthetic:summary --policy runs/rlhf/sft/model --out runs/rlhf/rm
ponder reward-model --from-feedback runs/serve/feedback.sqlite --policy DIR --out runs/rm
"""

from __future__ import annotations

from ponder.cli.args import add_config_flags, build_config
from ponder.cli.console import console, progress_bar, table


def register(sub) -> None:
    from ponder.rlhf.reward_model import RewardModelConfig

    p = sub.add_parser("reward-model", help="a Bradley-Terry reward model from preference pairs")
    add_config_flags(p, RewardModelConfig)
    p.set_defaults(handler=run)


def run(args) -> None:
    from ponder.rlhf.reward_model import RewardModelConfig, train_reward_model

    cfg = build_config(RewardModelConfig, args)
    with progress_bar() as bar:
        job = bar.add_task("reward model", total=None, info="")

        def on_step(m: dict) -> None:
            info = f"loss {m['loss']:.3f}  batch accuracy {m['accuracy']:.0%}"
            bar.update(job, completed=m["step"], total=m["total_steps"], info=info)

        rm = train_reward_model(cfg, on_step=on_step)
    meta = rm.meta
    console.print(
        f"{meta['train_pairs']} training pairs, {meta['heldout_pairs']} held out ({', '.join(meta['sources'])}); "
        f"train accuracy {meta['train_accuracy']:.1%}; reward mean {rm.mean:.3f}, std {rm.std:.3f} (in config.json)"
    )
    if meta["heldout"]:
        console.print(heldout_table(meta["heldout"]))
    console.print(f"reward model saved to [bold]{cfg.out}[/] ({rm.META_FILE} has every number)")


def heldout_table(h: dict):
    """Held-out pair accuracy overall, by length stratum, the "longer wins" rule, and calibration."""
    rows = [("all pairs", str(h["pairs"]), f"{h['accuracy']:.1%}")]
    for name, s in h["by_length"].items():
        rows.append((name, str(s["pairs"]), "-" if s["accuracy"] is None else f"{s['accuracy']:.1%}"))
    rows.append(("rule 'longer wins'", str(h["pairs"]), f"{h['longer_wins_accuracy']:.1%}"))
    rows.append(("calibration error (ECE)", "", f"{h['calibration']['ece']:.3f}"))
    return table("held-out preference pairs", ("", "pairs", "accuracy"), rows, left=1)
