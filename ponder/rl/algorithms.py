"""Advantage estimators and policy / value losses for RL on verifiable rewards, as pure tensor functions.

Conventions. A batch holds B completions (rows) padded to T tokens. `mask` (B, T) is nonzero on the
tokens the model wrote; prompt, padding and tool output are zero and never contribute to any loss,
statistic or gradient. Completions of the same prompt are contiguous rows: `group_size` G, so
B = num_groups * G. `rewards` is (B,); `logprobs`, `old_logprobs`, `ref_logprobs` are (B, T)
log-probs of the taken tokens under the current policy, the sampler and a frozen reference.

Every function computes in float32 (bfloat16 inputs are upcast), never mutates its inputs, gives
zero advantage (not NaN) to a group whose rewards are all equal, and is NaN-free on a row whose mask
is all zero. Advantages are returned detached: they are targets, not part of the graph.

Kept (with the paper that introduced each):
- GRPO group-normalised advantages, DeepSeekMath (arXiv 2402.03300); "batch" std as in TRL.
- Dr. GRPO: no std division and no length normalisation (arXiv 2503.20783).
- DAPO: clip-higher (eps_low != eps_high), token-level loss, dynamic sampling of non-constant
  groups, soft overlong punishment (arXiv 2503.14476).
- RLOO leave-one-out baseline, Ahmadian et al. (arXiv 2402.14740).
- REINFORCE++ and REINFORCE++-baseline: per-token returns, batch-whitened (arXiv 2501.03262).
- PPO clipped policy and value losses with GAE (Schulman et al. 2015, arXiv 1506.02438).
- k1 / k2 / k3 KL estimators, Schulman's note "Approximating KL divergence" (2020).
- Truncated importance sampling between sampler and trainer (Yao et al., "Your efficient RL
  framework secretly brings you off-policy RL training", 2025; verl's `tis_imp_ratio_cap`), for
  rollouts drawn by another engine than the trainer's.

Dropped, on purpose: dual-clip PPO, GSPO / sequence-level importance ratios, adaptive KL
controllers, value-model tricks beyond clipping
(VAPO, decoupled GAE lambdas) and entropy bonuses inside the policy loss (the caller can add
`-coef * masked_mean(entropy_from_logits(logits), mask)` itself).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ponder.errors import PonderError

AGGREGATIONS = ("token", "sequence", "constant")
KL_KINDS = ("k1", "k2", "k3")


# ----------------------------------------------------------------------------------------------------
# helpers


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of `x` over positions where `mask` is nonzero; 0 (not NaN) where there are none.

    `torch.where` rather than `x * mask`, so an inf/NaN at a masked-out position cannot leak in.
    """
    m = mask.bool()
    total = torch.where(m, x.float(), 0.0).sum(dim=dim)
    count = m.sum(dim=dim).clamp_min(1)
    return total / count


def _grouped(rewards: Tensor, group_size: int, min_size: int = 1) -> Tensor:
    """(B,) rewards as a float32 (num_groups, G) view, checking that B is a multiple of G."""
    if rewards.dim() != 1:
        raise PonderError(f"rewards must be 1-D (B,), got shape {tuple(rewards.shape)}.")
    if group_size < min_size or rewards.numel() % group_size != 0:
        raise PonderError(
            f"group_size={group_size} must be >= {min_size} and divide the batch size {rewards.numel()}: "
            "completions of one prompt must be contiguous rows."
        )
    return rewards.detach().float().view(-1, group_size)


def _constant_groups(grouped: Tensor) -> Tensor:
    """(num_groups, 1) bool: True where every reward in the group is equal.

    Checked exactly (max == min) because r - mean(r) of equal floats can be a rounding error of
    ~1e-8, which a tiny std would blow up into a spurious advantage.
    """
    return grouped.amax(dim=1, keepdim=True) == grouped.amin(dim=1, keepdim=True)


def place_on_last_token(rewards: Tensor, mask: Tensor) -> Tensor:
    """(B,) scalar rewards -> (B, T) float32, each reward on its row's last model-written token.

    A row with an all-zero mask has no token to carry its reward, so it gets an all-zero row.
    """
    m = mask.bool()
    positions = torch.arange(m.shape[1], device=m.device).expand_as(m)
    last = torch.where(m, positions, -1).amax(dim=1)  # -1 where the row has no model token
    has_tokens = last >= 0
    out = torch.zeros(m.shape, dtype=torch.float32, device=m.device)
    values = torch.where(has_tokens, rewards.detach().float(), 0.0)
    return out.scatter(1, last.clamp_min(0).unsqueeze(1), values.unsqueeze(1))


