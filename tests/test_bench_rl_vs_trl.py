"""bench/rl_vs_trl.py: argument parsing and the small helpers only (no training runs here)."""

import importlib.util
from pathlib import Path

import pytest

from ponder.tasks.mix import TaskMix
from ponder.train.rl import RLConfig

SPEC = importlib.util.spec_from_file_location("rl_vs_trl", Path(__file__).parents[1] / "bench" / "rl_vs_trl.py")
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)


def test_defaults_follow_ponder_rl_config():
    """The benchmark's defaults, as parsed and as handed to ponder, against a fresh `RLConfig` (not the
    bench's own copy of its defaults): the comparison with TRL is only fair on ponder's own settings."""
    args = bench.parse_args([])
    ponder = RLConfig()
    assert (args.steps, args.prompts_per_step, args.eval_per_task) == (20, 16, 20)  # the bench's own sizes
    assert (args.max_tokens, args.lr, args.group_size, args.tasks) == (
        ponder.max_tokens,
        ponder.lr,
        ponder.group_size,
        ponder.tasks,
    )
    run = bench.ponder_config(args, Path("model"), Path("out"))
    for name in ("algorithm", "lr", "max_tokens", "group_size", "temperature", "kl_coef", "epochs", "minibatches"):
        assert getattr(run, name) == getattr(ponder, name), name
    assert (run.steps, run.prompts_per_step, run.tasks) == (args.steps, args.prompts_per_step, args.tasks)
    for name in ("lr_schedule", "warmup", "seed"):  # what the report prints as ponder's side
        assert bench.PONDER_DEFAULTS[name] == getattr(ponder, name), name
    assert args.trl_loss_type == "grpo" and args.trl_gradient_checkpointing is None


@pytest.mark.parametrize("argv", [["--steps", "1"], ["--group-size", "1"]])
def test_rejects_untimeable_or_groupless_runs(argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)


def test_seconds_per_step_leaves_out_the_warm_up_step():
    assert bench.seconds_per_step([10.0, 12.0, 14.0, 16.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        bench.seconds_per_step([1.0])


def test_reward_decodes_with_special_tokens_kept():
    class Tok:  # TRL's own `completions` drop </think>; the reward must decode the ids itself
        def batch_decode(self, ids, skip_special_tokens):
            assert skip_special_tokens is False
            return ids

    problem = TaskMix("arithmetic:1").problems("train", 0, 1)[0]
    reward = bench.make_reward([problem], Tok())
    good, bad = f"x\n</think>{problem.answer}<|end|>", f"x\n{problem.answer}<|end|>"
    assert reward(None, None, [good, bad], [0, 0]) == [1.0, 0.0]
