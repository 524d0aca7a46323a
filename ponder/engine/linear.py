"""The decode loop's linear layers: torch's `F.linear`, or oneDNN's with the weight packed once.

    proj = Linear(weight, bias, pack=True)       # packed for oneDNN where that is available
    y = proj(x)                                  # (..., in) -> (..., out)

At the batch sizes of decode (tens of rows by a few hundred columns) a CPU matmul spends much of
each call laying the weight out for its kernel. oneDNN can take the weight laid out once (the op
inductor uses for frozen CPU linears), which the runner redoes only when the weights change (once per
weight version, with the QKV / gate-up fusion). Below PACKED_MIN_ROWS rows (a single request's
decode step) the plain call is as fast, and it is the only path on a GPU, for other dtypes, or on
a torch built without oneDNN.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

PACKED_MIN_ROWS = 12
PACK_HINT_ROWS = 64  # the batch size oneDNN lays the weight out for (any row count works)


class Linear:
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, pack: bool = False):
        self.weight, self.bias = weight, bias
        self.packed = _packed(weight) if pack else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None and x.numel() >= PACKED_MIN_ROWS * x.shape[-1]:
            flat = torch.ops.mkldnn._linear_pointwise(
                x.reshape(-1, x.shape[-1]), self.packed, self.bias, "none", [], ""
            )
            return flat.view(*x.shape[:-1], flat.shape[-1])
        return F.linear(x, self.weight, self.bias)


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
