#!/usr/bin/env python3
"""gradtrace probe runner: runs inside the user's interpreter.

Standalone on purpose: it imports nothing but the standard library and the framework the probed file
uses (torch, or tensorflow), so it works in any interpreter the user selects. It never imports gradtrace.

Two ways to run it:

    python runner.py worker    # a warm worker: JSON lines on stdin/stdout (see `worker_loop`)
    python runner.py once FILE  # one probe in this process, result JSON on stdout (debugging)

The warm worker imports the framework once and never runs a framework operation itself (a process that
ran torch ops cannot be forked safely: its OpenMP pool hangs in the child). Each probe is a forked child
in its own session, with resource limits, a private temporary working directory and its output
captured; the worker kills everything the child left behind.
"""

from __future__ import annotations

import ast
import json
import os
import re
import select
import signal
import sys
import tempfile
import time
import traceback
import weakref

PROTOCOL = 1
OUTPUT_KEEP = 8192  # bytes of the user's output kept from the start and from the end
RESULT_MAX = 64 * 1024 * 1024
MAX_OPS = 200_000  # recorded operations per probe before recording stops (memory bound)
MAX_GRAPH = 1500  # operations reported in the "ops" list


# --------------------------------------------------------------------------------------------------
# Worker: one per interpreter and framework, forks one child per probe.


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


# --------------------------------------------------------------------------------------------------
# Probe dispatch


def detect_framework(source: str) -> str | None:
    try:
        tree = ast.parse(source)
    except SyntaxError:  # still say which framework: the probe then reports the syntax error and its line
        found = re.findall(r"^\s*(?:import|from)\s+(torch|tensorflow|keras|jax|flax)\b", source, re.M)
        order = {"torch": 0, "tensorflow": 1, "keras": 1, "jax": 2, "flax": 2}
        best = min(found, key=order.get, default=None)
        return {"keras": "tensorflow", "flax": "jax"}.get(best, best) if best else None
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            mods.add(node.module.split(".")[0])
    if "torch" in mods:
        return "torch"
    if "tensorflow" in mods or "keras" in mods:
        return "tensorflow"
    if "jax" in mods or "flax" in mods:
        return "jax"
    return None


def run_probe(req: dict) -> dict:
    path = os.path.abspath(req["path"])
    try:
        with open(path, encoding="utf-8") as fh:
            source = fh.read()
    except OSError as exc:
        return {"status": "error", "error": {"type": type(exc).__name__, "message": str(exc), "path": path,
                                             "line": None}}
    framework = req.get("framework") or detect_framework(source)
    threads = int(req.get("threads") or 0)
    if framework == "torch":
        import torch

        if threads:
            torch.set_num_threads(threads)
        # torch.compile'd code runs eagerly under the probe, so its operations are recorded too
        os.environ["TORCHDYNAMO_DISABLE"] = "1"
        dynamo = sys.modules.get("torch._dynamo")
        if dynamo is not None:
            try:
                dynamo.config.disable = True
            except Exception:  # noqa: BLE001
                pass
        return TorchProbe(path, source, req).run()
    if framework == "tensorflow":
        return TFProbe(path, source, req).run()
    return {"status": "unsupported", "framework": framework, "error": {
        "type": "Unsupported", "message": "the probe runs PyTorch and TensorFlow code; "
        f"this file uses {framework or 'neither'}", "path": path, "line": None}}


class _Stop(BaseException):  # noqa: N818 - unwinds the user's script; not an Exception on purpose
    pass


def _is_user_file(filename: str, roots: tuple[str, ...]) -> bool:
    if not filename or filename.startswith("<"):
        return False
    filename = os.path.abspath(filename)
    if any(part in filename for part in ("site-packages", "dist-packages", f"{os.sep}lib{os.sep}python")):
        return False
    return any(filename == r or filename.startswith(r + os.sep) for r in roots)


def _stop_when_steps_spent(probe, call: str) -> None:
    """After a differentiation step: stop the user's script at the step limit, or when later steps have used
    their time budget (a multiple of the time to the first step)."""
    now = time.perf_counter()
    if probe.first_backward_end is None:
        probe.first_backward_end = now
    plural = "s" if probe.step > 1 else ""
    if probe.step >= probe.max_steps:
        probe.stop_reason = f"stopped after {probe.step} {call} call{plural} (the step limit)"
        raise _Stop()
    if now - probe.t_start > probe.budget_factor * (probe.first_backward_end - probe.t_start) + 0.5:
        probe.stop_reason = f"stopped after {probe.step} {call} call{plural} (time budget for later steps used up)"
        raise _Stop()


class _Locator:
    """Finds the innermost frame in the user's code by walking frames by hand (no inspect.stack)."""

    def __init__(self, script: str):
        self.roots = (os.path.dirname(script),)
        self.script = script
        self.cache: dict = {}

    def is_user(self, code) -> bool:
        u = self.cache.get(code)
        if u is None:
            u = self.cache[code] = _is_user_file(code.co_filename, self.roots)
        return u

    def where(self, depth: int = 2) -> tuple[str | None, int]:
        try:
            f = sys._getframe(depth)
        except ValueError:
            return None, 0
        while f is not None:
            if self.is_user(f.f_code):
                return f.f_code.co_filename, f.f_lineno
            f = f.f_back
        return None, 0

    def user_frames(self, depth: int = 2) -> list:
        frames = []
        f = sys._getframe(depth)
        while f is not None:
            if self.is_user(f.f_code):
                frames.append(f)
            f = f.f_back
        return frames


def _exc_location(exc: BaseException, locator: _Locator) -> tuple[str | None, int | None]:
    tb = exc.__traceback__
    where = (None, None)
    while tb is not None:
        if locator.is_user(tb.tb_frame.f_code):
            where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return where


def _literal_calls(tree: ast.AST, class_names: set[str]) -> dict[str, list[tuple[str | None, ast.Call]]]:
    """Where each class is instantiated in the file: {class: [(variable or None, call)]}."""
    found: dict[str, list] = {}
    for node in ast.walk(tree):
        targets: list = []
        value = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        calls = []
        if value is not None:
            if isinstance(value, ast.Call):
                name = targets[0].id if targets and isinstance(targets[0], ast.Name) else (
                    targets[0].attr if targets and isinstance(targets[0], ast.Attribute) else None)
                calls.append((name, value))
            elif isinstance(value, ast.Tuple) and targets and isinstance(targets[0], ast.Tuple):
                for t, v in zip(targets[0].elts, value.elts):
                    if isinstance(v, ast.Call):
                        calls.append((t.id if isinstance(t, ast.Name) else None, v))
        for var, call in calls:
            fn = call.func
            cname = fn.id if isinstance(fn, ast.Name) else (fn.attr if isinstance(fn, ast.Attribute) else None)
            if cname in class_names:
                found.setdefault(cname, []).append((var, call))
    for node in ast.walk(tree):  # bare calls (arguments, returns)
        if isinstance(node, ast.Call):
            fn = node.func
            cname = fn.id if isinstance(fn, ast.Name) else None
            if cname in class_names and not any(c is node for _, c in found.get(cname, [])):
                found.setdefault(cname, []).append((None, node))
    return found


# --------------------------------------------------------------------------------------------------
# PyTorch probe

ESCAPES = {"item", "tolist", "__float__", "__int__", "__index__", "numpy", "__array__", "__complex__"}
ZERO_GRAD_OPS = {"sign", "sgn", "round", "floor", "ceil", "trunc", "fix", "heaviside", "round_", "floor_",
                 "ceil_", "sign_", "trunc_"}
SKIP_OPS = {"__repr__", "__format__", "__str__", "size", "dim", "numel", "stride", "is_floating_point",
            "is_contiguous", "__len__", "__hash__", "data_ptr", "element_size", "storage_offset",
            "untyped_storage", "is_complex", "get_device", "__reduce_ex__", "__deepcopy__", "__bool__",
            "backward", "register_hook", "retain_grad", "_is_view", "__iter__", "__contains__", "nelement",
            "ndimension", "is_shared", "is_pinned", "is_set_to", "has_names", "__dir__", "type_as__",
            "__array_priority__", "__torch_function__", "__getstate__", "__setstate__", "storage",
            "_typed_storage", "is_inference", "is_nonzero", "equal", "allclose", "isclose_"}
GETSET_KEEP = {"data", "T", "mT", "H", "mH", "real", "imag"}
INPLACE_DUNDER = {"__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__ipow__",
                  "__imatmul__", "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__", "__imod__",
                  "__setitem__"}
NAN_OPS = {"sqrt", "rsqrt", "log", "log2", "log10", "log1p", "reciprocal", "div", "true_divide", "__truediv__",
           "__rtruediv__", "pow", "__pow__", "acos", "asin", "atanh", "acosh", "xlogy", "lgamma", "digamma",
           "cdist", "norm", "linalg_vector_norm"}
REWRAP = {"tensor", "as_tensor", "new_tensor", "asarray", "from_numpy", "FloatTensor", "Tensor"}
TYPO_RE = re.compile(r"^(require_grads?|requires_grads|requires?_gradients?|requiers_grad|requries_grad|"
                     r"require_gradient|requiresgrad|requires_gard|requires_grd|reqires_grad|requre_grad|"
                     r"requires_grad_)$")


class _Op:
    __slots__ = ("name", "path", "line", "ins", "bits", "req_in", "out_req", "cut", "site", "step", "nonfinite")

    def __init__(self, name, path, line, ins, bits, req_in, out_req, cut, site, step):
        self.name = name
        self.path = path
        self.line = line
        self.ins = ins
        self.bits = bits
        self.req_in = req_in
        self.out_req = out_req
        self.cut = cut
        self.site = site
        self.step = step