def _whiten(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Zero mean, unit (population) std over masked positions; 0 elsewhere and if they are all equal."""
    m = mask.bool()
    if not m.any():
        return torch.zeros_like(x)
    values = x[m]
    if values.amax() == values.amin():  # exact check, for the same reason as `_constant_groups`
        return torch.zeros_like(x)
    mean = values.mean()
    std = values.std(unbiased=False)
    return torch.where(m, (x - mean) / (std + eps), 0.0)


# ----------------------------------------------------------------------------------------------------
# advantages


def grpo_advantages(rewards: Tensor, group_size: int, eps: float = 1e-6, scale: str = "group") -> Tensor:
    """GRPO per-sequence advantages (B,): (r - group mean) / (std + eps). DeepSeekMath, arXiv 2402.03300.

    scale="group": std of the group (the paper); "batch": std of the whole batch (TRL's
    `scale_rewards="batch"`, more robust when a group's std is tiny); "none": no division at all,
    which is Dr. GRPO (arXiv 2503.20783) — the std division up-weights near-constant groups.
    The std is the unbiased (Bessel-corrected) one, as `torch.std` in TRL, so group_size >= 2.
    A group whose rewards are all equal gets exactly 0.
    """
    if scale not in ("group", "batch", "none"):
        raise PonderError(f"scale must be 'group', 'batch' or 'none', got {scale!r}.")
    grouped = _grouped(rewards, group_size, min_size=2)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale == "group":
        centred = centred / (grouped.std(dim=1, keepdim=True) + eps)
    elif scale == "batch":
        centred = centred / (grouped.std() + eps)
    return torch.where(_constant_groups(grouped), 0.0, centred).view(-1)


def rloo_advantages(rewards: Tensor, group_size: int) -> Tensor:
    """RLOO per-sequence advantages (B,): r_i minus the mean of the other G-1 rewards of its group.

    Ahmadian et al., "Back to Basics", arXiv 2402.14740. Needs group_size >= 2.
    """
    grouped = _grouped(rewards, group_size, min_size=2)
    others_mean = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return torch.where(_constant_groups(grouped), 0.0, grouped - others_mean).view(-1)


def reinforce_pp_advantages(
    rewards: Tensor,
    mask: Tensor,
    group_size: int | None = None,
    kl: Tensor | None = None,
    kl_coef: float = 1.0,
    eps: float = 1e-8,
) -> Tensor:
    """REINFORCE++ per-token advantages (B, T), arXiv 2501.03262.

    Per-token reward = the scalar reward on the last model token, minus `kl_coef * kl` on every model
    token when a (B, T) `kl` is given (pass a pre-scaled penalty with the default kl_coef=1).
    With gamma = 1 the return at a token is the sum of the per-token rewards from it to the end.
    Returns are then whitened over all masked tokens of the batch (zero mean, unit population std),
    the "global batch normalisation" that replaces a critic.

    With `group_size`, this is REINFORCE++-baseline: each reward first has its group mean
    subtracted (no std division), then the same returns and batch whitening follow.
    Positions outside the mask are 0.
    """
    m = mask.bool()
    r = rewards.detach().float()
    if group_size is not None:
        grouped = _grouped(r, group_size)
        r = torch.where(_constant_groups(grouped), 0.0, grouped - grouped.mean(dim=1, keepdim=True)).view(-1)
    per_token = place_on_last_token(r, m)
    if kl is not None:
        per_token = per_token - kl_coef * torch.where(m, kl.detach().float(), 0.0)
    # reverse cumulative sum = reward-to-go with gamma = 1; masked-out positions carry 0 reward
    returns = per_token.flip(1).cumsum(1).flip(1)
    return _whiten(returns, m, eps)


def gae(
    rewards_per_token: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[Tensor, Tensor]:
    """PPO's generalised advantage estimation (Schulman et al. 2015, arXiv 1506.02438).

    Returns (advantages, returns), both (B, T) float32, detached, 0 outside the mask;
    returns = advantages + values are the value-function targets.

    Masked-out positions are transparent: the recursion jumps from one model token straight to the
    next model token, as if tool output in between were not there, so
    delta_t = r_t + gamma * V(next model token) - V_t and A_t = delta_t + gamma * lam * A(next model
    token). Rewards and values at masked-out positions are ignored. After a row's last model token
    the episode ends (next value 0). Put a scalar reward on the last token with `place_on_last_token`.
    """
    m = mask.bool()
    r = rewards_per_token.detach().float()
    v = values.detach().float()
    batch, length = m.shape
    next_value = torch.zeros(batch, device=v.device)
    next_adv = torch.zeros(batch, device=v.device)
    advantages = []
    # a Python loop over T, as in TRL / OpenRLHF: each step is a handful of (B,) ops
    for t in reversed(range(length)):
        here = m[:, t]
        delta = r[:, t] + gamma * next_value - v[:, t]
        adv = delta + gamma * lam * next_adv
        advantages.append(torch.where(here, adv, 0.0))
        # a masked-out position carries the next model token's value and advantage through unchanged
        next_adv = torch.where(here, adv, next_adv)
        next_value = torch.where(here, v[:, t], next_value)
    adv = torch.stack(advantages[::-1], dim=1)
    returns = torch.where(m, adv + v, 0.0)
    return adv, returns


def dynamic_sampling_keep(rewards: Tensor, group_size: int) -> tuple[Tensor, float]:
    """DAPO dynamic sampling (arXiv 2503.14476): which completions to keep, and the share of groups dropped.

    Returns (keep, dropped_fraction): `keep` is (B,) bool, False for every completion of a group
    whose rewards are all equal (all right or all wrong gives zero advantage, so no gradient, and
    only dilutes the batch); `dropped_fraction` is the fraction of groups dropped, a float.
    For 0/1 rewards this is DAPO's "0 < accuracy < 1"; for graded rewards, "not all equal".
    """
    constant = _constant_groups(_grouped(rewards, group_size)).squeeze(1)
    keep = (~constant).repeat_interleave(group_size)
    return keep, constant.float().mean().item()


def overlong_penalty(lengths: Tensor, max_len: int, cache_len: int) -> Tensor:
    """DAPO soft overlong punishment (arXiv 2503.14476), (B,) float32, added to the reward.

    0 for length <= max_len - cache_len; linear from 0 down to -1 across the last `cache_len`
    tokens (reaching -1 at length == max_len); -1 beyond max_len.
    """
    if cache_len < 0 or cache_len > max_len:
        raise PonderError(f"need 0 <= cache_len <= max_len, got cache_len={cache_len}, max_len={max_len}.")
    lengths = lengths.detach().float()
    if cache_len == 0:  # a hard cut-off: nothing to interpolate over
        return torch.where(lengths > max_len, -1.0, 0.0)
    return (((max_len - cache_len) - lengths) / cache_len).clamp(-1.0, 0.0)


def _grpo(rewards: Tensor, mask: Tensor, group_size: int) -> Tensor:
    return grpo_advantages(rewards, group_size)


def _dr_grpo(rewards: Tensor, mask: Tensor, group_size: int) -> Tensor:
    return grpo_advantages(rewards, group_size, scale="none")


def _rloo(rewards: Tensor, mask: Tensor, group_size: int) -> Tensor:
    return rloo_advantages(rewards, group_size)


def _reinforce_pp(rewards: Tensor, mask: Tensor, group_size: int) -> Tensor:
    return reinforce_pp_advantages(rewards, mask)


def _reinforce_pp_baseline(rewards: Tensor, mask: Tensor, group_size: int) -> Tensor:
    return reinforce_pp_advantages(rewards, mask, group_size=group_size)


# name -> (rewards (B,), mask (B, T), group_size) -> advantages, (B,) or (B, T); PPO/GAE needs values
ADVANTAGES = {
    "grpo": _grpo,
    "dr_grpo": _dr_grpo,
    "rloo": _rloo,
    "reinforce_pp": _reinforce_pp,
    "reinforce_pp_baseline": _reinforce_pp_baseline,
}


# ----------------------------------------------------------------------------------------------------
# losses


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, kind: str = "k3") -> Tensor:
    """Per-token estimator (B, T) float32 of KL(policy || reference) from tokens sampled by the policy.

    Schulman, "Approximating KL divergence" (2020), with d = ref - logp:
      k1 = -d = logp - ref           unbiased, high variance, can be negative;
      k2 = d^2 / 2                    biased, low variance;
      k3 = exp(d) - d - 1             unbiased, low variance, always >= 0 (GRPO's choice).
    d is clamped to [-20, 20] for k3 only, so exp cannot overflow on a far-off token.
    """
    d = ref_logprobs.float() - logprobs.float()
    if kind == "k1":
        return -d
    if kind == "k2":
        return 0.5 * d.square()
    if kind == "k3":
        d = d.clamp(-20.0, 20.0)
        return torch.exp(d) - d - 1.0
    raise PonderError(f"kl kind must be one of {KL_KINDS}, got {kind!r}.")


def _aggregate(per_token: Tensor, mask: Tensor, agg: str, max_tokens: int | None) -> Tensor:
    """Reduce a (B, T) per-token loss over masked tokens to a scalar; see `policy_loss` for the modes."""
    m = mask.bool()
    x = torch.where(m, per_token, 0.0)
    if agg == "token":
        return x.sum() / m.sum().clamp_min(1)
    if agg == "sequence":
        counts = m.sum(dim=1)
        per_seq = x.sum(dim=1) / counts.clamp_min(1)
        has_tokens = counts > 0  # an empty row has no mean; averaging in its 0 would shrink the loss
        return per_seq.sum() / has_tokens.sum().clamp_min(1)
    if agg == "constant":
        if max_tokens is None or max_tokens <= 0:
            raise PonderError("agg='constant' (Dr. GRPO) needs max_tokens > 0, e.g. the generation limit.")
        return x.sum() / (m.shape[0] * max_tokens)
    raise PonderError(f"agg must be one of {AGGREGATIONS}, got {agg!r}.")


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    agg: str = "token",
    max_tokens: int | None = None,
    ref_logprobs: Tensor | None = None,
    kl_coef: float = 0.0,
    kl_kind: str = "k3",
    is_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO-clip surrogate loss (scalar) and stats; gradients flow to `logprobs` only.

    Per token: -min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A), ratio = exp(logp - old).
    eps_high > eps_low is DAPO's clip-higher (arXiv 2503.14476). `advantages` is (B,) (broadcast over
    the row) or (B, T).

    agg, how per-token losses become one number:
      "token"    sum over all masked tokens of the batch / their count (DAPO) — every token weighs
                 the same, so long answers are not down-weighted;
      "sequence" mean over each row's tokens, then mean over rows that have tokens (GRPO, 2402.03300);
      "constant" sum over masked tokens / (B * max_tokens) (Dr. GRPO, 2503.20783) — no length
                 normalisation at all, so no length bias.

    With `ref_logprobs`, adds kl_coef * (the `kl_kind` KL to the reference, aggregated the same way).
    With `is_weights` (B, T), each token's clipped term is multiplied by its (detached) weight before
    aggregation: truncated importance sampling, see `truncated_importance_weights`. The KL term is
    not weighted. None leaves the loss exactly as without it.
    Stats (detached 0-d tensors, so no GPU sync here): clip_frac (share of masked tokens whose
    clipped term is the active one, i.e. zero gradient), clip_frac_low, clip_frac_high, approx_kl
    (k3 estimate of KL(old || current)), ratio_mean, and kl when a reference is given.
    """
    m = mask.bool()
    # zero the log-ratio at masked-out positions *before* exp: exp of garbage there could be inf,
    # and inf * 0 in the backward pass is NaN even though `where` would drop the forward value
    log_ratio = torch.where(m, logprobs.float() - old_logprobs.detach().float(), 0.0)
    ratio = torch.exp(log_ratio)
    adv = advantages.detach().float()
    if adv.dim() == 1:
        adv = adv.unsqueeze(1)
    adv = adv.expand_as(ratio)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    if is_weights is not None:
        per_token = per_token * _checked_weights(is_weights, m)
    loss = _aggregate(per_token, m, agg, max_tokens)

    with torch.no_grad():
        clipped_low = (ratio < 1.0 - eps_low) & (adv < 0)
        clipped_high = (ratio > 1.0 + eps_high) & (adv > 0)
        stats = {
            "clip_frac": masked_mean((clipped_low | clipped_high).float(), m),
            "clip_frac_low": masked_mean(clipped_low.float(), m),
            "clip_frac_high": masked_mean(clipped_high.float(), m),
            # k3 with samples from the old policy: (r - 1) - log r >= 0
            "approx_kl": masked_mean((ratio - 1.0) - log_ratio, m),
            "ratio_mean": masked_mean(ratio, m),
        }

    if ref_logprobs is not None:
        ref = ref_logprobs.detach().float()
        # outside the mask, pretend the policy equals the reference: estimator 0, gradient 0
        kl = kl_penalty(torch.where(m, logprobs.float(), ref), ref, kl_kind)
        loss = loss + kl_coef * _aggregate(kl, m, agg, max_tokens)
        stats["kl"] = masked_mean(kl.detach(), m)
    return loss, stats


def _checked_weights(is_weights: Tensor, mask: Tensor) -> Tensor:
    """Detached float32 weights, 0 outside the mask (an inf there would make 0 * inf = NaN gradients)."""
    if is_weights.shape != mask.shape:
        raise PonderError(
            f"is_weights must have the shape of the log-probs {tuple(mask.shape)}, got {tuple(is_weights.shape)}: "
            "one weight per token"
        )
    return torch.where(mask, is_weights.detach().float(), 0.0)


def truncated_importance_weights(
    trainer_logprobs: Tensor, sampler_logprobs: Tensor, mask: Tensor, cap: float = 2.0
) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-token weights (B, T) = min(exp(trainer - sampler), cap), detached, 1 outside the mask; and stats.

    When another engine sampled the rollouts (other kernels, another precision, an older policy
    version), its log-probs differ from the trainer's, so a PPO ratio against them mixes the update
    with that mismatch. The fix (Yao et al. 2025; verl `tis_imp_ratio_cap`, TRL's vLLM
    importance-sampling correction): take the trainer's own log-probs as the "old" policy of the
    ratio, and reweight each token by trainer / sampler, truncated at `cap` so a token the sampler
    found unlikely cannot blow the gradient up.

    Stats (detached 0-d tensors, over masked tokens): mismatch_kl, the k3 estimate of
    KL(sampler || trainer) from the sampler's tokens; mismatch_max, the largest |trainer - sampler|;
    tis_truncated, the share of tokens whose ratio exceeded the cap; tis_weight_mean.
    """
    if cap <= 0:
        raise PonderError(f"the importance-weight cap must be > 0, got {cap!r}")
    m = mask.bool()
    trainer = trainer_logprobs.detach().float()
    sampler = sampler_logprobs.detach().float()
    # zero the log-ratio outside the mask before exp, as in `policy_loss`
    log_ratio = torch.where(m, trainer - sampler, 0.0)
    ratio = torch.exp(log_ratio)
    weights = torch.where(m, ratio.clamp_max(cap), 1.0)
    stats = {
        "mismatch_kl": masked_mean(kl_penalty(sampler, torch.where(m, trainer, sampler), "k3"), m),
        "mismatch_max": log_ratio.abs().amax() if log_ratio.numel() else log_ratio.new_zeros(()),
        "tis_truncated": masked_mean((ratio > cap).float(), m),
        "tis_weight_mean": masked_mean(weights, m),
    }
    return weights, stats


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float = 0.2
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped value loss: 0.5 * max((v - R)^2, (clip(v, old - clip, old + clip) - R)^2), masked mean.

    Stats: clip_frac (share of masked tokens where the clipped term is the larger, i.e. active one)
    and value_mean.
    """
    m = mask.bool()
    target = returns.detach().float()
    old = old_values.detach().float()
    # fill masked-out positions with the target so garbage there cannot reach the backward pass
    v = torch.where(m, values.float(), target)
    v_clipped = old + (v - old).clamp(-clip, clip)
    err = (v - target).square()
    err_clipped = (v_clipped - target).square()
    loss = masked_mean(0.5 * torch.maximum(err, err_clipped), m)
    with torch.no_grad():
        stats = {
            "clip_frac": masked_mean((err_clipped > err).float(), m),
            "value_mean": masked_mean(v, m),
        }
    return loss, stats


def entropy_from_logits(logits: Tensor, chunk_size: int = 1024) -> Tensor:
    """Entropy (B, T) float32 of the softmax over the last axis of (B, T, V) logits.

    H = logsumexp(z) - sum_v softmax(z)_v * z_v, which never takes log of a probability (no log 0).
    Rows of B*T are processed `chunk_size` at a time so the float32 copy of a bfloat16 (.., V)
    vocabulary-sized tensor exists for one chunk at a time, not for the whole batch.
    """
    flat = logits.reshape(-1, logits.shape[-1])
    pieces = []
    for chunk in flat.split(chunk_size):
        # -inf logits (masked vocabulary) -> most negative float: softmax gives an exact 0 there,
        # and 0 * finite replaces 0 * -inf = NaN in the sum below
        z = chunk.float().clamp_min(torch.finfo(torch.float32).min)
        lse = torch.logsumexp(z, dim=-1)
        pieces.append(lse - (torch.softmax(z, dim=-1) * z).sum(dim=-1))
    if not pieces:
        return torch.zeros(logits.shape[:-1], dtype=torch.float32, device=logits.device)
    return torch.cat(pieces).view(logits.shape[:-1])
