"""The warm worker: imports the framework once, then forks one confined child per probe.

The worker never runs a framework operation itself (a process that ran torch ops cannot be forked safely: its
OpenMP pool hangs in the child), and never runs the user's code: only its children do.

Channels. The launcher writes the configuration, then one `ProbeRequest` per line, on the worker's stdin; the
worker answers on its stdout (`ready`/`fatal` once, then `started` and `result` per probe, each with the
request's id). A probe's child holds none of these: before the user's code runs it closes every descriptor but
its own output pipe, its result pipe and the two ends of a handshake with the worker. Through the handshake it
says it is ready (its limits, seccomp filter and capabilities in place); the worker reads the kernel's view of
it (/proc/PID/status) and only then lets it start. What the child writes on its result pipe is its own result
and nothing more: the worker keeps its facts (time, output, what was left running, the layers) beside it, and a
fresh pipe serves each probe, so one probe's garbage never reaches the next.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import tempfile
import time
import traceback

from . import PROTOCOL, cleanup, confine
from .dispatch import run_probe
from .messages import ProbeRequest

OUTPUT_KEEP = 8192  # bytes of the user's output kept from the start and from the end
RESULT_MAX = 64 * 1024 * 1024
READY_TIMEOUT_S = 30.0
FILE_SIZE_MB = 1024


def _send(stream, obj) -> None:
    stream.write(json.dumps(obj) + "\n")
    stream.flush()


class Worker:
    def __init__(self, cfg: dict, control):
        self.cfg = cfg
        self.control = control
        self.framework = cfg.get("framework", "torch")
        self.namespaces = bool(cfg.get("namespaces"))
        self.home = cfg.get("home") or os.path.expanduser("~")
        self.layers: list[str] = []
        self.preimported = False

    # ---- start
    def start(self) -> bool:
        t0 = time.perf_counter()
        try:
            jail_spec = self.cfg.get("jail")
            if jail_spec:
                from . import jail

                jail.build(jail_spec["mounts"], os.getcwd())
            if self.namespaces:
                os.chdir("/tmp")
                os.environ["TMPDIR"] = "/tmp"
                tempfile.tempdir = "/tmp"
            confine.non_dumpable()  # its probes cannot open /proc/WORKER/mem nor ptrace it
            self._import_framework()
        except BaseException as exc:  # noqa: BLE001 - report anything, including SystemExit from a broken install
            kind = "SandboxError" if type(exc).__name__ == "JailError" else type(exc).__name__
            _send(self.control, {"event": "fatal", "error": {"type": kind, "message": str(exc)}})
            return False
        from .jail import self_check

        self.layers = self_check(self.cfg.get("host_ns") or {}, self.cfg.get("project"), self.home)
        if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
            self.layers.append("cpu-only")
        _make_subreaper()
        _send(self.control, {"event": "ready", "protocol": PROTOCOL, "import_s": time.perf_counter() - t0,
                             "pid": os.getpid(), "python": sys.version.split()[0], "layers": self.layers})
        return True

    def _import_framework(self) -> None:
        if self.framework == "torch":
            import torch  # noqa: F401  (import only: the worker never runs an op)
            import torch.overrides  # noqa: F401
        elif self.framework == "tensorflow":
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            import tensorflow  # noqa: F401
        elif self.framework == "jax":
            import jax  # noqa: F401  (no backend is initialised: that happens at the first operation)
        else:
            raise ImportError(f"unsupported framework {self.framework!r}")

    # ---- the loop
    def serve(self) -> int:
        idle = float(self.cfg.get("idle_s", 600))
        stdin_fd = sys.stdin.fileno()
        buf = b""
        while True:
            ready, _, _ = select.select([stdin_fd], [], [], idle)
            if not ready:
                return 0  # idle too long: the launcher starts a new worker when needed
            chunk = os.read(stdin_fd, 65536)
            if not chunk:
                return 0  # launcher gone
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(obj, dict) and obj.get("op") == "exit":
                    return 0
                try:
                    req = ProbeRequest.from_json(obj)
                except (TypeError, ValueError) as exc:
                    if isinstance(obj, dict) and isinstance(obj.get("id"), int):
                        _send(self.control, {"event": "result", "id": obj["id"], "facts": {}, "result": {
                            "status": "error", "error": {"type": "BadRequest", "message": str(exc)}}})
                    continue
                facts, result = self.probe(req)
                _send(self.control, {"event": "result", "id": req.id, "facts": facts, "result": result})
                if self.framework == "torch" and not self.preimported:
                    # After the first probe (so a cold probe pays only `import torch`): modules torch imports
                    # lazily on first use, e.g. an optimizer's constructor imports torch._dynamo (~2 s).
                    _preimport(("torch.optim", "torch._dynamo", "torch.nn.functional", "torch.utils.data", "numpy"))
                    self.preimported = True

    # ---- one probe
    def probe(self, req: ProbeRequest) -> tuple[dict, dict | None]:
        """(the worker's facts about the run, the child's result or None)."""
        base = tempfile.mkdtemp(prefix="gradtrace-probe-")
        shm_before = None if self.namespaces else cleanup.snapshot("/dev/shm")
        r_res, w_res = os.pipe()
        r_out, w_out = os.pipe()
        r_ready, w_ready = os.pipe()
        r_go, w_go = os.pipe()
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # child
            code = 70
            try:
                for fd in (r_res, r_out, r_ready, w_go):
                    os.close(fd)
                code = _child_main(req, w_res, w_out, w_ready, r_go, base, self.home, self.namespaces)
            except BaseException:  # noqa: BLE001
                try:
                    os.write(w_res, json.dumps({"status": "error", "error": {
                        "type": "ProbeError", "message": traceback.format_exc(limit=3)}}).encode())
                except OSError:
                    pass
            finally:
                os._exit(code)
        for fd in (w_res, w_out, w_ready, r_go):
            os.close(fd)
        _send(self.control, {"event": "started", "id": req.id, "pid": pid})
        layers = self._handshake(pid, r_ready, w_go)
        if layers is None:
            os.close(r_res)
            os.close(r_out)
            killed, alive = _sweep(pid, self.namespaces)
            self._cleanup(base, shm_before)
            return ({"layers": [], "leftover_killed": killed, "leftover_alive": alive, "elapsed_s": 0.0,
                     "output": {"bytes": 0, "head": "", "tail": ""}},
                    {"status": "error", "error": {"type": "ProbeSetupFailed", "message": "the probe process did not "
                                                  "finish its set-up (limits, seccomp, capabilities)"}})
        status, timed_out, raw, result_len, output = _collect(pid, r_res, r_out, started, req.timeout)
        elapsed = time.perf_counter() - started
        killed, alive = _sweep(pid, self.namespaces)
        if status is None:
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                status = 0
        self._cleanup(base, shm_before)
        facts = {"elapsed_s": round(elapsed, 4), "output": output, "leftover_killed": killed,
                 "leftover_alive": alive, "layers": layers}
        if timed_out:
            return facts, {"status": "timeout", "error": {
                "type": "Timeout", "message": f"the probe did not finish within {req.timeout:g} s; its process "
                "group was killed", "path": None, "line": None}}
        try:
            result = json.loads(raw) if raw and result_len <= RESULT_MAX else None
        except (ValueError, RecursionError):
            result = None
        if not isinstance(result, dict):
            return facts, {"status": "error", "error": {"type": "ProbeCrashed", "message": f"the probe process "
                                                        f"{_why_no_result(status)}", "path": None, "line": None}}
        return facts, result

    def _handshake(self, pid: int, r_ready: int, w_go: int) -> list[str] | None:
        """Wait for the child's set-up, check it from /proc, let it run. The layers it has, or None."""
        try:
            ready, _, _ = select.select([r_ready], [], [], READY_TIMEOUT_S)
            data = os.read(r_ready, 65536) if ready else b""
            said = json.loads(data) if data else None
        except (OSError, ValueError):
            said = None
        finally:
            os.close(r_ready)
        if not isinstance(said, list):
            os.close(w_go)
            return None
        kernel = confine.verify(pid)
        # what the kernel shows is reported as such; the rest (limits, process group, directory) the child set
        # up before any user code ran, so its own word is good
        layers = [x for x in said if isinstance(x, str) and x not in confine.VERIFIED] + kernel
        layers += [f"missing:{x}" for x in confine.VERIFIED if x not in kernel]
        try:
            os.write(w_go, b"g")
        except OSError:
            return None
        finally:
            os.close(w_go)
        return layers

    def _cleanup(self, base: str, shm_before) -> None:
        cleanup.remove_tree(base)
        if self.namespaces:  # /tmp, /dev/shm and $HOME are this worker's own: emptied after every probe
            for d in ("/tmp", "/dev/shm", self.home):
                cleanup.empty(d)
        else:  # the host's /dev/shm: what this probe added
            cleanup.empty("/dev/shm", only_new_since=shm_before)


