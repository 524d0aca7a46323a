"""ponder.rl.algorithms against hand-computed values on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from ponder.errors import PonderError
from ponder.rl.algorithms import (
    ADVANTAGES,
    dynamic_sampling_keep,
    entropy_from_logits,
    gae,
    grpo_advantages,
    kl_penalty,
    masked_mean,
    overlong_penalty,
    place_on_last_token,
    policy_loss,
    reinforce_pp_advantages,
    rloo_advantages,
    truncated_importance_weights,
    value_loss,
)

LN2 = math.log(2.0)


def close(actual, expected, atol=1e-5):
    expected = torch.as_tensor(expected, dtype=torch.float32)
    torch.testing.assert_close(torch.as_tensor(actual).float(), expected, atol=atol, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------
# advantages


def test_grpo_group_scale_uses_unbiased_std_and_zeroes_constant_groups():
    # group 1 [1,0,0,0]: mean .25, deviations [.75,-.25,-.25,-.25], sum sq = .5625 + 3*.0625 = .75,
    # unbiased var = .75/3 = .25, std = .5 -> [1.5, -.5, -.5, -.5] (population std .433 would differ)
    # group 2 [1,1,1,1]: constant -> exactly 0
    rewards = torch.tensor([1.0, 0, 0, 0, 1, 1, 1, 1])
    close(grpo_advantages(rewards, 4), [1.5, -0.5, -0.5, -0.5, 0, 0, 0, 0], atol=1e-4)
    # G=2, [1,0]: mean .5, unbiased std sqrt((.25+.25)/1) = .70711 -> +-.70711
    close(grpo_advantages(torch.tensor([1.0, 0, 0, 1]), 2), [0.70711, -0.70711, -0.70711, 0.70711], 1e-4)


def test_grpo_batch_and_none_scales():
    rewards = torch.tensor([1.0, 0, 0, 0, 1, 1, 1, 1])
    # batch: five 1s, three 0s, mean .625, sum sq dev = 5*.140625 + 3*.390625 = 1.875,
    # unbiased var 1.875/7 = .267857, std .517549; group-centred [.75,-.25,-.25,-.25] / .517549
    s = math.sqrt(1.875 / 7)
    close(grpo_advantages(rewards, 4, scale="batch"), [0.75 / s, -0.25 / s, -0.25 / s, -0.25 / s, 0, 0, 0, 0])
    # none (Dr. GRPO): just r - group mean
    close(grpo_advantages(rewards, 4, scale="none"), [0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0])


def test_grpo_constant_group_of_awkward_floats_is_exactly_zero():
    # mean of three 0.1s is not exactly 0.1 in float32; the tiny residue must not be blown up
    adv = grpo_advantages(torch.tensor([0.1, 0.1, 0.1]), 3)
    assert torch.equal(adv, torch.zeros(3))


def test_grpo_rejects_bad_group_size():
    with pytest.raises(PonderError):
        grpo_advantages(torch.ones(5), 2)
    with pytest.raises(PonderError):
        grpo_advantages(torch.ones(4), 1)  # unbiased std of one value is undefined


def test_rloo_numbers():
    # [1,0,0,0]: 1 - mean(0,0,0) = 1; 0 - mean(1,0,0) = -1/3.  [2,4]: 2-4 = -2, 4-2 = 2.  [3,3]: 0
    rewards = torch.tensor([1.0, 0, 0, 0])
    close(rloo_advantages(rewards, 4), [1, -1 / 3, -1 / 3, -1 / 3])
    close(rloo_advantages(torch.tensor([2.0, 4, 3, 3]), 2), [-2, 2, 0, 0])


def test_place_on_last_token_and_empty_row():
    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]])
    out = place_on_last_token(torch.tensor([2.0, 5.0, 3.0]), mask)
    close(out, [[0, 0, 0, 2, 0], [0, 0, 0, 0, 0], [3, 0, 0, 0, 0]])


def test_reinforce_pp_without_kl():
    # returns (gamma=1, reward on last token): row0 [1,1,1,-], row1 [0,0,-,-]
    # masked values [1,1,1,0,0]: mean .6, population std sqrt(.24) = .489898
    rewards = torch.tensor([1.0, 0.0])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    s = math.sqrt(0.24)
    adv = reinforce_pp_advantages(rewards, mask)
    close(adv, [[0.4 / s, 0.4 / s, 0.4 / s, 0], [-0.6 / s, -0.6 / s, 0, 0]])


def test_reinforce_pp_kl_returns_and_normalisation():
    # per-token reward with kl .1 on every model token: row0 [-.1,-.1,.9] -> returns [.7,.8,.9];
    # row1 [-.1,-.1] -> returns [-.2,-.1]. masked mean .42, population var .2216
    rewards = torch.tensor([1.0, 0.0])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    kl = torch.full((2, 4), 0.1)
    adv = reinforce_pp_advantages(rewards, mask, kl=kl)
    s = math.sqrt(0.2216)
    expect = [
        [(0.7 - 0.42) / s, (0.8 - 0.42) / s, (0.9 - 0.42) / s, 0],
        [(-0.2 - 0.42) / s, (-0.1 - 0.42) / s, 0, 0],
    ]
    close(adv, expect)
    values = adv[mask.bool()]
    close(values.mean(), 0.0)
    close(values.std(unbiased=False), 1.0, atol=1e-4)


def test_reinforce_pp_baseline():
    # [1,0 | 1,1] G=2: group means .5, 1 -> [.5,-.5, 0,0]; returns per row constant over 2 tokens;
    # masked values [.5,.5,-.5,-.5,0,0,0,0]: mean 0, population std sqrt(1/8) -> +-1.41421
    rewards = torch.tensor([1.0, 0, 1, 1])
    mask = torch.ones(4, 2)
    adv = reinforce_pp_advantages(rewards, mask, group_size=2)
    r2 = math.sqrt(2)
    close(adv, [[r2, r2], [-r2, -r2], [0, 0], [0, 0]], atol=1e-4)


def test_reinforce_pp_all_equal_is_zero():
    adv = reinforce_pp_advantages(torch.tensor([0.3, 0.3]), torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert torch.equal(adv, torch.zeros(2, 3))


def test_gae_gamma1_lam1_is_reward_to_go_minus_value():
    r = torch.tensor([[0.0, 0.0, 1.0]])
    v = torch.tensor([[0.5, 0.2, 0.7]])
    adv, ret = gae(r, v, torch.ones(1, 3), gamma=1.0, lam=1.0)
    close(adv, [[1 - 0.5, 1 - 0.2, 1 - 0.7]])
    close(ret, [[1.0, 1.0, 1.0]])


def test_gae_hand_values():
    # gamma 1, lam .5: d2 = 1 - .7 = .3, A2 = .3; d1 = 0 + .7 - .2 = .5, A1 = .5 + .5*.3 = .65;
    # d0 = 0 + .2 - .5 = -.3, A0 = -.3 + .5*.65 = .025; returns = A + V = [.525, .85, 1.0]
    r = torch.tensor([[0.0, 0.0, 1.0]])
    v = torch.tensor([[0.5, 0.2, 0.7]])
    adv, ret = gae(r, v, torch.ones(1, 3), gamma=1.0, lam=0.5)
    close(adv, [[0.025, 0.65, 0.3]])
    close(ret, [[0.525, 0.85, 1.0]])


def test_gae_masked_gap_is_transparent():
    # same model tokens as above with a 2-token tool-output gap (garbage rewards/values there):
    # the recursion jumps over it, so model tokens get the compact sequence's values
    mask = torch.tensor([[1, 0, 0, 1, 1, 0]])
    r = torch.tensor([[0.0, 9.0, 9.0, 0.0, 1.0, 9.0]])
    v = torch.tensor([[0.5, 7.0, 7.0, 0.2, 0.7, 7.0]])
    adv, ret = gae(r, v, mask, gamma=1.0, lam=0.5)
    close(adv, [[0.025, 0, 0, 0.65, 0.3, 0]])
    close(ret, [[0.525, 0, 0, 0.85, 1.0, 0]])
    # and with gamma < 1, against the compact sequence computed by the same function
    compact_adv, _ = gae(r[:, [0, 3, 4]], v[:, [0, 3, 4]], torch.ones(1, 3), gamma=0.9, lam=0.8)
    gap_adv, _ = gae(r, v, mask, gamma=0.9, lam=0.8)
    close(gap_adv[:, [0, 3, 4]], compact_adv)


def test_dynamic_sampling_drops_constant_groups():
    keep, dropped = dynamic_sampling_keep(torch.tensor([1.0, 1, 0, 1, 0, 0]), 2)
    assert keep.tolist() == [False, False, True, True, False, False]
    assert dropped == pytest.approx(2 / 3)


def test_overlong_penalty_piecewise():
    # max 10, cache 4: free up to 6; then (6 - L)/4: 7 -> -.25, 8 -> -.5, 10 -> -1; beyond -> -1
    lengths = torch.tensor([5, 6, 7, 8, 10, 11])
    close(overlong_penalty(lengths, 10, 4), [0, 0, -0.25, -0.5, -1, -1])
    close(overlong_penalty(torch.tensor([10, 11]), 10, 0), [0, -1])


def test_registry_common_signature():
    rewards = torch.tensor([1.0, 0, 0, 0, 1, 1, 1, 1])
    mask = torch.ones(8, 3)
    mask[2] = 0  # an empty row must not produce NaN anywhere
    for name, fn in ADVANTAGES.items():
        adv = fn(rewards, mask, 4)
        assert adv.shape in ((8,), (8, 3)), name
        assert torch.isfinite(adv).all(), name
    close(ADVANTAGES["dr_grpo"](rewards, mask, 4), [0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0])


# ---------------------------------------------------------------------------------------------------
# losses


def _ppo_case():
    # old = 0, so logprobs = log(ratio). row0 A=+1, ratios [1.5, .5, 1]; row1 A=-1, ratios [1.5, .5, -]
    ratios = torch.tensor([[1.5, 0.5, 1.0], [1.5, 0.5, 1.0]])
    logp = ratios.log().requires_grad_()
    old = torch.zeros(2, 3)
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    return logp, old, adv, mask


def test_policy_loss_aggregations_and_clip_frac():
    # eps .2, per-token -min(r*A, clip(r)*A):
    #   row0 (A=+1): r 1.5 -> -min(1.5, 1.2) = -1.2 (clipped); r .5 -> -.5; r 1 -> -1
    #   row1 (A=-1): r 1.5 -> -min(-1.5, -1.2) = 1.5; r .5 -> -min(-.5, -.8) = .8 (clipped)
    # token:    (-1.2 - .5 - 1 + 1.5 + .8) / 5 = -.4 / 5 = -.08
    # sequence: mean(-2.7/3, 2.3/2) = mean(-.9, 1.15) = .125
    # constant: -.4 / (B=2 * max_tokens=4) = -.05
    logp, old, adv, mask = _ppo_case()
    loss, stats = policy_loss(logp, old, adv, mask, agg="token")
    close(loss, -0.08)
    close(stats["clip_frac"], 2 / 5)
    close(stats["clip_frac_low"], 1 / 5)
    close(stats["clip_frac_high"], 1 / 5)
    assert stats["approx_kl"] > 0
    close(policy_loss(logp, old, adv, mask, agg="sequence")[0], 0.125)
    close(policy_loss(logp, old, adv, mask, agg="constant", max_tokens=4)[0], -0.05)
    with pytest.raises(PonderError):
        policy_loss(logp, old, adv, mask, agg="constant")


def test_policy_loss_clip_higher_is_asymmetric():
    # eps_high .28: row0 r 1.5 -> -1.28 (was -1.2); row1 r .5 still clipped at .8 (eps_low .2)
    # token: (-1.28 - .5 - 1 + 1.5 + .8) / 5 = -.096
    logp, old, adv, mask = _ppo_case()
    loss, stats = policy_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.28)
    close(loss, -0.096)
    # a ratio of 1.25 with A>0 is clipped at eps_high .2 but not at .28
    lp = torch.tensor([[math.log(1.25)]])
    one = torch.ones(1, 1)
    assert policy_loss(lp, torch.zeros(1, 1), torch.ones(1), one)[1]["clip_frac_high"] == 1
    assert policy_loss(lp, torch.zeros(1, 1), torch.ones(1), one, eps_high=0.28)[1]["clip_frac_high"] == 0


def test_policy_loss_gradient_sign_and_clipped_tokens():
    # token agg divides by 5. d(-r*A)/dlogp = -r*A: row0 r .5 -> -.1, r 1 -> -.2 (descent raises logp
    # where A > 0); row1 r 1.5, A=-1 -> +.3 (lowers logp); clipped tokens and the masked one get 0
    logp, old, adv, mask = _ppo_case()
    loss, _ = policy_loss(logp, old, adv, mask)
    loss.backward()
    close(logp.grad, [[0.0, -0.1, -0.2], [0.3, 0.0, 0.0]])


def test_masked_tokens_never_affect_loss_or_gradient():
    logp, old, adv, mask = _ppo_case()
    ref = torch.full((2, 3), -0.5)
    base, _ = policy_loss(logp, old, adv, mask, ref_logprobs=ref, kl_coef=0.1)
    wild = logp.detach().clone()
    wild[1, 2] = 1000.0  # exp(1000) = inf if it ever reached the ratio
    wild.requires_grad_()
    wild_old = old.clone()
    wild_old[1, 2] = -1000.0
    for agg in ("token", "sequence", "constant"):
        a, _ = policy_loss(logp, old, adv, mask, agg=agg, max_tokens=4, ref_logprobs=ref, kl_coef=0.1)
        b, _ = policy_loss(wild, wild_old, adv, mask, agg=agg, max_tokens=4, ref_logprobs=ref, kl_coef=0.1)
        assert torch.equal(a, b), agg
    b.backward()
    assert torch.isfinite(wild.grad).all()
    assert wild.grad[1, 2] == 0
    assert torch.isfinite(base)


def test_kl_estimators():
    # d = ref - logp. d = ln2: k1 = -ln2, k2 = ln2^2/2, k3 = 2 - ln2 - 1 = .306853
    #                d = -ln2: k1 = ln2, k3 = .5 + ln2 - 1 = .193147
    logp = torch.zeros(1, 2)
    ref = torch.tensor([[LN2, -LN2]])
    close(kl_penalty(logp, ref, "k1"), [[-LN2, LN2]])
    close(kl_penalty(logp, ref, "k2"), [[LN2**2 / 2, LN2**2 / 2]])
    close(kl_penalty(logp, ref, "k3"), [[1 - LN2, LN2 - 0.5]])
    with pytest.raises(PonderError):
        kl_penalty(logp, ref, "k9")


def test_policy_loss_adds_kl_term():
    # ratio 1 and A = 0: the surrogate is 0, loss = .1 * mean k3 over the 2 masked tokens
    logp = torch.zeros(1, 3)
    ref = torch.tensor([[LN2, -LN2, 5.0]])
    mask = torch.tensor([[1, 1, 0]])
    loss, stats = policy_loss(logp, logp, torch.zeros(1), mask, ref_logprobs=ref, kl_coef=0.1)
    k3_mean = ((1 - LN2) + (LN2 - 0.5)) / 2  # = .25
    close(stats["kl"], k3_mean)
    close(loss, 0.1 * k3_mean)
    close(stats["clip_frac"], 0.0)


def test_importance_weights_of_one_leave_the_loss_and_gradient_unchanged():
    logp, old, adv, mask = _ppo_case()
    for agg in ("token", "sequence", "constant"):
        plain, _ = policy_loss(logp, old, adv, mask, agg=agg, max_tokens=4)
        weighted, _ = policy_loss(logp, old, adv, mask, agg=agg, max_tokens=4, is_weights=torch.ones(2, 3))
        assert torch.equal(plain, weighted), agg


def test_importance_weights_scale_each_tokens_term_and_a_zero_weight_removes_its_gradient():
    # the token-agg terms of _ppo_case: row0 [-1.2, -.5, -1], row1 [1.5, .8] (see above), / 5 tokens
    # weights row0 [2, 1, .5], row1 [0, 1]: (-2.4 - .5 - .5 + 0 + .8) / 5 = -.52
    logp, old, adv, mask = _ppo_case()
    weights = torch.tensor([[2.0, 1.0, 0.5], [0.0, 1.0, 7.0]])  # the 7 is masked out
    loss, _ = policy_loss(logp, old, adv, mask, is_weights=weights)
    close(loss, -0.52)
    loss.backward()
    # unweighted gradient [[0, -.1, -.2], [.3, 0, 0]] (test above) times the weights
    close(logp.grad, [[0.0, -0.1, -0.1], [0.0, 0.0, 0.0]])
    with pytest.raises(PonderError, match="is_weights must have the shape"):
        policy_loss(logp, old, adv, mask, is_weights=torch.ones(2))


def test_truncated_importance_weights_cap_the_ratio_and_measure_the_mismatch():
    # trainer - sampler: [ln 1.5, ln 4, -ln 2 | 0, 0, 50 (masked)] -> ratios 1.5, 4 (capped at 2), .5, 1, 1
    sampler = torch.zeros(2, 3)
    trainer = torch.tensor([[math.log(1.5), math.log(4.0), -LN2], [0.0, 0.0, 50.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    weights, stats = truncated_importance_weights(trainer, sampler, mask, cap=2.0)
    close(weights, [[1.5, 2.0, 0.5], [1.0, 1.0, 1.0]])
    close(stats["tis_truncated"], 1 / 5)
    close(stats["tis_weight_mean"], (1.5 + 2 + 0.5 + 1 + 1) / 5)
    close(stats["mismatch_max"], math.log(4.0))  # the masked 50 is not counted
    # k3 of KL(sampler || trainer), d = trainer - sampler: exp(d) - d - 1 per token
    k3 = [r - math.log(r) - 1 for r in (1.5, 4.0, 0.5)]
    close(stats["mismatch_kl"], sum(k3) / 5)
    same, same_stats = truncated_importance_weights(sampler, sampler, mask)
    assert torch.equal(same, torch.ones(2, 3)) and same_stats["mismatch_kl"] == 0 == same_stats["tis_truncated"]
    with pytest.raises(PonderError, match="cap must be > 0"):
        truncated_importance_weights(trainer, sampler, mask, cap=0.0)


def test_value_loss_hand_values():
    # clip .2. t0: v 1, old .5 -> clipped .7; (1-2)^2 = 1, (.7-2)^2 = 1.69 -> 1.69 (clip active)
    #          t1: v 0, old .5 -> .3; (0-1)^2 = 1, (.3-1)^2 = .49 -> 1
    #          t2: v 2, old 2 -> 2; .01 both -> .01;  t3 masked (garbage)
    # loss = .5 * (1.69 + 1 + .01) / 3 = .45; clip_frac 1/3
    values = torch.tensor([[1.0, 0.0, 2.0, 1e30]], requires_grad=True)
    old = torch.tensor([[0.5, 0.5, 2.0, 0.0]])
    returns = torch.tensor([[2.0, 1.0, 2.1, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, stats = value_loss(values, old, returns, mask, clip=0.2)
    close(loss, 0.45)
    close(stats["clip_frac"], 1 / 3)
    loss.backward()
    # t0 clipped -> no gradient; t1: .5*2*(0-1)/3 = -1/3; t2: (2-2.1)/3; masked -> 0
    close(values.grad, [[0.0, -1 / 3, -0.1 / 3, 0.0]])


def test_entropy_from_logits():
    # uniform over 4 -> ln 4; two live logits and two -inf -> ln 2 (no NaN from 0 * -inf)
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -math.inf, -math.inf]]])
    close(entropy_from_logits(logits), [[math.log(4), LN2]])
    torch.manual_seed(0)
    z = torch.randn(2, 3, 7)
    expected = torch.distributions.Categorical(logits=z).entropy()
    close(entropy_from_logits(z, chunk_size=2), expected)
    close(
        entropy_from_logits(z.bfloat16()),
        torch.distributions.Categorical(logits=z.bfloat16().float()).entropy(),
    )


def test_masked_mean_empty_and_inf():
    x = torch.tensor([[1.0, math.inf], [3.0, 5.0]])
    close(masked_mean(x, torch.tensor([[1, 0], [1, 1]])), 3.0)
    close(masked_mean(x, torch.zeros(2, 2)), 0.0)
    close(masked_mean(x, torch.tensor([[1, 0], [0, 0]]), dim=1), [1.0, 0.0])


def test_empty_mask_rows_give_no_nan():
    logp = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    for agg in ("token", "sequence", "constant"):
        loss, stats = policy_loss(logp, torch.zeros(2, 3), torch.tensor([1.0, -1.0]), mask, agg=agg, max_tokens=3)
        assert torch.isfinite(loss) and all(torch.isfinite(v) for v in stats.values())
    # sequence mean is over rows that have tokens: row0 alone -> -1
    close(policy_loss(logp, torch.zeros(2, 3), torch.tensor([1.0, -1.0]), mask, agg="sequence")[0], -1.0)
    loss, _ = policy_loss(logp, torch.zeros(2, 3), torch.ones(2), torch.zeros(2, 3))
    loss.backward()
    assert loss == 0 and torch.equal(logp.grad, torch.zeros(2, 3))
    adv, ret = gae(torch.ones(2, 3), torch.ones(2, 3), mask)
    assert torch.isfinite(adv).all() and torch.equal(adv[1], torch.zeros(3))
    assert torch.isfinite(reinforce_pp_advantages(torch.tensor([1.0, 0.0]), mask)).all()
    assert torch.equal(reinforce_pp_advantages(torch.ones(2), torch.zeros(2, 3)), torch.zeros(2, 3))
    close(value_loss(torch.ones(2, 3), torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2, 3))[0], 0.0)


def test_bfloat16_inputs_compute_in_float32():
    rewards = torch.tensor([1.0, 0, 0, 0]).bfloat16()
    adv = grpo_advantages(rewards, 4)
    assert adv.dtype == torch.float32
    close(adv, [1.5, -0.5, -0.5, -0.5], atol=1e-4)
    logp, old, adv2, mask = _ppo_case()
    lp16 = logp.detach().bfloat16().requires_grad_()
    loss, _ = policy_loss(lp16, old.bfloat16(), adv2.bfloat16(), mask, ref_logprobs=old.bfloat16(), kl_coef=0.1)
    assert loss.dtype == torch.float32
    loss.backward()
    assert lp16.grad.dtype == torch.bfloat16 and torch.isfinite(lp16.grad.float()).all()


def test_inputs_are_not_mutated():
    logp, old, adv, mask = _ppo_case()
    rewards = torch.tensor([1.0, 0, 0, 0])
    ref = torch.full((2, 3), -0.5)
    kl = torch.full((2, 3), 0.1)
    tensors = [logp.detach(), old, adv, mask, rewards, ref, kl]
    copies = [t.clone() for t in tensors]
    policy_loss(logp, old, adv, mask, ref_logprobs=ref, kl_coef=0.1)
    grpo_advantages(rewards, 2)
    rloo_advantages(rewards, 2)
    reinforce_pp_advantages(rewards[:2], mask, group_size=2, kl=kl)
    gae(kl, ref, mask)
    value_loss(ref, kl, old, mask)
    for t, c in zip(tensors, copies, strict=True):
        assert torch.equal(t, c)
