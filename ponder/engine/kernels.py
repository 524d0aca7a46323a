"""ponder's compiled CPU forward pass for the decode loop (csrc/decode.cpp), built on first use.

    kernels = decode_kernels()                  # None where it cannot be built: the torch step runs
    x = kernels.forward_tokens(...)             # tokens at (row, position) of the KV pool (runner.py)
    out = kernels.decode_attention(...)         # its attention alone (tests)

`torch.utils.cpp_extension` compiles it once per machine (about 20 s; a log line says so) into
torch's extension cache (`TORCH_EXTENSIONS_DIR`, by default ~/.cache/torch_extensions). The library's
name is a digest of everything it depends on: the source's text, the compiler flags, torch's version
and this CPU's model and flags (it is compiled with `-march=native`, so a cache shared between
different machines never hands one the other's instructions). A library of that name is therefore
right by construction, and later processes import it directly, without torch's build lock or a
ninja run. A build lock left by a process killed mid-build (torch waits on it forever) is removed
once it is older than any build takes. Where there is no compiler or the build fails, the runner
keeps its torch version of the step and the log says why; `PONDER_DECODE_KERNEL=0` turns it off.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import platform
import time
from functools import cache
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "csrc" / "decode.cpp"  # which includes csrc/gemm.h
# the dot products are summed in vector lanes (reassociation); no -ffast-math: the mask is -inf
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros",
         "-fno-trapping-math"]  # fmt: skip
STALE_LOCK_S = 600  # a build takes about 20 s


@cache
def decode_kernels() -> ModuleType | None:
    """The compiled module, or None (disabled, or it could not be built: logged once)."""
    if os.environ.get("PONDER_DECODE_KERNEL", "1") == "0":
        log.info("decode step: torch's (PONDER_DECODE_KERNEL=0)")
        return None
    try:
        from torch.utils import cpp_extension

        name = f"ponder_decode_{_digest()}"
        build = Path(cpp_extension._get_build_directory(name, False))
        built = build / f"{name}.so"
        if built.exists():
            return _import(name, built)
        _clear_stale_lock(build)
        log.warning("building ponder's compiled CPU decode step (once for this machine, about 30 s)")
        return cpp_extension.load(name, [str(SOURCE)], extra_cflags=FLAGS, extra_ldflags=["-fopenmp"])
    except Exception as e:  # no compiler, no ninja, a failed build: the torch step still works
        log.warning("decode step: torch's (the compiled CPU step could not be built: %s)", e)
        return None


def _digest() -> str:
    """What the compiled library depends on: the source, the flags, torch, and this CPU (its flags)."""
    import torch

    cpu = platform.machine() + platform.processor()
    try:
        cpu += "".join(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                       if line.startswith(("model name", "flags")))  # fmt: skip
    except OSError:
        pass
    sources = "".join(path.read_text() for path in sorted(SOURCE.parent.iterdir()))
    key = f"{sources}|{FLAGS}|{torch.__version__}|{cpu}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _import(name: str, path: Path):
    """A built extension module, imported from its file (its name is its init function's)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _clear_stale_lock(build: Path) -> None:
    """torch's build lock is a file; a process killed while holding it leaves it, and every later
    build waits on it forever. No build takes STALE_LOCK_S, so an older lock is removed."""
    lock = build / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except OSError:
        return
    if age > STALE_LOCK_S:
        log.warning("removing a stale build lock %s (%.0f s old: its build was interrupted)", lock, age)
        lock.unlink(missing_ok=True)