def _describe_cut(name: str, out, grad_off: bool, inference: bool, site_desc: str | None) -> str:
    pretty = name.strip("_") if name.startswith("__") else name
    if inference:
        return f"`{pretty}` ran under torch.inference_mode(){site_desc or ''}: its result has no autograd history"
    if grad_off:
        return f"`{pretty}` ran with gradient recording disabled{site_desc or ''}: its result has no autograd history"
    if name in ("detach", "detach_"):
        return f"`.{name}()` returns a tensor cut from the graph"
    if name == "data":
        return "`.data` returns the values without their autograd history"
    if name in ESCAPES:
        what = {"__float__": "float()", "__int__": "int()", "__index__": "an int index",
                "__complex__": "complex()", "__array__": "a NumPy conversion"}.get(name, f".{name}()")
        return f"{what} turns the tensor into a Python/NumPy value: the autograd graph ends here"
    if name in REWRAP:
        return f"`{name}(...)` copies the values into a new tensor without their autograd history"
    dtype = getattr(out, "dtype", None)
    if dtype is not None and not (dtype.is_floating_point or dtype.is_complex):
        return f"`{pretty}` returns {str(dtype).replace('torch.', '')} values, which carry no gradient"
    return f"`{pretty}` returns a tensor that does not require grad"


