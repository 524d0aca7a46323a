"""Next-token training: `ponder pretrain` (loss on every token) and `ponder sft` (loss on the answer).

The two differ in one thing, the loss mask, so they share this loop:

    for step in range(steps):
        batch = examples(step)            # deterministic in (seed, step): resuming replays the stream
        loss = cross_entropy(model(batch), mask = all tokens | completion tokens)
        AdamW step, warm-up + cosine LR, gradient clipping
        log; every save_every steps an atomic checkpoint

A new model (no `init`) gets a tokenizer trained on a sample of the corpus, then a Llama of
`preset` size. `resume=True` continues a run killed at any point from its last checkpoint.

On a GPU (`device` auto) the forward runs under bf16 autocast (`autocast` auto) with SDPA attention
and TF32 float32 matmuls; `gradient_checkpointing` trades a second forward for activation memory.
Each step's metrics carry tokens/s and, where the peak is known (a GPU in `flops.PEAK_BF16_TFLOPS`,
or `peak_tflops`), MFU; on a GPU also the step's peak memory (docs/gpu.md).

With `tools` (e.g. "calculator,search") the corpus's tool families are worked through those tools
(`ponder.corpus.ToolUse`): arithmetic hands its expression to the calculator, lookup searches. The
tool's responses are in the text, but no loss is taken on them (`collate` masks every
"<tool_response>...</tool_response>" span): the engine writes them at run time, the model never does.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ponder import model as models
from ponder.checkpoint import load_checkpoint, prepare_run_dir, save_checkpoint, trim_metrics
from ponder.corpus import Example, ToolUse, examples
from ponder.engine.chat_format import ChatFormat
from ponder.errors import PonderError
from ponder.io import append_jsonl
from ponder.tasks.mix import CORPUS_MIX, TaskMix
from ponder.tokenizer import train_tokenizer
from ponder.tools import TOOL_RESPONSE_CLOSE, TOOL_RESPONSE_OPEN
from ponder.train.flops import FlopMeter, peak_memory_gib

LOSS_ON = ("all", "completion")
_RESPONSES = re.compile(f"({re.escape(TOOL_RESPONSE_OPEN)}.*?(?:{re.escape(TOOL_RESPONSE_CLOSE)}|$))", re.S)


@dataclass
class LMConfig:
    out: str = field(default="runs/pretrain", metadata={"help": "run directory"})
    init: str | None = field(default=None, metadata={"help": "model dir to start from; none = a new model"})
    preset: str = field(default="1m", metadata={"help": "size of a new model: 1m, 5m, 25m or 500m"})
    tasks: str = field(default=CORPUS_MIX, metadata={"help": "task mix, e.g. 'arithmetic:1-2,letters'"})
    loss_on: str = field(default="all", metadata={"help": "all (pretrain) or completion (sft)"})
    steps: int = field(default=1000, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=32, metadata={"help": "examples per step"})
    max_len: int = field(default=384, metadata={"help": "tokens per example at most (longer are cut)"})
    lr: float = field(default=3e-3, metadata={"help": "peak learning rate"})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "final LR as a fraction of the peak"})
    warmup: int = field(default=50, metadata={"help": "linear warm-up steps"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay"})
    grad_clip: float = field(default=1.0, metadata={"help": "max gradient norm; 0 = off"})
    mistake_rate: float = field(default=0.1, metadata={"help": "share of traces with a corrected mistake"})
    direct_rate: float = field(default=0.0, metadata={"help": "share of examples that skip the thinking"})
    tools: str = field(
        default="",
        metadata={"help": "tools the traces use, e.g. 'calculator,search' (arithmetic, lookup); '' = none"},
    )
    tool_rate: float = field(default=1.0, metadata={"help": "share of a tool family's examples worked by its tool"})
    tool_retry_rate: float = field(
        default=0.0, metadata={"help": "share of tool traces whose first call fails and is made again"}
    )
    vocab_size: int = field(default=512, metadata={"help": "tokenizer size for a new model"})
    seed: int = field(default=0, metadata={"help": "seed for the data stream and the initialisation"})
    save_every: int = field(default=100, metadata={"help": "checkpoint every this many steps"})
    autocast: str = field(default="auto", metadata={"help": "auto (bf16 on GPU), bf16 or off"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute each layer in the backward pass: less memory, ~1/3 more compute"}
    )
    peak_tflops: float = field(
        default=0.0, metadata={"help": "device peak for MFU in TFLOP/s; 0 = the GPU's bf16 peak by name (none on CPU)"}
    )

    def __post_init__(self):
        _allowed("loss_on", self.loss_on, LOSS_ON)
        _allowed("preset", self.preset, tuple(models.PRESETS))
        _allowed("autocast", self.autocast, ("auto", "bf16", "off"))
        for name in ("steps", "batch_size", "max_len", "save_every", "vocab_size"):
            if getattr(self, name) < 1:
                raise PonderError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("mistake_rate", "direct_rate", "tool_rate", "tool_retry_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise PonderError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.lr <= 0:
            raise PonderError(f"lr must be > 0, got {self.lr!r}")
        if self.peak_tflops < 0:
            raise PonderError(f"peak_tflops must be >= 0 (0 = look the GPU up), got {self.peak_tflops!r}")
        ToolUse.parse(self.tools)  # unknown tool names fail here, before any work

    @property
    def tool_use(self) -> ToolUse | None:
        """How the corpus uses tools (None: no tool traces)."""
        if not self.tools.strip():
            return None
        return ToolUse.parse(self.tools, self.tool_rate, self.tool_retry_rate)


def _allowed(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise PonderError(f"{name} must be one of {list(allowed)}, got {value!r}")


def resolve_device(device: str) -> torch.device:
    """`auto`: the GPU when torch sees one, else the CPU. On a GPU, float32 matmuls (the engine's
    sampling, the float32 parts of an autocast forward) may use TF32 tensor cores."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise PonderError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise PonderError(
                f"device {device!r}: this torch sees no GPU (torch {torch.__version__}, CUDA build: "
                f"{torch.version.cuda or 'none'}); install torch's CUDA build (docs/gpu.md) or use --device cpu"
            )
        torch.set_float32_matmul_precision("high")  # TF32: ~8x fp32's rate on Ampere and later
    return resolved


