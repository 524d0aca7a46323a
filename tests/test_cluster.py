"""Rollout workers on a local Ray: weights pushed to a worker give the trainer's log-probs, every
sample carries its policy version, and a worker killed mid-run is replaced and its shard drawn again."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from ponder.engine import SamplingParams

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ponder[ray]')")
from ponder.cluster.rollouts import RolloutPool  # noqa: E402


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def trainer_logprobs(model, prompt_ids, token_ids):
    ids = torch.tensor([prompt_ids + token_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, len(prompt_ids) - 1 : -1].float(), -1)
    return logprobs.gather(-1, torch.tensor(token_ids)[:, None]).squeeze(-1)


def test_pushed_weights_give_the_trainers_logprobs_and_a_new_version(ray_local, trained):
    import copy

    model, tok = copy.deepcopy(trained[0]), trained[1]
    pool = RolloutPool(model, tok, workers=1)
    try:
        prompt = pool.format.prompt("Compute 27+56.")
        first = pool.generate([prompt], SamplingParams(temperature=0, max_tokens=16))[0][0]
        with torch.no_grad():  # an optimizer step's worth of change
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        second = pool.generate([prompt], SamplingParams(temperature=0, max_tokens=16))[0][0]
        assert (first.policy_version, second.policy_version) == (1, 2)
        expected = trainer_logprobs(model, second.prompt_ids, second.token_ids)
        assert torch.allclose(torch.tensor(second.logprobs), expected, atol=1e-4)
    finally:
        pool.close()


def test_a_killed_worker_is_replaced_and_its_shard_drawn_again(ray_local, trained):
    import copy

    model, tok = copy.deepcopy(trained[0]), trained[1]
    pool = RolloutPool(model, tok, workers=2, timeout_s=120)
    try:
        prompts = [pool.format.prompt(f"Compute {a}+{a + 3}.") for a in range(6)]
        params = SamplingParams(temperature=1.0, max_tokens=12, n=2, seed=0)
        before = pool.generate(prompts, params)
        os.kill(pool.pids()[1], signal.SIGKILL)  # the second worker dies between steps
        with torch.no_grad():
            next(model.parameters()).add_(0.01)  # the trainer moved on: version 2
        after = pool.generate(prompts, params)
        assert pool.replaced == 1
        assert [len(g) for g in after] == [2] * 6 and all(r.prompt_index == i for i, g in enumerate(after) for r in g)
        assert {r.policy_version for g in before for r in g} == {1}
        assert {r.policy_version for g in after for r in g} == {2}  # the replacement got the new weights
    finally:
        pool.close()


def test_rl_with_two_rollout_workers_survives_a_killed_worker_and_learns(ray_local, learning_rl_config):
    """As tests/test_rl.py's learning test, with generation on two Ray workers, one killed mid-run:
    the run goes on, the replacement samples from the trainer's current weights, and repeated GRPO
    updates raise the sampled accuracy as they do in one process."""
    from ponder.train.rl import RLRun, rl_step

    cfg = learning_rl_config(rollout_workers=2)
    run = RLRun(cfg, resume=False)
    try:
        steps = []
        for i in range(6):
            if i == 3:
                os.kill(run.sampler.pids()[0], signal.SIGKILL)
            steps.append(rl_step(run, 0))  # step 0 again: the same problems
        accuracies = [s["accuracy"] for s in steps]
        assert run.sampler.replaced == 1
        assert [s["policy_version"] for s in steps] == [1, 2, 3, 4, 5, 6]  # every step sampled the newest weights
        # another engine samples, so the importance correction is on (auto); the workers run the pushed
        # weights in fp32, so the mismatch is float noise and no sample lags behind the trainer
        assert cfg.corrects_importance
        assert all(s["policy_lag"] == 0 and s["tis_truncated"] == 0 for s in steps), steps
        assert max(s["mismatch_kl"] for s in steps) < 1e-6, [s["mismatch_kl"] for s in steps]
        assert all(s["push_s"] > 0 for s in steps), [s["push_s"] for s in steps]  # new weights every step
        assert sum(accuracies[-2:]) / 2 > accuracies[0] + 0.2, accuracies
    finally:
        run.sampler.close()
