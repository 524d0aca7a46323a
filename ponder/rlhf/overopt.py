"""Reward-model over-optimisation: the proxy against the gold measure, along d = sqrt(KL to the start).

A reward model is a proxy. Optimised far enough, the policy finds what the proxy over-rates: the
proxy keeps rising while the gold measure (the task verifier, or a synthetic preference rule) peaks
and turns down. Gao et al. 2022 (arXiv 2210.10760) found the gold score, relative to the start,
follows a simple form in d = sqrt(KL(policy || start)) for each way of spending the reward model:

    best-of-n   gold(d) = d (alpha - beta d),       KL of best-of-n = log n - (n - 1) / n
    RL          gold(d) = d (alpha - beta log d)

This module measures both on held-out prompts (`heldout_measure` during RL, `best_of_n_curve` from
the starting policy), fits both forms (`fit_best_of_n`, `fit_rl`) and stops RL on the held-out gold
measure, never on the proxy (`GoldEarlyStop`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ponder.engine import Rollout, SamplingParams
from ponder.evals import score_rollout
from ponder.io import read_jsonl_records
from ponder.rl.batch import RolloutBatch, token_logprobs
from ponder.tasks import Problem

# proxy(problems, groups) -> grouped scores: the reward model's part of the RL reward
Proxy = Callable[[Sequence[Problem], Sequence[Sequence[Rollout]]], list[list[float]]]


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || policy) in nats, the analytic form Gao et al. use: log n - (n - 1) / n."""
    return math.log(n) - (n - 1) / n


# ---------------------------------------------------------------------------------------------------
# measuring


@torch.no_grad()
def sequence_kl(rollouts: Sequence[Rollout], reference, device) -> float:
    """Mean over rollouts of sum_t log pi(y_t) - log pi_ref(y_t) on the tokens the policy wrote: an
    unbiased estimate of KL(pi || pi_ref) per sequence when the rollouts were sampled at T = 1."""
    batch = RolloutBatch.build(list(rollouts), device)
    ref = token_logprobs(reference, batch, 1.0).logprobs
    per_row = ((batch.old_logprobs - ref) * batch.mask).sum(dim=1)
    return per_row.mean().item()


def heldout_measure(
    engine, reference, problems: Sequence[Problem], proxy: Proxy, samples: int, max_tokens: int, seed: int = 0
) -> dict:
    """Proxy, gold and KL to the reference of `samples` completions per held-out problem at T = 1."""
    params = SamplingParams(n=samples, temperature=1.0, max_tokens=max_tokens, seed=seed)
    groups = engine.generate([engine.format.prompt(p.prompt) for p in problems], params)
    rollouts = [r for g in groups for r in g]
    gold = [score_rollout(p, r) for p, g in zip(problems, groups, strict=True) for r in g]
    flat = [s for g in proxy(problems, groups) for s in g]
    kl = max(0.0, sequence_kl(rollouts, reference, next(reference.parameters()).device))
    return {
        "heldout_gold": round(sum(gold) / len(gold), 4),
        "heldout_proxy": round(sum(flat) / len(flat), 4),
        "heldout_kl": round(kl, 4),
        "heldout_len": round(sum(r.num_tokens for r in rollouts) / len(rollouts), 2),
    }


def best_of_n_curve(engine, problems: Sequence[Problem], proxy: Proxy, max_n: int, max_tokens: int, seed: int = 0):
    """Gold and proxy of best-of-n (chosen by the proxy) for n = 1, 2, 4, ... max_n, from one draw of
    max_n samples per problem: for each n the draw is cut into max_n / n disjoint groups and each
    group's top-proxy sample is scored, so every n uses all samples once."""
    params = SamplingParams(n=max_n, temperature=1.0, max_tokens=max_tokens, seed=seed)
    groups = engine.generate([engine.format.prompt(p.prompt) for p in problems], params)
    scores = proxy(problems, groups)
    gold = [[score_rollout(p, r) for r in g] for p, g in zip(problems, groups, strict=True)]
    points, n = [], 1
    while n <= max_n:
        picked_gold, picked_proxy = [], []
        for g_gold, g_proxy in zip(gold, scores, strict=True):
            for start in range(0, max_n - n + 1, n):
                best = max(range(start, start + n), key=lambda i: g_proxy[i])
                picked_gold.append(g_gold[best])
                picked_proxy.append(g_proxy[best])
        kl = best_of_n_kl(n)
        points.append(
            {
                "n": n,
                "kl": round(kl, 4),
                "sqrt_kl": round(math.sqrt(kl), 4),
                "gold": round(sum(picked_gold) / len(picked_gold), 4),
                "proxy": round(sum(picked_proxy) / len(picked_proxy), 4),
            }
        )
        n *= 2
    return points


# ---------------------------------------------------------------------------------------------------
# fitting


