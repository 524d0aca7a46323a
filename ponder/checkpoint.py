"""Run directories and resumable checkpoints.

    runs/<name>/config.json       the resolved config of the run
    runs/<name>/metrics.jsonl     one JSON line per step (and per eval)
    runs/<name>/checkpoint/       a Hugging Face model dir + trainer_state.pt (optimizer, step, RNG)
    runs/<name>/model/            the final model, a plain Hugging Face directory

Checkpoints are written to a temp dir and renamed into place, so `kill -9` at any moment leaves
either the previous checkpoint or the new one, never half of one. On resume, metric lines written
after the checkpoint's step are dropped: they will be written again.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict
from pathlib import Path

import torch

from ponder import model as models
from ponder.errors import PonderError
from ponder.io import atomic_dir, atomic_write_json, atomic_write_text, read_jsonl_records

STATE_FILE = "trainer_state.pt"


def save_checkpoint(run_dir: Path, model, tokenizer, optimizer, step: int, extra: dict | None = None) -> None:
    with atomic_dir(run_dir / "checkpoint") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        state = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "extra": extra or {},
        }
        torch.save(state, tmp / STATE_FILE)


def load_checkpoint(run_dir: Path, device="cpu"):
    """(model, tokenizer, state) from `run_dir/checkpoint`; a clear error if there is none."""
    ckpt = run_dir / "checkpoint"
    previous = sorted(run_dir.glob(".checkpoint.old-*"))
    if not ckpt.exists() and previous:  # killed between atomic_dir's two renames: the old one is whole
        os.replace(previous[-1], ckpt)
    if not (ckpt / STATE_FILE).is_file():
        raise PonderError(f"--resume: {ckpt} holds no checkpoint yet; run without --resume to start fresh")
    model, tokenizer = models.load(ckpt, device=device)
    try:
        state = torch.load(ckpt / STATE_FILE, map_location=device, weights_only=False)
    except Exception as e:
        raise PonderError(f"{ckpt / STATE_FILE} is corrupt ({e}); delete {ckpt} to restart the run")
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    return model.train(), tokenizer, state


def prepare_run_dir(run_dir: Path, config, resume: bool) -> None:
    """Create the run dir; refuse to overwrite a finished or running run unless resuming."""
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise PonderError(
            f"run directory {run_dir} already exists: pass --resume to continue it, or choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "config.json", asdict(config))


def trim_metrics(run_dir: Path, step: int) -> None:
    """Drop metric lines newer than the checkpoint we resume from (they will be redone)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return
    kept = [line for line, record in read_jsonl_records(path) if record.get("step", 0) <= step]
    atomic_write_text(path, "".join(k + "\n" for k in kept))
