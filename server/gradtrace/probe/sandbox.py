"""The sandbox layers around a probe worker: what can be applied on this machine, and the command line.

Layers (DESIGN §5), strongest first; `isolation` in the probe result lists exactly what applied:
- bubblewrap (`bwrap`): no network, file system read-only outside a private tmpfs, private pid/ipc/uts
  namespaces, credentials directories hidden, all capabilities dropped;
- else `unshare` (where the kernel lets us): no network, private pid namespace; the file system stays
  writable (a notice says so);
- always: own session and process group, wall-clock timeout killing the whole group, memory/CPU/file
  size limits, scrubbed environment, private temporary working directory, CPU only unless opted in,
  and (where the pids cgroup is writable) a cap on the number of processes.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field

# Environment variables the probe keeps (by exact name or prefix); everything else is dropped.
KEEP_EXACT = {
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "PYTHONPATH",
    "PYTHONHASHSEED", "PYTHONIOENCODING", "PYTHONUTF8", "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV",
    "LD_LIBRARY_PATH", "SYSTEMROOT", "NUMBA_CACHE_DIR", "MPLBACKEND",
}
KEEP_PREFIX = ("LC_", "OMP_", "MKL_", "KMP_", "OPENBLAS_", "TORCH_", "TF_", "XLA_", "JAX_", "CUDA_", "NVIDIA_",
               "PYTORCH_")
SECRET_RE = re.compile(r"(TOKEN|SECRET|PASSW|PASSWD|KEY|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|CERT|SIGNING)",
                       re.I)
# Credential stores hidden inside bubblewrap (relative to $HOME).
CREDENTIAL_PATHS = (".ssh", ".aws", ".azure", ".config/gcloud", ".docker", ".kube", ".netrc", ".git-credentials",
                    ".pypirc", ".config/gh", ".huggingface", ".cache/huggingface/token", ".gnupg", ".npmrc",
                    ".config/git/credentials", ".boto", ".s3cfg", ".terraform.d", ".vault-token")


def scrub_env(env: dict[str, str] | None = None, device: str = "cpu") -> dict[str, str]:
    env = dict(os.environ if env is None else env)
    out = {}
    for k, v in env.items():
        if SECRET_RE.search(k):
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
def unshare_path() -> str | None:
    path = shutil.which("unshare")
    if not path:
        return None
    args = [path, "--net", "--pid", "--fork", "--kill-child"]
    if os.geteuid() != 0:
        args.insert(1, "--map-root-user")
    try:
        ok = subprocess.run([*args, "/bin/true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return path if ok else None


@dataclass
class Plan:
    argv_prefix: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    notice: str | None = None
    pidns: bool = False
    kind: str = "limits-only"


def plan(memory_mb: int, workdir: str, allow_bwrap: bool = True, device: str = "cpu") -> Plan:
    """How to start a worker: the wrapper command and the layers it brings.

    `workdir` is the worker's private directory: the only writable place inside bubblewrap; each probe
    gets a fresh temporary directory inside it.
    """
    home = os.path.expanduser("~")
    bw = bwrap_path() if allow_bwrap else None
    if bw:
        argv = [bw, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--bind", workdir, workdir,
                "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent",
                "--new-session", "--chdir", workdir]
        if os.geteuid() == 0:
            argv += ["--cap-drop", "ALL"]
        if device != "cpu":  # the user opted in to an accelerator: its device nodes must be visible
            for node in sorted(glob.glob("/dev/nvidia*") + glob.glob("/dev/dri") + glob.glob("/dev/kfd")):
                argv += ["--dev-bind", node, node]
        for rel in CREDENTIAL_PATHS:
            p = os.path.join(home, rel)
            if os.path.isdir(p):
                argv += ["--tmpfs", p]
            elif os.path.exists(p):
                argv += ["--ro-bind", "/dev/null", p]
        argv.append("--")
        return Plan(argv, ["bubblewrap", "no-network", "read-only-fs", "pid-namespace", "credential-dirs-hidden"],
                    None, True, "bwrap")
    us = unshare_path()
    if us:
        argv = [us, "--net", "--pid", "--fork", "--kill-child"]
        if os.geteuid() != 0:
            argv.insert(1, "--map-root-user")
        return Plan(argv, ["unshare", "no-network", "pid-namespace"],
                    "bubblewrap (`bwrap`) is not available: no network via unshare, but the file system is "
                    "writable outside the temporary directory; install the `bubblewrap` package for full isolation",
                    False, "unshare")
    return Plan([], [], "bubblewrap (`bwrap`) is not available and unshare is not permitted: the probe runs with "
                "resource limits, a scrubbed environment and a private temporary directory only: the probed code can "
                "reach the network and the file system is writable; install the `bubblewrap` package", False, "limits-only")


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


def interpreter(python: str | None) -> str:
    return python or sys.executable
