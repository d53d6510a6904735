"""The worker's file system in the `unshare` mode (bubblewrap builds the same one itself), and the check of what
the sandbox really gives, made from inside before the worker says it is ready.

`build(mounts, root)` runs as root of fresh mount, pid, network, ipc and uts namespaces (made by `unshare`): it
mounts a tmpfs at `root`, lays out the entries of the plan under it (read-only binds of the host's paths, tmpfs,
a minimal /dev, a new /proc of our pid namespace), switches to it with pivot_root and detaches the host's tree.
"""

from __future__ import annotations

import ctypes
import os
import platform
import socket

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
ST_TO_MS = {1: MS_RDONLY, 2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC, 1024: MS_NOATIME, 2048: MS_NODIRATIME,
            4096: MS_RELATIME}
PIVOT_ROOT = {"x86_64": 155, "amd64": 155, "aarch64": 41, "arm64": 41}
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
HOST_SOCKET_DIRS = ("/run", "/var/run", "/tmp/.X11-unix", "/var/lib/docker")


class JailError(OSError):
    pass


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    return libc


def _bytes(s):
    return s.encode() if isinstance(s, str) else s


def _mount(src, target, fstype, flags, data=None) -> None:
    if _libc().mount(_bytes(src), _bytes(target), _bytes(fstype), flags, _bytes(data)) != 0:
        err = ctypes.get_errno()
        raise JailError(err, f"mount {src or fstype} on {target}: {os.strerror(err)}")


def _locked_flags(path: str) -> int:
    """The flags a read-only remount must keep (a user namespace may not clear nosuid, nodev, noexec, atime)."""
    try:
        f = os.statvfs(path).f_flag
    except OSError:
        return MS_NOSUID | MS_NODEV
    return sum(ms for st, ms in ST_TO_MS.items() if f & st and ms != MS_RDONLY)


def _place(target: str, like: str | None) -> None:
    """Create the mount point: a directory, or an empty file for a file bind."""
    if like is not None and os.path.exists(like) and not os.path.isdir(like):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            with open(target, "w"):
                pass
    else:
        os.makedirs(target, exist_ok=True)


def _bind(src: str, target: str, read_only: bool) -> None:
    _place(target, src)
    _mount(src, target, None, MS_BIND)
    if read_only:
        _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | _locked_flags(src))


def _tmpfs(target: str, size_mb: int | None, mode: int | None) -> None:
    _place(target, None)
    opts = ",".join(x for x in (f"size={size_mb}m" if size_mb else "", f"mode={mode:o}" if mode is not None else "")
                    if x)
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, opts or None)


def _dev(target: str) -> None:
    _place(target, None)
    _mount("tmpfs", target, "tmpfs", MS_NOSUID, "mode=755,size=1m")
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            _bind(f"/dev/{name}", os.path.join(target, name), read_only=False)
    for name, to in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                     ("stderr", "/proc/self/fd/2")):
        os.symlink(to, os.path.join(target, name))
    os.makedirs(os.path.join(target, "shm"), exist_ok=True)


def build(mounts: list[dict], root: str) -> None:
    """Lay out `mounts` under `root` and make it `/`."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=8m")
    for m in mounts:
        target = os.path.join(root, m["dest"].lstrip("/"))
        kind = m["kind"]
        if kind in ("ro-bind", "dev-bind"):
            if os.path.lexists(m["src"]):
                _bind(m["src"], target, read_only=kind == "ro-bind")
        elif kind == "tmpfs":
            _tmpfs(target, m.get("size_mb"), m.get("mode"))
        elif kind == "dev":
            _dev(target)
        elif kind == "proc":
            _place(target, None)
            _mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        elif kind == "symlink":
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(m["src"], target)
    os.chdir(root)
    nr = PIVOT_ROOT.get(platform.machine().lower())
    if nr is None or _libc().syscall(nr, b".", b".") != 0:
        raise JailError(ctypes.get_errno(), "pivot_root failed")
    if _libc().umount2(b".", MNT_DETACH) != 0:
        raise JailError(ctypes.get_errno(), "detaching the host's file system failed")
    os.chdir("/")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


# ---- what the sandbox really gives, seen from inside ---------------------------------------------------------


def _ns(kind: str) -> int | None:
    try:
        return os.stat(f"/proc/self/ns/{kind}").st_ino
    except OSError:
        return None


def _mountinfo() -> dict[str, tuple[str, str]]:
    """mount point -> (file system type, super options)."""
    out = {}
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                fields, rest = left.split(), right.split()
                if len(fields) > 4 and len(rest) >= 3:
                    out[fields[4].replace("\\040", " ")] = (rest[0], rest[2])
    except OSError:
        pass
    return out


def _bounded_tmpfs(info, path: str) -> bool:
    fstype, options = info.get(path, ("", ""))
    return fstype == "tmpfs" and any(o.startswith("size=") for o in options.split(","))


def _read_only(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & 1)
    except OSError:
        return False


def self_check(host_ns: dict, project: str | None, home: str | None) -> list[str]:
    """The sandbox layers that hold in this process (see sandbox.SANDBOX_LAYERS)."""
    layers = []
    differs = {k: _ns(k) is not None and v is not None and _ns(k) != v for k, v in host_ns.items()}
    if differs.get("mnt"):
        layers.append("mount-namespace")
    if differs.get("pid"):
        layers.append("pid-namespace")
    try:
        interfaces = {name for _, name in socket.if_nameindex()}
    except OSError:
        interfaces = {"?"}
    if differs.get("net") and interfaces <= {"lo"}:
        layers.append("no-network")
    try:
        private_proc = differs.get("pid") and os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        private_proc = False
    if private_proc:
        layers.append("private-proc")
    if differs.get("mnt") and all(_read_only(p) for p in ("/", "/usr", project or "/")):
        layers.append("read-only-fs")
    if "mount-namespace" in layers and "no-network" in layers and not any(os.path.exists(p)
                                                                          for p in HOST_SOCKET_DIRS):
        layers.append("no-host-sockets")
    info = _mountinfo()
    if differs.get("mnt") and home and _bounded_tmpfs(info, home):
        layers.append("home-hidden")
    if differs.get("mnt") and _bounded_tmpfs(info, "/tmp"):
        layers.append("tmp-bounded")
    if differs.get("mnt") and _bounded_tmpfs(info, "/dev/shm"):
        layers.append("shm-bounded")
    return layers


def host_namespaces() -> dict:
    """The launcher's namespaces (inode numbers), for the worker to compare with its own."""
    return {k: _ns(k) for k in ("mnt", "pid", "net")}
