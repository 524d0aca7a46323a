"""The decode loop's linear layers: ponder's kernel, oneDNN's, or torch's `F.linear`, with the weight
packed once.

    proj = Linear(weight, bias, pack=True, kernels=decode_kernels())
    y = proj(x)                                  # (..., in) -> (..., out)

With the compiled kernels on an AVX-512 CPU the weight is packed for ponder's own small-batch matrix
multiply (csrc/gemm.h: faster than both below at every decode batch size measured). Otherwise:

At the batch sizes of decode (tens of rows by a few hundred columns) a CPU matmul spends much of
each call laying the weight out for its kernel. oneDNN can take the weight laid out once (the op
inductor uses for frozen CPU linears), which the runner redoes only when the weights change (once per
weight version, with the QKV / gate-up fusion). Below PACKED_MIN_MACS multiply-adds (a single
request's decode step, a small projection of a few rows) the plain call is faster, and it is the
only path on a GPU, for other dtypes, or on a torch built without oneDNN.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

# oneDNN's call costs about 10 us of set-up that MKL's does not: below this many multiply-adds
# (rows x out x in) F.linear is faster. Measured on a 2-core EPYC, one thread: at 14 rows the
# 128 x 128 projection is 6.8 us with F.linear against 11.3 packed; 128 -> 768 is 33.9 against 21.7.
PACKED_MIN_MACS = 600_000
PACK_HINT_ROWS = 64  # the batch size oneDNN lays the weight out for (any row count works)
_EMPTY = torch.empty(0)  # "none" for the compiled calls, which take tensors only


class Linear:
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, pack: bool = False, kernels=None):
        self.weight, self.bias = weight, bias
        self.kernels, self.ours, self.packed = kernels, None, None
        if pack and kernels is not None and weight.device.type == "cpu" and weight.dtype == torch.float32:
            with torch.no_grad():
                self.ours = kernels.pack_linear(weight.detach()) if weight.dim() == 2 else None
            if self.ours is not None and self.ours.numel() == 0:  # no AVX-512 in this build
                self.ours = None
        if pack and self.ours is None:
            self.packed = _packed(weight)

    def compiled_args(self) -> list[torch.Tensor]:
        """The four tensors csrc/decode.cpp takes for a linear layer: the weight, oneDNN's packed
        copy, ours, the bias (an empty tensor for each one this layer has not)."""
        return [self.weight.detach(), *(or_empty(t) for t in (self.packed, self.ours, self.bias))]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.ours is not None:
            flat = self.kernels.linear(x.reshape(-1, x.shape[-1]), self.ours, self.weight.shape[0], or_empty(self.bias))
            return flat.view(*x.shape[:-1], flat.shape[-1])
        if self.packed is not None and x.numel() * self.weight.shape[0] >= PACKED_MIN_MACS:
            flat = torch.ops.mkldnn._linear_pointwise(
                x.reshape(-1, x.shape[-1]), self.packed, self.bias, "none", [], ""
            )
            return flat.view(*x.shape[:-1], flat.shape[-1])
        return F.linear(x, self.weight, self.bias)


def or_empty(tensor: torch.Tensor | None) -> torch.Tensor:
    """A tensor as the compiled calls take it: detached, or an empty tensor for none."""
    return _EMPTY if tensor is None else tensor.detach()


def _packed(weight: torch.Tensor) -> torch.Tensor | None:
    """The weight in oneDNN's layout, or None where oneDNN cannot take it (then F.linear runs)."""
    if weight.device.type != "cpu" or weight.dtype != torch.float32 or not torch.backends.mkldnn.is_available():
        return None
    try:
        with torch.no_grad():
            return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), PACK_HINT_ROWS)
    except (RuntimeError, AttributeError) as e:  # an older torch, or a build without the op
        log.info("linear layers: F.linear (oneDNN's packed weights are not available: %s)", e)
        return None
