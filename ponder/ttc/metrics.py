"""Metrics over n samples per problem: unbiased pass@k, maj@k, accuracy against tokens.

pass@k is the chance that at least one of k samples is correct, estimated without bias from n >= k
samples of which c are correct (Chen et al. 2021, the Codex paper):

    pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n-c+1}^{n} (1 - k / i)

The product form never builds the huge binomials. maj@k is the accuracy of a plurality vote over k
samples, averaged over random k-subsets of the n drawn (exact when k == n).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from ponder.ttc.answers import plurality


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (the Codex paper's stable product form)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """pass@k averaged over problems, each given as (n, c)."""
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts) if counts else 0.0


def subsets(n: int, k: int, trials: int, seed: int = 0) -> list[list[int]]:
    """`trials` random k-subsets of range(n), each in random order; the one full set when k == n."""
    if k >= n:
        return [list(range(n))]
    rng = random.Random(seed)
    return [rng.sample(range(n), k) for _ in range(trials)]


def maj_at_k(keys: Sequence[str], correct: Sequence[bool], k: int, trials: int = 32, seed: int = 0) -> float:
    """Expected correctness of the plurality answer over k of one problem's n samples."""
    if not 1 <= k <= len(keys):
        raise ValueError(f"maj@k needs 1 <= k <= n = {len(keys)}, got k={k}")
    picks = subsets(len(keys), k, trials, seed)
    return sum(float(correct[s[plurality([keys[i] for i in s])]]) for s in picks) / len(picks)


def accuracy_vs_tokens(points: Sequence[dict]) -> dict[str, list[tuple[float, float]]]:
    """{strategy: [(tokens per problem, accuracy), ...]} sorted by tokens: one curve per strategy."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        curves.setdefault(p["strategy"], []).append((p["tokens_per_problem"], p["accuracy"]))
    return {name: sorted(curve) for name, curve in curves.items()}