class TorchProbe:
    def __init__(self, path: str, source: str, req: dict):
        import torch

        self.torch = torch
        self.path = path
        self.source = source
        self.req = req
        self.loc = _Locator(path)
        self.max_steps = int(req.get("max_steps") or 16)
        self.budget_factor = float(req.get("budget_factor") or 2.0)
        self.ops: list[_Op] = []
        self.cut_ops: list[int] = []
        self.tags: dict[int, tuple] = {}  # id(tensor) -> (weakref, tag); tag >= 0 op index, < 0 leaf
        self.leaves: list = []  # leaf index -> (weakref, path, line, how)
        self.leaf_of: dict[int, int] = {}  # id(tensor) -> leaf index
        self.defsite: dict[int, tuple] = {}  # id(param) -> (weakref, path, line)
        self.grad_site: tuple | None = None  # where gradient recording was turned off
        self.inference_site: tuple | None = None
        self.typos: list[tuple] = []  # (weakref, path, line, attr)
        self.freezes: dict[int, tuple] = {}  # id(tensor) -> (weakref, path, line)
        self.module_flags: list[tuple] = []  # `module.requires_grad = v`: (weakref module, path, line, v)
        self.inplace: list[dict] = []
        self.optimizers: list[tuple] = []  # (weakref, path, line, class name)
        self.recording = False
        self.paused = False
        self.opt_steps: list[tuple] = []
        self.last_inference_site: tuple | None = None
        self.step = 0
        self.params: dict[int, dict] = {}  # id(param) -> record
        self.param_objs: dict[int, object] = {}
        self.by_name: dict[str, dict] = {}
        self.backward_sites: list[tuple] = []
        self.stop_reason = ""
        self.error: dict | None = None
        self.first_backward_end: float | None = None
        self.t_start = time.perf_counter()
        self.mode = "script"
        self.mode_reason = ""
        self.graph: list[dict] = []
        self.flow: list[dict] = []
        self.notes: list[str] = []

    # ---- tagging
    def tag_of(self, t):
        e = self.tags.get(id(t))
        if e is not None and e[0]() is t:
            return e[1]
        li = self.leaf_of.get(id(t))
        if li is not None and self.leaves[li][0]() is t:
            return -1 - li
        if t.requires_grad and t.grad_fn is None:
            return -1 - self.new_leaf(t, None, 0, "leaf")
        return None

    def new_leaf(self, t, path, line, how) -> int:
        idx = len(self.leaves)
        ds = self.defsite.get(id(t))
        if ds is not None and ds[0]() is t and path is None:
            path, line = ds[1], ds[2]
        self.leaves.append((weakref.ref(t), path, line, how))
        self.leaf_of[id(t)] = idx
        self.tags.pop(id(t), None)
        return idx

    def set_tag(self, t, tag) -> None:
        try:
            self.tags[id(t)] = (weakref.ref(t), tag)
        except TypeError:
            pass

    # ---- the recorder
    def make_mode(self):
        from torch.overrides import TorchFunctionMode

        probe = self
        torch = self.torch
        Tensor = torch.Tensor

        class Recorder(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                if kwargs is None:
                    kwargs = {}
                if not probe.recording:
                    return func(*args, **kwargs)
                name = getattr(func, "__name__", "")
                if name == "__get__":
                    name = getattr(getattr(func, "__self__", None), "__name__", "")
                    if name not in GETSET_KEEP:
                        return func(*args, **kwargs)
                elif name in SKIP_OPS:
                    return func(*args, **kwargs)
                if name == "__set__":
                    return func(*args, **kwargs)
                ins = []
                for a in args:
                    if isinstance(a, Tensor):
                        ins.append(a)
                    elif isinstance(a, (list, tuple)):
                        for b in a:
                            if isinstance(b, Tensor):
                                ins.append(b)
                for a in kwargs.values():
                    if isinstance(a, Tensor):
                        ins.append(a)
                req_in = False
                for t in ins:
                    if t.requires_grad:
                        req_in = True
                        break
                inplace = (name.endswith("_") and not name.startswith("_")) or name in INPLACE_DUNDER or (
                    "out" in kwargs and kwargs["out"] is not None)
                pre = None
                try:
                    if inplace and ins:
                        tgt = ins[0]
                        gf = tgt.grad_fn
                        pre = (tgt, tgt._version, tuple(tgt.shape), type(gf).__name__ if gf is not None else None,
                               tgt.is_leaf and tgt.requires_grad)
                    in_tags = tuple(probe.tag_of(t) for t in ins) if ins else ()
                except Exception:  # noqa: BLE001 - never break the user's code
                    return func(*args, **kwargs)
                out = func(*args, **kwargs)
                try:
                    probe.after_op(name, ins, in_tags, req_in, out, pre, kwargs)
                except Exception:  # noqa: BLE001
                    pass
                return out

        return Recorder()

    def record_rewrap(self, data, path, line) -> None:
        """`nn.Parameter(t)` of a tensor with history: a new leaf; what `t` came from is cut here."""
        tag = self.tag_of(data)
        if tag is None or len(self.ops) >= MAX_OPS:
            return
        bits = (1 << (-1 - tag)) if tag < 0 else self.ops[tag].bits
        cut = ("`nn.Parameter(...)` makes a new leaf from the values: the tensors they were computed from get no "
               "gradient through it")
        self.cut_ops.append(len(self.ops))
        self.ops.append(_Op("Parameter", path, line, (tag,), bits, True, False, cut, None, self.step))

    def after_op(self, name, ins, in_tags, req_in, out, pre, kwargs) -> None:
        torch = self.torch
        if len(self.ops) >= MAX_OPS:
            return
        path, line = self.loc.where(3)
        bits = 0
        for tg in in_tags:
            if tg is None:
                continue
            if tg < 0:
                bits |= 1 << (-1 - tg)
            else:
                bits |= self.ops[tg].bits
        outs = []
        if isinstance(out, torch.Tensor):
            outs.append(out)
        elif isinstance(out, (tuple, list)):
            outs.extend(o for o in out if isinstance(o, torch.Tensor))
        out_req = any(o.requires_grad for o in outs)
        grad_off = not torch.is_grad_enabled()
        inference = torch.is_inference_mode_enabled()
        cut = None
        site = None
        if req_in and not out_req:
            floating = any(o.dtype.is_floating_point or o.dtype.is_complex for o in outs)
            if name in ESCAPES or name in REWRAP or (outs and (floating or name not in ("__setitem__",))):
                if grad_off or inference:
                    site = self.inference_site if inference else self.grad_site
                desc = None
                if site is not None:
                    desc = f" ({site[2]} at line {site[1]})"
                cut = _describe_cut(name, outs[0] if outs else out, grad_off, inference, desc)
        if pre is not None and pre[4]:
            bits = 0  # an update or initialisation of a leaf in place (under no_grad): not a use of it
        idx = len(self.ops)
        op = _Op(name, path, line, in_tags, bits, req_in, out_req, cut, site, self.step)
        self.ops.append(op)
        if cut is not None:
            self.cut_ops.append(idx)
        if pre is not None:
            tgt = pre[0]
            self.inplace.append({"op": idx, "name": name, "path": path, "line": line, "shape": list(pre[2]),
                                 "before": pre[1], "after": tgt._version, "grad_fn": pre[3],
                                 "leaf": pre[4]})
            if name == "requires_grad_":
                if tgt.requires_grad:
                    li = self.new_leaf(tgt, path, line, "requires_grad_()")
                    self.leaves[li] = (weakref.ref(tgt), path, line, "requires_grad_()")
                else:
                    self.freezes[id(tgt)] = (weakref.ref(tgt), path, line)
                return
            if tgt.is_leaf and tgt.requires_grad:
                return  # in-place on a leaf under no_grad (an update): it stays the same leaf
            self.set_tag(tgt, idx)
            for o in outs:
                if o is not tgt:
                    self.set_tag(o, idx)
            return
        for o in outs:
            if o.requires_grad and o.is_leaf:
                li = self.new_leaf(o, path, line, name)
                self.leaves[li] = (weakref.ref(o), path, line, name)
            elif req_in and out_req and not o.requires_grad and not (o.dtype.is_floating_point or o.dtype.is_complex):
                # `topk(...).indices`, `max(x, dim)[1]`: integer outputs beside differentiable values are a cut
                j = len(self.ops)
                self.ops.append(_Op(name, path, line, in_tags, bits, req_in, False,
                                    _describe_cut(name, o, grad_off, inference, None), None, self.step))
                self.cut_ops.append(j)
                self.set_tag(o, j)
            else:
                self.set_tag(o, idx)

    # ---- patches
    def install(self) -> None:
        torch = self.torch
        probe = self
        import torch.autograd.grad_mode as gm

        orig_set = torch._C._set_grad_enabled

        def _set_grad_enabled(mode):
            if probe.recording:
                if not mode and torch.is_grad_enabled():
                    deco = probe.decorator_site()
                    if deco is not None:
                        probe.grad_site = deco
                    else:
                        path, line = probe.loc.where(2)
                        probe.grad_site = (path, line, _site_text(path, line, "gradient recording disabled"))
                elif mode:
                    probe.grad_site = None
            return orig_set(mode)

        torch._C._set_grad_enabled = _set_grad_enabled

        orig_inf_enter = gm.inference_mode.__enter__

        def _inf_enter(self_):
            if probe.recording and getattr(self_, "mode", True):
                deco = probe.decorator_site()  # `@torch.inference_mode()` on a user function: its line
                if deco is not None:
                    probe.inference_site = deco
                else:
                    path, line = probe.loc.where(2)
                    probe.inference_site = (path, line, _site_text(path, line, "torch.inference_mode()"))
                probe.last_inference_site = probe.inference_site
            return orig_inf_enter(self_)

        gm.inference_mode.__enter__ = _inf_enter
        orig_inf_exit = gm.inference_mode.__exit__

        def _inf_exit(self_, *a):
            r = orig_inf_exit(self_, *a)
            if not torch.is_inference_mode_enabled():
                probe.inference_site = None
            return r

        gm.inference_mode.__exit__ = _inf_exit

        param_new = torch.nn.Parameter.__new__

        def _param_new(cls, data=None, requires_grad=True):
            p = param_new(cls, data, requires_grad)
            try:
                path, line = probe.loc.where(2)
                probe.defsite[id(p)] = (weakref.ref(p), path, line)
                if probe.recording and isinstance(data, torch.Tensor) and data.requires_grad:
                    probe.record_rewrap(data, path, line)
            except Exception:  # noqa: BLE001
                pass
            return p

        torch.nn.Parameter.__new__ = staticmethod(_param_new)

        tensor_setattr = torch.Tensor.__setattr__

        def _tensor_setattr(self_, attr, value):
            if attr == "requires_grad" and probe.recording:
                path, line = probe.loc.where(2)
                if not value:
                    probe.freezes[id(self_)] = (weakref.ref(self_), path, line)
                else:
                    probe.freezes.pop(id(self_), None)
            elif TYPO_RE.match(attr) and probe.recording:
                path, line = probe.loc.where(2)
                probe.typos.append((weakref.ref(self_), path, line, attr))
            return tensor_setattr(self_, attr, value)

        torch.Tensor.__setattr__ = _tensor_setattr

        module_setattr = torch.nn.Module.__setattr__

        def _module_setattr(self_, attr, value):
            # nn.Module has no requires_grad flag: assigning one only adds a plain attribute
            if attr == "requires_grad" and probe.recording:
                path, line = probe.loc.where(2)
                probe.module_flags.append((weakref.ref(self_), path, line, bool(value)))
            return module_setattr(self_, attr, value)

        torch.nn.Module.__setattr__ = _module_setattr

        opt_init = torch.optim.Optimizer.__init__

        def _opt_init(self_, params, *a, **k):
            if isinstance(params, (list, tuple)):
                probe.note_nonleaf_optimized(params)
            r = opt_init(self_, params, *a, **k)
            path, line = probe.loc.where(2)
            probe.optimizers.append((weakref.ref(self_), path, line, type(self_).__name__))
            return r

        torch.optim.Optimizer.__init__ = _opt_init
        try:
            from torch.optim.optimizer import (
                register_optimizer_step_post_hook,
                register_optimizer_step_pre_hook,
            )

            def _pre(*_a):
                if probe.recording:
                    path, line = probe.loc.where(2)
                    probe.opt_steps.append((path, line, probe.step))
                probe.paused = probe.recording
                probe.recording = False

            def _post(*_a):
                probe.recording = probe.paused
                probe.paused = False

            register_optimizer_step_pre_hook(_pre)
            register_optimizer_step_post_hook(_post)
        except ImportError:
            pass

        orig_backward = torch.autograd.backward

        def _backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, grad_variables=None,
                      inputs=None):
            return probe.on_backward(orig_backward, tensors, grad_tensors, retain_graph, create_graph, inputs)

        torch.autograd.backward = _backward
        orig_grad = torch.autograd.grad

        def _grad(outputs, inputs, *a, **k):
            return probe.on_grad(orig_grad, outputs, inputs, a, k)

        torch.autograd.grad = _grad

    def decorator_site(self):
        """`@torch.no_grad()` on a user function: the decorator's line (co_firstlineno), not the call site."""
        f = sys._getframe(2)
        while f is not None and not self.loc.is_user(f.f_code):
            if f.f_code.co_name == "decorate_context":
                func = f.f_locals.get("func")
                code = getattr(func, "__code__", None)
                if code is not None and self.loc.is_user(code):
                    text = _site_text(code.co_filename, code.co_firstlineno, "a no_grad decorator")
                    return (code.co_filename, code.co_firstlineno, f"{text} on {code.co_name}()")
            f = f.f_back
        return None

    # ---- names
    def collect(self, frames) -> None:
        """Name every parameter the user's frames can reach (DESIGN §3 naming)."""
        torch = self.torch
        nn = torch.nn
        roots_mod: list[tuple[str, object, int]] = []
        tensors: list[tuple[str, object]] = []
        containers: list[tuple[str, object]] = []
        seen_mod: set[int] = set()
        order = 0
        for f in frames:
            scopes = [f.f_locals]
            if f.f_back is None or f.f_code.co_name == "<module>":
                scopes.append(f.f_globals)
            for scope in scopes:
                for var, val in list(scope.items()):
                    if var.startswith("__"):
                        continue
                    order += 1
                    if isinstance(val, nn.Module):
                        if id(val) not in seen_mod:
                            seen_mod.add(id(val))
                            roots_mod.append((var, val, order))
                    elif isinstance(val, torch.Tensor):
                        if val.requires_grad:
                            tensors.append((var, val))
                    elif isinstance(val, (list, tuple, dict)):
                        containers.append((var, val))
                    elif hasattr(val, "__dict__") and not isinstance(val, type) and not callable(val) \
                            and type(val).__module__ not in ("builtins",) and not hasattr(val, "__path__"):
                        try:
                            attrs = list(vars(val).items())
                        except TypeError:
                            continue
                        for an, av in attrs[:200]:
                            if isinstance(av, nn.Module) and id(av) not in seen_mod:
                                seen_mod.add(id(av))
                                roots_mod.append((f"{var}.{an}", av, order))
                            elif isinstance(av, torch.Tensor) and av.requires_grad:
                                tensors.append((f"{var}.{an}", av))
        roots_mod.sort(key=lambda r: (-_count_params(r[1]), r[2]))
        for var, mod, _ in roots_mod:
            try:
                named = list(mod.named_parameters())
            except Exception:  # noqa: BLE001
                continue
            for n, p in named:
                self.add_param(f"{var}.{n}", p, registered=True)
            for mname, sub in mod.named_modules():
                for an, av in list(vars(sub).items()):
                    if an.startswith("_"):
                        continue
                    prefix = f"{var}.{mname}.{an}" if mname else f"{var}.{an}"
                    self.add_unregistered(prefix, av)
        for var, t in tensors:
            if t.is_leaf:
                self.add_param(var, t, registered=None)
        for var, val in containers:
            items = val.items() if isinstance(val, dict) else enumerate(val)
            for k, v in list(items)[:512]:
                if isinstance(v, torch.Tensor) and v.requires_grad and v.is_leaf:
                    self.add_param(f"{var}.{k}", v, registered=None)
                elif isinstance(v, nn.Module):
                    for n, p in v.named_parameters():
                        self.add_param(f"{var}.{k}.{n}", p, registered=True)
        for var, t in tensors:
            if not t.is_leaf and id(t) not in self.params:
                self.add_nonleaf(var, t)

    def add_unregistered(self, prefix, val) -> None:
        torch = self.torch
        if isinstance(val, torch.Tensor):
            if val.requires_grad and val.is_leaf:
                self.add_param(prefix, val, registered=False)
            elif val.requires_grad and id(val) not in self.params:
                self.add_nonleaf(prefix, val)
            return
        if isinstance(val, (list, tuple, dict)):
            items = val.items() if isinstance(val, dict) else enumerate(val)
            for k, v in list(items)[:512]:
                if isinstance(v, torch.nn.Module):
                    for n, p in v.named_parameters():
                        self.add_param(f"{prefix}.{k}.{n}", p, registered=False)
                elif isinstance(v, torch.Tensor) and v.requires_grad and v.is_leaf:
                    self.add_param(f"{prefix}.{k}", v, registered=False)

    def add_param(self, name, p, registered) -> None:
        if id(p) in self.params:
            return
        same = self.by_name.get(name)
        if same is not None:  # the same variable re-bound to a new tensor in a later step
            self.params[id(p)] = same
            self.param_objs[id(p)] = p
            return
        path, line = None, None
        ds = self.defsite.get(id(p))
        if ds is not None and ds[0]() is p:
            path, line = ds[1], ds[2]
        else:
            li = self.leaf_of.get(id(p))
            if li is not None and self.leaves[li][0]() is p:
                path, line = self.leaves[li][1], self.leaves[li][2]
        self.params[id(p)] = {"name": name, "shape": list(p.shape), "defined_at": _loc(path, line),
                              "registered": registered, "statuses": [], "cut": None, "kind": "leaf",
                              "why": None}
        self.param_objs[id(p)] = p
        self.by_name[name] = self.params[id(p)]

    def add_nonleaf(self, name, t) -> None:
        """A variable that was meant as a parameter but is not a leaf (`requires_grad=True` then .view/.to/*s)."""
        tag = self.tag_of(t)
        if tag is None or tag < 0:
            return
        op = self.ops[tag]
        chain = [tag]
        leaf = None
        while len(chain) < 6:
            ins = [x for x in op.ins if x is not None]
            if len(ins) != 1:
                return
            if ins[0] < 0:
                leaf = -1 - ins[0]
                break
            op = self.ops[ins[0]]
            chain.append(ins[0])
        if leaf is None:
            return
        lref = self.leaves[leaf][0]()
        if lref is None or id(lref) in self.params:
            return
        first = self.ops[chain[-1]]
        if self.leaves[leaf][2] and first.line and abs(first.line - self.leaves[leaf][2]) > 1:
            return
        pretty = first.name.strip("_") if first.name.startswith("__") else first.name
        self.params[id(t)] = {
            "name": name, "shape": list(t.shape), "defined_at": _loc(self.leaves[leaf][1], self.leaves[leaf][2]),
            "registered": None, "statuses": [], "kind": "nonleaf", "why": None,
            "cut": {"path": first.path, "line": first.line, "op": pretty,
                    "reason": f"`{name}` is not a leaf: `{pretty}` applied after requires_grad=True returns a "
                    "new tensor, so its .grad is never populated (the hidden leaf gets the gradient); create the "
                    "tensor first, then call .requires_grad_()"}}
        self.param_objs[id(t)] = t

    # ---- backward interception
    def on_backward(self, orig, tensors, grad_tensors, retain_graph, create_graph, inputs):
        if not self.recording:
            return orig(tensors, grad_tensors, retain_graph, create_graph, inputs=inputs)
        self.recording = False
        torch = self.torch
        self.step += 1
        path, line = self.loc.where(3)
        self.backward_sites.append((path, line))
        frames = self.loc.user_frames(3)
        self.collect(frames)
        roots = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
        stash = {}
        for pid, p in self.param_objs.items():
            if p.is_leaf:
                stash[pid] = p.grad
                if p.grad is not None:
                    p.grad = None
        err = None
        try:
            r = orig(tensors, grad_tensors, retain_graph, create_graph, inputs=inputs)
        except RuntimeError as exc:
            err = exc
            r = None
        with torch.no_grad():
            for pid, p in self.param_objs.items():
                rec = self.params[pid]
                if rec["kind"] == "nonleaf":
                    rec["statuses"].append("none")
                    continue
                new = p.grad
                old = stash.get(pid)
                if err is None:
                    rec["statuses"].append(self.classify(p, new))
                    rec["norm"] = float(new.float().norm()) if new is not None and new.numel() else None
                if old is not None:
                    if new is not None and new is not old:
                        old.add_(new)
                    p.grad = old
        if err is None:
            try:
                self.analyse_step(roots)
            except Exception as exc:  # noqa: BLE001 - analysis must never break the user's code
                self.notes.append(f"analysis failed at step {self.step}: {type(exc).__name__}: {exc}")
        else:
            self.error = self.explain_backward_error(err, roots, path, line)
            self.stop_reason = f"backward() at line {line} raised"
            raise _Stop()
        _stop_when_steps_spent(self, "backward()")
        self.recording = True
        return r

    def on_grad(self, orig, outputs, inputs, a, k):
        if not self.recording:
            return orig(outputs, inputs, *a, **k)
        if k.get("create_graph", a[2] if len(a) > 2 else False):
            # a derivative that is part of the loss (PINN residuals, gradient penalties, MAML inner steps):
            # the training step is the backward that follows
            return orig(outputs, inputs, *a, **k)
        torch = self.torch
        self.recording = False
        self.step += 1
        path, line = self.loc.where(3)
        self.backward_sites.append((path, line))
        frames = self.loc.user_frames(3)
        self.collect(frames)
        ins = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
        names = _names_in_frames(frames, ins)
        for i, t in enumerate(ins):
            if id(t) not in self.params:
                nm = names.get(id(t)) or f"inputs[{i}]"
                self.add_param(nm, t, registered=None)
        roots = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        try:
            res = orig(outputs, inputs, *a, **k)
        except RuntimeError as exc:
            self.error = self.explain_backward_error(exc, roots, path, line)
            self.stop_reason = f"torch.autograd.grad at line {line} raised"
            raise _Stop() from None
        got = {id(t): g for t, g in zip(ins, res)}
        with torch.no_grad():
            for pid, p in self.param_objs.items():
                if pid in got:
                    rec = self.params[pid]
                    rec["statuses"].append(self.classify(p, got[pid]))
                    g = got[pid]
                    rec["norm"] = float(g.float().norm()) if g is not None and g.numel() else None
        self.analyse_step(roots, only=set(got))
        self.stop_reason = f"stopped at torch.autograd.grad (line {line})"
        raise _Stop()

    def classify(self, p, g) -> str:
        torch = self.torch
        if g is None:
            return "none"
        if g.is_sparse:
            g = g.coalesce().values()
        if not bool(torch.isfinite(g).all()):
            return "nonfinite"
        if not bool((g != 0).any()):
            return "zero"
        return "ok"

    # ---- analysis
    def ancestry(self, roots) -> set[int]:
        stack = []
        for r in roots:
            tg = self.tag_of(r) if isinstance(r, self.torch.Tensor) else None
            if tg is not None and tg >= 0:
                stack.append(tg)
        seen: set[int] = set()
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            for tg in self.ops[i].ins:
                if tg is not None and tg >= 0 and tg not in seen:
                    stack.append(tg)
        return seen

    def analyse_step(self, roots, only=None) -> None:
        anc = self.ancestry(roots)
        self.graph = self.graph_of(anc)
        self.flow = self.flow_of(anc)
        for pid, rec in self.params.items():
            if only is not None and pid not in only:
                continue
            st = rec["statuses"][-1] if rec["statuses"] else None
            if st is None or st == "ok" or rec["kind"] == "nonleaf" or "ok" in rec["statuses"]:
                continue
            if rec.get("cut") is not None and rec.get("cut_status") == st \
                    and rec.get("cut_flags") == len(self.module_flags):
                continue
            p = self.param_objs[pid]
            rec["cut"], rec["why"] = self.find_cut(p, st, anc)
            rec["cut_status"] = st
            rec["cut_flags"] = len(self.module_flags)

    def find_cut(self, p, status, anc):
        fr = self.freezes.get(id(p))
        if not p.requires_grad:
            for ref, path, line, value in reversed(self.module_flags):
                mod = ref()
                if value and mod is not None and any(q is p for q in mod.parameters()):
                    since = f" (set to False at line {fr[2]})" if fr is not None and fr[0]() is p else ""
                    return ({"path": path, "line": line, "op": "module.requires_grad = True",
                             "reason": "`requires_grad = True` on an nn.Module only sets a plain attribute: its "
                             f"parameters keep requires_grad=False{since}; call `.requires_grad_(True)`"}, "frozen")
            if fr is not None and fr[0]() is p:
                return ({"path": fr[1], "line": fr[2], "op": "requires_grad = False",
                         "reason": "requires_grad was set to False here"}, "frozen")
            return None, "frozen"
        li = self.leaf_of.get(id(p))
        if li is None or self.leaves[li][0]() is not p:
            return None, "unused"
        bit = 1 << li
        if status == "nonfinite":
            for i in sorted(anc):
                op = self.ops[i]
                if op.name in NAN_OPS and op.bits & bit:
                    return ({"path": op.path, "line": op.line, "op": op.name,
                             "reason": f"`{op.name}` has an infinite or NaN derivative for some inputs, even "
                             "elements masked out later (torch.where/indexing still back-propagates 0 * inf = "
                             "NaN): clamp or mask its input before the op"}, "nonfinite-op")
            return None, "nonfinite"
        if status == "zero":
            best = None
            for i in sorted(anc):
                op = self.ops[i]
                if op.name in ZERO_GRAD_OPS and op.bits & bit:
                    best = op
                    break
            if best is not None:
                return ({"path": best.path, "line": best.line, "op": best.name,
                         "reason": f"`{best.name}` has a zero derivative almost everywhere: no gradient flows "
                         "back through it (use a straight-through estimator: x + (f(x) - x).detach())"},
                        "zero-op")
            return None, "zero"
        cands = [i for i in self.cut_ops if self.ops[i].bits & bit]
        used = any(op.bits & bit for op in self.ops[-50000:]) if not cands else True
        if not cands:
            return None, ("unused" if not used else "off-path")
        in_anc = [i for i in cands if i in anc]
        escapes = [i for i in cands if self.ops[i].name in ESCAPES or self.ops[i].site is not None]
        pick = (in_anc or escapes or cands)[0]
        op = self.ops[pick]
        path, line = op.path, op.line
        opname = op.name.strip("_") if op.name.startswith("__") else op.name
        cut = {"path": path, "line": line, "op": opname, "reason": op.cut}
        if op.site is not None and op.site[0]:
            cut.update({"path": op.site[0], "line": op.site[1], "op": op.site[2], "op_path": op.path,
                        "op_line": op.line})
        return cut, "cut"

    def graph_of(self, anc) -> list[dict]:
        names = {}
        for pid, rec in self.params.items():
            li = self.leaf_of.get(pid)
            if li is not None:
                names[li] = rec["name"]
        out = []
        for i in sorted(anc)[-MAX_GRAPH:]:
            op = self.ops[i]
            if op.path is None:
                continue
            ps = [n for li, n in names.items() if op.bits >> li & 1]
            out.append({"path": op.path, "line": op.line, "op": op.name, "cut": op.cut is not None,
                        "requires_grad": op.out_req, "params": ps[:64], "n_params": len(ps)})
        # merge consecutive ops on the same line
        merged: list[dict] = []
        for e in out:
            if merged and merged[-1]["line"] == e["line"] and merged[-1]["path"] == e["path"]:
                m = merged[-1]
                m["ops"].append(e["op"])
                m["cut"] = m["cut"] or e["cut"]
                m["requires_grad"] = e["requires_grad"]
                if e["n_params"] > m["n_params"]:
                    m["params"], m["n_params"] = e["params"], e["n_params"]
            else:
                e = dict(e)
                e["ops"] = [e.pop("op")]
                merged.append(e)
        return merged

    def flow_of(self, anc) -> list[dict]:
        """For the gradient map: the ops that use a parameter directly or cut the graph, and the loss, each
        linked to the earlier ones its inputs come from (ops in between are skipped, not lost)."""
        names = {self.leaf_of[pid]: rec["name"] for pid, rec in self.params.items() if pid in self.leaf_of}
        keep: dict[int, int] = {}  # op index -> position in `out`
        reach: dict[int, set] = {}  # skipped op index -> positions it depends on
        only_params: set[int] = set()  # positions of ops whose every input is a parameter (`self.w.T`)
        out: list[dict] = []
        last = max(anc) if anc else -1
        for i in sorted(anc):
            op = self.ops[i]
            direct, src = [], set()
            for tg in op.ins:
                if tg is not None and tg < 0 and -1 - tg in names:
                    direct.append(names[-1 - tg])
                elif tg is not None and tg >= 0:
                    src |= {keep[tg]} if tg in keep else reach.get(tg, set())
            pure = src & only_params
            if pure and src - pure and not direct:
                direct = [n for j in sorted(pure) for n in out[j]["params"]]
                src -= pure
            if direct or op.cut is not None or i == last:
                if direct and all(tg is not None and tg < 0 for tg in op.ins):
                    only_params.add(len(out))
                keep[i] = len(out)
                out.append({"path": op.path, "line": op.line, "op": op.name, "params": list(dict.fromkeys(direct)),
                            "cut": op.cut, "inputs": sorted(src)})
            else:
                reach[i] = src
        return out if len(out) <= 4 * MAX_GRAPH else []

    def note_nonleaf_optimized(self, params) -> None:
        """Before an optimizer rejects a non-leaf tensor: remember the op that made it (its user line)."""
        tensors = []
        for item in params:
            if isinstance(item, dict):
                group = item.get("params")
                tensors.extend(group if isinstance(group, (list, tuple)) else [group])
            else:
                tensors.append(item)
        for t in tensors:
            if isinstance(t, self.torch.Tensor) and not t.is_leaf:
                tag = self.tags.get(id(t))
                if tag is not None and tag[0]() is t and tag[1] >= 0:
                    op = self.ops[tag[1]]
                    path, line = (op.site[0], op.site[1]) if op.site is not None and op.site[0] else (op.path, op.line)
                    if path:
                        self.nonleaf_optimized = (path, line, op.name)
                        return

    def custom_backward_site(self, name: str):
        """(path, line) of the last `return` in the user's autograd.Function `name`'s backward."""
        import ast
        import inspect

        todo = list(self.torch.autograd.Function.__subclasses__())
        seen = set()
        while todo:
            cls = todo.pop()
            if cls in seen:
                continue
            seen.add(cls)
            todo.extend(cls.__subclasses__())
            backward = cls.__dict__.get("backward")
            func = getattr(backward, "__func__", backward)
            code = getattr(func, "__code__", None)
            if cls.__name__ != name or code is None or not self.loc.is_user(code):
                continue
            try:
                lines, first = inspect.getsourcelines(func)
                tree = ast.parse(inspect.cleandoc("".join(lines)) if lines[0].startswith((" ", "\t")) else "".join(lines))
            except (OSError, TypeError, SyntaxError):
                return code.co_filename, code.co_firstlineno
            returns = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Return)]
            return code.co_filename, first + max(returns) - 1 if returns else code.co_firstlineno
        return None

    def explain_backward_error(self, exc, roots, bpath, bline) -> dict:
        msg = str(exc).strip()
        first = msg.splitlines()[0] if msg else type(exc).__name__
        err = {"type": type(exc).__name__, "message": first, "path": bpath, "line": bline,
               "raised_at": _loc(bpath, bline)}
        if "modified by an inplace operation" in msg:
            m = re.search(r"\[torch\.\w+ \[([\d, ]*)\]\](?:, which is output (\d+) of (\w+),)? is at version "
                          r"(\d+); expected version (\d+)", msg)
            if m:
                shape = [int(x) for x in m.group(1).split(",") if x.strip()]
                gf, expected = m.group(3), int(m.group(5))
                best = None
                for rec in self.inplace:
                    if rec["shape"] != shape or not (rec["before"] <= expected < rec["after"]):
                        continue
                    if gf and rec["grad_fn"] == gf:
                        best = rec
                        break
                    best = best or rec
                if best is not None and best["path"]:
                    err.update(path=best["path"], line=best["line"])
                    err["cause"] = (f"in-place `{best['name']}` at line {best['line']} modified a tensor "
                                    f"({gf or 'a saved input'}) that autograd saved for backward; use the "
                                    "out-of-place form")
                elif self.opt_steps and self.opt_steps[-1][0]:
                    spath, sline, _ = self.opt_steps[-1]
                    err.update(path=spath, line=sline)
                    err["cause"] = (f"optimizer.step() at line {sline} updated the parameters in place after "
                                    "the forward that this backward() belongs to: call backward() before step(), "
                                    "or recompute the forward after the step")
            return err
        m = re.search(r"function (\w+?)Backward returned (an incorrect number of gradients|a gradient different than "
                      r"None at position (\d+))", msg)
        if m:
            site = self.custom_backward_site(m.group(1))
            if site is not None:
                err.update(path=site[0], line=site[1])
                if m.group(3):
                    err["cause"] = (f"`{m.group(1)}.backward` returns a gradient at position {m.group(3)}, whose input "
                                    "of `forward` is not a tensor: return one gradient per input of `forward`, in "
                                    "order, with None for the non-tensor ones")
                else:
                    err["cause"] = (f"`{m.group(1)}.backward` returns a different number of gradients than `forward` "
                                    "takes inputs: return one per input, in order (None where there is none)")
            return err
        if "does not require grad" in msg or "does not have a grad_fn" in msg:
            anc = self.ancestry(roots)
            root_tensors = [r for r in roots if isinstance(r, self.torch.Tensor)]
            leaves_in = set()
            for i in anc:
                for tg in self.ops[i].ins:
                    if tg is not None and tg < 0:
                        leaves_in.add(-1 - tg)
            for ref, path, line, attr in reversed(self.typos):
                t = ref()
                if t is not None and path:
                    err.update(path=path, line=line)
                    err["cause"] = (f"`.{attr} = ...` at line {line} sets a new attribute, not requires_grad "
                                    "(typo): the tensor never requires grad")
                    return err
            cuts = sorted(i for i in self.cut_ops if i in anc)
            if cuts:
                op = self.ops[cuts[0]]
                p, ln = (op.site[0], op.site[1]) if op.site is not None and op.site[0] else (op.path, op.line)
                if p:
                    err.update(path=p, line=ln)
                    err["cause"] = f"line {op.line}: {op.cut}"
                    return err
            recent = [i for i in self.cut_ops if self.ops[i].step == self.step - 1
                      and (self.ops[i].name in ESCAPES or self.ops[i].name in REWRAP) and self.ops[i].path]
            if recent:
                op = self.ops[recent[-1]]
                err.update(path=op.path, line=op.line)
                err["cause"] = f"line {op.line}: {op.cut}; the value reaching backward() was rebuilt from it"
                return err
            for _ref, path, line in self.freezes.values():
                if path:
                    err.update(path=path, line=line)
                    err["cause"] = f"requires_grad was set to False at line {line}"
                    return err
            if self.grad_site is not None and self.grad_site[0]:
                err.update(path=self.grad_site[0], line=self.grad_site[1])
                err["cause"] = f"gradient recording was disabled at line {self.grad_site[1]} and never re-enabled"
                return err
            for t in root_tensors:
                tg = self.tag_of(t)
                if tg is not None and tg >= 0 and self.ops[tg].path:
                    err["cause"] = (f"the value passed to backward() was computed from tensors that do not "
                                    f"require grad (created at line {self.ops[tg].line})")
            return err
        if "backward through the graph a second time" in msg:
            anc = self.ancestry(roots)
            for i in sorted(anc):
                op = self.ops[i]
                if op.step == self.step - 1 and any(tg is not None and tg >= 0 and self.ops[tg].step < op.step
                                                    for tg in op.ins) and op.path:
                    err.update(path=op.path, line=op.line)
                    err["cause"] = (f"line {op.line} uses a tensor computed in an earlier step whose graph was "
                                    "already freed; detach carried state between steps (h = h.detach())")
                    break
            return err
        return err

    # ---- running
    def run(self) -> dict:
        torch = self.torch
        self.install()
        mode = self.req.get("mode") or "auto"
        try:
            tree = ast.parse(self.source, self.path)
        except SyntaxError as exc:
            return self.result("error", error={"type": "SyntaxError", "message": str(exc.msg),
                                                "path": self.path, "line": exc.lineno})
        has_step = _has_training_step(tree)
        if mode == "auto":
            mode = "script" if has_step else "module"
            self.mode_reason = ("the file calls backward()/autograd.grad: ran it as __main__ up to that call"
                                if has_step else "the file has no backward() call: built its nn.Module classes "
                                "and differentiated a synthetic forward")
        else:
            self.mode_reason = f"{mode} mode requested"
        self.mode = mode
        recorder = self.make_mode()
        recorder.__enter__()
        try:
            if mode == "script":
                outcome = self.run_script()
                if outcome == "no-backward":
                    if _module_classes(tree):
                        self.mode = "module"
                        self.mode_reason = ("the script ran to the end without calling backward(): built its "
                                            "nn.Module classes and differentiated a synthetic forward instead")
                        self.reset_for_module()
                        return self.run_modules(tree)
                    return self.result("unsupported", error={
                        "type": "NoBackward", "message": "the script ran to the end without calling backward(), "
                        "torch.autograd.grad or tape.gradient, and defines no nn.Module to build",
                        "path": self.path, "line": None})
                return self.finish()
            return self.run_modules(tree)
        finally:
            self.recording = False
            try:
                recorder.__exit__(None, None, None)
            except Exception:  # noqa: BLE001
                pass
            del torch

    def reset_for_module(self) -> None:
        self.params.clear()
        self.param_objs.clear()
        self.step = 0
        self.error = None

    def run_script(self) -> str:
        import types

        main = types.ModuleType("__main__")
        main.__file__ = self.path
        main.__builtins__ = __builtins__
        sys.modules["__main__"] = main
        sys.argv = [self.path]
        sys.path.insert(0, os.path.dirname(self.path))
        code = compile(self.source, self.path, "exec")
        self.recording = True
        try:
            exec(code, main.__dict__)
        except _Stop:
            return "stopped"
        except SystemExit:
            pass
        except BaseException as exc:  # noqa: BLE001 - the user's code failed: say where
            self.recording = False
            path, line = _exc_location(exc, self.loc)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.error = {"type": type(exc).__name__, "message": first, "path": path, "line": line}
            site = getattr(self, "nonleaf_optimized", None)
            if "can't optimize a non-leaf Tensor" in str(exc) and site is not None:
                self.error["raised_at"] = _loc(path, line)
                self.error.update(path=site[0], line=site[1])
                self.error["cause"] = (f"`.{site[2]}()` at line {site[1]} returns a new tensor computed from the one "
                                       "created with requires_grad=True, so what the optimizer is given is not a "
                                       "leaf; create it with its final device/dtype/shape, then call .requires_grad_()")
            if "leaf Variable that requires grad is being used in an in-place" in str(exc):
                self.error["cause"] = ("an in-place operation on a leaf tensor that requires grad; do the update "
                                       "under `with torch.no_grad():` or use an out-of-place op")
            site = getattr(self, "last_inference_site", None)
            if "Inference tensor" in str(exc) and site is not None and site[0]:
                self.error["raised_at"] = _loc(path, line)
                self.error.update(path=site[0], line=site[1])
                self.error["cause"] = (f"a tensor created under torch.inference_mode() (line {site[1]}) is used "
                                       "in a computation that autograd records; use torch.no_grad() there, or "
                                       ".clone() the tensor outside the block")
            self.stop_reason = "the script raised before backward()" if not self.step else \
                f"the script raised after {self.step} backward() call(s)"
            return "stopped"
        finally:
            self.recording = False
        if self.step == 0:
            return "no-backward"
        self.stop_reason = f"the script finished after {self.step} gradient call(s)"
        return "finished"

    def run_modules(self, tree) -> dict:
        import types

        torch = self.torch
        nn = torch.nn
        mod = types.ModuleType("__gradtrace_probe__")
        mod.__file__ = self.path
        sys.modules["__gradtrace_probe__"] = mod
        sys.path.insert(0, os.path.dirname(self.path))
        self.recording = True
        try:
            exec(compile(self.source, self.path, "exec"), mod.__dict__)
        except BaseException as exc:  # noqa: BLE001
            self.recording = False
            path, line = _exc_location(exc, self.loc)
            return self.result("error", error={"type": type(exc).__name__, "message": str(exc).splitlines()[0]
                                                if str(exc) else "", "path": path, "line": line})
        self.recording = False
        classes = [v for v in vars(mod).values() if isinstance(v, type) and issubclass(v, nn.Module)
                   and v.__module__ == "__gradtrace_probe__"]
        if not classes:
            return self.result("unsupported", error={
                "type": "NothingToProbe", "message": "no backward() call and no nn.Module subclass in this file",
                "path": self.path, "line": None})
        calls = _literal_calls(tree, {c.__name__ for c in classes})
        used_inside = _classes_used_inside(tree, {c.__name__ for c in classes})
        roots = [c for c in classes if c.__name__ not in used_inside] or classes
        built, problems = [], []
        for cls in roots:
            inst, var, why = self.build(cls, calls.get(cls.__name__, []), mod)
            if inst is None:
                problems.append(f"{cls.__name__}: {why}")
                continue
            built.append((var or cls.__name__, inst, cls))
        if not built:
            return self.result("error", error={"type": "CannotBuild", "message": "; ".join(problems),
                                               "path": self.path, "line": None})
        self.mode_reason += f" ({', '.join(f'{v} = {c.__name__}(...)' for v, _, c in built)})"
        if problems:
            self.notes.extend(problems)
        for var, inst, cls in built:
            inst.train()
            candidates = _synth_inputs(torch, inst)
            if not candidates:
                self.notes.append(f"{cls.__name__}: no layer with a known input size (Linear, Conv*, Embedding, "
                                  "RNN, Transformer, LayerNorm, BatchNorm)")
                continue
            self.step += 1
            failure = None
            for x, how in candidates:
                mark = len(self.ops)
                self.recording = True
                try:
                    out = inst(*x)
                    self.recording = False
                    loss = _reduce(torch, out)
                    failure = None
                    self.notes.append(f"{cls.__name__}: input {how}")
                    break
                except BaseException as exc:  # noqa: BLE001 - try the next candidate input
                    self.recording = False
                    failure = (exc, how)
                    del self.ops[mark:]
                    self.cut_ops = [i for i in self.cut_ops if i < mark]
            if failure is not None:
                exc, how = failure
                path, line = _exc_location(exc, self.loc)
                self.error = {"type": type(exc).__name__, "message": (str(exc).splitlines() or [""])[0],
                              "path": path, "line": line,
                              "cause": f"forward of {cls.__name__} with a synthetic input ({how}) failed; run "
                              "the probe on a script that calls backward() instead"}
                break
            for n, p in inst.named_parameters():
                self.add_param(f"{var}.{n}", p, registered=True)
            for mname, sub in inst.named_modules():
                for an, av in list(vars(sub).items()):
                    if not an.startswith("_"):
                        self.add_unregistered(f"{var}.{mname}.{an}" if mname else f"{var}.{an}", av)
            if loss is None:
                self.error = {"type": "NoGradient", "message": f"{cls.__name__}'s output does not require grad",
                              "path": self.path, "line": None}
                anc = self.ancestry(_tensors_in(torch, out))
                cuts = sorted(i for i in self.cut_ops if i in anc)
                if cuts:
                    op = self.ops[cuts[0]]
                    self.error.update(path=op.site[0] if op.site else op.path,
                                      line=op.site[1] if op.site else op.line, cause=op.cut)
                for pid in self.params:
                    self.params[pid]["statuses"].append("none")
                continue
            try:
                self.recording = True
                loss.backward()
            except _Stop:
                pass
            finally:
                self.recording = False
        self.stop_reason = "module mode: one synthetic forward/backward per module"
        return self.finish()

    def build(self, cls, calls, mod):
        import inspect

        tried = []
        for var, call in calls:
            try:
                args = [_eval_arg(a, mod) for a in call.args]
                kwargs = {k.arg: _eval_arg(k.value, mod) for k in call.keywords if k.arg}
            except ValueError as exc:
                tried.append(f"line {call.lineno}: {exc}")
                continue
            try:
                self.recording = True
                return cls(*args, **kwargs), var, None
            except Exception as exc:  # noqa: BLE001
                tried.append(f"line {call.lineno}: {type(exc).__name__}: {exc}")
            finally:
                self.recording = False
        try:
            self.recording = True
            return cls(), None, None
        except TypeError as exc:
            sig = ""
            try:
                sig = str(inspect.signature(cls.__init__)).replace("(self, ", "(").replace("(self)", "()")
            except (TypeError, ValueError):
                pass
            where = "; ".join(tried) if tried else "no instantiation with literal arguments found in the file"
            return None, None, f"cannot build {cls.__name__}{sig}: {exc} ({where})"
        except Exception as exc:  # noqa: BLE001
            return None, None, f"cannot build {cls.__name__}: {type(exc).__name__}: {exc}"
        finally:
            self.recording = False

    def finish(self) -> dict:
        status = "ok"
        return self.result(status, error=self.error)

    def typo_entries(self, known: set, names: set) -> list[dict]:
        """Tensors given a misspelt `requires_grad` attribute that never required grad: no gradient, ever."""
        entries = []
        for ref, path, line, attr in self.typos:
            t = ref()
            if t is None or id(t) in known or t.requires_grad or not path:
                continue
            m = re.match(r"\s*([\w.]+)\." + re.escape(attr) + r"\b", _site_text(path, line, ""))
            name = m.group(1) if m else attr
            if name in names:
                continue
            names.add(name)
            entries.append({"name": name, "shape": list(t.shape), "grad": "none", "defined_at": _loc(path, line),
                            "cut": {"path": path, "line": line, "op": f".{attr} = ...",
                                    "reason": f"`.{attr}` is not `requires_grad` (a typo): it sets a new attribute "
                                    "and the tensor never requires grad"},
                            "requires_grad": False, "in_optimizer": None, "registered": None, "why": "cut",
                            "norm": None, "leaf": True, "parameter": False})
        return entries

    def result(self, status, error=None) -> dict:
        torch = self.torch
        opt_ids = set()
        opt_list = []
        for ref, path, line, cname in self.optimizers:
            o = ref()
            if o is None:
                continue
            ids = [id(p) for g in o.param_groups for p in g["params"]]
            opt_ids.update(ids)
            opt_list.append({"class": cname, "path": path, "line": line, "params": ids})
        params = []
        done: set[int] = set()
        for pid, rec in self.params.items():
            sts = rec["statuses"]
            if not sts or id(rec) in done:
                continue
            done.add(id(rec))
            grad = "ok" if "ok" in sts else "nonfinite" if "nonfinite" in sts else "zero" if "zero" in sts \
                else "none"
            p = self.param_objs[pid]
            entry = {"name": rec["name"], "shape": rec["shape"], "grad": grad, "defined_at": rec["defined_at"],
                     "cut": rec["cut"] if grad != "ok" else None, "requires_grad": bool(p.requires_grad),
                     "in_optimizer": (pid in opt_ids) if self.optimizers else None,
                     "registered": rec["registered"], "why": rec["why"] if grad != "ok" else None,
                     "norm": rec.get("norm"), "leaf": rec["kind"] == "leaf",
                     "parameter": isinstance(p, torch.nn.Parameter) or rec["registered"] is not None}
            if self.optimizers:
                entry["optimizers"] = [i for i, o in enumerate(opt_list) if pid in set(o["params"])]
            params.append(entry)
        params.extend(self.typo_entries({id(p) for p in self.param_objs.values()}, {e["name"] for e in params}))
        names = {pid: rec["name"] for pid, rec in self.params.items()}
        optimizers = [{"class": o["class"], "path": o["path"], "line": o["line"],
                       "params": [names[i] for i in o["params"] if i in names][:256],
                       "n_params": len(o["params"])} for o in opt_list]
        return {"status": status, "framework": "torch", "mode": self.mode, "mode_reason": self.mode_reason,
                "stop_reason": self.stop_reason, "steps": self.step, "parameters": params,
                "optimizers": optimizers, "error": error, "ops": self.graph, "notes": self.notes,
                "flow": getattr(self, "flow", []),
                "backward_sites": [_loc(p, ln) for p, ln in self.backward_sites[:32]],
                "ops_recorded": len(self.ops), "path": self.path}


