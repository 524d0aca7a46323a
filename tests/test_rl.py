"""The RL loop end to end on a tiny model: every algorithm trains, metrics are complete, a raising
verifier and a NaN loss do not end the run (until too many NaNs), kill -9 resumes, RL improves the
problems it trains on, and the report is written."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ponder.errors import PonderError
from ponder.rl import algorithms as alg
from ponder.train import rl as rl_module
from ponder.train.rl import ALGORITHMS, RLConfig, RLRun, rl_step, train_rl

TINY = dict(tasks="letters:1", prompts_per_step=4, group_size=4, max_tokens=24, eval_per_task=2, save_every=2)

STEP_KEYS = {
    "reward",
    "accuracy",
    "response_len",
    "thinking_len",
    "self_correction",
    "constant_groups",
    "verifier_errors",
    "tokens_per_s",
    "gen_s",
    "train_s",
    "rl_tokens",
}
UPDATE_KEYS = {"loss", "grad_norm", "entropy", "clip_frac", "approx_kl"}


def read(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_every_algorithm_trains_and_logs_its_metrics(algorithm, trained_run, tmp_path):
    model_dir = trained_run / "model"
    cfg = RLConfig(
        out=str(tmp_path / algorithm),
        init=str(model_dir),
        algorithm=algorithm,
        steps=2,
        kl_coef=0.05 if algorithm == "grpo" else 0.0,
        # The tiny model almost never answers right, so on correctness alone every group is constant
        # and the group-baselined algorithms compute no loss at all: the test would check nothing.
        # Half a point for closing </think> with an answer makes rewards differ inside groups.
        format_coef=0.5,
        **TINY,
    )
    out = train_rl(cfg)
    assert (out / "model.safetensors").is_file()
    records = read(tmp_path / algorithm)
    steps = [r for r in records if "reward" in r]
    evals = [r for r in records if "eval_accuracy" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert [e["step"] for e in evals] == [0, 2]  # the base, then the end
    for record in steps:
        assert STEP_KEYS <= set(record)
    assert any(r["constant_groups"] < 1 for r in steps), "every group was constant: no loss was computed"
    drops_constant = cfg.dynamic_sampling or rl_module.skips_constant_groups(cfg)
    for record in steps:  # an update exactly when there is something to learn from (or no group baseline)
        assert ("loss" in record) == (record["constant_groups"] < 1 or not drops_constant), record
    updated = [r for r in steps if "loss" in r]
    for record in updated:
        assert UPDATE_KEYS <= set(record)
        assert all(torch.isfinite(torch.tensor(record[k])) for k in UPDATE_KEYS)
        if record["constant_groups"] < 1:
            assert record["grad_norm"] > 0, record
    assert _weights_changed(model_dir, out), "the policy's parameters are those it started from"
    if algorithm == "grpo":
        kls = [r["kl"] for r in updated]
        assert len(kls) == 2 and all(math.isfinite(kl) and kl >= 0 for kl in kls), kls
        assert kls[-1] > 0, "after step 1's update the policy must have moved away from its frozen reference"


def _weights_changed(before: Path, after: Path) -> bool:
    from safetensors.torch import load_file

    old, new = load_file(before / "model.safetensors"), load_file(after / "model.safetensors")
    assert old.keys() == new.keys()
    return any(not torch.equal(old[name], new[name]) for name in old)


def test_a_raising_verifier_scores_zero_and_is_counted(trained_run, tmp_path, monkeypatch):
    from ponder.tasks.letters import LettersTask

    def broken(self, problem, answer):
        raise RuntimeError("verifier bug")

    monkeypatch.setattr(LettersTask, "check", broken)
    model_dir = trained_run / "model"
    cfg = RLConfig(out=str(tmp_path / "run"), init=str(model_dir), steps=2, algorithm="reinforce_pp", **TINY)
    train_rl(cfg)
    steps = [r for r in read(tmp_path / "run") if "reward" in r]
    closed = [r for r in steps if r["verifier_errors"] > 0]
    assert closed, "completions with a closed </think> reach the verifier, whose errors must be counted"
    assert all(r["accuracy"] == 0.0 for r in steps)


def test_nan_losses_skip_the_update_then_stop_the_run_clearly(trained_run, tmp_path, monkeypatch):
    real = alg.policy_loss

    def nan_loss(*args, **kwargs):
        loss, stats = real(*args, **kwargs)
        return loss * float("nan"), stats

    monkeypatch.setattr(rl_module.alg, "policy_loss", nan_loss)
    model_dir = trained_run / "model"
    cfg = RLConfig(
        out=str(tmp_path / "run"), init=str(model_dir), steps=10, algorithm="reinforce_pp", max_bad_steps=3, **TINY
    )
    run = RLRun(cfg, resume=False)
    before = [p.detach().clone() for p in run.model.parameters()]
    first = rl_step(run, 0)
    assert first["skipped_updates"] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(before, run.model.parameters(), strict=True))
    rl_step(run, 1)
    with pytest.raises(PonderError, match="non-finite losses in a row"):
        rl_step(run, 2)


def test_rl_raises_reward_on_the_problems_it_trains_on(learning_rl_config):
    """Learning signal end to end, from the shipped base: repeated GRPO updates on one batch of
    problems raise the sampled accuracy on that batch (held-out gains are the RL benchmark's job)."""
    run = RLRun(learning_rl_config(), resume=False)
    accuracies = [rl_step(run, 0)["accuracy"] for _ in range(6)]  # step 0 again: the same problems
    assert sum(accuracies[-2:]) / 2 > accuracies[0] + 0.2, accuracies


def test_rl_config_errors_name_the_field():
    with pytest.raises(PonderError, match="algorithm must be one of"):
        RLConfig(algorithm="ppo2")
    with pytest.raises(PonderError, match="group_size"):
        RLConfig(group_size=1)
    with pytest.raises(PonderError, match="kl_estimator"):
        RLConfig(kl_estimator="k9")
    with pytest.raises(PonderError, match="importance_correction must be one of"):
        RLConfig(importance_correction="yes")
    with pytest.raises(PonderError, match="tis_cap must be >= 1"):
        RLConfig(tis_cap=0.5)


def test_importance_correction_is_on_exactly_when_another_engine_samples_unless_forced():
    assert not RLConfig().corrects_importance
    assert RLConfig(rollout_workers=2).corrects_importance
    assert not RLConfig(rollout_workers=2, importance_correction="off").corrects_importance
    assert RLConfig(importance_correction="on").corrects_importance


MISMATCH_KEYS = {"mismatch_kl", "mismatch_max", "tis_truncated", "tis_weight_mean", "policy_lag"}


def test_importance_correction_on_the_trainers_own_engine_measures_no_mismatch(trained_run, tmp_path):
    # reinforce_pp has no group baseline, so every step updates even when all rewards are equal
    cfg = RLConfig(out=str(tmp_path / "run"), init=str(trained_run / "model"), algorithm="reinforce_pp",
                   importance_correction="on", **TINY)  # fmt: skip
    record = rl_step(RLRun(cfg, resume=False), 0)
    assert MISMATCH_KEYS <= set(record), record
    # the engine samples with the trainer's weights: only float noise between its kernels and the trainer's
    assert record["mismatch_kl"] < 1e-6 and record["mismatch_max"] < 1e-3, record
    assert (record["tis_truncated"], record["policy_lag"]) == (0.0, 0)
    assert record["tis_weight_mean"] == pytest.approx(1.0, abs=1e-3)
    off = dataclasses.replace(cfg, out=str(tmp_path / "off"), importance_correction="off")
    assert not MISMATCH_KEYS & set(rl_step(RLRun(off, resume=False), 0))


def test_perturbed_sampler_logprobs_give_a_mismatch_and_truncated_weights(trained_run, tmp_path, monkeypatch):
    from ponder.engine import SamplingParams
    from ponder.rl.batch import RolloutBatch
    from ponder.train.rl import draw_problems, policy_update

    cfg = RLConfig(out=str(tmp_path / "run"), init=str(trained_run / "model"), algorithm="reinforce_pp",
                   importance_correction="on", tis_cap=2.0, **TINY)  # fmt: skip
    run = RLRun(cfg, resume=False)
    prompts = [run.engine.format.prompt(p.prompt) for p in draw_problems(run, 0)]
    groups = run.engine.generate(prompts, SamplingParams(n=cfg.group_size, max_tokens=cfg.max_tokens, seed=1))
    batch = RolloutBatch.build([r for g in groups for r in g], run.device)
    written = batch.mask.bool()
    # the sampler found the first half of the rows less likely (ratio e > cap), the rest more likely
    half = batch.mask.shape[0] // 2
    shift = torch.zeros_like(batch.old_logprobs)
    shift[:half], shift[half:] = -1.0, 0.5
    batch.old_logprobs = batch.old_logprobs + shift
    rewards = torch.arange(batch.mask.shape[0], dtype=torch.float) % 2
    real, weights_seen = alg.policy_loss, []

    def recording_loss(*args, **kwargs):
        weights_seen.append(kwargs["is_weights"])
        return real(*args, **kwargs)

    monkeypatch.setattr(rl_module.alg, "policy_loss", recording_loss)
    record = policy_update(run, batch, rewards, 0)
    assert record["mismatch_kl"] > 0.1 and record["mismatch_max"] == pytest.approx(1.0, abs=1e-3), record
    # the ratio is taken against the trainer's own log-probs, not the perturbed sampler's
    assert record["ratio_mean"] == pytest.approx(1.0, abs=1e-4), record
    assert len(weights_seen) == 1 and weights_seen[0] is not None and torch.equal(weights_seen[0], batch.is_weights)
    share_low = written[:half].sum().item() / written.sum().item()
    assert record["tis_truncated"] == pytest.approx(share_low)
    assert torch.allclose(batch.is_weights[:half][written[:half]], torch.tensor(2.0))  # truncated at the cap
    assert torch.allclose(batch.is_weights[half:][written[half:]], torch.tensor(math.exp(-0.5)), atol=1e-3)


def test_dapo_preset_turns_on_clip_higher_dynamic_sampling_and_overlong():
    cfg = RLConfig(algorithm="dapo")
    assert (cfg.eps_low, cfg.eps_high, cfg.dynamic_sampling) == (0.2, 0.28, True)
    assert cfg.overlong_cache > 0
    assert RLConfig(algorithm="dapo", eps_high=0.3).eps_high == 0.3  # explicit values win


def test_rl_resumes_after_kill_9(trained_run, tmp_path):
    model_dir = trained_run / "model"
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "ponder.cli",
        "rl",
        "--init",
        str(model_dir),
        "--out",
        str(out),
        "--steps",
        "40",  # long enough that the kill always lands mid-run, even on a fast machine
        "--save-every",
        "5",
        "--eval-every",
        "0",
        "--tasks",
        "letters:1",
        "--prompts-per-step",
        "4",
        "--group-size",
        "4",
        "--max-tokens",
        "24",
        "--eval-per-task",
        "2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (out / "checkpoint" / "trainer_state.pt").exists() and len(_steps(out)) >= 6:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(_steps(out)) < 40, "the run finished before it could be killed"
    done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _steps(out) == list(range(1, 41))
    assert (out / "model" / "model.safetensors").is_file()


def _steps(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "reward" in record:
            steps.append(record["step"])
    return steps


def test_report_writes_the_charts_and_a_page(trained_run, tmp_path):
    from ponder.rl.report import write_rl_report

    model_dir = trained_run / "model"
    train_rl(RLConfig(out=str(tmp_path / "run"), init=str(model_dir), steps=2, eval_every=1, **TINY))
    page = write_rl_report(tmp_path / "run")
    for name in ("train_scaling.png", "lengths.png", "self_correction.png"):
        assert (tmp_path / "run" / name).stat().st_size > 1000
    assert "data:image/png;base64" in page.read_text()


def test_batch_masks_prompt_forced_and_padding_tokens_and_aligns_old_logprobs():
    from ponder.engine import Rollout
    from ponder.rl.batch import RolloutBatch

    written = Rollout(0, prompt_ids=[5, 6, 7], token_ids=[8, 9, 10], logprobs=[-0.1, 0.0, -0.3], mask=[1, 0, 1])
    short = Rollout(0, prompt_ids=[5], token_ids=[11], logprobs=[-0.5], mask=[1])
    batch = RolloutBatch.build([written, short], "cpu")
    # column j predicts input token j + 1: the first completion token of row 0 is input 3, column 2
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9, 10], [5, 11, 0, 0, 0, 0]]
    assert batch.mask.tolist() == [[0, 0, 1, 0, 1], [1, 0, 0, 0, 0]]  # the forced token (mask 0) too
    assert batch.old_logprobs[0, 2:].tolist() == pytest.approx([-0.1, 0.0, -0.3])
    assert batch.attention_mask.tolist() == [[1] * 6, [1, 1, 0, 0, 0, 0]]


def test_curriculum_starts_with_the_easiest_level_and_reaches_the_hardest(tmp_path):
    from ponder.assets import base_model_path
    from ponder.train.rl import draw_problems

    cfg = RLConfig(out=str(tmp_path / "run"), init=str(base_model_path()), tasks="letters:1-3", steps=9,
                   curriculum=True, prompts_per_step=12, eval_per_task=1)  # fmt: skip
    run = RLRun(cfg, resume=False)
    assert {p.difficulty for p in draw_problems(run, 0)} == {1}
    assert {p.difficulty for p in draw_problems(run, 8)} == {1, 2, 3}
