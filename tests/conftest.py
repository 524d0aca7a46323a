"""Shared, session-scoped fixtures: a tiny tokenizer, a fresh 1m model, its saved directory, and a
model trained for a few dozen steps. Everything is sized to run in seconds on two CPU cores."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from ponder import model as models
from ponder.corpus import examples
from ponder.tasks.mix import TaskMix
from ponder.tokenizer import train_tokenizer
from ponder.train.lm import LMConfig, train_lm

# One thread: the machine is shared, and a fixed thread count keeps float results reproducible.
torch.set_num_threads(1)

# The tiny training config reused by the train fixture and the resume test.
TINY_TRAIN = dict(
    preset="1m",
    tasks="letters:1,arithmetic:1",
    batch_size=8,
    max_len=64,
    vocab_size=256,
    warmup=5,
    lr=3e-3,
    device="cpu",
)


@pytest.fixture(scope="session")
def tok():
    sample = examples(TaskMix(), 0, 2000, mistake_rate=0.1)
    return train_tokenizer((e.prompt + e.completion for e in sample), vocab_size=512)


@pytest.fixture(scope="session")
def model(tok):
    return models.new_model("1m", tok).eval()


@pytest.fixture(scope="session")
def model_dir(model, tok, tmp_path_factory) -> Path:
    return models.save(model, tok, tmp_path_factory.mktemp("models") / "fresh")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A run directory of a 40-step `train_lm` run (steps, checkpoint, final model)."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = LMConfig(out=str(out), steps=40, save_every=20, **TINY_TRAIN)
    train_lm(cfg)
    return out


@pytest.fixture(scope="session")
def trained(trained_run):
    """(model, tokenizer) of the trained run's final model."""
    return models.load(trained_run / "model")


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


class BiasedHead(torch.nn.Module):
    """The model's own output layer plus a constant bias: makes chosen tokens (almost) certain."""

    def __init__(self, head: torch.nn.Module, bias: torch.Tensor):
        super().__init__()
        self.head = head
        self.register_buffer("bias", bias)

    def forward(self, x):
        return self.head(x) + self.bias


def biased_model(model, token_id: int, bias: float = 100.0):
    """A copy of `model` that strongly prefers `token_id` at every step."""
    biased = copy.deepcopy(model)
    logit_bias = torch.zeros(biased.config.vocab_size)
    logit_bias[token_id] = bias
    biased.lm_head = BiasedHead(biased.lm_head, logit_bias)
    return biased.eval()


@pytest.fixture
def learning_rl_config(tmp_path):
    """The small GRPO setup whose sampled accuracy on one batch rises within 6 repeated steps, from
    the shipped base: the learning tests of one process (test_rl.py) and of Ray workers
    (test_cluster.py) run the same one. Keyword arguments change fields."""
    from ponder.assets import base_model_path
    from ponder.train.rl import RLConfig

    def make(**overrides) -> RLConfig:
        return RLConfig(
            out=str(tmp_path / "run"),
            init=str(base_model_path()),
            tasks="arithmetic:2,countdown:2",
            prompts_per_step=8,
            group_size=8,
            max_tokens=96,
            lr=5e-4,
            warmup=1,
            eval_per_task=2,
            seed=3,
            **overrides,
        )

    return make