def _site_text(path, line, fallback) -> str:
    if path and line:
        try:
            import linecache

            text = linecache.getline(path, line).split("  #")[0].strip()
            if text:
                return text if len(text) <= 80 else text[:77] + "..."
        except Exception:  # noqa: BLE001
            pass
    return fallback


def _loc(path, line):
    return {"path": path, "line": line} if path and line else None


def _count_params(mod) -> int:
    try:
        return sum(1 for _ in mod.parameters())
    except Exception:  # noqa: BLE001
        return 0


def _names_in_frames(frames, objs) -> dict[int, str]:
    want = {id(o) for o in objs}
    found: dict[int, str] = {}
    for f in frames:
        for var, val in f.f_locals.items():
            if id(val) in want and id(val) not in found:
                found[id(val)] = var
            elif isinstance(val, (list, tuple)):
                for i, v in enumerate(val[:256]):
                    if id(v) in want and id(v) not in found:
                        found[id(v)] = f"{var}[{i}]"
    return found


def _has_training_step(tree) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("backward", "gradient", "jacobian", "manual_backward"):
                return True
            if name == "grad" and isinstance(fn, ast.Attribute) and isinstance(fn.value, (ast.Attribute, ast.Name)):
                base = fn.value.attr if isinstance(fn.value, ast.Attribute) else fn.value.id
                if base == "autograd":
                    return True
    return False