def enable_gradient_checkpointing(model) -> None:
    """Keep only each decoder layer's input in the forward pass and recompute the layer in the
    backward: one more forward per step (~1/3 more compute) for activations about `layers` times
    smaller (ponder/train/memory.py). Non-reentrant, so inputs that need no grad are fine. Training
    forwards pass use_cache=False themselves: a KV cache is for generation, transformers would drop
    it under checkpointing with a warning, and writing use_cache=False into the config would slow
    `generate` for whoever loads the saved model."""
    hf = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft
    if not getattr(hf, "supports_gradient_checkpointing", False):
        raise PonderError(
            f"{type(hf).__name__} does not support gradient checkpointing: run without --gradient-checkpointing"
        )
    # transformers 5 renamed gradient_checkpointing_enable (the old name still works, with a warning)
    enable = getattr(hf, "activation_checkpointing_enable", None) or hf.gradient_checkpointing_enable
    enable({"use_reentrant": False})


def lr_at(step: int, cfg) -> float:
    """Linear warm-up to `lr`, then cosine decay to `lr * min_lr_ratio`."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def autocast_context(setting: str, device: torch.device):
    # bf16 autocast pays off on GPUs; on CPU, tiny matmuls run slower in bf16 than fp32.
    if setting == "bf16" or (setting == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def make_optimizer(model, cfg) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]  # no decay on norms and biases
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8)


def collate(batch: list[Example], tokenizer, loss_on: str, max_len: int, device) -> dict[str, torch.Tensor]:
    """Right-padded input ids and labels; labels are -100 where no loss is taken. Each example is
    rendered by the model's own chat template (`ChatFormat`): ponder's for its own models, Qwen3's
    or Llama 3's for theirs, so SFT on a real checkpoint trains the layout it will be prompted with."""
    fmt = ChatFormat(tokenizer)
    rows, labels = [], []
    for ex in batch:
        prompt = fmt.prompt(ex.question)
        completion, trained = completion_ids(fmt, ex, fmt.start_phase(prompt))
        ids = (prompt + completion)[:max_len]
        lab = (prompt if loss_on == "all" else [-100] * len(prompt)) + trained
        rows.append(ids)
        labels.append(lab[:max_len])
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
    label_ids = torch.tensor([r + [-100] * (width - len(r)) for r in labels], device=device)
    attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    return {"input_ids": input_ids, "labels": label_ids, "attention_mask": attention}


