"""Rewards for RL: the task's verifier plus declared shaping terms, in one small formula.

    reward = correct                                   # the task verifier, in [0, 1]
           + format_coef * (closed </think> and a non-empty answer)
           + overlong penalty (DAPO, in [-1, 0], when `overlong_cache` > 0)

A verifier that raises scores that sample 0 and is counted (`errors`), so one bad sample or one
verifier bug cannot end a run; the RL loop logs the count as a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ponder.engine import Rollout
from ponder.rl.algorithms import overlong_penalty
from ponder.tasks import Problem, get_task
from ponder.tasks.base import score_safely

log = logging.getLogger(__name__)


@dataclass
class Scored:
    rewards: torch.Tensor  # (B,) the combined reward the algorithm sees
    correct: torch.Tensor  # (B,) the verifier's score alone (accuracy)
    errors: int  # verifier exceptions, each scored 0


def score(
    problems: list[Problem],
    groups: list[list[Rollout]],
    format_coef: float = 0.0,
    max_tokens: int = 0,
    overlong_cache: int = 0,
) -> Scored:
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
    rewards = correct_t + format_coef * torch.tensor(formatted)
    if overlong_cache > 0:
        rewards = rewards + overlong_penalty(torch.tensor(lengths), max_tokens, overlong_cache)
    return Scored(rewards, correct_t, errors)
