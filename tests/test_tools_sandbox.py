"""The python tool's sandbox: every escape attempt is contained, reported plainly, and ends in time.

The escape tests need the namespaced sandbox (the rlimits-only fallback cannot contain them, and
says so); on a host where bubblewrap cannot create namespaces they are skipped with the reason.
Each test bounds its own wall time, so a sandbox that stops containing fails instead of hanging.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ponder.tools import PythonTool, ToolConfig
from ponder.tools import sandbox as sandbox_module
from ponder.tools.sandbox import NAMESPACES, check_host

CONFIG = ToolConfig(timeout_s=4.0, cpu_s=3, memory_mb=512, max_output_chars=2000, max_read_bytes=1 << 16)
SLACK_S = 4.0  # start-up and clean-up on a loaded 2-core machine


@pytest.fixture(scope="module")
def tool() -> PythonTool:
    host = check_host(sys.executable, CONFIG.sandbox_uid)
    if host.isolation != NAMESPACES:
        pytest.skip(f"no namespaced sandbox on this host: {host.reason}")
    return PythonTool(CONFIG)


def run(tool: PythonTool, code: str, limit: float | None = None):
    start = time.monotonic()
    obs = tool.run({"code": code})
    elapsed = time.monotonic() - start
    assert elapsed < (limit or CONFIG.timeout_s + SLACK_S), f"took {elapsed:.1f} s: {obs}"
    assert obs.metadata["isolation"] == NAMESPACES
    return obs


def comm_processes(token: str) -> list[int]:
    """Host pids whose process name (/proc/PID/comm) is `token`: what a sandbox left running."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == token:
                found.append(int(entry.name))
        except OSError:
            pass
    return found


SET_NAME = "import ctypes\nctypes.CDLL(None).prctl(15, {token!r}.encode(), 0, 0, 0)\n"


def test_stdout_and_traceback_come_back(tool):
    obs = run(tool, "print('hello')\nprint(1 / 0)\n")
    assert obs.status == "error"
    assert obs.text.startswith("hello\n")
    assert obs.text.rstrip().endswith("ZeroDivisionError: division by zero")
    assert obs.metadata["exit_code"] == 1


def test_environment_is_empty_of_the_callers_secrets(tool, monkeypatch):
    monkeypatch.setenv("PONDER_TEST_SECRET", "hunter2-secret")
    code = (
        "import os\nprint(sorted(os.environ))\n"
        "for pid in ('1', 'self', str(os.getppid())):\n"
        "    try:\n        print(open(f'/proc/{pid}/environ').read())\n"
        "    except OSError as e:\n        print('denied', e)\n"
    )
    obs = run(tool, code)
    assert "hunter2-secret" not in obs.text
    assert "PATH" not in obs.text.splitlines()[0]
    assert "PONDER_TEST_SECRET" not in obs.text


def test_callers_files_are_not_visible(tool, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top-secret-value")
    tree = Path(__file__).resolve().parents[1] / "pyproject.toml"
    code = (
        f"for p in [{str(secret)!r}, {str(tree)!r}, {str(Path.home() / '.bashrc')!r}, '/etc/shadow']:\n"
        "    try:\n        print(open(p).read())\n"
        "    except OSError as e:\n        print(type(e).__name__, p)\n"
    )
    obs = run(tool, code)
    assert "top-secret-value" not in obs.text
    assert "[project]" not in obs.text
    assert obs.text.count("Error") == 4


def test_writes_outside_the_work_dir_never_reach_the_host(tool, tmp_path):
    name = f"ponder-escape-{uuid.uuid4().hex}"
    targets = [Path(__file__).resolve().parents[1] / name, Path("/etc") / name, Path.home() / name, tmp_path / name]
    code = (
        f"for p in {[str(t) for t in targets]!r}:\n"
        "    try:\n        open(p, 'w').write('x'); print('wrote', p)\n"
        "    except OSError as e:\n        print(type(e).__name__, p)\n"
        "open('here.txt', 'w').write('fine'); print('work dir ok')\n"
    )
    try:
        obs = run(tool, code)
        assert "work dir ok" in obs.text
        assert [t for t in targets if t.exists()] == []
    finally:
        for t in targets:
            t.unlink(missing_ok=True)


def test_no_network_even_to_the_hosts_loopback(tool):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    accepted = []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    port = server.getsockname()[1]
    code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')\n"
    try:
        obs = run(tool, code)
    finally:
        thread.join()
        server.close()
    assert obs.status == "error" and "connected" not in obs.text.splitlines()[0]
    assert "ConnectionRefusedError" in obs.text or "unreachable" in obs.text
    assert accepted == []


def test_infinite_loop_is_stopped(tool):
    obs = run(tool, "while True:\n    pass\n")
    assert obs.status == "timeout"
    assert "Timed out" in obs.text or "CPU time limit" in obs.text


def test_ignoring_sigterm_does_not_help(tool):
    code = "import signal, time\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
    code += "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.05)\n"
    obs = run(tool, code)
    assert obs.status == "timeout" and "Timed out" in obs.text


def test_fork_bomb_is_contained_and_cleaned_up(tool):
    token = f"pbomb{uuid.uuid4().hex[:8]}"
    code = SET_NAME.format(token=token) + (
        "import os\nn = 0\nwhile True:\n    try:\n        os.fork()\n        n += 1\n"
        "    except OSError:\n        pass\n"
    )
    obs = run(tool, code)
    assert obs.status in ("timeout", "error")
    time.sleep(0.2)
    assert comm_processes(token) == []


def test_memory_bomb_is_a_memory_error(tool):
    obs = run(tool, "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 2**20))\n")
    assert obs.status == "error" and "MemoryError" in obs.text


def test_printing_gigabytes_is_cut_off_fast(tool):
    obs = run(tool, "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", limit=SLACK_S)
    assert obs.metadata["output_capped"]
    assert "printed more than" in obs.text
    assert len(obs.text) <= CONFIG.max_output_chars


def test_daemon_does_not_outlive_the_call(tool):
    token = f"pdmn{uuid.uuid4().hex[:8]}"
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        + "\n".join("        " + line for line in SET_NAME.format(token=token).splitlines())
        + "\n        time.sleep(60)\n    os._exit(0)\n"
        "time.sleep(0.3)\nprint('parent done')\n"
    )
    obs = run(tool, code, limit=SLACK_S)
    assert obs.status == "ok" and "parent done" in obs.text
    time.sleep(0.3)
    assert comm_processes(token) == []


