"""bench/cluster.py: argument parsing, the runs' configs and the summary (no Ray runs here)."""

import importlib.util
from pathlib import Path

import pytest

from ponder.train.rl import RLConfig

SPEC = importlib.util.spec_from_file_location("bench_cluster", Path(__file__).parents[1] / "bench" / "cluster.py")
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)


def test_a_step_is_the_size_ponder_rl_takes_by_default_and_only_the_workers_differ():
    args = bench.parse_args([])
    ponder = RLConfig()
    assert (args.workers, args.steps) == (2, 8)
    single = bench.run_config(args, Path("single"), 0)
    ray = bench.run_config(args, Path("ray"), args.workers)
    for cfg in (single, ray):
        assert (cfg.prompts_per_step, cfg.group_size, cfg.max_tokens) == (
            ponder.prompts_per_step,
            ponder.group_size,
            ponder.max_tokens,
        )
        assert cfg.steps == args.steps + 1  # the warm-up step too
    assert (single.rollout_workers, ray.rollout_workers) == (0, 2)
    assert (single.corrects_importance, ray.corrects_importance) == (False, True)  # auto, as `ponder rl`


@pytest.mark.parametrize("argv", [["--steps", "1"], ["--workers", "0"], ["--importance-correction", "maybe"]])
def test_rejects_runs_without_a_spread_or_without_workers(argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)


def test_summary_gives_median_min_and_max_and_steps_per_second_from_wall_time():
    steps = [
        {"wall": 2.0, "gen": 1.0, "push": 0.1, "train": 0.9, "tokens": 100},
        {"wall": 4.0, "gen": 3.0, "push": 0.1, "train": 0.9, "tokens": 300},
        {"wall": 1.0, "gen": 0.5, "push": 0.2, "train": 0.3, "tokens": 200},
    ]
    summary = bench.summarise(steps)
    assert summary["wall"] == (2.0, 1.0, 4.0)
    assert summary["gen"] == (1.0, 0.5, 3.0)
    assert summary["tokens"] == (200, 100, 300)
    assert summary["steps_per_s"] == (0.5, 0.25, 1.0)