def _calls_any(tree, names) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in names
               for n in ast.walk(tree))


def _module_classes(tree) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.bases:
            out.append(node.name)
    return out


def _classes_used_inside(tree, names: set[str]) -> set[str]:
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Call):
                    fn = sub.func
                    n = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else None
                    if n in names and n != node.name:
                        used.add(n)
            for b in node.bases:
                n = b.id if isinstance(b, ast.Name) else None
                if n in names:
                    used.add(n)
    return used


def _eval_arg(node, mod):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        pass
    if isinstance(node, ast.Name) and node.id in vars(mod):
        return vars(mod)[node.id]
    if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Attribute)):
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        if all(n in vars(mod) for n in names):
            try:
                return eval(compile(ast.Expression(node), "<arg>", "eval"), dict(vars(mod)))  # noqa: S307
            except Exception as exc:  # noqa: BLE001
                raise ValueError(f"cannot evaluate {ast.unparse(node)}: {exc}") from None
    raise ValueError(f"argument {ast.unparse(node)} is not a constant")


def _synth_inputs(torch, module) -> list:
    """Candidate inputs, one per layer with a known input size, in registration order."""
    out, seen = [], set()
    for _name, m in module.named_modules():
        if m is module and len(list(module.children())):
            continue
        x, how = _synth_one(torch, m)
        if x is not None and how not in seen:
            seen.add(how)
            out.append((x, how))
        if len(out) >= 4:
            break
    return out


