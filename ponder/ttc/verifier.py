"""A learned outcome verifier: the model learning to judge answers.

    verifier = train_verifier(VerifierConfig(policy="runs/base/model", out="runs/verifier"))
    scores = verifier.score(problems, groups)  # P(correct) for each rollout: a best-of-n ranker

How it is built:
  1) rollouts: the policy samples `samples` completions for `problems` TRAIN-split problems of the mix
     (never the eval split the sweeps measure on);
  2) labels: each task's own verifier marks every rollout correct (1) or not (0);
  3) model: the policy's own backbone with a one-logit head on the last token's hidden state
     (`LlamaForSequenceClassification`, initialised from the policy's weights), trained with binary
     cross-entropy on (prompt + completion) -> correct, plus (weight `pairwise`) a ranking loss
     between one problem's correct and wrong samples. Model and loop are ponder.rlhf.scalar's, the
     ones the reward model trains with (there on Bradley-Terry pairs);
  4) held-out AUC on a share of the problems the verifier never trained on, saved with the model:
     overall, and within problems (what best-of-n needs).

It saves and loads as a plain Hugging Face directory (atomically). Shortcut admitted: the scorer sees
the whole completion, thinking included, and is trained once offline, not alongside the policy.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from ponder.engine import Engine, SamplingParams
from ponder.errors import PonderError
from ponder.evals import score_rollout
from ponder.rlhf.scalar import ScalarModel, rollout_text
from ponder.rlhf.scalar import fit as fit_scalar
from ponder.tasks import Problem
from ponder.tasks.mix import DEFAULT_MIX, TaskMix

META_FILE = "verifier.json"


@dataclass
class VerifierConfig:
    policy: str = field(default="", metadata={"help": "policy model directory: samples and initial weights"})
    out: str = field(default="runs/verifier", metadata={"help": "where the verifier is saved"})
    tasks: str = field(default=DEFAULT_MIX, metadata={"help": "task mix of the training rollouts"})
    problems: int = field(default=240, metadata={"help": "train-split problems to sample"})
    samples: int = field(default=8, metadata={"help": "rollouts per problem"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of the rollouts"})
    max_tokens: int = field(default=256, metadata={"help": "tokens per rollout at most"})
    heldout: float = field(default=0.2, metadata={"help": "share of problems kept out for the AUC"})
    epochs: int = field(default=3, metadata={"help": "passes over the labelled rollouts"})
    batch_size: int = field(default=32, metadata={"help": "sequences per optimizer step"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    pairwise: float = field(default=1.0, metadata={"help": "weight of the within-problem ranking loss (0 = BCE only)"})
    max_len: int = field(default=384, metadata={"help": "tokens scored per sequence (the last ones)"})
    seed: int = field(default=0, metadata={"help": "problems, sampling and shuffling"})

    def __post_init__(self):
        if not 0 <= self.heldout < 1:
            raise PonderError(f"VerifierConfig.heldout must be in [0, 1), got {self.heldout}")
        for name in ("problems", "samples", "epochs", "batch_size", "max_len"):
            if getattr(self, name) < 1:
                raise PonderError(f"VerifierConfig.{name} must be >= 1, got {getattr(self, name)}")


class Verifier(ScalarModel):
    """Scores (problem, rollout) pairs with P(correct). Usable directly as a best-of-n `Ranker`.

    The scalar-head model of ponder.rlhf.scalar (shared with the reward model), read through a sigmoid."""

    META_FILE = META_FILE
    TRAINED_BY = "ponder scale"

    def score_texts(self, texts: Sequence[str], batch_size: int = 64) -> list[float]:
        return torch.sigmoid(torch.tensor(self.raw_scores(texts, batch_size))).tolist()


# ---------------------------------------------------------------------------------------------------
# training


def label_rollouts(engine, problems: Sequence[Problem], params: SamplingParams, progress=None):
    """(texts, labels, problem index of each): rollouts scored by their tasks' own verifiers."""
    groups = engine.generate([engine.format.prompt(p.prompt) for p in problems], params, progress=progress)
    texts, labels, owner = [], [], []
    for i, (p, g) in enumerate(zip(problems, groups, strict=True)):
        for r in g:
            texts.append(rollout_text(p, r))
            labels.append(float(score_rollout(p, r) > 0.5))
            owner.append(i)
    return texts, labels, owner


def auc(scores: Sequence[float], labels: Sequence[float]) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); 0.5 if one class is missing."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y > 0.5]
    neg = [s for s, y in zip(scores, labels, strict=True) if y <= 0.5]
    if not pos or not neg:
        return 0.5
    ranked = sorted(neg)
    wins = 0.0
    for s in pos:
        below, upto = bisect.bisect_left(ranked, s), bisect.bisect_right(ranked, s)
        wins += below + 0.5 * (upto - below)
    return wins / (len(pos) * len(neg))


