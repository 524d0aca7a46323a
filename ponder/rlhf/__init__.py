"""RLHF: learning from preferences instead of a verifier.

scalar.py         the scalar-head model (policy architecture + one logit) and its one training loop,
                  shared by the learned outcome verifier (ponder.ttc.verifier) and the reward model
preferences.py    preference pairs (prompt, chosen, rejected, source) from JSONL, `ponder serve`'s
                  feedback database, or the synthetic generator
synthetic.py      open-ended prompts with a declared preference rule (no verifier): the gold measure
reward_model.py   `ponder reward-model`: Bradley-Terry training, held-out accuracy by length stratum,
                  calibration, reward mean / std for normalisation
overopt.py        proxy against gold along sqrt(KL): best-of-n, and Gao et al.'s fitted forms

RL against a reward model is `ponder rl --reward reward-model:DIR` (ponder.train.rl, ponder.rl.rewards);
docs/rlhf.md has the workflow, from served feedback to a new served model.
"""
