"""How much memory a run needs, estimated before it starts, against what the device has free.

ponder keeps float32 master weights and trains under bf16 autocast on a GPU, so with N parameters:

    weights        4N bytes
    gradients      4N
    AdamW          8N    (exp_avg and exp_avg_sq, float32)
    reference      4N    (RL with a KL term or a reward model: the frozen starting policy)
    bf16 copies    2N    (autocast's cache of bf16 weights during the forward; bf16 only)
    activations    tokens per micro-batch x bytes per token (below)
    KV cache       rows x length x layers x 2 x kv_heads x head_dim x 4   (RL rollouts; the engine
                   samples in the weights' float32) + the sampler's vocab x 32 bytes per row

Activations per token, a rough count for a Llama-family layer. `a` is the bytes of a kept value:
2 under bf16 autocast, 4 without; kv_dim = kv_heads x head_dim.

    per layer     a x (5 hidden + 3 kv_dim + 4 mlp) + 8 hidden
                  (the inputs of the q/k/v, o and gate/up projections, q, k, v and the rotated q, k,
                  the attention output; gate, up, silu(gate) and the down projection's input; the two
                  RMSNorms' float32 inputs. SDPA keeps no (T, T) score matrix.)
    logits        vocab x (a + 8)   (the logits, their float32 copy and the log-softmax the loss keeps)
    plain         layers x per layer + logits
    checkpointed  layers x 4 hidden (each layer's float32 input) + one layer recomputed + logits

Training and generation do not hold their working memory at the same time (the rollout pool is
freed before the update), so the peak is weights + gradients + AdamW + reference + the larger of
(bf16 copies + activations) and the KV cache. Left out: the CUDA context (~0.5 GiB), the allocator's
fragmentation and kernel workspaces; keep 10-20% free on top. A run's measured peak is in its
metrics (`peak_mem_gib`, on a GPU) to check the estimate against.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ponder.engine.budget import SAMPLER_BYTES_PER_VOCAB, default_max_batch, kv_bytes_per_token

log = logging.getLogger(__name__)
GIB = 2**30
FP32, BF16 = 4, 2


@dataclass(frozen=True)
class ModelShape:
    """The numbers the estimate reads from a model's config."""

    params: int
    layers: int
    hidden: int
    kv_dim: int  # kv_heads x head_dim
    mlp: int
    vocab: int

    @classmethod
    def of_config(cls, config) -> ModelShape:
        """From a transformers config; parameters counted on the meta device (no memory, no init)."""
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            params = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(
            params=params,
            layers=config.num_hidden_layers,
            hidden=config.hidden_size,
            kv_dim=(getattr(config, "num_key_value_heads", None) or heads) * head_dim,
            mlp=getattr(config, "intermediate_size", None) or 4 * config.hidden_size,  # GPT-2 leaves it unset
            vocab=config.vocab_size,
        )


def layer_activation_bytes(shape: ModelShape, value_bytes: int) -> int:
    """Bytes one token keeps in one layer for the backward pass (module docstring)."""
    return value_bytes * (5 * shape.hidden + 3 * shape.kv_dim + 4 * shape.mlp) + 2 * FP32 * shape.hidden


def activation_bytes_per_token(shape: ModelShape, value_bytes: int, checkpointing: bool) -> int:
    logits = shape.vocab * (value_bytes + 2 * FP32)
    layer = layer_activation_bytes(shape, value_bytes)
    if checkpointing:
        return shape.layers * FP32 * shape.hidden + layer + logits
    return shape.layers * layer + logits


@dataclass(frozen=True)
class DeviceMemory:
    free: int  # bytes
    label: str  # what was measured, e.g. "NVIDIA H100 80GB HBM3: free of 79 GiB"


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes by part, with how each was computed; `peak` is what the run needs at most."""

    parts: tuple[tuple[str, int, str], ...]  # (part, bytes, how)
    peak: int
    device: DeviceMemory | None

    @property
    def fits(self) -> bool | None:
        """Whether the peak fits in the device's free memory (None when that is unknown)."""
        return None if self.device is None else self.peak <= self.device.free

    def warning(self) -> str | None:
        """The line to show when the estimate exceeds the device's free memory."""
        if self.fits is not False:
            return None
        return (
            f"the memory estimate ({self.peak / GIB:.1f} GiB) exceeds the free memory ({self.device.label}): "
            "turn on --gradient-checkpointing, or lower the tokens per micro-batch "
            "(--batch-size / --max-len; for RL --prompts-per-step, --group-size, --max-tokens or more --minibatches)"
        )