@dataclass(frozen=True)
class Fit:
    """gold(d) - gold(0) = d (alpha - beta f(d)), f(d) = d (best-of-n) or log d (RL)."""

    form: str  # "best_of_n" or "rl"
    alpha: float
    beta: float

    def __call__(self, d: float) -> float:
        if d <= 0:
            return 0.0
        return d * (self.alpha - self.beta * (d if self.form == "best_of_n" else math.log(d)))

    @property
    def peak(self) -> float | None:
        """The d where the fitted gold is highest (None if it never turns down)."""
        if self.beta <= 0:
            return None
        return self.alpha / (2 * self.beta) if self.form == "best_of_n" else math.exp(self.alpha / self.beta - 1)


def _least_squares(features: list[tuple[float, float]], ys: list[float]) -> tuple[float, float]:
    """(a, b) minimising sum (a x1 + b x2 - y)^2, through the origin (the forms have no intercept)."""
    a11 = sum(x1 * x1 for x1, _ in features)
    a12 = sum(x1 * x2 for x1, x2 in features)
    a22 = sum(x2 * x2 for _, x2 in features)
    b1 = sum(x1 * y for (x1, _), y in zip(features, ys, strict=True))
    b2 = sum(x2 * y for (_, x2), y in zip(features, ys, strict=True))
    det = a11 * a22 - a12 * a12
    if abs(det) < 1e-12:
        return (b1 / a11 if a11 else 0.0), 0.0
    return (b1 * a22 - b2 * a12) / det, (a11 * b2 - a12 * b1) / det


def fit_best_of_n(ds: Sequence[float], gains: Sequence[float]) -> Fit | None:
    """Fit gain = d (alpha - beta d) to points with d > 0; None with fewer than two such points."""
    pts = [(d, g) for d, g in zip(ds, gains, strict=True) if d > 0]
    if len(pts) < 2:
        return None
    alpha, minus_beta = _least_squares([(d, d * d) for d, _ in pts], [g for _, g in pts])
    return Fit("best_of_n", alpha, -minus_beta)


def fit_rl(ds: Sequence[float], gains: Sequence[float]) -> Fit | None:
    """Fit gain = d (alpha - beta log d) to points with d > 0; None with fewer than two such points."""
    pts = [(d, g) for d, g in zip(ds, gains, strict=True) if d > 0]
    if len(pts) < 2:
        return None
    alpha, minus_beta = _least_squares([(d, d * math.log(d)) for d, _ in pts], [g for _, g in pts])
    return Fit("rl", alpha, -minus_beta)


# ---------------------------------------------------------------------------------------------------
# early stopping on the gold measure


def gold_of(record: dict) -> float:
    """An eval record's held-out gold measure: the sampled gold when a reward model is the reward
    (the rule or verifier on T = 1 samples), else greedy held-out accuracy (the verifier)."""
    return record.get("heldout_gold", record["eval_accuracy"])


class GoldEarlyStop:
    """Stop after `patience` evals without a new best held-out gold measure; the best policy is kept
    in `best_dir` (rebuilt from metrics.jsonl on resume). The proxy is never consulted: it keeps
    rising when the policy over-optimises, which is exactly when training should stop."""

    def __init__(self, patience: int, best_dir: Path, metrics_path: Path | None = None):
        self.patience, self.best_dir = patience, best_dir
        self.best, self.best_step, self.since = -math.inf, None, 0
        if metrics_path is not None and metrics_path.is_file():
            for _, record in read_jsonl_records(metrics_path):
                if "eval_accuracy" in record:
                    self.update(record)

    def update(self, record: dict, save: Callable[[Path], object] | None = None) -> bool:
        """Take one eval record (saving the policy with `save(dir)` at a new best); True = stop."""
        if not self.patience:
            return False
        if gold_of(record) > self.best:
            self.best, self.best_step, self.since = gold_of(record), record["step"], 0
            if save is not None:
                save(self.best_dir)
            return False
        self.since += 1
        return self.since >= self.patience


# ---------------------------------------------------------------------------------------------------
# a run's curves


def curves(evals: Sequence[dict], best_of_n: Sequence[dict]) -> dict:
    """RL and best-of-n points as (d, gold, proxy), and each one's fitted form (gold gain over the
    start against d). RL points are the eval records that measured proxy and gold."""
    rl = [
        (math.sqrt(max(0.0, e["heldout_kl"])), e["heldout_gold"], e["heldout_proxy"])
        for e in evals
        if "heldout_kl" in e
    ]
    bon = [(p["sqrt_kl"], p["gold"], p["proxy"]) for p in best_of_n]
    out = {"rl": rl, "best_of_n": bon, "rl_fit": None, "best_of_n_fit": None}
    if rl:
        out["rl_fit"] = fit_rl([d for d, _, _ in rl], [g - rl[0][1] for _, g, _ in rl])
    if bon:
        out["best_of_n_fit"] = fit_best_of_n([d for d, _, _ in bon], [g - bon[0][1] for _, g, _ in bon])
    return out