def completion_ids(fmt: ChatFormat, ex: Example, start) -> tuple[list[int], list[int]]:
    """A completion's ids and its labels, -100 on every "<tool_response>...</tool_response>".

    With tool responses, the completion (in the model's own template) is encoded piece by piece, each
    response on its own, because that is how the engine writes it at run time: the model's tokens up
    to "</tool_call>", then the encoded response. Encoding the whole text at once could merge a token
    across a response's edge (">\n"), and the model would train on ids it never sees; this way the
    response's ids are exactly the ones masked, markers included, in any tokenizer (a special token
    per marker, as in Qwen3, or several ordinary ones, as in ponder's byte-level BPE)."""
    ids = fmt.completion(ex.thinking, ex.answer, start)
    if TOOL_RESPONSE_OPEN not in ex.thinking:
        return ids, list(ids)
    text = fmt.tokenizer.decode(ids, skip_special_tokens=False)
    ids, labels = [], []
    for k, piece in enumerate(_RESPONSES.split(text)):  # odd pieces are responses
        piece_ids = list(fmt.encode(piece)) if piece else []
        ids += piece_ids
        labels += [-100] * len(piece_ids) if k % 2 else piece_ids
    return ids, labels


def build_or_load(cfg: LMConfig, mix: TaskMix, device):
    if cfg.init:
        model, tokenizer = models.load(cfg.init, device=device)
        return model.train(), tokenizer
    sample = examples(mix, 0, 4000, cfg.mistake_rate, cfg.seed, cfg.direct_rate, cfg.tool_use)
    tokenizer = train_tokenizer((e.prompt + e.completion for e in sample), vocab_size=cfg.vocab_size)
    model = models.new_model(cfg.preset, tokenizer, max_len=max(512, cfg.max_len), seed=cfg.seed)
    return model.to(device).train(), tokenizer


def train_lm(cfg: LMConfig, resume: bool = False, on_step: Callable[[dict], None] | None = None) -> Path:
    """Run next-token training; returns the final model directory. `on_step(metrics)` each step."""
    run_dir, device = Path(cfg.out), resolve_device(cfg.device)
    mix = TaskMix(cfg.tasks)
    prepare_run_dir(run_dir, cfg, resume)
    start = 0
    if resume:
        model, tokenizer, state = load_checkpoint(run_dir, device)
        optimizer = make_optimizer(model, cfg)
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
        trim_metrics(run_dir, start)
    else:
        model, tokenizer = build_or_load(cfg, mix, device)
        optimizer = make_optimizer(model, cfg)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    meter = FlopMeter.of(model, device, cfg.peak_tflops)
    for step in range(start, cfg.steps):
        metrics = train_step(model, tokenizer, optimizer, mix, cfg, step, device, meter)
        append_jsonl(run_dir / "metrics.jsonl", metrics)
        if on_step:
            on_step(metrics)
        if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
            save_checkpoint(run_dir, model, tokenizer, optimizer, step + 1)
    return models.save(model, tokenizer, run_dir / "model")


def train_step(model, tokenizer, optimizer, mix, cfg: LMConfig, step: int, device, meter=None) -> dict:
    """One optimizer step; `meter` (a FlopMeter) adds MFU to the metrics where the peak is known."""
    started = time.perf_counter()
    start = step * cfg.batch_size
    batch = examples(mix, start, cfg.batch_size, cfg.mistake_rate, cfg.seed, cfg.direct_rate, cfg.tool_use)
    inputs = collate(batch, tokenizer, cfg.loss_on, cfg.max_len, device)
    lr = lr_at(step, cfg)
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast_context(cfg.autocast, device):
        loss = model(**inputs, use_cache=False).loss  # no KV cache in training
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    tokens = int(inputs["attention_mask"].sum())  # reading it waits for the GPU: `seconds` is the whole step
    seconds = time.perf_counter() - started
    return {
        "step": step + 1,
        "total_steps": cfg.steps,
        "loss": round(loss.item(), 5),
        "lr": lr,
        "grad_norm": round(float(grad_norm), 4),
        "tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1),
        **(meter.training(tokens, seconds) if meter else {}),
        **peak_memory_gib(device),
    }
