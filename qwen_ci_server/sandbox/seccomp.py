"""A seccomp filter for the sandbox, as the classic BPF program ``bwrap --seccomp`` loads.

It narrows the kernel interface the code can reach:

- no new namespaces: ``unshare`` fails, ``clone`` with a ``CLONE_NEW*`` flag fails and
  ``clone3`` reports ENOSYS (its flags are out of the filter's reach; the C library falls
  back to ``clone``), so no nested user namespace gives the code capabilities;
- sockets of the families Python and Jupyter use only: ``AF_UNIX``, ``AF_INET`` and
  ``AF_INET6`` (the network namespace is empty anyway); netlink (EINVAL), vsock, packet...
  (EAFNOSUPPORT) fail;
- no mounts, keyrings, BPF, perf events, userfaultfd, io_uring, ptrace, module loading,
  clock changes, reboot...: EPERM;
- another system call ABI (x32, i386) kills the process.

Built here, without libseccomp, for x86-64 only; elsewhere :func:`filter_program`
returns None and the sandbox runs without the filter (``docs/SECURITY.md``).
"""

from __future__ import annotations

import errno
import os
import platform
import struct

# classic BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JSET_K = 0x45
_JGE_K = 0x35
_RET_K = 0x06

_ALLOW = 0x7FFF_0000
_KILL_PROCESS = 0x8000_0000
_ERRNO = 0x0005_0000
_AUDIT_ARCH_X86_64 = 0xC000_003E
_X32_BIT = 0x4000_0000

# offsets in struct seccomp_data
_NR = 0
_ARCH = 4
_ARG0_LOW = 16

_CLONE_NEW = (0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000
              | 0x2000_0000 | 0x4000_0000 | 0x0000_0080)
"""CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME."""

SOCKET_FAMILIES = (1, 2, 10)
"""AF_UNIX, AF_INET, AF_INET6."""
_AF_NETLINK = 16

_X86_64 = {
    "socket": 41, "socketpair": 53, "clone": 56, "clone3": 435, "unshare": 272,
}
_X86_64_DENIED = {
    "ptrace": 101, "syslog": 103, "vhangup": 153, "pivot_root": 155, "adjtimex": 159,
    "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166,
    "swapon": 167, "swapoff": 168, "reboot": 169, "sethostname": 170, "setdomainname": 171,
    "iopl": 172, "ioperm": 173, "init_module": 175, "delete_module": 176, "quotactl": 179,
    "lookup_dcookie": 212, "clock_settime": 227, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "perf_event_open": 298, "name_to_handle_at": 303,
    "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _ret(value: int) -> bytes:
    return _insn(_RET_K, value)


def _errno(number: int) -> int:
    return _ERRNO | number


def filter_program(machine: str | None = None) -> bytes | None:
    """The filter as ``struct sock_filter`` records, or None on an unsupported machine.

    Example:
        >>> program = filter_program("x86_64")
        >>> len(program) % 8, len(program) // 8 > 50
        (0, True)
        >>> filter_program("riscv64") is None
        True
    """
    machine = machine or platform.machine()
    if machine not in ("x86_64", "amd64", "AMD64"):
        return None
    calls = _X86_64
    out = [
        _insn(_LD_W_ABS, _ARCH),
        _insn(_JEQ_K, _AUDIT_ARCH_X86_64, 1, 0),
        _ret(_KILL_PROCESS),
        _insn(_LD_W_ABS, _NR),
        _insn(_JGE_K, _X32_BIT, 0, 1),
        _ret(_KILL_PROCESS),
    ]
    for number in sorted(_X86_64_DENIED.values()):
        out += [_insn(_JEQ_K, number, 0, 1), _ret(_errno(errno.EPERM))]
    out += [_insn(_JEQ_K, calls["unshare"], 0, 1), _ret(_errno(errno.EPERM))]
    out += [_insn(_JEQ_K, calls["clone3"], 0, 1), _ret(_errno(errno.ENOSYS))]
    # clone(flags, ...): no CLONE_NEW* flag
    out += [
        _insn(_JEQ_K, calls["clone"], 0, 4),
        _insn(_LD_W_ABS, _ARG0_LOW),
        _insn(_JSET_K, _CLONE_NEW, 0, 1),
        _ret(_errno(errno.EPERM)),
        _ret(_ALLOW),
    ]
    # socket(domain, ...) and socketpair(domain, ...): allowed families only
    families = len(SOCKET_FAMILIES)
    for name in ("socket", "socketpair"):
        block = [_insn(_LD_W_ABS, _ARG0_LOW)]
        for index, family in enumerate(SOCKET_FAMILIES):
            block.append(_insn(_JEQ_K, family, families - index + 2, 0))
        # netlink fails with EINVAL, which getifaddrs() users (ZeroMQ) take for "no
        # interfaces" instead of aborting
        block += [_insn(_JEQ_K, _AF_NETLINK, 0, 1), _ret(_errno(errno.EINVAL)),
                  _ret(_errno(errno.EAFNOSUPPORT)), _ret(_ALLOW)]
        out += [_insn(_JEQ_K, calls[name], 0, len(block)), *block]
    out.append(_ret(_ALLOW))
    return b"".join(out)


def filter_fd(program: bytes) -> int:
    """A file descriptor to read ``program`` from (for ``bwrap --seccomp FD``); the
    caller passes it to the child and closes it."""
    fd = os.memfd_create("qwen-ci-seccomp", 0)
    try:
        os.write(fd, program)
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd


__all__ = ["SOCKET_FAMILIES", "filter_fd", "filter_program"]
