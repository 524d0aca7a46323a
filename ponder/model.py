"""Models are plain Hugging Face directories: config.json, model.safetensors, tokenizer files.

A new ponder model is a small Llama (`new_model(preset, tokenizer)`); `load` opens any causal-LM
directory, ponder's own or a real checkpoint (Qwen2.5, Llama, ...), and says which file is wrong
when one is missing or corrupt. `save` writes atomically: a crash never leaves half a model.

Attention: every model ponder builds or loads asks transformers for `attn_implementation="sdpa"`
(PyTorch's fused `scaled_dot_product_attention`: flash / memory-efficient kernels on a GPU, no
(T, T) score matrix kept for the backward pass), the one training runs on. An architecture without an
SDPA path loads with its default attention instead (logged).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from ponder.errors import PonderError
from ponder.io import atomic_dir

log = logging.getLogger(__name__)
ATTENTION = "sdpa"  # see the module docstring

# ponder renders its own progress; HF's per-file bars would interleave with it.
hf_logging.disable_progress_bar()


@dataclass(frozen=True)
class Preset:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    mlp: int


# Parameter counts are for a 512-token vocabulary (ponder's own tokenizer) with tied embeddings.
# "500m" is Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 query / 2 key-value heads of 64, MLP
# 4864, tied embeddings; not its QKV bias or RoPE base): 0.36B parameters with a 512-token
# vocabulary, 0.49B with Qwen2.5's 151,936 tokens (136M of those are the embedding), the model one
# GPU trains in docs/gpu.md.
PRESETS: dict[str, Preset] = {
    "1m": Preset(hidden=128, layers=4, heads=4, kv_heads=4, mlp=384),  # ~0.9M
    "5m": Preset(hidden=256, layers=6, heads=4, kv_heads=4, mlp=768),  # ~5.2M
    "25m": Preset(hidden=512, layers=8, heads=8, kv_heads=8, mlp=1536),  # ~27M
    "500m": Preset(hidden=896, layers=24, heads=14, kv_heads=2, mlp=4864),  # ~358M; 494M at 151,936 tokens
}


def new_model(preset: str, tokenizer: PreTrainedTokenizerBase, max_len: int = 512, seed: int = 0):
    """A freshly initialised Llama of one of the `PRESETS` sizes, matched to `tokenizer`."""
    config = preset_config(preset, len(tokenizer), max_len, tokenizer)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation=ATTENTION)


def preset_config(preset: str, vocab_size: int, max_len: int = 512, tokenizer=None) -> LlamaConfig:
    """The `LlamaConfig` of a preset (special token ids from `tokenizer` when given): what
    `new_model` builds, and what a memory estimate reads before any model exists."""
    if preset not in PRESETS:
        raise PonderError(f"model preset must be one of {sorted(PRESETS)}, got {preset!r}")
    p = PRESETS[preset]
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=p.hidden,
        num_hidden_layers=p.layers,
        num_attention_heads=p.heads,
        num_key_value_heads=p.kv_heads,
        intermediate_size=p.mlp,
        max_position_embeddings=max_len,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=getattr(tokenizer, "bos_token_id", None),
        eos_token_id=getattr(tokenizer, "eos_token_id", None),
        pad_token_id=getattr(tokenizer, "pad_token_id", None),
    )


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save(model, tokenizer, path: str | Path) -> Path:
    """Write model + tokenizer as a Hugging Face directory, atomically (temp dir, then rename)."""
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(path)


def load(path: str | Path, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"):
    """(model, tokenizer) from a Hugging Face directory; a clear error for a missing or bad file."""
    path = _check_dir(Path(path))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as e:
        raise PonderError(f"{path}: the tokenizer files could not be read ({e}). Is tokenizer.json intact?")
    try:
        model = _from_pretrained(path, dtype or torch.float32)
    except Exception as e:
        weights = ", ".join(p.name for p in _weight_files(path)) or "no weights file"
        raise PonderError(f"{path}: the weights ({weights}) could not be loaded: {e}")
    if tokenizer.pad_token_id is None:  # many real checkpoints ship without one
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def _from_pretrained(path: Path, dtype: torch.dtype):
    """The checkpoint with SDPA attention; an architecture transformers has no SDPA path for (it
    says so with a ValueError naming scaled_dot_product_attention) falls back to its default."""
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=ATTENTION)
    except ValueError as e:
        if "scaled_dot_product_attention" not in str(e):
            raise
        log.info("%s: no %s attention for this architecture (%s); using its default", path, ATTENTION, e)
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)


def _weight_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.safetensors")) + sorted(path.glob("pytorch_model*.bin"))


def _check_dir(path: Path) -> Path:
    """Name the exact file that is missing or unreadable before transformers gives a vaguer error."""
    if not path.is_dir():
        raise PonderError(f"model directory {path} does not exist (expected config.json, weights, tokenizer)")
    config = path / "config.json"
    if not config.is_file():
        raise PonderError(f"{config} is missing: {path} is not a Hugging Face model directory")
    _check_json(config)
    if not _weight_files(path):
        raise PonderError(f"{path} has no weights: expected model.safetensors (or pytorch_model.bin)")
    for f in path.glob("*.safetensors"):
        _check_safetensors(f)
    if not any((path / n).is_file() for n in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise PonderError(f"{path} has no tokenizer: expected tokenizer.json")
    if (path / "tokenizer.json").is_file():
        _check_json(path / "tokenizer.json")
    return path


def _check_json(f: Path) -> None:
    try:
        json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PonderError(f"{f} is corrupt (not valid JSON: {e})")


def _check_safetensors(f: Path) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(f), framework="pt") as st:
            for key in list(st.keys())[:1]:
                st.get_slice(key)
    except Exception as e:
        raise PonderError(f"{f} is corrupt or truncated ({e}); re-save or re-download it")