def _synth_one(torch, layer):
    nn = torch.nn
    B, T, S = 2, 8, 16
    for m in (layer,):
        if isinstance(m, nn.Linear):
            return (torch.randn(B, m.in_features),), f"randn({B}, {m.in_features}) for {type(m).__name__}"
        if isinstance(m, nn.Bilinear):
            return (torch.randn(B, m.in1_features), torch.randn(B, m.in2_features)), "Bilinear inputs"
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
            return (torch.randn(B, m.in_channels, S),), f"randn({B}, {m.in_channels}, {S}) for Conv1d"
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            return (torch.randn(B, m.in_channels, S, S),), f"randn({B}, {m.in_channels}, {S}, {S}) for Conv2d"
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
            return (torch.randn(B, m.in_channels, 8, 8, 8),), f"randn({B}, {m.in_channels}, 8, 8, 8) for Conv3d"
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
            return (torch.randint(0, m.num_embeddings, (B, T)),), f"randint(0, {m.num_embeddings}, ({B}, {T})) " \
                "token ids for Embedding"
        if isinstance(m, nn.RNNBase):
            shape = (B, T, m.input_size) if m.batch_first else (T, B, m.input_size)
            return (torch.randn(*shape),), f"randn{shape} for {type(m).__name__}"
        if isinstance(m, nn.TransformerEncoderLayer):
            d = m.linear1.in_features
            first = getattr(m.self_attn, "batch_first", False)
            shape = (B, T, d) if first else (T, B, d)
            return (torch.randn(*shape),), f"randn{shape} for TransformerEncoderLayer"
        if isinstance(m, nn.MultiheadAttention):
            shape = (B, T, m.embed_dim) if m.batch_first else (T, B, m.embed_dim)
            x = torch.randn(*shape)
            return (x, x, x), f"randn{shape} as query, key and value"
        if isinstance(m, nn.LayerNorm):
            shape = (B, T, *m.normalized_shape)
            return (torch.randn(*shape),), f"randn{shape} for LayerNorm"
        if isinstance(m, (nn.BatchNorm1d, nn.InstanceNorm1d)):
            return (torch.randn(B, m.num_features),), f"randn({B}, {m.num_features}) for BatchNorm1d"
        if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)):
            return (torch.randn(B, m.num_features, S, S),), "image batch for BatchNorm2d"
    return None, None


