"""Next-token training: the loss mask, a loss that falls, run directories and kill -9 resume."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_TRAIN, read_metrics

from ponder.checkpoint import load_checkpoint
from ponder.corpus import examples
from ponder.errors import PonderError
from ponder.tasks.mix import TaskMix
from ponder.train.lm import LMConfig, collate, train_lm

# --- (1) the loss mask ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch(tok):
    exs = examples(TaskMix("letters:1,arithmetic:1-2"), 0, 4, mistake_rate=0.0)
    lengths = [
        (
            len(tok.encode(e.prompt, add_special_tokens=False)),
            len(tok.encode(e.completion, add_special_tokens=False)),
        )
        for e in exs
    ]
    assert len({p + c for p, c in lengths}) > 1, "the batch should need padding"
    return exs, lengths


def test_completion_loss_masks_exactly_the_prompt_and_padding(tok, batch):
    exs, lengths = batch
    inputs = collate(exs, tok, "completion", max_len=512, device="cpu")
    for row, labels, (p, c) in zip(inputs["input_ids"], inputs["labels"], lengths, strict=True):
        masked = labels == -100
        assert masked[:p].all()
        assert not masked[p : p + c].any()
        assert masked[p + c :].all()
        assert torch.equal(labels[p : p + c], row[p : p + c])


def test_all_loss_masks_only_padding(tok, batch):
    exs, lengths = batch
    inputs = collate(exs, tok, "all", max_len=512, device="cpu")
    for row, labels, attention, (p, c) in zip(
        inputs["input_ids"], inputs["labels"], inputs["attention_mask"], lengths, strict=True
    ):
        assert not (labels[: p + c] == -100).any()
        assert (labels[p + c :] == -100).all()
        assert torch.equal(labels[: p + c], row[: p + c])
        assert attention.tolist() == [1] * (p + c) + [0] * (len(row) - p - c)


def test_collate_cuts_rows_at_max_len(tok, batch):
    exs, _ = batch
    inputs = collate(exs, tok, "completion", max_len=10, device="cpu")
    assert inputs["input_ids"].shape[1] == 10
    assert inputs["labels"].shape == inputs["input_ids"].shape


# --- (2) a tiny run ------------------------------------------------------------------------------


def test_tiny_run_lowers_the_loss(trained_run):
    losses = [m["loss"] for m in read_metrics(trained_run)]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_tiny_run_writes_the_run_directory(trained_run):
    assert (trained_run / "metrics.jsonl").is_file()
    assert (trained_run / "config.json").is_file()
    assert (trained_run / "checkpoint" / "trainer_state.pt").is_file()
    assert (trained_run / "checkpoint" / "model.safetensors").is_file()
    assert (trained_run / "model" / "model.safetensors").is_file()
    assert (trained_run / "model" / "tokenizer.json").is_file()
    assert [m["step"] for m in read_metrics(trained_run)] == list(range(1, 41))
    assert not [p.name for p in trained_run.iterdir() if p.name.startswith(".")], "temp dirs left behind"


# --- (3) kill -9 and resume ----------------------------------------------------------------------

STEPS = 60


def pretrain_cmd(out: Path, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "ponder.cli", "pretrain", "--out", str(out), "--steps", str(STEPS)]
    cmd += ["--save-every", "10"]
    for key, value in TINY_TRAIN.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd + (["--resume"] if resume else [])


def last_step(run_dir: Path) -> int:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    return len(lines)


def test_kill_9_then_resume_finishes_the_run_as_if_never_killed(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    proc = subprocess.Popen(pretrain_cmd(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while last_step(out) < 25:
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "the run did not reach step 25 in time"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model").exists()
    killed_lines = (out / "metrics.jsonl").read_text().splitlines()
    checkpoint_step = torch.load(out / "checkpoint" / "trainer_state.pt", weights_only=False)["step"]
    assert checkpoint_step >= 20 and checkpoint_step % 10 == 0

    done = subprocess.run(pretrain_cmd(out, resume=True), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

    assert (out / "model" / "model.safetensors").is_file()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    metrics = read_metrics(out)
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))
    # The steps up to the checkpoint were kept as written, not redone (tokens_per_s would differ).
    assert lines[:checkpoint_step] == killed_lines[:checkpoint_step]

    # The resumed steps are the steps an uninterrupted run takes: same data, weights, optimizer.
    reference = tmp_path / "reference"
    train_lm(LMConfig(out=str(reference), steps=STEPS, save_every=10, **TINY_TRAIN))
    expected = [m["loss"] for m in read_metrics(reference)]
    assert [m["loss"] for m in metrics] == pytest.approx(expected, abs=2e-4)


def test_resume_finds_the_checkpoint_when_killed_between_the_two_renames(trained_run, tmp_path):
    """atomic_dir moves the old checkpoint aside, then renames the new one in: a kill between the
    two leaves only the hidden old copy, which must still be resumable."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copytree(trained_run / "checkpoint", run_dir / ".checkpoint.old-12345")
    _, _, state = load_checkpoint(run_dir)
    assert state["step"] == 40
    assert (run_dir / "checkpoint" / "trainer_state.pt").is_file()


def test_data_stream_is_deterministic_in_the_step():
    mix = TaskMix(TINY_TRAIN["tasks"])
    assert examples(mix, 24, 8, 0.1) == examples(mix, 24, 8, 0.1)
    assert examples(mix, 24, 8, 0.1) != examples(mix, 32, 8, 0.1)


# --- (4) / (5) refusals --------------------------------------------------------------------------


def test_existing_run_dir_without_resume_is_refused(trained_run):
    before = (trained_run / "metrics.jsonl").read_text()
    with pytest.raises(PonderError, match="already exists.*--resume"):
        train_lm(LMConfig(out=str(trained_run), steps=5, **{**TINY_TRAIN}))
    assert (trained_run / "metrics.jsonl").read_text() == before


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(PonderError, match="no checkpoint"):
        train_lm(LMConfig(out=str(tmp_path / "new"), steps=5, **TINY_TRAIN), resume=True)


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("loss_on", "x", r"\['all', 'completion'\]"),
        ("preset", "7b", r"\['1m', '5m', '25m', '500m'\]"),
        ("steps", 0, ">= 1"),
        ("batch_size", -1, ">= 1"),
        ("mistake_rate", 2, r"\[0, 1\]"),
        ("autocast", "fp8", "auto"),
        ("lr", 0, "> 0"),
    ],
)
def test_bad_config_values_name_the_field_and_what_is_allowed(field, value, allowed):
    with pytest.raises(PonderError, match=f"{field}.*{allowed}"):
        LMConfig(**{field: value})
