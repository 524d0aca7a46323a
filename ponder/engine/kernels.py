"""ponder's own CPU kernel for decode attention (csrc/decode_attention.cpp), built on first use.

    attend = decode_attention_kernel()          # None where it cannot be built: use the matmuls
    out = attend(q, k, v, mask, scale)          # q (B, KV, G, D); k, v (B, KV, L, D); mask (B, L)

`torch.utils.cpp_extension` compiles it once per machine (about 20 s; a log line says so) into
torch's extension cache (`TORCH_EXTENSIONS_DIR`, by default ~/.cache/torch_extensions) and later
processes load the cached library. It is compiled for this CPU (`-march=native`), so the library's
name carries a digest of the CPU's model and flags: a cache shared between different machines never
hands one the other's instructions. Where there is no compiler or the build fails, the engine keeps
torch's batched matmuls and the log says why; `PONDER_DECODE_KERNEL=0` turns the kernel off.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
from collections.abc import Callable
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "csrc" / "decode_attention.cpp"
# the dot products are summed in vector lanes (reassociation); no -ffast-math: the mask is -inf
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros",
         "-fno-trapping-math"]  # fmt: skip


@cache
def decode_attention_kernel() -> Callable | None:
    """The compiled kernel's function, or None (disabled, or it could not be built: logged once)."""
    if os.environ.get("PONDER_DECODE_KERNEL", "1") == "0":
        log.info("decode attention: torch's batched matmuls (PONDER_DECODE_KERNEL=0)")
        return None
    try:
        from torch.utils import cpp_extension

        name = f"ponder_decode_attention_{_machine_digest()}"
        if not _built(cpp_extension, name):
            log.warning("building ponder's CPU decode-attention kernel (once for this machine, about 20 s)")
        module = cpp_extension.load(name, [str(SOURCE)], extra_cflags=FLAGS, extra_ldflags=["-fopenmp"])
    except Exception as e:  # no compiler, no ninja, a failed build: the matmuls still work
        log.warning("decode attention: torch's batched matmuls (the CPU kernel could not be built: %s)", e)
        return None
    return module.decode_attention


def _machine_digest() -> str:
    """What the compiled code depends on: the CPU (its flags), the compiler flags and torch."""
    import torch

    cpu = platform.machine() + platform.processor()
    try:
        cpu += "".join(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                       if line.startswith(("model name", "flags")))  # fmt: skip
    except OSError:
        pass
    return hashlib.sha256(f"{cpu}|{FLAGS}|{torch.__version__}".encode()).hexdigest()[:12]


def _built(cpp_extension, name: str) -> bool:
    """Whether the extension cache already holds a library of this name (then loading is quiet)."""
    try:
        return any(Path(cpp_extension._get_build_directory(name, False)).glob("*.so"))
    except Exception:
        return False
