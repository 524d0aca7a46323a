"""The reward model: the policy's architecture with a scalar head, trained on preference pairs.

    rm = train_reward_model(RewardModelConfig(data="synthetic:summary", out="runs/rm"))
    rm = RewardModel.load("runs/rm")          # AutoModelForSequenceClassification loads it too
    rm.score_texts(texts)                      # normalised rewards: (r - mean) / std of training

Training is TRL's reward trainer in one loss, Bradley-Terry over (chosen, rejected):

    loss = -logsigmoid(r_chosen - r_rejected - margin) + center_coef * mean((r_chosen + r_rejected)^2)

(`center_coef` is TRL's `center_rewards_coefficient`: it pins the rewards' mean near 0.) The model
and the loop are ponder.rlhf.scalar's, which the learned verifier trains with too.

What is measured on held-out pairs (prompts the model never trained on, split by prompt hash):
accuracy (r_chosen > r_rejected), overall and by the length difference of the pair (a model that
learned "longer wins" is right where the chosen side is longer and wrong where it is shorter; the
accuracy the rule "longer wins" would get is reported beside it), and calibration (the predicted
P(chosen) = sigmoid(r_chosen - r_rejected) against how often that side was chosen, in bins).
The rewards' mean and std over the training responses are saved in the model's config
(`reward_mean`, `reward_std`, as OpenRLHF does), so RL reads normalised rewards.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from ponder.errors import PonderError
from ponder.rlhf.preferences import PreferencePair, load_pairs, split_pairs
from ponder.rlhf.scalar import ScalarModel, as_completion, fit, scored_text

META_FILE = "reward_model.json"
STRATA = ("chosen shorter", "same length", "chosen longer")


@dataclass
class RewardModelConfig:
    out: str = field(default="runs/reward_model", metadata={"help": "where the reward model is saved"})
    policy: str = field(default="", metadata={"help": "model it starts from (architecture and weights); none = base"})
    data: str = field(
        default="", metadata={"help": "preference pairs: synthetic:RULE, jsonl:PATH or feedback:DB, comma-separated"}
    )
    from_feedback: str = field(
        default="", metadata={"help": "`ponder serve`'s feedback database (SQLite); its pairs join --data"}
    )
    pairs: int = field(default=4000, metadata={"help": "pairs a synthetic source generates (both splits)"})
    epochs: int = field(default=2, metadata={"help": "passes over the training pairs"})
    batch_size: int = field(default=32, metadata={"help": "pairs per optimizer step"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    margin: float = field(default=0.0, metadata={"help": "Bradley-Terry margin: r_chosen must beat r_rejected by it"})
    center_coef: float = field(default=0.0, metadata={"help": "reward centring weight (TRL suggests 0.01); 0 = off"})
    max_len: int = field(default=256, metadata={"help": "tokens scored per text (the last ones)"})
    calibration_bins: int = field(default=10, metadata={"help": "bins of predicted P(chosen) for calibration"})
    seed: int = field(default=0, metadata={"help": "synthetic pairs, head initialisation, shuffling"})

    def __post_init__(self):
        for name in ("pairs", "epochs", "batch_size", "max_len", "calibration_bins"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise PonderError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.center_coef < 0:
            raise PonderError(f"center_coef must be >= 0, got {self.center_coef}")

    @property
    def sources(self) -> str:
        return ",".join(s for s in (self.data, f"feedback:{self.from_feedback}" if self.from_feedback else "") if s)


class RewardModel(ScalarModel):
    """Scores (prompt, response) with a normalised reward; a best-of-n ranker and an RL reward."""

    META_FILE = META_FILE
    TRAINED_BY = "ponder reward-model"

    @property
    def mean(self) -> float:
        return float(getattr(self.model.config, "reward_mean", 0.0))

    @property
    def std(self) -> float:
        return float(getattr(self.model.config, "reward_std", 1.0)) or 1.0

    def score_texts(self, texts: Sequence[str], batch_size: int = 64) -> list[float]:
        """Normalised rewards of prompt + completion texts (the server's ranker interface)."""
        return [(r - self.mean) / self.std for r in self.raw_scores(texts, batch_size)]


# ---------------------------------------------------------------------------------------------------
# training


def pair_texts(pairs: Sequence[PreferencePair]) -> list[str]:
    """chosen_0, rejected_0, chosen_1, ...: a pair's two sides side by side (the loss reads them so)."""
    return [scored_text(p.prompt, side) for p in pairs for side in (p.chosen, p.rejected)]


def bt_loss(margin: float, center_coef: float) -> Callable[[torch.Tensor, list[int]], tuple[torch.Tensor, dict]]:
    """The Bradley-Terry loss over a batch of whole pairs (logits chosen, rejected, chosen, ...)."""

    def loss_fn(logits: torch.Tensor, idx: list[int]) -> tuple[torch.Tensor, dict]:
        chosen, rejected = logits[0::2], logits[1::2]
        loss = -F.logsigmoid(chosen - rejected - margin).mean()
        if center_coef > 0:
            loss = loss + center_coef * ((chosen + rejected) ** 2).mean()
        accuracy = (chosen > rejected).float().mean().item()
        return loss, {"accuracy": accuracy, "margin": (chosen - rejected).mean().item()}

    return loss_fn


def train_reward_model(cfg: RewardModelConfig, on_step: Callable[[dict], None] | None = None) -> RewardModel:
    """Load pairs, hold out a share of prompts, fit, measure, save to `cfg.out`; return the model."""
    started = time.perf_counter()
    if not cfg.sources:
        raise PonderError("no preference data: give --data (synthetic:RULE, jsonl:PATH) or --from-feedback DB")
    train, heldout = split_pairs(load_pairs(cfg.sources, cfg.pairs, cfg.seed))
    if not train:
        raise PonderError(f"{cfg.sources}: no training pairs (after holding out ~20% of prompts); collect more")
    torch.manual_seed(cfg.seed)
    rm = RewardModel.from_policy(cfg.policy or _base(), cfg.max_len)
    texts = pair_texts(train)
    losses = fit(
        rm,
        texts,
        [[2 * i, 2 * i + 1] for i in range(len(train))],
        bt_loss(cfg.margin, cfg.center_coef),
        cfg.epochs,
        2 * cfg.batch_size,
        cfg.lr,
        cfg.seed,
        on_step,
    )
    raw = torch.tensor(rm.raw_scores(texts))
    rm.model.config.reward_mean = round(raw.mean().item(), 6)
    rm.model.config.reward_std = round(raw.std().item(), 6) if len(raw) > 1 else 1.0
    rm.meta = {
        "config": asdict(cfg),
        "train_pairs": len(train),
        "heldout_pairs": len(heldout),
        "sources": sorted({p.source for p in train + heldout}),
        "final_loss": sum(losses[-10:]) / max(1, len(losses[-10:])),
        "train_accuracy": pair_metrics(rm, train, cfg.calibration_bins)["accuracy"],
        "heldout": pair_metrics(rm, heldout, cfg.calibration_bins) if heldout else None,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    rm.save(cfg.out)
    return rm


def _base() -> str:
    from ponder.assets import base_model_path

    return str(base_model_path())


# ---------------------------------------------------------------------------------------------------
# measurement


def pair_metrics(rm: ScalarModel, pairs: Sequence[PreferencePair], bins: int = 10) -> dict:
    """Accuracy overall and by length stratum, the "longer wins" baseline, and calibration."""
    scores = rm.raw_scores(pair_texts(pairs))
    chosen, rejected = scores[0::2], scores[1::2]
    length = [_tokens(rm, p.chosen) - _tokens(rm, p.rejected) for p in pairs]  # chosen minus rejected
    right = [_win(c - r) for c, r in zip(chosen, rejected, strict=True)]
    strata = {}
    for name, keep in zip(STRATA, (lambda d: d < 0, lambda d: d == 0, lambda d: d > 0), strict=True):
        picked = [w for w, d in zip(right, length, strict=True) if keep(d)]
        strata[name] = {"pairs": len(picked), "accuracy": sum(picked) / len(picked) if picked else None}
    return {
        "pairs": len(pairs),
        "accuracy": sum(right) / len(right),
        "by_length": strata,
        "longer_wins_accuracy": sum(_win(d) for d in length) / len(length),
        "mean_margin": sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(pairs),
        "calibration": calibration([c - r for c, r in zip(chosen, rejected, strict=True)], bins),
    }


def _win(difference: float) -> float:
    return 1.0 if difference > 0 else 0.5 if difference == 0 else 0.0


def _tokens(rm: ScalarModel, response: str) -> int:
    return len(rm.tokenizer.encode(as_completion(response), add_special_tokens=False))


def calibration(differences: Sequence[float], bins: int = 10) -> dict:
    """Predicted P(chosen) against observed, in `bins` equal-width bins, and the expected calibration
    error. Each pair is counted both ways round, (p, chosen) and (1 - p, rejected), so the bins cover
    [0, 1] symmetrically and a perfectly calibrated model has observed = predicted in every bin."""
    points = []
    for d in differences:
        p = 1 / (1 + math.exp(-max(-60.0, min(60.0, d))))
        points += [(p, 1.0), (1 - p, 0.0)]
    rows = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = [(p, y) for p, y in points if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if inside:
            predicted = sum(p for p, _ in inside) / len(inside)
            observed = sum(y for _, y in inside) / len(inside)
            rows.append({"bin": [lo, hi], "count": len(inside), "predicted": predicted, "observed": observed})
    ece = sum(r["count"] * abs(r["predicted"] - r["observed"]) for r in rows) / max(1, len(points))
    return {"bins": rows, "ece": ece}


# ---------------------------------------------------------------------------------------------------
# in RL


def load_reward_models(terms, device: str | torch.device = "cpu") -> dict[str, RewardModel]:
    """The reward models a reward spec names (ponder.rl.rewards terms), by path, loaded once each."""
    paths = sorted({t.path for t in terms if t.kind == "reward-model"})
    return {path: RewardModel.load(path, device) for path in paths}


def mean_scorer(models: dict[str, RewardModel]):
    """One proxy from several reward models: their normalised scores averaged (one model: its own)."""

    def score(problems, groups) -> list[list[float]]:
        each = [m.score(problems, groups) for m in models.values()]
        return [[sum(s) / len(s) for s in zip(*rows, strict=True)] for rows in zip(*each, strict=True)]

    return score
