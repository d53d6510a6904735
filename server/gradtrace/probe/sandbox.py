"""The sandbox around a probe worker: what this machine allows, the mounts it gets, and the command line.

One plan, two ways to build it:
- bubblewrap (`bwrap`) where it runs;
- else `unshare` (root, or unprivileged user namespaces) plus the runtime's own mount code (`runtime/jail.py`);
- else limits only, with every missing layer named in the report.

In both namespace modes the worker sees an empty root with only what it needs: the system's `/usr` (and the
merged-usr links), a few files of `/etc`, the interpreter's prefixes and `sys.path`, the probe's runtime, and the
project, all read-only; a private `/proc`, a minimal `/dev`, size-limited tmpfs for `/tmp`, `/dev/shm` and
`$HOME` (so no secret in the home directory is visible), no network and no host socket. The worker checks each
layer from inside before it says it is ready (`runtime/jail.py: self_check`); `isolation` lists what it found,
and `missing:<layer>` for what this machine could not give.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time

from gradtrace.records import asdict, field, record

# Environment variables the probe keeps (by exact name or prefix); everything else is dropped.
KEEP_EXACT = {
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "PYTHONPATH",
    "PYTHONHASHSEED", "PYTHONIOENCODING", "PYTHONUTF8", "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV",
    "LD_LIBRARY_PATH", "SYSTEMROOT", "NUMBA_CACHE_DIR", "MPLBACKEND",
}
KEEP_PREFIX = ("LC_", "OMP_", "MKL_", "KMP_", "OPENBLAS_", "TORCH_", "TF_", "XLA_", "JAX_", "CUDA_", "NVIDIA_",
               "PYTORCH_")
DROP_PREFIX = ("TF_VAR_",)  # Terraform's variables share TensorFlow's prefix and carry secrets
SECRET_RE = re.compile(r"(TOKEN|SECRET|PASSW|PASSWD|KEY|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|CERT|SIGNING)",
                       re.I)
URL_CREDENTIAL_RE = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s@]+@", re.I)  # scheme://user[:password]@host

# The layers a namespace sandbox gives, as the worker verifies them.
SANDBOX_LAYERS = ("mount-namespace", "pid-namespace", "no-network", "no-host-sockets", "read-only-fs",
                  "private-proc", "home-hidden", "tmp-bounded", "shm-bounded")
# Files of /etc the interpreter and the frameworks read; nothing else of /etc is visible.
ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "nsswitch.conf", "hosts",
       "host.conf", "ssl", "ca-certificates", "pki", "alternatives", "mime.types", "fonts", "os-release",
       "timezone", "matplotlibrc", "xdg/matplotlib")
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
SYS_READ = ("/sys/devices/system/cpu", "/sys/devices/system/node")  # CPU topology for the thread pools
RUNTIME = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime")
RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runner.py")
HOME_MB = 64
SOCKET_SCAN_LIMIT = 20_000  # project entries looked at for unix sockets to hide


def scrub_env(env: dict[str, str] | None = None, device: str = "cpu") -> dict[str, str]:
    env = dict(os.environ if env is None else env)
    out = {}
    for k, v in env.items():
        if SECRET_RE.search(k) or k.startswith(DROP_PREFIX) or URL_CREDENTIAL_RE.search(v):
            continue
        if k in KEEP_EXACT or k.startswith(KEEP_PREFIX):
            out[k] = v
    out.setdefault("PATH", "/usr/bin:/bin")
    out["PYTHONDONTWRITEBYTECODE"] = "1"
    out["PYTHONUNBUFFERED"] = "1"
    out.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if device == "cpu":
        out["CUDA_VISIBLE_DEVICES"] = ""
    return out


@functools.cache
def bwrap_path() -> str | None:
    path = shutil.which("bwrap")
    if not path:
        return None
    try:
        ok = subprocess.run([path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-net",
                             "--unshare-pid", "--die-with-parent", "--", "/bin/true"],
                            capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return path if ok else None


@functools.cache
def bwrap_sizes_tmpfs() -> bool:
    """bubblewrap >= 0.5 takes `--size` for a tmpfs."""
    try:
        return "--size" in subprocess.run([bwrap_path() or "bwrap", "--help"], capture_output=True, text=True,
                                          timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False


def unshare_argv() -> list[str]:
    args = ["--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]
    if os.geteuid() != 0:
        args.insert(0, "--map-root-user")
    return args


@functools.cache
def unshare_path() -> str | None:
    path = shutil.which("unshare")
    if not path:
        return None
    try:
        ok = subprocess.run([path, *unshare_argv(), "/bin/true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return path if ok else None


@record(frozen=True)
class Mount:
    """One entry of the sandbox's file system. kind: ro-bind | dev-bind | tmpfs | proc | dev | symlink."""

    kind: str
    dest: str
    src: str | None = None
    size_mb: int | None = None
    mode: int | None = None


