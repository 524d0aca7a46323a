"""The test-time scaling sweep: accuracy against generated tokens, one curve per strategy.

    result = sweep(engine, TaskMix().eval_set(20), ScaleConfig(max_n=16), verifier=v)
    result["points"]  # [{strategy, level, accuracy, tokens, tokens_per_problem}, ...]

How it runs, on held-out problems only:
  1) greedy once (the baseline), as the model decodes it and with thinking on (`greedy:thinking`, the
     model may not skip its thinking; also auto effort's first vote);
  2) one draw of `max_n` samples per problem at `temperature`. The sampled strategies at n = 1, 2, 4,
     ..., max_n choose from random n-subsets of that draw (`trials` subsets, averaged), which is an
     unbiased estimate of drawing n fresh samples and costs one draw instead of log2(max_n) of them:
     sample, majority (maj@n), best_of_n with the oracle (= pass@n, exact) and with the learned
     verifier, verifier-weighted vote. Tokens are n times the mean tokens of a sample;
  3) budget forcing (greedy, thinking on), capped at thinking budgets 1, 8, 16, 32, ... (`budgets`; 1 is
     thinking off) and extended with
     "wait," to at least 8, 16, 32, ... thinking tokens (`extend`), and sequential revision at 2, 3
     rounds, each a real run;
  4) auto effort, a real run of rounds (it decides per problem how many samples to draw), and the
     same stopping rule replayed on step 1's thinking-on greedy answer followed by random orders of the
     step-2 draw (`auto_effort:paired`): the samples it is compared with maj@max_n on are then the same
     ones, so the difference between the two is measured without the noise of two independent draws.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from ponder.engine import SamplingParams
from ponder.evals import score_rollout
from ponder.tasks import Problem
from ponder.ttc import strategies
from ponder.ttc.answers import plurality, top_score, weighted
from ponder.ttc.metrics import mean_pass_at_k, subsets

SAMPLED = (
    "sample",
    "majority",
    "best_of_n:oracle",
    "best_of_n:verifier",
    "weighted_vote:verifier",
    "auto_effort:paired",
)
STRATEGY_NAMES = (
    "greedy",
    "greedy:thinking",
    *SAMPLED,
    "budget_forcing",
    "budget_forcing:extend",
    "revision",
    "auto_effort",
)


@dataclass
class ScaleConfig:
    max_n: int = field(default=16, metadata={"help": "largest number of samples (levels 1, 2, 4, ...)"})
    temperature: float = field(default=1.0, metadata={"help": "temperature of the sampled strategies"})
    max_tokens: int = field(default=256, metadata={"help": "tokens per sample at most"})
    budgets: tuple[int, ...] = field(default=(1, 8, 16, 32, 64, 128, 256), metadata={"help": "thinking caps"})
    extend: tuple[int, ...] = field(
        default=(8, 16, 32, 64), metadata={"help": 'least thinking tokens ("wait," below them)'}
    )
    revision_rounds: tuple[int, ...] = field(default=(2, 3), metadata={"help": "revision attempts"})
    trials: int = field(default=16, metadata={"help": "random subsets averaged per sampled level"})
    strategies: tuple[str, ...] = field(default=STRATEGY_NAMES, metadata={"help": "which curves"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})


def levels(max_n: int) -> list[int]:
    out, n = [], 1
    while n <= max_n:
        out.append(n)
        n *= 2
    return out


def point(strategy: str, level: float, outcomes_or_acc, tokens: float, problems: int, **extra) -> dict:
    if isinstance(outcomes_or_acc, list):
        acc, tokens = strategies.accuracy(outcomes_or_acc), strategies.total_tokens(outcomes_or_acc)
    else:
        acc = float(outcomes_or_acc)
    return {
        "strategy": strategy,
        "level": level,
        "accuracy": acc,
        "tokens": float(tokens),
        "tokens_per_problem": float(tokens) / max(1, problems),
        **extra,
    }


def sweep(
    engine,
    problems: Sequence[Problem],
    cfg: ScaleConfig | None = None,
    verifier=None,
    on_stage: Callable[[str], None] | None = None,
    progress=None,
) -> dict:
    """Every strategy of `cfg.strategies` at every compute level; returns points and the raw draw."""
    cfg = cfg or ScaleConfig()
    unknown = set(cfg.strategies) - set(STRATEGY_NAMES)
    if unknown:
        from ponder.errors import PonderError

        raise PonderError(f"unknown strategies {sorted(unknown)}; known: {', '.join(STRATEGY_NAMES)}")
    wanted = set(cfg.strategies)
    if verifier is None:
        wanted -= {"best_of_n:verifier", "weighted_vote:verifier"}
    stage = on_stage or (lambda s: None)
    params = SamplingParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens, seed=cfg.seed)
    greedy_params = SamplingParams(temperature=0.0, max_tokens=cfg.max_tokens)
    count = len(problems)
    points: list[dict] = []
    timings: dict[str, float] = {}
    draw_record: dict = {}

    def timed(name: str, fn):
        stage(name)
        t0 = time.perf_counter()
        out = fn()
        timings[name] = round(time.perf_counter() - t0, 1)
        return out

    # 1) greedy, as decoded and with thinking on
    if "greedy" in wanted:
        out = timed("greedy", lambda: strategies.greedy(engine, problems, greedy_params, progress))
        points.append(point("greedy", 1, out, 0, count))
    anchor = None
    if wanted & {"greedy:thinking", "auto_effort:paired"}:
        thinking = strategies.anchor_params(greedy_params)
        anchor = timed("greedy, thinking on", lambda: strategies.greedy(engine, problems, thinking, progress))
        points.append(point("greedy:thinking", 1, anchor, 0, count))
    # 2) one draw of max_n samples, re-selected at every level
    if wanted & set(SAMPLED):
        groups = timed(
            f"draw {cfg.max_n} samples",
            lambda: strategies.draw(engine, problems, _with_n(params, cfg.max_n), progress),
        )
        keys = [strategies.keys_of(p, g) for p, g in zip(problems, groups, strict=True)]
        correct = [[score_rollout(p, r) > 0.5 for r in g] for p, g in zip(problems, groups, strict=True)]
        tokens = [[r.num_tokens for r in g] for g in groups]
        scores = None
        if verifier is not None and wanted & {"best_of_n:verifier", "weighted_vote:verifier"}:
            scores = timed("verifier scores", lambda: verifier.score(problems, groups))
        draw_record = {"keys": keys, "correct": correct, "tokens": tokens, "verifier_scores": scores}
        points += _sampled_points(cfg, wanted, keys, correct, tokens, scores, anchor)
    # 3) budget forcing and revision: real runs per level
    if "budget_forcing" in wanted:
        for b in cfg.budgets:
            out = timed(
                f"budget {b}",
                lambda b=b: strategies.budget_forcing(engine, problems, b, params=greedy_params, progress=progress),
            )
            points.append(point("budget_forcing", b, out, 0, count))
    if "budget_forcing:extend" in wanted:
        for b in cfg.extend:
            out = timed(
                f"extend {b}",
                lambda b=b: strategies.budget_forcing(
                    engine, problems, None, min_thinking_tokens=b, params=greedy_params, progress=progress
                ),
            )
            points.append(point("budget_forcing:extend", b, out, 0, count))
    if "revision" in wanted:
        for rounds in cfg.revision_rounds:
            out = timed(
                f"revision {rounds}",
                lambda r=rounds: strategies.revision(engine, problems, r, greedy_params, progress),
            )
            points.append(point("revision", rounds, out, 0, count))
    # 4) auto effort
    if "auto_effort" in wanted:
        out = timed(
            "auto effort",
            lambda: strategies.auto_effort(
                engine, problems, max_n=cfg.max_n, params=_with_n(params, 1), progress=progress
            ),
        )
        mean_n = sum(o.samples for o in out) / max(1, count)
        points.append(point("auto_effort", round(mean_n, 2), out, 0, count))
    return {
        "config": asdict(cfg),
        "problems": count,
        "points": points,
        "timings": timings,
        "draw": draw_record,
    }


def _with_n(params: SamplingParams, n: int) -> SamplingParams:
    import dataclasses

    return dataclasses.replace(params, n=n)


def _sampled_points(cfg, wanted, keys, correct, tokens, scores, anchor) -> list[dict]:
    count = len(keys)
    mean_tokens = sum(sum(t) for t in tokens) / max(1, sum(len(t) for t in tokens))
    points = []
    if "sample" in wanted:
        acc = sum(sum(c) / len(c) for c in correct) / count
        points.append(point("sample", 1, acc, mean_tokens * count, count))
    for n in levels(cfg.max_n):
        budget = n * mean_tokens * count
        if "best_of_n:oracle" in wanted:
            acc = mean_pass_at_k([(len(c), sum(c)) for c in correct], n)
            points.append(point("best_of_n:oracle", n, acc, budget, count))
        rules = {"majority": lambda k, s: plurality(k)}
        if scores is not None:
            rules["best_of_n:verifier"] = top_score
            rules["weighted_vote:verifier"] = weighted
        for name, rule in rules.items():
            if name not in wanted:
                continue
            total = 0.0
            for i in range(count):
                picks = subsets(len(keys[i]), n, cfg.trials, seed=cfg.seed + i)
                for s in picks:
                    k = [keys[i][j] for j in s]
                    sc = [scores[i][j] for j in s] if scores is not None else None
                    total += correct[i][s[rule(k, sc)]] / len(picks)
            points.append(point(name, n, total / count, budget, count))
    if "auto_effort:paired" in wanted:
        points.append(_auto_replayed(cfg, keys, correct, tokens, anchor))
    return points


def _auto_replayed(cfg, keys, correct, tokens, anchor: list[strategies.Outcome]) -> dict:
    """Auto effort's stopping rule on the anchor (greedy, thinking on) followed by `cfg.trials` random
    orders of each problem's draw: up to max_n answers, the anchor and max_n - 1 of the samples."""
    rule = strategies.AUTO_RULE._replace(max_n=cfg.max_n)
    acc, tokens_each, answers = replay_auto_effort(keys, correct, tokens, anchor, cfg.trials, cfg.seed, rule)
    count = max(1, len(keys))
    return point("auto_effort:paired", round(answers, 2), acc, tokens_each * count, count)


