"""Rewards for RL: the task's verifier and / or reward models, plus declared shaping terms, in one formula.

    reward = w_v * correct                             # the task verifier, in [0, 1]
           + sum_m w_m * reward_model_m(prompt, completion)   # normalised: (r - mean) / std of training
           + format_coef * (closed </think> and a non-empty answer)
           + overlong penalty (DAPO, in [-1, 0], when `overlong_cache` > 0)

The weights come from the `reward` spec: "verifier" (the default: w_v = 1, no reward model),
"reward-model:DIR" (w_m = 1, no verifier), or a sum such as "0.5*verifier+reward-model:DIR".

A verifier that raises scores that sample 0 and is counted (`errors`), so one bad sample or one
verifier bug cannot end a run; the RL loop logs the count as a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ponder.engine import Rollout
from ponder.errors import PonderError
from ponder.rl.algorithms import overlong_penalty
from ponder.tasks import Problem, get_task
from ponder.tasks.base import score_safely

log = logging.getLogger(__name__)


@dataclass
class Scored:
    rewards: torch.Tensor  # (B,) the combined reward the algorithm sees
    correct: torch.Tensor  # (B,) the verifier's score alone (accuracy)
    errors: int  # verifier exceptions, each scored 0
    proxy: torch.Tensor | None = None  # (B,) the reward models' normalised score (mean over models), if any


@dataclass(frozen=True)
class RewardTerm:
    kind: str  # "verifier" or "reward-model"
    weight: float = 1.0
    path: str = ""  # the reward model's directory


TERM_FORMS = "'verifier', 'reward-model:DIR', or a sum such as '0.5*verifier+reward-model:DIR'"


def parse_reward(spec: str) -> tuple[RewardTerm, ...]:
    """The `reward` spec as weighted terms; an unknown term is an error listing the forms."""
    terms = []
    for part in (p.strip() for p in spec.split("+")):
        weight, star, body = part.partition("*")
        if not star:
            weight, body = "1", part
        kind, _, path = body.strip().partition(":")
        try:
            w = float(weight)
        except ValueError:
            raise PonderError(f"reward term {part!r}: the weight before '*' must be a number ({TERM_FORMS})")
        if kind == "verifier" and not path:
            terms.append(RewardTerm("verifier", w))
        elif kind == "reward-model" and path:
            terms.append(RewardTerm("reward-model", w, path))
        else:
            raise PonderError(f"reward term {part!r} not understood: write {TERM_FORMS}")
    return tuple(terms)


def learned_scores(terms: Sequence[RewardTerm], models: dict, problems, groups) -> list[torch.Tensor]:
    """Each reward-model term's normalised scores, flat (B,), in term order."""
    paths = [t.path for t in terms if t.kind == "reward-model"]
    return [torch.tensor([s for g in models[path](problems, groups) for s in g]) for path in paths]


def score(
    problems: list[Problem],
    groups: list[list[Rollout]],
    format_coef: float = 0.0,
    max_tokens: int = 0,
    overlong_cache: int = 0,
    terms: Sequence[RewardTerm] = (RewardTerm("verifier"),),
    models: dict | None = None,
) -> Scored:
    """The reward of every rollout. `models` maps a reward-model term's path to a scorer
    `(problems, groups) -> grouped normalised scores` (ponder.rlhf.reward_model.RewardModel)."""
    correct, formatted, lengths, errors = [], [], [], 0
    for problem, group in zip(problems, groups, strict=True):
        task = get_task(problem.task)
        for rollout in group:
            value, error = score_safely(task, problem, rollout.text)
            correct.append(value)
            if error is not None:
                errors += 1
                log.warning("verifier %s raised on a sample (scored 0): %r", problem.task, error)
            parsed = rollout.parsed
            formatted.append(float(parsed.closed_thinking and bool(parsed.answer)))
            lengths.append(rollout.num_tokens)
    correct_t = torch.tensor(correct)
    learned = learned_scores(terms, models or {}, problems, groups)
    weights = [t.weight for t in terms if t.kind == "reward-model"]
    rewards = sum(t.weight for t in terms if t.kind == "verifier") * correct_t
    rewards = rewards + sum((w * s for w, s in zip(weights, learned, strict=True)), torch.zeros_like(correct_t))
    rewards = rewards + format_coef * torch.tensor(formatted)
    if overlong_cache > 0:
        rewards = rewards + overlong_penalty(torch.tensor(lengths), max_tokens, overlong_cache)
    proxy = torch.stack(learned).mean(0) if learned else None
    return Scored(rewards, correct_t, errors, proxy)