@record
class Layout:
    """Where an interpreter lives: the executable to run and every directory it needs to read."""

    executable: str
    paths: list[str]


@functools.lru_cache(maxsize=16)
def _query_layout(python: str, env_items: tuple) -> Layout:
    code = ("import json, os, sys\nprint(json.dumps({'executable': sys.executable, 'paths': [p for p in "
            "[sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *sys.path] if p]}))")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, env=dict(env_items),
                             cwd="/")
        data = json.loads(out.stdout.strip().splitlines()[-1])
        return Layout(data["executable"] or python, [p for p in data["paths"] if isinstance(p, str)])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, KeyError):
        real = os.path.realpath(python)
        return Layout(python, [os.path.dirname(os.path.dirname(real))])


def interpreter_layout(python: str, env: dict[str, str]) -> Layout:
    return _query_layout(python, tuple(sorted(env.items())))


def project_root(path: str) -> str:
    """The directory to show the probe: the nearest ancestor that looks like a project, else the file's directory.
    Never the home directory or `/` (they hold far more than the project)."""
    start = os.path.dirname(os.path.realpath(path))
    home = os.path.realpath(os.path.expanduser("~"))
    d = start
    while True:
        if d in ("/", home) or home.startswith(d.rstrip("/") + "/"):
            return start
        if any(os.path.exists(os.path.join(d, m)) for m in (".git", "pyproject.toml", "setup.py", "setup.cfg")):
            return d
        parent = os.path.dirname(d)
        if parent == d:
            return start
        d = parent


def _sockets_under(root: str) -> list[str]:
    """Unix sockets in the project (they would stay connectable through a read-only bind): hidden with /dev/null."""
    found, seen = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", "node_modules", "__pycache__")]
        for name in filenames:
            seen += 1
            p = os.path.join(dirpath, name)
            try:
                if stat.S_ISSOCK(os.lstat(p).st_mode):
                    found.append(p)
            except OSError:
                pass
        if seen > SOCKET_SCAN_LIMIT:
            break
    return found