def _tensors_in(torch, out) -> list:
    found = []

    def walk(o, depth=0):
        if depth > 4:
            return
        if isinstance(o, torch.Tensor):
            found.append(o)
        elif isinstance(o, (list, tuple)):
            for x in o:
                walk(x, depth + 1)
        elif isinstance(o, dict):
            for x in o.values():
                walk(x, depth + 1)
        elif hasattr(o, "__dict__") and not isinstance(o, type):
            for x in vars(o).values():
                walk(x, depth + 1)

    walk(out)
    return found


def _reduce(torch, out):
    """A scalar from the outputs: random projections, so softmax/normalised outputs do not give zero grads."""
    total = None
    gen = torch.Generator().manual_seed(0)
    for t in _tensors_in(torch, out):
        if not t.requires_grad or not (t.dtype.is_floating_point or t.dtype.is_complex):
            continue
        w = torch.randn(t.shape, generator=gen, dtype=t.real.dtype if t.is_complex() else t.dtype)
        term = (t.real if t.is_complex() else t) * w
        term = term.sum()
        total = term if total is None else total + term
    return total


# --------------------------------------------------------------------------------------------------
# TensorFlow probe


TF_ZERO = {"round", "floor", "ceil", "sign"}
TF_COLLECTIONS = {"trainable_variables", "non_trainable_variables", "variables", "weights", "trainable_weights",
                  "non_trainable_weights", "tracker", "layers", "self_setattr_tracking", "inbound_nodes",
                  "outbound_nodes", "seed_generators", "metrics", "loss_tracker"}


