"""Test-time compute: spend more tokens at inference for better answers.

answers.py     voting keys and the choosers (plurality, top score, score-weighted vote)
strategies.py  greedy, sampling, majority, best-of-n, weighted vote, budget forcing, revision, auto
verifier.py    a learned outcome verifier trained on rollouts labelled by the task verifiers
effort.py      `reasoning_effort` presets: low / medium / high / auto
metrics.py     unbiased pass@k, maj@k, accuracy against tokens
scale.py       the sweep: accuracy against test-time compute, one curve per strategy
report.py      the PNG charts and the self-contained HTML page
"""