def _collect(pid, r_res, r_out, started, timeout):
    """Read the child's result and output until it exits or the time is up."""
    result_chunks: list[bytes] = []
    result_len = 0
    head = bytearray()
    tail = bytearray()
    out_total = 0
    open_fds = {r_res, r_out}
    deadline = started + timeout
    timed_out = False
    status = None
    while open_fds:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            timed_out = True
            break
        ready, _, _ = select.select(list(open_fds), [], [], min(remaining, 0.25))
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                open_fds.discard(fd)
                continue
            if fd == r_res:
                result_len += len(data)
                if result_len <= RESULT_MAX:
                    result_chunks.append(data)
            else:
                out_total += len(data)
                if len(head) < OUTPUT_KEEP:
                    head += data[: OUTPUT_KEEP - len(head)]
                tail += data
                if len(tail) > 4 * OUTPUT_KEEP:
                    del tail[: len(tail) - OUTPUT_KEEP]
        if r_res not in open_fds and status is None:
            # The result is in; the child may still hold the output pipe through a grandchild.
            try:
                wpid, status = os.waitpid(pid, os.WNOHANG)
                if wpid == 0:
                    status = None
            except ChildProcessError:
                status = 0
            if status is not None:
                break
    for fd in (r_res, r_out):
        os.close(fd)
    output = {"bytes": out_total, "head": head.decode("utf-8", "replace"),
              "tail": bytes(tail[-OUTPUT_KEEP:]).decode("utf-8", "replace") if out_total > OUTPUT_KEEP else ""}
    return status, timed_out, b"".join(result_chunks), result_len, output


