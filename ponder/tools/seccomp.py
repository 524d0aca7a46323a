"""A small seccomp filter for the python sandbox: the system calls that change what a process can see.

Namespaces already give the sandbox its own view of the system; this filter stops code inside from
building a new one. Blocked with EPERM: creating or joining namespaces (`unshare`, `setns`, `clone`
with a CLONE_NEW* flag), mounting, `chroot`/`pivot_root`, `ptrace`, BPF, perf events, userfaultfd,
kernel keyrings, module and kexec loading, swap, `reboot`, `acct`, quotas. `clone3` answers ENOSYS,
as in Docker's and Flatpak's profiles, so the C library falls back to `clone`, whose flags a filter
can read. Foreign system-call ABIs (i386 or x32 on x86-64) are killed outright.

The filter is a classic BPF program handed to bubblewrap (`--seccomp FD`), written here directly
because it is a few dozen instructions and libseccomp's Python bindings are not on PyPI. Only x86-64
and aarch64 are covered; elsewhere `program()` returns None and the sandbox runs without it (its
observations say `"seccomp": false`).
"""

from __future__ import annotations

import errno
import platform
import struct

# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]
_NR, _ARCH, _ARG0 = 0, 4, 16
_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL_PROCESS, _RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_X32_BIT = 0x40000000
# CLONE_NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
_CLONE_NEW_FLAGS = 0x80 | 0x20000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

_BLOCKED = (
    "unshare setns mount umount2 pivot_root chroot ptrace bpf keyctl add_key request_key perf_event_open "
    "userfaultfd kexec_load kexec_file_load init_module finit_module delete_module open_tree move_mount "
    "fsopen fsconfig fsmount fspick mount_setattr reboot swapon swapoff acct quotactl"
).split()

# (AUDIT_ARCH value, system-call numbers) per machine
_ARCHES = {
    "x86_64": (
        0xC000003E,
        dict(
            unshare=272,
            setns=308,
            mount=165,
            umount2=166,
            pivot_root=155,
            chroot=161,
            ptrace=101,
            bpf=321,
            keyctl=250,
            add_key=248,
            request_key=249,
            perf_event_open=298,
            userfaultfd=323,
            kexec_load=246,
            kexec_file_load=320,
            init_module=175,
            finit_module=313,
            delete_module=176,
            open_tree=428,
            move_mount=429,
            fsopen=430,
            fsconfig=431,
            fsmount=432,
            fspick=433,
            mount_setattr=442,
            reboot=169,
            swapon=167,
            swapoff=168,
            acct=163,
            quotactl=179,
            clone=56,
            clone3=435,
        ),
    ),  # fmt: skip
    "aarch64": (
        0xC00000B7,
        dict(
            unshare=97,
            setns=268,
            mount=40,
            umount2=39,
            pivot_root=41,
            chroot=51,
            ptrace=117,
            bpf=280,
            keyctl=219,
            add_key=217,
            request_key=218,
            perf_event_open=241,
            userfaultfd=282,
            kexec_load=104,
            kexec_file_load=294,
            init_module=105,
            finit_module=273,
            delete_module=106,
            open_tree=428,
            move_mount=429,
            fsopen=430,
            fsconfig=431,
            fsmount=432,
            fspick=433,
            mount_setattr=442,
            reboot=142,
            swapon=224,
            swapoff=225,
            acct=89,
            quotactl=60,
            clone=220,
            clone3=435,
        ),
    ),  # fmt: skip
}


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes | None:
    """The filter as raw `struct sock_filter` bytes for this machine, or None where it is not known."""
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        return None
    arch, numbers = _ARCHES[machine]
    deny = _RET_ERRNO | errno.EPERM
    ops = [_op(_LD_W_ABS, _ARCH), _op(_JEQ, arch, 1, 0), _op(_RET, _KILL_PROCESS), _op(_LD_W_ABS, _NR)]
    if machine == "x86_64":
        ops += [_op(_JGE, _X32_BIT, 0, 1), _op(_RET, _KILL_PROCESS)]
    for name in _BLOCKED:
        ops += [_op(_JEQ, numbers[name], 0, 1), _op(_RET, deny)]
    ops += [_op(_JEQ, numbers["clone3"], 0, 1), _op(_RET, _RET_ERRNO | errno.ENOSYS)]
    # clone: read the low 32 bits of the flags; any CLONE_NEW* flag is refused, the rest allowed.
    ops += [_op(_JEQ, numbers["clone"], 0, 4), _op(_LD_W_ABS, _ARG0), _op(_JSET, _CLONE_NEW_FLAGS, 0, 1)]
    ops += [_op(_RET, deny), _op(_RET, _ALLOW)]
    ops.append(_op(_RET, _ALLOW))
    return b"".join(ops)
