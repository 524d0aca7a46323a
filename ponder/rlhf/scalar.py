"""The scalar-head model and its one training loop, shared by the learned verifier and the reward model.

Both are the policy's own architecture with a one-logit head that reads the last real token
(`AutoModelForSequenceClassification`, `num_labels=1`, the pad token set so the head can find that
token), initialised from a policy's weights, saved as a plain Hugging Face directory. They differ
only in their data and their loss:

    verifier       text -> correct?             binary cross-entropy (+ a within-problem ranking term)
    reward model   (prompt, chosen, rejected)   Bradley-Terry: -logsigmoid(r_chosen - r_rejected - margin)

`fit` is the loop both run: *units* (indices of texts that must share a batch: one problem's samples,
one pair's two sides) are shuffled each epoch and packed into batches; the caller's loss turns the
batch's logits into a scalar; AdamW steps with gradient clipping.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ponder.engine import Rollout
from ponder.errors import PonderError
from ponder.format import THINK_CLOSE, render_prompt
from ponder.io import atomic_dir
from ponder.tasks import Problem

# loss(logits of the batch's texts, the texts' indices) -> (loss, extra numbers to log)
LossFn = Callable[[torch.Tensor, list[int]], tuple[torch.Tensor, dict[str, float]]]


def as_completion(response: str) -> str:
    """A response as the policy writes it after `render_prompt`: thinking, </think>, answer.

    Rollout texts already are; a bare answer (a JSONL pair, a served reply without its thinking)
    becomes one with empty thinking, so a scorer sees the layout it is applied to in RL."""
    return response if THINK_CLOSE in response else f"\n{THINK_CLOSE}{response}"


def scored_text(prompt: str, response: str) -> str:
    """What a scalar head reads: the rendered user turn, then the response in completion layout."""
    return render_prompt(prompt) + as_completion(response)


class ScalarModel:
    """A sequence model with one logit. Subclasses name their metadata file and what a score means."""

    META_FILE = "scalar.json"
    TRAINED_BY = "ponder"  # the command that makes one, named in the error for a wrong directory

    def __init__(self, model, tokenizer, max_len: int = 384, meta: dict | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_len = max_len
        self.meta = meta or {}

    # --- persistence ------------------------------------------------------------------------------

    @classmethod
    def from_policy(cls, policy_dir: str | Path, max_len: int = 384):
        """A fresh scalar model: the policy's backbone and a new one-logit head."""
        from transformers import AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging

        from ponder import model as models

        _, tokenizer = models.load(policy_dir)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "score.weight newly initialised" is the point here
        try:
            model = AutoModelForSequenceClassification.from_pretrained(policy_dir, num_labels=1, dtype=torch.float32)
        finally:
            hf_logging.set_verbosity(verbosity)
        model.config.pad_token_id = tokenizer.pad_token_id
        return cls(model, tokenizer, max_len)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu"):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path)
        if not (path / cls.META_FILE).is_file():
            raise PonderError(
                f"{path} is not a ponder {cls.__name__.lower()} (no {cls.META_FILE}); train one with {cls.TRAINED_BY}"
            )
        meta = json.loads((path / cls.META_FILE).read_text())
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).to(device)
        tokenizer = AutoTokenizer.from_pretrained(path)
        return cls(model, tokenizer, meta.get("max_len", 384), meta)

    def save(self, path: str | Path) -> Path:
        with atomic_dir(path) as tmp:
            self.model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            (tmp / self.META_FILE).write_text(json.dumps({**self.meta, "max_len": self.max_len}, indent=2))
        return Path(path)

    # --- scoring ----------------------------------------------------------------------------------

    def _batch(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Right-padded ids (the head reads the last non-pad token); long texts keep their end."""
        ids = [self.tokenizer.encode(t, add_special_tokens=False)[-self.max_len :] for t in texts]
        longest = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([x + [pad] * (longest - len(x)) for x in ids], device=device)
        mask = torch.tensor([[1] * len(x) + [0] * (longest - len(x)) for x in ids], device=device)
        return {"input_ids": input_ids, "attention_mask": mask}

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model(**self._batch(texts)).logits[:, 0]  # (B,)

    @torch.inference_mode()
    def raw_scores(self, texts: Sequence[str], batch_size: int = 64) -> list[float]:
        """The head's logit for each text, in batches, in eval mode."""
        self.model.eval()
        out: list[float] = []
        for i in range(0, len(texts), batch_size):
            out += self.logits(texts[i : i + batch_size]).float().tolist()
        return out

    def score_texts(self, texts: Sequence[str], batch_size: int = 64) -> list[float]:
        """What a score means is the subclass's: a probability (verifier), a normalised reward."""
        raise NotImplementedError

    def score(self, problems: Sequence[Problem], groups: Sequence[Sequence[Rollout]]) -> list[list[float]]:
        """Scores of rollouts, grouped as given (a best-of-n `Ranker`, an RL reward)."""
        texts = [rollout_text(p, r) for p, g in zip(problems, groups, strict=True) for r in g]
        flat = self.score_texts(texts)
        out, i = [], 0
        for g in groups:
            out.append(flat[i : i + len(g)])
            i += len(g)
        return out

    __call__ = score


def rollout_text(problem: Problem, rollout: Rollout) -> str:
    """What a scalar head reads for a rollout: the rendered prompt, then the completion as written."""
    return render_prompt(problem.prompt) + rollout.text


# ---------------------------------------------------------------------------------------------------
# the one training loop


def pack(units: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Units in order into batches of at least `batch_size` texts (the last may be smaller); a unit is
    never split, so a pair or a problem's samples always meet in one batch."""
    batches, current = [], []
    for unit in units:
        current += unit
        if len(current) >= batch_size:
            batches.append(current)
            current = []
    if current:
        batches.append(current)
    return batches


def fit(
    scalar: ScalarModel,
    texts: Sequence[str],
    units: Sequence[Sequence[int]],
    loss_fn: LossFn,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    on_step: Callable[[dict], None] | None = None,
    grad_clip: float = 1.0,
) -> list[float]:
    """Train `scalar` on `texts`; returns the loss of every step. `on_step({"step", "total_steps",
    "loss", ...})` after each. Every epoch's shuffle is drawn up front, so the step count is exact."""
    rng = random.Random(seed)
    order = [list(u) for u in units]
    plan: list[list[int]] = []
    for _ in range(epochs):
        rng.shuffle(order)
        plan += pack(order, batch_size)
    model = scalar.model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses: list[float] = []
    try:
        for idx in plan:
            loss, stats = loss_fn(scalar.logits([texts[i] for i in idx]), idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            losses.append(loss.item())
            if on_step:
                on_step({"step": len(losses), "total_steps": len(plan), "loss": loss.item(), **stats})
    finally:
        model.eval()
    return losses
