"""The warm worker: imports the framework once, then forks one sandboxed child per probe.

The worker never runs a framework operation itself (a process that ran torch ops cannot be forked safely: its
OpenMP pool hangs in the child). Each probe is a forked child in its own session, with resource limits, a
private temporary working directory and its output captured; the worker kills everything the child left behind.

Protocol (JSON lines): the launcher writes the configuration, then one request per probe, on the worker's
stdin; the worker answers on its stdout with `ready`/`fatal`, then `started` and `result` per probe.
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

from . import PROTOCOL
from .dispatch import run_probe

OUTPUT_KEEP = 8192  # bytes of the user's output kept from the start and from the end
RESULT_MAX = 64 * 1024 * 1024


def _send(stream, obj) -> None:
    stream.write(json.dumps(obj) + "\n")
    stream.flush()


def worker_loop() -> int:
    control = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from imports must not corrupt the protocol
    line = sys.stdin.readline()
    if not line:
        return 0
    cfg = json.loads(line)
    framework = cfg.get("framework", "torch")
    t0 = time.perf_counter()
    try:
        if framework == "torch":
            import torch  # noqa: F401  (import only: the worker never runs an op)
            import torch.overrides  # noqa: F401
        elif framework == "tensorflow":
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            import tensorflow  # noqa: F401
        else:
            raise ImportError(f"unsupported framework {framework!r}")
    except BaseException as exc:  # noqa: BLE001 - report anything, including SystemExit from a broken install
        _send(control, {"event": "fatal", "error": {"type": type(exc).__name__, "message": str(exc)}})
        return 1
    _make_subreaper()
    _send(control, {"event": "ready", "protocol": PROTOCOL, "import_s": time.perf_counter() - t0,
                    "pid": os.getpid(), "python": sys.version.split()[0]})
    idle = float(cfg.get("idle_s", 600))
    stdin_fd = sys.stdin.fileno()
    preimported = False
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
            req = json.loads(raw)
            if req.get("op") == "exit":
                return 0
            result = _run_forked(req, control, cfg)
            _send(control, {"event": "result", "result": result})
            if framework == "torch" and not preimported:
                # After the first probe (so a cold probe pays only `import torch`): modules torch imports
                # lazily on first use, e.g. an optimizer's constructor imports torch._dynamo (~2 s).
                _preimport(("torch.optim", "torch._dynamo", "torch.nn.functional", "torch.utils.data", "numpy"))
                preimported = True


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


def _run_forked(req: dict, control, cfg: dict) -> dict:
    timeout = float(req.get("timeout", 60.0))
    base = tempfile.mkdtemp(prefix="gradtrace-probe-")
    r_res, w_res = os.pipe()
    r_out, w_out = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r_res)
            os.close(r_out)
            _child_main(req, w_res, w_out, base, cfg)
        except BaseException:  # noqa: BLE001
            try:
                os.write(w_res, json.dumps({"status": "error", "error": {
                    "type": "ProbeError", "message": traceback.format_exc(limit=3)}}).encode())
            except OSError:
                pass
        finally:
            os._exit(70)
    os.close(w_res)
    os.close(w_out)
    _send(control, {"event": "started", "pid": pid})
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
    elapsed = time.perf_counter() - started
    killed, alive = _sweep(pid, bool(cfg.get("pidns")))
    if status is None:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = 0
    for fd in open_fds:
        os.close(fd)
    _rmtree(base)
    output = {"bytes": out_total, "head": head.decode("utf-8", "replace"),
              "tail": bytes(tail[-OUTPUT_KEEP:]).decode("utf-8", "replace") if out_total > OUTPUT_KEEP else ""}
    extra = {"elapsed_s": round(elapsed, 4), "output": output, "leftover_killed": killed,
             "leftover_alive": alive}
    if timed_out:
        return {"status": "timeout", "error": {
            "type": "Timeout", "message": f"the probe did not finish within {timeout:g} s; its process group "
            "was killed", "path": None, "line": None}, **extra}
    raw = b"".join(result_chunks)
    try:
        result = json.loads(raw) if raw else None
    except ValueError:
        result = None
    if result_len > RESULT_MAX:
        result = None
    if not isinstance(result, dict):
        why = "exited without a result"
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            why = f"was killed by {_signal_name(sig)}"
            if sig == signal.SIGKILL:
                why += " (memory limit or the system's OOM killer)"
            elif sig == signal.SIGXCPU:
                why += " (CPU time limit)"
        elif os.WIFEXITED(status):
            why = f"exited with status {os.WEXITSTATUS(status)} without a result (os._exit in the probed code?)"
        return {"status": "error", "error": {"type": "ProbeCrashed", "message": f"the probe process {why}",
                                             "path": None, "line": None}, **extra}
    result.update(extra)
    return result


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _apply_limits(req: dict) -> list[str]:
    import resource

    applied = []
    mem = int(req.get("memory_mb") or 0)
    if mem > 0:
        limit = mem * 1024 * 1024
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
        applied.append(f"memory-limit:{mem}MB")
    timeout = float(req.get("timeout", 60.0))
    cpu = int(timeout * max(1, int(req.get("threads") or 1)) + 5)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        applied.append(f"cpu-limit:{cpu}s")
    except (ValueError, OSError):
        pass
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        fsize = 1024 * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        applied.append("file-size-limit:1024MB")
    except (ValueError, OSError):
        pass
    nproc = int(req.get("max_procs") or 0)
    if nproc and os.geteuid() != 0:  # the kernel does not enforce RLIMIT_NPROC for root
        try:
            users = _tasks_of_uid(os.getuid())
            resource.setrlimit(resource.RLIMIT_NPROC, (users + nproc, users + nproc))
            applied.append(f"process-limit:{nproc}")
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


def _child_main(req: dict, w_res: int, w_out: int, base: str, cfg: dict) -> None:
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(w_out, 1)
    os.dup2(w_out, 2)
    os.close(w_out)
    sys.stdin = open(os.devnull)
    sys.stdout = os.fdopen(1, "w", buffering=1, errors="replace")
    sys.stderr = os.fdopen(2, "w", buffering=1, errors="replace")
    applied = ["process-group"] + _apply_limits(req)
    os.chdir(base)
    os.environ["TMPDIR"] = base
    tempfile.tempdir = base
    applied.append("private-tmp-cwd")
    if req.get("device", "cpu") == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        applied.append("cpu-only")
    result = run_probe(req)
    result.setdefault("isolation_child", applied)
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
    os._exit(0)


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