def mounts(project: str, layout: Layout, home: str, memory_mb: int, device: str) -> list[Mount]:
    """The sandbox's file system, parents before children."""
    out: list[Mount] = [Mount("ro-bind", "/usr", "/usr")]
    for link in SYSTEM_LINKS:
        if os.path.islink(link):
            out.append(Mount("symlink", link, os.readlink(link)))
        elif os.path.isdir(link):
            out.append(Mount("ro-bind", link, link))
    out += [Mount("ro-bind", f"/etc/{e}", f"/etc/{e}") for e in ETC if os.path.lexists(f"/etc/{e}")]
    out += [Mount("ro-bind", p, p) for p in SYS_READ if os.path.isdir(p)]
    out += [Mount("dev", "/dev"), Mount("tmpfs", "/dev/shm", size_mb=max(32, memory_mb // 4), mode=0o1777),
            Mount("proc", "/proc"), Mount("tmpfs", "/tmp", size_mb=max(64, memory_mb // 2), mode=0o1777)]
    if home and home != "/" and not home.startswith(("/usr/", "/etc/", "/proc/", "/dev/")):
        out.append(Mount("tmpfs", home, size_mb=HOME_MB, mode=0o700))
    if device != "cpu":  # the user opted in to an accelerator: its device nodes must be visible
        out += [Mount("dev-bind", n, n) for n in sorted(glob.glob("/dev/nvidia*") + glob.glob("/dev/dri")
                                                         + glob.glob("/dev/kfd"))]
    readable = [*layout.paths, RUNTIME, RUNNER, project]
    for p in readable:
        if not os.path.isdir(p) and not os.path.isfile(p):
            continue
        if os.path.realpath(p) == "/":
            continue  # an empty PYTHONPATH entry read from "/": the root itself is never shown
        real = os.path.realpath(p)
        out.append(Mount("ro-bind", os.path.abspath(p), real))
        if real != os.path.abspath(p):
            out.append(Mount("ro-bind", real, real))
    out += [Mount("ro-bind", s, "/dev/null") for s in _sockets_under(project)]
    return _ordered(out)


def _ordered(entries: list[Mount]) -> list[Mount]:
    """Parents before children; a bind already visible through an earlier bind of its parent is dropped."""
    entries = sorted(dict.fromkeys(entries), key=lambda m: (m.dest.rstrip("/").count("/"), m.dest))
    kept: list[Mount] = []
    for m in entries:
        if m.kind == "ro-bind" and m.src != "/dev/null":
            covered = False
            for k in kept:
                if k.kind == "ro-bind" and k.src and (m.dest + "/").startswith(k.dest.rstrip("/") + "/"):
                    rel = os.path.relpath(m.dest, k.dest)
                    covered = covered or os.path.realpath(os.path.join(k.src, rel)) == m.src
            if covered or any(k.dest == m.dest for k in kept):
                continue
        kept.append(m)
    return kept


def bwrap_args(entries: list[Mount]) -> list[str]:
    args = []
    sized = bwrap_sizes_tmpfs()
    for m in entries:
        if m.kind in ("ro-bind", "dev-bind"):
            args += [f"--{m.kind}", m.src, m.dest]
        elif m.kind == "tmpfs":
            if m.mode is not None:
                args += ["--perms", f"{m.mode:o}"]
            if sized and m.size_mb:
                args += ["--size", str(m.size_mb * 1024 * 1024)]
            args += ["--tmpfs", m.dest]
        elif m.kind == "proc":
            args += ["--proc", m.dest]
        elif m.kind == "dev":
            args += ["--dev", m.dest]
        elif m.kind == "symlink":
            args += ["--symlink", m.src, m.dest]
    return args


@record
class Plan:
    kind: str = "limits-only"  # "bwrap" | "unshare" | "limits-only"
    argv_prefix: list[str] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    executable: str = ""
    home: str = ""
    notice: str | None = None

    @property
    def pidns(self) -> bool:
        return self.kind != "limits-only"

    def jail(self) -> dict | None:
        """What the worker builds itself (unshare mode)."""
        return {"mounts": [asdict(m) for m in self.mounts]} if self.kind == "unshare" else None

    def missing(self, verified: list[str]) -> list[str]:
        return [f"missing:{layer}" for layer in SANDBOX_LAYERS if layer not in verified]


def plan(python: str, script: str, env: dict[str, str], memory_mb: int, allow_bwrap: bool = True,
         device: str = "cpu", allow_namespaces: bool = True) -> Plan:
    """How to start a worker for `script` in `python`: the wrapper command and the file system it gets."""
    home = env.get("HOME") or os.path.expanduser("~")
    layout = interpreter_layout(python, env)
    bw = bwrap_path() if allow_bwrap and allow_namespaces else None
    us = unshare_path() if allow_namespaces else None
    if bw or us:
        entries = mounts(project_root(script), layout, os.path.abspath(home), memory_mb, device)
    if bw:
        argv = [bw, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--die-with-parent", "--new-session", "--hostname", "gradtrace-probe"]
        if os.geteuid() == 0:
            argv += ["--cap-drop", "ALL"]
        argv += [*bwrap_args(entries), "--remount-ro", "/", "--chdir", "/tmp", "--"]
        notice = None if bwrap_sizes_tmpfs() else "this bubblewrap cannot size a tmpfs: /tmp and /dev/shm are unbounded"
        return Plan("bwrap", argv, entries, layout.executable, home, notice)
    if us:
        return Plan("unshare", [us, *unshare_argv(), "--"], entries, layout.executable, home, None)
    return Plan("limits-only", [], [], layout.executable, home,
                "bubblewrap (`bwrap`) is not available and unshare is not permitted: the probe runs with resource "
                "limits, a seccomp filter, a scrubbed environment and a private temporary directory only: the "
                "probed code can reach the network, the file system is writable and the home directory readable; "
                "install the `bubblewrap` package")


class PidsCgroup:
    """A pids cgroup (v2 or v1) capping how many processes a worker and its probes may create."""

    def __init__(self, max_pids: int):
        self.path: str | None = None
        self.max_pids = max_pids
        candidates = ["/sys/fs/cgroup/pids"]
        try:
            with open("/sys/fs/cgroup/cgroup.subtree_control") as fh:
                if "pids" in fh.read().split():
                    candidates.append("/sys/fs/cgroup")
        except OSError:
            pass
        for base in candidates:
            if not os.path.isdir(base):
                continue
            path = os.path.join(base, f"gradtrace-{os.getpid()}-{id(self):x}")
            try:
                os.mkdir(path)
                with open(os.path.join(path, "pids.max"), "w") as fh:
                    fh.write(str(max_pids))
            except OSError:
                try:
                    os.rmdir(path)
                except OSError:
                    pass
                continue
            self.path = path
            break

    def preexec(self) -> None:
        if self.path:
            try:
                with open(os.path.join(self.path, "cgroup.procs"), "w") as fh:
                    fh.write(str(os.getpid()))
            except OSError:
                pass

    def pids(self) -> list[int]:
        if not self.path:
            return []
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as fh:
                return [int(x) for x in fh.read().split()]
        except (OSError, ValueError):
            return []

    def remove(self, wait_s: float = 5.0) -> None:
        """Delete the cgroup; killed processes leave it only once reaped, so wait for them briefly."""
        if self.path:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    os.rmdir(self.path)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)
            self.path = None


def descendants(pid: int) -> list[int]:
    """Every process below `pid` in the process tree (read from /proc: nothing a probe says is trusted)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                rest = fh.read().rsplit(b")", 1)[-1].split()
            children.setdefault(int(rest[1]), []).append(int(name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def interpreter(python: str | None) -> str:
    return python or sys.executable