def test_killing_the_parent_leaves_the_caller_alive(tool):
    code = (
        "import os, signal\n"
        "for target in (os.getppid(), 1):\n    try:\n        os.kill(target, signal.SIGKILL)\n"
        "    except OSError as e:\n        print(type(e).__name__)\n"
        "print('still here')\n"
    )
    obs = run(tool, code)
    assert os.getpid() > 0  # this process is alive to say so
    assert obs.status in ("ok", "error")


def test_system_calls_that_would_widen_the_sandbox_fail(tool):
    code = """
import ctypes, os, resource
libc = ctypes.CDLL(None, use_errno=True)
for name, flag in (("user", 0x10000000), ("net", 0x40000000), ("mount", 0x20000)):
    print("unshare", name, libc.unshare(flag), os.strerror(ctypes.get_errno()))
print("syscall unshare", libc.syscall(272 if os.uname().machine == "x86_64" else 97, 0x10000000))
print("mount", libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
for kind in (resource.RLIMIT_NPROC, resource.RLIMIT_AS, resource.RLIMIT_CPU):
    try:
        resource.setrlimit(kind, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print("raised", kind)
    except (ValueError, OSError) as e:
        print("refused", kind)
try:
    os.setuid(0)
    print("became root")
except OSError:
    print("setuid refused")
"""
    obs = run(tool, code)
    assert obs.status == "ok", obs.text
    assert "unshare user -1" in obs.text and "unshare net -1" in obs.text and "unshare mount -1" in obs.text
    assert "syscall unshare -1" in obs.text and "mount -1" in obs.text
    assert "raised" not in obs.text and obs.text.count("refused") == 4
    assert "became root" not in obs.text or os.geteuid() != 0


def test_concurrent_calls_run_side_by_side(tool):
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: run(tool, "import os\nprint(os.getuid())"), range(3)))
    assert all(r.ok for r in results)
    if os.geteuid() == 0:  # one pool uid per concurrent call, so the process limit counts each alone
        assert len({r.text for r in results}) == 3


def test_rlimits_only_mode_still_limits_time_and_says_so():
    tool = PythonTool(ToolConfig(timeout_s=2.0, cpu_s=1, isolation="rlimits", memory_mb=512))
    obs = tool.run({"code": "print(sum(range(10)))"})
    assert obs.ok and obs.text == "45" and obs.metadata["isolation"] == "rlimits-only"
    start = time.monotonic()
    obs = tool.run({"code": "while True:\n    pass\n"})
    assert obs.status == "timeout" and time.monotonic() - start < 2.0 + SLACK_S


def test_missing_bubblewrap_falls_back_or_refuses_plainly(monkeypatch):
    monkeypatch.setattr(sandbox_module, "bwrap_binary", lambda: None)
    check_host.cache_clear()
    try:
        auto = PythonTool(ToolConfig(timeout_s=5.0)).run({"code": "print('ran')"})
        required = PythonTool(ToolConfig(isolation="namespaces")).run({"code": "print('ran')"})
    finally:
        check_host.cache_clear()
    assert auto.ok and auto.metadata["isolation"] == "rlimits-only"
    assert required.status == "error" and "bubblewrap is not installed" in required.text