def replay_auto_effort(
    keys, correct, tokens, anchor=None, trials: int = 16, seed: int = 0, rule=strategies.AUTO_RULE
) -> tuple[float, float, float]:
    """(accuracy, tokens per problem, answers per problem) of an auto-effort stopping `rule` replayed
    on drawn samples: each problem's anchor answer (greedy, thinking on; None = a rule without one,
    first checked after a whole round) followed by `trials` random orders of its samples, averaged."""
    acc = spent = answers = 0.0
    for i in range(len(keys)):
        rng = random.Random(seed + i)
        for _ in range(trials):
            order = rng.sample(range(len(keys[i])), len(keys[i]))
            k, c, t = ([seq[i][j] for j in order] for seq in (keys, correct, tokens))
            if anchor is not None:
                k, c, t = [anchor[i].key, *k], [anchor[i].correct, *c], [anchor[i].tokens, *t]
            first = 1 if anchor is not None else rule.round_size
            used = strategies.auto_stop(k, *rule, first=first)
            acc += c[plurality(k[:used])]
            spent += sum(t[:used])
            answers += used
    runs = max(1, len(keys) * trials)
    return acc / runs, spent / runs, answers / runs


def point_at(points: list[dict], strategy: str, level=None) -> dict | None:
    """The point of `strategy` at `level` (None: its largest level), or None if the sweep lacks it."""
    found = [p for p in points if p["strategy"] == strategy and level in (None, p["level"])]
    return max(found, key=lambda p: p["level"]) if found else None