def within_problem_auc(scores: Sequence[float], labels: Sequence[float], owner: Sequence[int]) -> float | None:
    """The AUC that ranking needs: each problem's correct samples against its own wrong ones, averaged
    over the problems that have both (None if none has)."""
    by: dict[int, list[int]] = {}
    for i, o in enumerate(owner):
        by.setdefault(o, []).append(i)
    values = [
        auc([scores[i] for i in idx], [labels[i] for i in idx])
        for idx in by.values()
        if 0 < sum(labels[i] > 0.5 for i in idx) < len(idx)
    ]
    return sum(values) / len(values) if values else None


def fit(
    verifier: Verifier,
    texts: Sequence[str],
    labels: Sequence[float],
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    on_step: Callable[[dict], None] | None = None,
    owner: Sequence[int] | None = None,
    pairwise: float = 0.0,
) -> list[float]:
    """BCE on (text -> label), plus `pairwise` x a ranking loss within problems when `owner` (the
    problem of each text) is given: softplus(s_wrong - s_right) over the pairs of one problem's
    correct and wrong samples. Best-of-n only ever compares samples of one problem, and BCE alone
    learns mostly which problems are hard. Batches then hold whole problems. Returns step losses.
    The loop is the reward model's (ponder.rlhf.scalar.fit); only the loss is the verifier's."""
    if owner is None:
        units = [[i] for i in range(len(texts))]
    else:
        by: dict[int, list[int]] = {}
        for i, o in enumerate(owner):
            by.setdefault(o, []).append(i)
        units = list(by.values())

    def loss_fn(logits: torch.Tensor, idx: list[int]) -> tuple[torch.Tensor, dict]:
        target = torch.tensor([labels[i] for i in idx], device=logits.device)
        loss = F.binary_cross_entropy_with_logits(logits, target)
        if pairwise > 0 and owner is not None:
            same = torch.tensor([owner[i] for i in idx], device=logits.device)
            pair = (same[:, None] == same[None, :]) & (target[:, None] > 0.5) & (target[None, :] <= 0.5)
            if pair.any():  # rows: correct samples, columns: wrong samples of the same problem
                margin = logits[None, :] - logits[:, None]
                loss = loss + pairwise * F.softplus(margin[pair]).mean()
        return loss, {}

    return fit_scalar(verifier, texts, units, loss_fn, epochs, batch_size, lr, seed, on_step)


def train_verifier(cfg: VerifierConfig, on_step: Callable[[dict], None] | None = None, progress=None) -> Verifier:
    """Sample, label, fit, measure the held-out AUC, save to `cfg.out`; return the verifier."""
    from ponder import model as models

    if not cfg.policy:
        raise PonderError("VerifierConfig.policy is empty: give the policy model directory")
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    policy, tokenizer = models.load(cfg.policy)
    problems = TaskMix(cfg.tasks).problems("train", 0, cfg.problems, seed=cfg.seed)
    params = SamplingParams(n=cfg.samples, temperature=cfg.temperature, max_tokens=cfg.max_tokens, seed=cfg.seed)
    texts, labels, owner = label_rollouts(Engine(policy, tokenizer), problems, params, progress)
    del policy
    # hold out whole problems, so the AUC is measured on questions the verifier never saw
    cut = int(len(problems) * (1 - cfg.heldout))
    train = [i for i, o in enumerate(owner) if o < cut]
    test = [i for i, o in enumerate(owner) if o >= cut]
    verifier = Verifier.from_policy(cfg.policy, cfg.max_len)
    losses = fit(
        verifier,
        [texts[i] for i in train],
        [labels[i] for i in train],
        cfg.epochs,
        cfg.batch_size,
        cfg.lr,
        cfg.seed,
        on_step,
        owner=[owner[i] for i in train],
        pairwise=cfg.pairwise,
    )
    heldout_auc = within_auc = None
    if test:
        scores = verifier.score_texts([texts[i] for i in test])
        heldout_auc = auc(scores, [labels[i] for i in test])
        within_auc = within_problem_auc(scores, [labels[i] for i in test], [owner[i] for i in test])
    verifier.meta = {
        "config": asdict(cfg),
        "rollouts": len(texts),
        "positive_rate": sum(labels) / len(labels),
        "heldout_auc": heldout_auc,
        "heldout_within_problem_auc": within_auc,
        "final_loss": sum(losses[-10:]) / max(1, len(losses[-10:])),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    verifier.save(cfg.out)
    return verifier
