"""Model-FLOPs utilisation (MFU): the share of the device's peak that a run's model arithmetic uses.

    training     6 x N FLOPs per token   (forward 2N, backward 4N; Kaplan et al. 2020, PaLM's MFU)
    generation   2 x N FLOPs per token   (forward only: prompt tokens once, then every new token)
    MFU          FLOPs / seconds / peak FLOP/s

N counts the parameters that multiply: all of them, less an input embedding that is not tied to
the output layer (a lookup costs no FLOPs). Attention's own score arithmetic (about 12 x layers x
hidden x sequence length per trained token) is left out, as the 6N convention does: at ponder's
lengths (hundreds of tokens) it is a few per cent of 6N for the 0.5B preset, so MFU reads a little
low, never high.

The peak is the GPU's dense bf16 tensor-core rate looked up by its name (`PEAK_BF16_TFLOPS`), or
`--peak-tflops` (any device, a CPU included). With neither, no MFU is reported: a CPU has no one
peak worth quoting.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# (part of torch.cuda.get_device_name(), dense bf16 TFLOP/s from the vendor's datasheet). The first
# match wins, so a name that contains another ("H100 PCIe" > "H100", "L40S" > "L40" > "L4") comes first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200", 989.0),
    ("H100", 989.0),  # SXM
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
)
TRAIN_FLOPS_PER_PARAM = 6
FORWARD_FLOPS_PER_PARAM = 2


def lookup_peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU by its name; None for a GPU the table does not know."""
    for part, tflops in PEAK_BF16_TFLOPS:
        if part.lower() in device_name.lower():
            return tflops
    return None


def peak_flops(device: torch.device, peak_tflops: float = 0.0) -> float | None:
    """FLOP/s an MFU is measured against: `peak_tflops` when given (> 0), else the GPU's from the
    table; None on a CPU or an unknown GPU."""
    if peak_tflops > 0:
        return peak_tflops * 1e12
    if device.type != "cuda":
        return None
    tflops = lookup_peak_tflops(torch.cuda.get_device_name(device))
    return tflops * 1e12 if tflops else None


def matmul_parameters(model) -> int:
    """N: the parameters that take part in a token's matrix products (see the module docstring)."""
    hf = model.get_base_model() if hasattr(model, "get_base_model") else model
    total = sum(p.numel() for p in hf.parameters())
    embed, head = hf.get_input_embeddings(), hf.get_output_embeddings()
    tied = head is not None and head.weight is embed.weight
    return total if tied else total - embed.weight.numel()


@dataclass(frozen=True)
class FlopMeter:
    """N and the peak of one run, measured once; turns token counts and seconds into MFU metrics."""

    params: int
    peak: float | None  # FLOP/s; None = no MFU reported

    @classmethod
    def of(cls, model, device: torch.device, peak_tflops: float = 0.0) -> FlopMeter:
        return cls(matmul_parameters(model), peak_flops(device, peak_tflops))

    def mfu(self, flops: float, seconds: float) -> float | None:
        if self.peak is None or seconds <= 0:
            return None
        return flops / seconds / self.peak

    def training(self, tokens: int, seconds: float) -> dict:
        """{"mfu": ...} for a training step over `tokens` tokens; {} when no peak is known."""
        mfu = self.mfu(TRAIN_FLOPS_PER_PARAM * self.params * tokens, seconds)
        return {} if mfu is None else {"mfu": round(mfu, 5)}

    def rl(self, gen_tokens: int, gen_s: float, train_tokens: int, forward_passes: float, train_s: float) -> dict:
        """An RL step's MFU: generation (2N per prompt and new token), the update (`forward_passes`
        forward-equivalents of 2N per token: a forward and backward is 3, a no-grad forward 1) and
        the two together. {} when no peak is known."""
        gen = FORWARD_FLOPS_PER_PARAM * self.params * gen_tokens
        train = FORWARD_FLOPS_PER_PARAM * self.params * train_tokens * forward_passes
        parts = {"gen_mfu": self.mfu(gen, gen_s), "train_mfu": self.mfu(train, train_s)}
        parts["mfu"] = self.mfu(gen + train, gen_s + train_s)
        return {k: round(v, 5) for k, v in parts.items() if v is not None}


def peak_memory_gib(device: torch.device) -> dict:
    """{"peak_mem_gib": ...}: the most memory PyTorch held for tensors since the last reset, on a
    GPU (what a memory estimate is checked against); {} on a CPU. Resets the counter."""
    if device.type != "cuda":
        return {}
    peak = torch.cuda.max_memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    return {"peak_mem_gib": round(peak / 2**30, 3)}