def doubling_gain(points: list[dict], strategy: str) -> float | None:
    """Accuracy gained per doubling of tokens along one strategy's curve: the slope of the least-squares
    line through its points' (log2 tokens per problem, accuracy). None below two distinct token counts
    (greedy, one sample and auto effort are single points)."""
    xy = [
        (math.log2(p["tokens_per_problem"]), p["accuracy"])
        for p in points
        if p["strategy"] == strategy and p["tokens_per_problem"] > 0
    ]
    if len({x for x, _ in xy}) < 2:
        return None
    mx, my = sum(x for x, _ in xy) / len(xy), sum(y for _, y in xy) / len(xy)
    return sum((x - mx) * (y - my) for x, y in xy) / sum((x - mx) ** 2 for x, _ in xy)


def doubling_gains(results: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    """strategy -> {label: accuracy per doubling of tokens} for every curve in `results` (label ->
    sweep result, e.g. without and with tools), strategies in the order the sweeps ran them."""
    names = list(dict.fromkeys(p["strategy"] for r in results.values() for p in r["points"]))
    gains = {s: {label: doubling_gain(r["points"], s) for label, r in results.items()} for s in names}
    return {s: g for s, g in gains.items() if any(v is not None for v in g.values())}


def headline(points: list[dict]) -> list[str]:
    """The sweep in a few sentences: the vote against greedy, auto effort's cost, the budget curve and
    the learned verifier against the vote (each only when the sweep has the points it needs)."""

    lines = []
    greedy, vote = point_at(points, "greedy", 1), point_at(points, "majority")
    if greedy and vote:
        gain = 100 * (vote["accuracy"] - greedy["accuracy"])
        lines.append(
            f"majority of {vote['level']:g} vs greedy: {vote['accuracy']:.1%} vs {greedy['accuracy']:.1%} "
            f"({gain:+.1f} points)"
        )
    for name, label in (("auto_effort", "auto effort"), ("auto_effort:paired", "auto effort, paired replay")):
        auto = point_at(points, name)
        if auto and vote:
            share = auto["tokens"] / vote["tokens"] if vote["tokens"] else float("nan")
            lines.append(
                f"{label}: {auto['accuracy']:.1%} with {share:.0%} of the tokens of majority of "
                f"{vote['level']:g} ({vote['accuracy']:.1%})"
            )
    caps = sorted((p for p in points if p["strategy"] == "budget_forcing" and p["level"] > 1), key=lambda p: p["level"])
    if len(caps) > 1:
        curve = " -> ".join(f"{p['accuracy']:.1%}" for p in caps)
        lines.append(f"budget forcing, thinking caps {caps[0]['level']:g} to {caps[-1]['level']:g} tokens: {curve}")
    ranked = point_at(points, "best_of_n:verifier")
    if ranked and vote:
        lines.append(
            f"learned verifier, best of {ranked['level']:g}: {ranked['accuracy']:.1%} vs majority "
            f"{vote['accuracy']:.1%}"
        )
    return lines


# ---------------------------------------------------------------------------------------------------
# effort presets side by side, and one prompt's answer distribution


def compare_efforts(engine, problems, names=("low", "medium", "high", "auto"), seed: int = 0, progress=None):
    """[{effort, accuracy, tokens, tokens_per_problem, samples_per_problem, wall_s}] for each preset."""
    from ponder.ttc.effort import resolve_effort, run_effort

    rows = []
    for name in names:
        t0 = time.perf_counter()
        out = run_effort(engine, problems, resolve_effort(name), seed=seed, progress=progress)
        rows.append(
            {
                "effort": name,
                "accuracy": strategies.accuracy(out),
                "tokens": strategies.total_tokens(out),
                "tokens_per_problem": strategies.total_tokens(out) / max(1, len(problems)),
                "samples_per_problem": sum(o.samples for o in out) / max(1, len(problems)),
                "wall_s": round(time.perf_counter() - t0, 1),
            }
        )
    return rows


def answer_distribution(
    engine,
    problem: Problem,
    samples: int = 100,
    temperature: float = 1.0,
    max_tokens: int = 256,
    seed: int = 0,
) -> dict:
    """Histogram of answer keys over `samples` samples of one prompt, with which key is correct."""
    params = SamplingParams(n=samples, temperature=temperature, max_tokens=max_tokens, seed=seed)
    group = strategies.draw(engine, [problem], params)[0]
    counts: dict[str, int] = {}
    right: dict[str, bool] = {}
    for r in group:
        key = strategies.keys_of(problem, [r])[0] or "(no answer)"
        counts[key] = counts.get(key, 0) + 1
        right[key] = right.get(key, False) or score_rollout(problem, r) > 0.5
    order = sorted(counts, key=lambda k: -counts[k])
    return {
        "prompt": problem.prompt,
        "reference": problem.answer,
        "task": problem.task,
        "samples": samples,
        "histogram": [{"key": k, "count": counts[k], "correct": right[k]} for k in order],
    }