class TFProbe:
    """Script mode for TensorFlow: intercepts `GradientTape.gradient`, names the sources that got None or
    zero and locates the cut (stop_gradient, NumPy/Python conversions, integer casts) with the user's line.

    Lineage: every user tape gets a hidden persistent twin; a recorded cut is linked to a dead source when
    the twin can differentiate the cut's input with respect to that source.
    """

    run_script = TorchProbe.run_script

    def __init__(self, path: str, source: str, req: dict):
        self.path = path
        self.source = source
        self.req = req
        self.loc = _Locator(path)
        self.max_steps = int(req.get("max_steps") or 16)
        self.budget_factor = float(req.get("budget_factor") or 2.0)
        self.recording = False
        self.step = 0
        self.error = None
        self.stop_reason = ""
        self.mode = "script"
        self.mode_reason = ""
        self.events: list[tuple] = []  # (kind, path, line, input)
        self.active = 0
        self.defsite: dict[int, tuple] = {}
        self.params: dict[str, dict] = {}
        self.backward_sites: list[tuple] = []
        self.first_backward_end = None
        self.t_start = time.perf_counter()
        self.optimizers_seen = False

    def base(self, v):
        inner = getattr(v, "_value", None)
        return inner if inner is not None and hasattr(inner, "handle") else v

    def install(self) -> None:
        import tensorflow as tf
        from tensorflow.python.eager import backprop
        from tensorflow.python.framework import ops

        probe = self
        tape_cls = backprop.GradientTape
        orig_enter, orig_exit, orig_gradient = tape_cls.__enter__, tape_cls.__exit__, tape_cls.gradient

        def _enter(tape):
            r = orig_enter(tape)
            if probe.recording and not getattr(tape, "_gt_hidden_of", False):
                hidden = tape_cls(persistent=True)
                hidden._gt_hidden_of = True
                orig_enter(hidden)
                tape._gt_hidden = hidden
                tape._gt_first_event = len(probe.events)
                probe.active += 1
            return r

        def _exit(tape, *a):
            r = orig_exit(tape, *a)
            hidden = getattr(tape, "_gt_hidden", None)
            if hidden is not None and getattr(hidden, "_recording", False):
                try:
                    orig_exit(hidden, None, None, None)
                except Exception:  # noqa: BLE001
                    pass
                probe.active = max(0, probe.active - 1)
            return r

        def _gradient(tape, target, sources, *a, **k):
            if getattr(tape, "_gt_hidden_of", False) or not probe.recording:
                return orig_gradient(tape, target, sources, *a, **k)
            return probe.on_gradient(orig_gradient, tape, target, sources, a, k)

        tape_cls.__enter__, tape_cls.__exit__, tape_cls.gradient = _enter, _exit, _gradient

        def wrap(owner, attr, kind, pick=lambda a, k: a[0] if a else None, when=None):
            orig = getattr(owner, attr, None)
            if orig is None:
                return

            def f(*a, **k):
                if probe.recording and probe.active and (when is None or when(a, k)):
                    path, line = probe.loc.where(2)
                    if path:
                        probe.events.append((kind, path, line, pick(a, k)))
                return orig(*a, **k)

            setattr(owner, attr, f)

        def to_int(a, k):
            dt = k.get("dtype", a[1] if len(a) > 1 else None)
            try:
                return not tf.as_dtype(dt).is_floating and not tf.as_dtype(dt).is_complex
            except Exception:  # noqa: BLE001
                return False

        wrap(tf, "stop_gradient", "stop_gradient")
        for owner in (tf, tf.math):
            wrap(owner, "argmax", "argmax")
            wrap(owner, "argmin", "argmin")
            for z in TF_ZERO:
                wrap(owner, z, z)
        wrap(tf, "cast", "cast", when=to_int)
        wrap(tf.dtypes, "cast", "cast", when=to_int)
        for attr, kind in (("numpy", ".numpy()"), ("__array__", "a NumPy conversion"), ("__float__", "float()"),
                           ("__int__", "int()"), ("__index__", "int()")):
            wrap(ops._EagerTensorBase, attr, kind)

    def creator(self, next_creator, **kwargs):
        v = next_creator(**kwargs)
        path, line = self.loc.where(2)
        if path:
            self.defsite[id(v)] = (weakref.ref(v), path, line)
        return v

    def names(self, frames, objs) -> dict[int, str]:
        import tensorflow as tf

        want = {id(self.base(o)): o for o in objs}
        found: dict[int, str] = {}

        def visit(name, val, depth):
            try:
                _visit(name, val, depth)
            except Exception:  # noqa: BLE001 - odd containers (trackable wrappers) must not break the probe
                pass

        def _visit(name, val, depth):
            key = id(self.base(val)) if isinstance(val, (tf.Variable, tf.Tensor)) or hasattr(val, "_value") else None
            if key in want and key not in found:
                found[key] = name
                return
            if depth > 3:
                return
            if isinstance(val, (list, tuple)) and depth < 3:
                for i, x in enumerate(val[:256]):
                    visit(f"{name}.{i}", x, depth + 1)
            elif isinstance(val, tf.Module) or hasattr(type(val), "trainable_variables"):
                layers = getattr(val, "layers", None)
                if isinstance(layers, list) and layers and depth < 3:
                    for i, layer in enumerate(layers):
                        visit(f"{name}.layers.{i}", layer, depth + 1)
                try:
                    attrs = list(vars(val).items())
                except TypeError:
                    return
                for an, av in attrs[:300]:
                    if an.startswith("_") and an.lstrip("_") in vars(val) or an.lstrip("_") in TF_COLLECTIONS:
                        continue
                    visit(f"{name}.{an.lstrip('_')}", av, depth + 1)

        for f in reversed(frames):  # module level first: `x_col`, not the helper's argument `x`
            scopes = [f.f_globals] if f.f_code.co_name == "<module>" else [f.f_locals]
            for scope in scopes:
                for var, val in list(scope.items()):
                    if var.startswith("__") or isinstance(val, type):
                        continue
                    if isinstance(val, (tf.Variable, tf.Tensor)) or hasattr(val, "_value"):
                        visit(var, val, 0)
            for scope in scopes:
                for var, val in list(scope.items()):
                    if not var.startswith("__") and not isinstance(val, type):
                        visit(var, val, 0)
        for key, o in want.items():
            if key not in found:
                found[key] = getattr(o, "path", None) or getattr(o, "name", None) or f"source{len(found)}"
        return found

    def on_gradient(self, orig, tape, target, sources, a, k):
        import tensorflow as tf

        self.recording = False
        self.step += 1
        path, line = self.loc.where(3)
        self.backward_sites.append((path, line))
        frames = self.loc.user_frames(3)
        flat = tf.nest.flatten(sources, expand_composites=False)
        try:
            res = orig(tape, target, sources, *a, **k)
        except Exception as exc:  # noqa: BLE001
            self.error = {"type": type(exc).__name__, "message": (str(exc).splitlines() or [""])[0],
                          "path": path, "line": line}
            self.stop_reason = f"tape.gradient at line {line} raised"
            raise _Stop() from None
        grads = tf.nest.flatten(res, expand_composites=False) if res is not None else [None] * len(flat)
        try:
            names = self.names(frames, flat)
        except Exception:  # noqa: BLE001
            names = {id(self.base(o)): getattr(o, "path", None) or getattr(o, "name", None) or f"source{i}"
                     for i, o in enumerate(flat)}
        hidden = getattr(tape, "_gt_hidden", None)
        first = getattr(tape, "_gt_first_event", 0)
        watched = set()
        if hidden is not None:
            watched = {id(self.base(v)) for v in hidden.watched_variables()}
        for src, g in zip(flat, grads):
            name = names.get(id(self.base(src)))
            rec = self.params.get(name)
            if rec is None:
                ds = self.defsite.get(id(self.base(src)))
                rec = self.params[name] = {"name": name, "shape": [int(d) if d is not None else None
                                                                 for d in src.shape.as_list()]
                                           if src.shape.rank is not None else None,
                                           "defined_at": _loc(ds[1], ds[2]) if ds else None,
                                           "statuses": [], "cut": None, "why": None,
                                           "trainable": bool(getattr(src, "trainable", True)),
                                           "variable": isinstance(self.base(src), tf.Variable)}
            st = self.classify(g)
            rec["statuses"].append(st)
            if g is not None:
                try:
                    rec["norm"] = float(tf.norm(tf.cast(tf.convert_to_tensor(g), tf.float32)))
                except Exception:  # noqa: BLE001
                    pass
            if st != "ok" and "ok" not in rec["statuses"][:-1] and rec["cut"] is None:
                try:
                    rec["cut"], rec["why"] = self.find_cut(src, st, hidden, watched, first, path, line)
                except Exception as exc:  # noqa: BLE001 - analysis must never break the user's code
                    rec["why"] = f"analysis failed: {type(exc).__name__}: {exc}"
        _stop_when_steps_spent(self, "tape.gradient()")
        self.recording = True
        return res

    def classify(self, g) -> str:
        import tensorflow as tf

        if g is None:
            return "none"
        if isinstance(g, tf.IndexedSlices):
            g = g.values
        g = tf.convert_to_tensor(g)
        if g.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(g))):
            return "nonfinite"
        if not bool(tf.reduce_any(tf.not_equal(g, tf.zeros_like(g)))):
            return "zero"
        return "ok"

    def find_cut(self, src, status, hidden, watched, first, gpath, gline):
        import tensorflow as tf

        base = self.base(src)
        ds = self.defsite.get(id(base))
        dtype = tf.as_dtype(base.dtype)
        if not dtype.is_floating and not dtype.is_complex:
            where = ds[1:] if ds else (gpath, gline)
            return ({"path": where[0], "line": where[1], "op": f"{dtype.name} variable",
                     "reason": f"the source has dtype {dtype.name}: integer values carry no gradient "
                     "(create it from a float, e.g. tf.Variable(0.0))"}, "integer")
        is_var = isinstance(base, tf.Variable)
        for kind, path, line, inp in self.events[first:]:
            if inp is not None and (inp is src or id(self.base(inp)) == id(base)) and kind == "stop_gradient":
                return ({"path": path, "line": line, "op": kind,
                         "reason": "tf.stop_gradient on the variable itself: it never gets a gradient"}, "cut")
        if hidden is not None and id(base) not in watched:
            if not is_var:
                return ({"path": gpath, "line": gline, "op": "unwatched tensor",
                         "reason": "the source is a tensor, not a tf.Variable, and the tape never watched it: "
                         "call tape.watch(x) inside the tape"}, "unwatched")
            return None, "unused"
        for kind, path, line, inp in self.events[first:]:
            linked = inp is src or (inp is not None and id(self.base(inp)) == id(base))
            if not linked and hidden is not None and inp is not None:
                try:
                    linked = hidden.gradient(inp, src) is not None
                except Exception:  # noqa: BLE001
                    linked = False
            if not linked:
                continue
            if status == "zero" and kind not in TF_ZERO:
                continue
            if kind in TF_ZERO:
                reason = f"tf.{kind} has a zero derivative almost everywhere"
            elif kind == "stop_gradient":
                reason = "tf.stop_gradient blocks the gradient on this path"
            elif kind in ("argmax", "argmin", "cast"):
                reason = f"tf.{kind} to an integer dtype: integer values carry no gradient"
            else:
                reason = f"{kind} turns the tensor into a NumPy/Python value inside the tape: the tape loses track"
            return {"path": path, "line": line, "op": kind, "reason": reason}, "cut"
        return None, ("zero" if status == "zero" else "off-path")

    def run(self) -> dict:
        import tensorflow as tf

        try:
            tree = ast.parse(self.source, self.path)
        except SyntaxError as exc:
            return self.result("error", {"type": "SyntaxError", "message": str(exc.msg), "path": self.path,
                                         "line": exc.lineno})
        keras_fit = _calls_any(tree, ("fit", "train_on_batch"))
        if not _has_training_step(tree) and not keras_fit:
            return self.result("unsupported", {"type": "NoGradientCall", "message": "the TensorFlow probe runs "
                               "scripts that call tape.gradient() or Keras fit()/train_on_batch(); this file has "
                               "neither (module mode is PyTorch only)", "path": self.path, "line": None})
        self.mode_reason = "the file calls tape.gradient(): ran it as __main__ up to that call"
        if keras_fit:
            # Keras' train_step calls tape.gradient inside a tf.function; run it eagerly so it is observed.
            tf.config.run_functions_eagerly(True)
            if not _has_training_step(tree):
                self.mode_reason = ("the file trains with Keras fit(): ran it as __main__ with functions run "
                                    "eagerly, up to the first train_step's tape.gradient")
        self.install()
        with tf.variable_creator_scope(self.creator):
            outcome = self.run_script()
        if outcome == "no-backward":
            return self.result("unsupported", {"type": "NoGradientCall", "message": "the script ran to the end "
                               "without calling tape.gradient()", "path": self.path, "line": None})
        return self.result("error" if self.error else "ok", self.error)

    def result(self, status, error) -> dict:
        params = []
        for rec in self.params.values():
            sts = rec["statuses"]
            grad = "ok" if "ok" in sts else "nonfinite" if "nonfinite" in sts else "zero" if "zero" in sts \
                else "none"
            params.append({"name": rec["name"], "shape": rec["shape"], "grad": grad,
                           "defined_at": rec["defined_at"], "cut": rec["cut"] if grad != "ok" else None,
                           "why": rec["why"] if grad != "ok" else None, "requires_grad": rec["trainable"],
                           "in_optimizer": None, "registered": None, "norm": rec.get("norm"),
                           "leaf": rec["variable"]})
        return {"status": status, "framework": "tensorflow", "mode": self.mode, "mode_reason": self.mode_reason,
                "stop_reason": self.stop_reason, "steps": self.step, "parameters": params, "optimizers": [],
                "error": error, "ops": [], "notes": [], "path": self.path,
                "backward_sites": [_loc(p, ln) for p, ln in self.backward_sites[:32]]}


# --------------------------------------------------------------------------------------------------


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


if __name__ == "__main__":
    sys.exit(main(sys.argv))