def _why_no_result(status) -> str:
    why = "exited without a result"
    if status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        why = f"was killed by {_signal_name(sig)}"
        if sig == signal.SIGKILL:
            why += " (memory limit or the system's OOM killer)"
        elif sig == signal.SIGXCPU:
            why += " (CPU time limit)"
        elif sig == signal.SIGSYS:
            why += " (a system call the sandbox forbids)"
    elif status is not None and os.WIFEXITED(status):
        why = f"exited with status {os.WEXITSTATUS(status)} without a result (os._exit in the probed code?)"
    return why


def _preimport(names) -> None:
    """Modules torch imports lazily on first use (an optimizer's constructor imports torch._dynamo: ~2 s)."""
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - optional
            pass


def _make_subreaper() -> None:
    """Orphaned grandchildren are re-parented to us, so `_sweep` can find and kill them."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:  # noqa: BLE001 - best effort
        pass


def _children_of(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        rest = stat.rsplit(b")", 1)[-1].split()
        if len(rest) > 2 and int(rest[1]) == pid:
            found.append(int(name))
    return found


def _sweep(pgid: int | None, pidns: bool, budget_s: float = 15.0) -> tuple[int, int]:
    """Kill everything a probe left behind: its process group, our other children, their children.

    Returns (signals sent, processes still there). A fork bomb refills freed process slots while it is
    being killed, and on a loaded machine the dying processes wait for a CPU: keep going until nothing is
    left or `budget_s` is spent; the launcher discards a worker that could not be emptied.
    """
    me = os.getpid()
    killed = 0
    victims: list[int] = []
    deadline = time.monotonic() + budget_s
    while True:
        if pgid:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        if pidns:  # alone in a private pid namespace: everything but init and us is the probe's
            victims = [int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) not in (1, me)]
        else:
            victims = _children_of(me)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        if not victims or time.monotonic() > deadline:
            return killed, len(victims)
        time.sleep(0.005)


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _apply_limits(req: ProbeRequest) -> list[str]:
    import resource

    applied = []
    limit = req.memory_mb * 1024 * 1024
    for name in ("RLIMIT_DATA", "RLIMIT_AS"):
        res = getattr(resource, name, None)
        if res is None:
            continue
        try:
            if name == "RLIMIT_DATA":  # private memory, including what the fork inherited
                value = max(limit, _status_bytes("VmData:") + 256 * 1024 * 1024)
            else:  # address space also counts mapped libraries and thread stacks: leave room for those
                value = limit + _status_bytes("VmSize:")
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):
            continue
    applied.append(f"memory-limit:{req.memory_mb}MB")
    cpu = int(req.timeout * max(1, req.threads) + 5)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        applied.append(f"cpu-limit:{cpu}s")
    except (ValueError, OSError):
        pass
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        fsize = FILE_SIZE_MB * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        applied.append(f"file-size-limit:{FILE_SIZE_MB}MB")
    except (ValueError, OSError):
        pass
    if os.geteuid() != 0:  # the kernel does not enforce RLIMIT_NPROC for root
        try:
            users = _tasks_of_uid(os.getuid())
            n = users + req.max_procs
            resource.setrlimit(resource.RLIMIT_NPROC, (n, n))
            applied.append(f"process-limit:{req.max_procs}")
        except (ValueError, OSError):
            pass
    return applied


def _status_bytes(key: str) -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tasks_of_uid(uid: int) -> int:
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    n += len(os.listdir(f"/proc/{name}/task"))
            except OSError:
                pass
    return n


def _child_main(req: ProbeRequest, w_res: int, w_out: int, w_ready: int, r_go: int, base: str, home: str,
                namespaces: bool) -> int:
    """Set up the probe's process, tell the worker, wait for its go, then run the user's code."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(w_out, 1)
    os.dup2(w_out, 2)
    os.close(w_out)
    os.close(devnull)
    sys.stdin = os.fdopen(0, "r")
    sys.stdout = os.fdopen(1, "w", buffering=1, errors="replace")
    sys.stderr = os.fdopen(2, "w", buffering=1, errors="replace")
    applied = ["process-group"] + _apply_limits(req)
    os.chdir(base)
    os.environ["TMPDIR"] = base
    tempfile.tempdir = base
    if not namespaces:  # no private $HOME to give: at least point it at an empty directory
        os.environ["HOME"] = os.path.join(base, "home")
        os.mkdir(os.environ["HOME"])
    applied.append("private-tmp-cwd")
    if req.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    confine.drop_capabilities()
    confine.no_new_privs()
    confine.install_seccomp()
    confine.close_fds({0, 1, 2, w_res, w_ready, r_go})
    os.write(w_ready, json.dumps(applied).encode())
    os.close(w_ready)
    if os.read(r_go, 1) != b"g":
        return 71
    os.close(r_go)
    result = run_probe(req.__dict__)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # noqa: BLE001
        pass
    data = json.dumps(result, default=str).encode()
    view = memoryview(data)
    while view:
        n = os.write(w_res, view[:65536])
        view = view[n:]
    os.close(w_res)
    return 0


def worker_loop() -> int:
    control = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from imports must not corrupt the protocol
    line = sys.stdin.readline()
    if not line:
        return 0
    try:
        cfg = json.loads(line)
    except ValueError:
        return 2
    worker = Worker(cfg if isinstance(cfg, dict) else {}, control)
    if not worker.start():
        return 1
    return worker.serve()


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "worker":
        return worker_loop()
    if len(argv) >= 3 and argv[1] == "once":
        req = {"path": argv[2], "mode": argv[3] if len(argv) > 3 else "auto"}
        out = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
        print(json.dumps(run_probe(req), indent=2, default=str), file=out)
        return 0
    print("usage: runner.py worker | once FILE [MODE]", file=sys.stderr)
    return 2