def estimate(
    shape: ModelShape,
    train_tokens: int,
    bf16: bool,
    checkpointing: bool,
    reference: bool = False,
    kv_rows: int = 0,
    kv_length: int = 0,
    device: DeviceMemory | None = None,
) -> MemoryEstimate:
    """The estimate of the module docstring for one micro-batch of `train_tokens` tokens (and, for
    RL, a rollout pool of `kv_rows` x `kv_length` tokens)."""
    n, value = shape.params, BF16 if bf16 else FP32
    per_token = activation_bytes_per_token(shape, value, checkpointing)
    kv_token = kv_bytes_per_token(shape.layers, shape.kv_dim, FP32)
    how_act = f"{train_tokens:,} tokens x {per_token:,} B ({'checkpointed' if checkpointing else 'no checkpointing'})"
    parts = [
        ("weights (fp32)", FP32 * n, f"{n:,} params x 4 B"),
        ("gradients (fp32)", FP32 * n, "params x 4 B"),
        ("AdamW states (fp32)", 2 * FP32 * n, "params x 8 B"),
        ("reference policy", FP32 * n if reference else 0, "params x 4 B" if reference else "none"),
        ("bf16 weight copies", BF16 * n if bf16 else 0, "params x 2 B (autocast)" if bf16 else "no autocast"),
        ("activations / micro-batch", train_tokens * per_token, how_act),
        ("rollout KV cache", kv_rows * (kv_length * kv_token + shape.vocab * SAMPLER_BYTES_PER_VOCAB),
         f"{kv_rows} rows x {kv_length} tokens x {kv_token:,} B + sampler" if kv_rows else "none"),
    ]  # fmt: skip
    size = {name: b for name, b, _ in parts}
    static = sum(size[k] for k in ("weights (fp32)", "gradients (fp32)", "AdamW states (fp32)", "reference policy"))
    training = size["bf16 weight copies"] + size["activations / micro-batch"]
    peak = static + max(training, size["rollout KV cache"])
    return MemoryEstimate(tuple(parts), peak, device)


# --- the estimate of a run's config ---------------------------------------------------------------


def uses_bf16(autocast: str, device: torch.device) -> bool:
    """As `lm.autocast_context` decides: bf16 when asked, or auto on a GPU."""
    return autocast == "bf16" or (autocast == "auto" and device.type == "cuda")


def estimate_lm(cfg, device: torch.device, resume: bool = False, free: DeviceMemory | None = None):
    """The estimate for a pretrain / sft config (None when the model's config cannot be read: the
    run itself then reports the bad path). Micro-batch: batch_size x max_len tokens, an upper bound."""
    config = _model_config(Path(cfg.out) / "checkpoint" if resume else cfg.init, cfg)
    if config is None:
        return None
    shape = ModelShape.of_config(config)
    bf16 = uses_bf16(cfg.autocast, device)
    return estimate(shape, cfg.batch_size * cfg.max_len, bf16, cfg.gradient_checkpointing, device=free)


def estimate_rl(cfg, device: torch.device, resume: bool = False, free: DeviceMemory | None = None):
    """The estimate for an RL config: a micro-batch is a minibatch of rollouts, prompt + max_tokens
    long; the rollout pool holds every sample of a step (up to the engine's row limit)."""
    from ponder.assets import base_model_path

    source = Path(cfg.out) / "checkpoint" if resume else Path(cfg.init or base_model_path())
    config = _model_config(source, cfg)
    if config is None:
        return None
    shape = ModelShape.of_config(config)
    try:
        length = prompt_tokens(source, cfg.tasks) + cfg.max_tokens
    except Exception as e:  # a bad tokenizer file: the run's own loader names it
        log.info("no memory estimate: the tokenizer in %s could not be read (%s)", source, e)
        return None
    samples = cfg.prompts_per_step * cfg.group_size
    rows = min(samples, default_max_batch(device))
    reference = cfg.kl_coef > 0 or cfg.uses_reward_model
    bf16 = uses_bf16(cfg.autocast, device)
    micro = samples // cfg.minibatches * length
    return estimate(shape, micro, bf16, cfg.gradient_checkpointing, reference, rows, length, free)


def prompt_tokens(model_dir: Path, tasks: str, sample: int = 64) -> int:
    """The longest prompt, in the model's own chat template, of a sample of the mix's train problems."""
    from transformers import AutoTokenizer

    from ponder.engine.chat_format import ChatFormat
    from ponder.tasks.mix import TaskMix

    fmt = ChatFormat(AutoTokenizer.from_pretrained(model_dir))
    return max(len(fmt.prompt(p.prompt)) for p in TaskMix(tasks).problems("train", 0, sample, 0))


def _model_config(path, cfg):
    """The transformers config of `path`, or of a new preset model (pretrain without init)."""
    from ponder import model as models

    if path is None:
        return models.preset_config(cfg.preset, cfg.vocab_size, max(512, cfg.max_len))
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        log.info("no memory estimate: %s has no readable config (%s)", path, e)
        return None


def device_memory(device: torch.device) -> DeviceMemory | None:
    """Free memory of the device a run will use: the GPU's (torch.cuda.mem_get_info), else the
    host's available memory (psutil when installed, else the kernel's page counts); None if unknown."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return DeviceMemory(
            free, f"{torch.cuda.get_device_name(device)}: {free / GIB:.1f} of {total / GIB:.0f} GiB free"
        )
    try:
        import psutil

        free = psutil.virtual_memory().available
    except ImportError:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # not a POSIX system that reports it
            return None
    return DeviceMemory(free, f"host memory: {free / GIB:.1f} GiB available")
