"""What a probe's process gives up before the user's code runs, and how the worker checks it from outside.

- `no_new_privs`: no exec can gain privileges (setuid binaries, file capabilities);
- capabilities: the bounding, ambient, permitted and effective sets emptied (root inside the sandbox is then an
  ordinary user for the kernel's permission checks);
- a seccomp filter: `ptrace`, `process_vm_readv/writev`, `setns`, `unshare`, `clone`/`clone3` with new namespaces,
  `mount` and the other calls that reach across processes or namespaces or into the kernel fail with EPERM;
- `non_dumpable`: the warm worker cannot be opened through /proc/PID/mem or ptraced by its probes.

Every function returns whether it applied; the worker reports a layer only when `verify` reads it back from
/proc/PID/status of the probe's process (the kernel's view, not the process's word).
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
CAP_LAST = 63  # more than any kernel has; dropping an unknown capability fails harmlessly

EPERM, ENOSYS = 1, 38
VERIFIED = ("no-new-privs", "seccomp", "capabilities-dropped")  # the layers `verify` reads from the kernel
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET

# Per architecture: (AUDIT_ARCH, {name: number}). x86-64 also refuses the x32 ABI (numbers >= 0x40000000).
ARCHES = {
    "x86_64": (0xC000003E, {
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "setns": 308, "unshare": 272,
        "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "kexec_load": 246, "kexec_file_load": 320,
        "init_module": 175, "finit_module": 313, "delete_module": 176, "bpf": 321, "perf_event_open": 298,
        "userfaultfd": 323, "keyctl": 250, "add_key": 248, "request_key": 249, "open_by_handle_at": 304,
        "name_to_handle_at": 303, "swapon": 167, "swapoff": 168, "reboot": 169, "acct": 163, "quotactl": 179,
        "kcmp": 312, "pidfd_getfd": 438, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "lookup_dcookie": 212, "clone": 56, "clone3": 435}),
    "aarch64": (0xC00000B7, {
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "setns": 268, "unshare": 97,
        "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "kexec_load": 104, "kexec_file_load": 294,
        "init_module": 105, "finit_module": 273, "delete_module": 106, "bpf": 280, "perf_event_open": 241,
        "userfaultfd": 282, "keyctl": 219, "add_key": 217, "request_key": 218, "open_by_handle_at": 265,
        "name_to_handle_at": 264, "swapon": 224, "swapoff": 225, "reboot": 142, "acct": 89, "quotactl": 60,
        "kcmp": 272, "pidfd_getfd": 438, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "lookup_dcookie": 18, "clone": 220, "clone3": 435}),
}
ARCHES["amd64"] = ARCHES["x86_64"]
ARCHES["arm64"] = ARCHES["aarch64"]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, arg2: int = 0, arg3=0, arg4: int = 0, arg5: int = 0) -> bool:
    libc = _libc()
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    return libc.prctl(option, arg2, arg3, arg4, arg5) == 0


def non_dumpable() -> bool:
    return _prctl(PR_SET_DUMPABLE, 0)


def no_new_privs() -> bool:
    return _prctl(PR_SET_NO_NEW_PRIVS, 1)


def drop_capabilities() -> bool:
    """Empty every capability set; True when the effective set is empty afterwards."""
    for cap in range(CAP_LAST + 1):
        _prctl(PR_CAPBSET_DROP, cap)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set
    data = (Data * 2)()
    libc = _libc()
    libc.capset(ctypes.byref(header), data)
    return capabilities(os.getpid()).get("CapEff", 1) == 0


def seccomp_program(machine: str | None = None) -> bytes | None:
    """The classic-BPF filter for this architecture, or None where we have no syscall table."""
    arch = ARCHES.get((machine or platform.machine()).lower())
    if arch is None:
        return None
    audit_arch, numbers = arch
    insns: list[tuple[int, int, int, int]] = []

    def ld(offset):
        insns.append((0x20, 0, 0, offset))  # BPF_LD | BPF_W | BPF_ABS

    def ret(value):
        insns.append((0x06, 0, 0, value))  # BPF_RET | BPF_K

    def deny_if_equal(nr, errno=EPERM):
        insns.append((0x15, 0, 1, nr))  # BPF_JMP | BPF_JEQ | BPF_K: skip the return unless equal
        ret(RET_ERRNO | errno)

    ld(4)  # seccomp_data.arch
    insns.append((0x15, 1, 0, audit_arch))
    ret(RET_ERRNO | EPERM)  # another ABI (i386 through int 0x80): nothing allowed
    ld(0)  # seccomp_data.nr
    if audit_arch == ARCHES["x86_64"][0]:
        insns.append((0x35, 0, 1, 0x40000000))  # BPF_JGE: the x32 ABI
        ret(RET_ERRNO | EPERM)
    for name, nr in numbers.items():
        if name not in ("clone", "clone3"):
            deny_if_equal(nr)
    deny_if_equal(numbers["clone3"], ENOSYS)  # its flags are behind a pointer: libc falls back to clone
    insns.append((0x15, 0, 3, numbers["clone"]))
    ld(16)  # the low 32 bits of args[0]: clone's flags
    insns.append((0x45, 0, 1, NAMESPACE_FLAGS))  # BPF_JSET
    ret(RET_ERRNO | EPERM)
    ret(RET_ALLOW)
    return b"".join(struct.pack("=HBBI", *i) for i in insns)


def install_seccomp() -> bool:
    """Install the filter on this thread (a forked child has only one: every later thread inherits it)."""
    program = seccomp_program()
    if program is None:
        return False
    buf = ctypes.create_string_buffer(program, len(program))

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Prog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    return _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))


def close_fds(keep: set[int]) -> None:
    """Close every descriptor but `keep` (the user's code must not inherit the worker's channels)."""
    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def capabilities(pid: int) -> dict[str, int]:
    """CapEff, CapPrm, CapBnd, CapAmb, NoNewPrivs and Seccomp of a process, from /proc/PID/status."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.startswith("Cap"):
                    out[key] = int(value.strip(), 16)
                elif key in ("NoNewPrivs", "Seccomp"):
                    out[key] = int(value.strip())
    except (OSError, ValueError):
        pass
    return out


def limits(pid: int) -> dict[str, str]:
    """The soft limits of a process, from /proc/PID/limits ("Max address space" -> "4294967296")."""
    out: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/limits") as fh:
            next(fh)
            for line in fh:
                name = line[:26].strip()
                fields = line[26:].split()
                if name and fields:
                    out[name] = fields[0]
    except (OSError, StopIteration):
        pass
    return out


def verify(pid: int) -> list[str]:
    """The layers the kernel shows for process `pid`."""
    layers = []
    status = capabilities(pid)
    if status.get("NoNewPrivs") == 1:
        layers.append("no-new-privs")
    if status.get("Seccomp") == 2:
        layers.append("seccomp")
    # no capability now, none to gain: the bounding set is empty, or no exec may raise privileges
    if status and not any(status.get(k, 1) for k in ("CapEff", "CapPrm", "CapAmb")) \
            and (status.get("CapBnd") == 0 or status.get("NoNewPrivs") == 1):
        layers.append("capabilities-dropped")
    return layers
