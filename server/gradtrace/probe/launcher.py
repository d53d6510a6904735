"""Server side of the probe: starts the runner in the user's interpreter, inside the sandbox, and talks JSON.

    ProbeLauncher().run(path, python=None, timeout=60.0, memory_mb=4096, device="cpu", cancel=None,
                        progress=None) -> dict   # DESIGN §3 probe JSON; never raises for user-code failures
    ProbeLauncher().shutdown()                    # kills the warm workers

A warm worker (one per interpreter, framework, device, memory limit and project) imports the framework once and
forks one child per probe; it is started lazily, killed after `idle_s` without use and on shutdown. Nothing the
worker's channel carries is trusted beyond its schema (`runtime.messages.read_event`): an event must be for the
request in flight, and no process id it names is ever signalled: the launcher kills the worker's own process tree,
read from /proc.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable

from gradtrace import parsing
from gradtrace.guarded_files import read_text
from gradtrace.probe import sandbox
from gradtrace.probe.report import build_result, detect_framework
from gradtrace.probe.runtime import messages
from gradtrace.probe.runtime.jail import host_namespaces

RUNNER = sandbox.RUNNER
IMPORT_TIMEOUT = 180.0
MAX_PIDS = 256
MAX_WORKERS = 3  # warm workers kept at once (each holds a framework in memory); the least recently used goes
LINE_MAX = messages.RESULT_LINE_MAX
MECHANISM = {"bwrap": "bubblewrap", "unshare": "unshare"}


class _WorkerDied(Exception):
    pass


class _Worker:
    def __init__(self, python: str, framework: str, device: str, memory_mb: int, idle_s: float, script: str,
                 use_bwrap: bool, allow_namespaces: bool = True):
        self.python = python
        self.framework = framework
        self.workdir = tempfile.mkdtemp(prefix="gradtrace-worker-")
        env = sandbox.scrub_env(device=device)
        self.plan = sandbox.plan(python, script, env, memory_mb, allow_bwrap=use_bwrap, device=device,
                                 allow_namespaces=allow_namespaces)
        self.cgroup = sandbox.PidsCgroup(MAX_PIDS)
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self.lines: queue.Queue = queue.Queue()
        self.stderr: collections.deque = collections.deque(maxlen=200)
        self.ready: dict | None = None
        self.killed = False
        env["TMPDIR"] = "/tmp" if self.plan.pidns else self.workdir
        argv = [*self.plan.argv_prefix, self.plan.executable or python, RUNNER, "worker"]
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, cwd=self.workdir, start_new_session=True,
                                     preexec_fn=self.cgroup.preexec if self.cgroup.path else None)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.send({"framework": framework, "device": device, "idle_s": idle_s + 60, "namespaces": self.plan.pidns,
                   "jail": self.plan.jail(), "host_ns": host_namespaces(), "home": self.plan.home,
                   "project": sandbox.project_root(script)})

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        while True:
            raw = self.proc.stdout.readline(LINE_MAX)
            if not raw:
                break
            if not raw.endswith(b"\n"):  # longer than any message: drop it, up to its end
                while raw and not raw.endswith(b"\n"):
                    raw = self.proc.stdout.readline(LINE_MAX)
                self.stderr.append("(an over-long line from the worker was dropped)\n")
                continue
            self.lines.put(raw)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr.append(raw.decode("utf-8", "replace"))

    def send(self, obj: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()

    def wait_event(self, deadline: float, cancel: threading.Event | None, expect_id: int | None) -> dict | None:
        """The next well-formed event for `expect_id` (ready/fatal when None), or None at the deadline."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if cancel is not None and cancel.is_set():
                raise InterruptedError
            try:
                raw = self.lines.get(timeout=min(0.1, remaining))
            except queue.Empty:
                continue
            if raw is None:
                self.lines.put(None)  # stays dead for later readers
                try:
                    code = self.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    code = None
                raise _WorkerDied(f"(exit status {code}) " + "".join(self.stderr)[-2000:])
            msg = messages.read_event(raw, expect_id)
            if msg is None:
                self.stderr.append(f"(ignored a message from the worker: {raw[:200]!r})\n")
                continue
            if expect_id is None and msg["event"] not in ("ready", "fatal"):
                continue
            return msg

    def alive(self) -> bool:
        return not self.killed and self.proc.poll() is None

    def kill(self) -> None:
        """Kill the worker and every process below it (read from /proc and the cgroup, never from a message)."""
        self.killed = True
        for _ in range(3):
            victims = sandbox.descendants(self.proc.pid) + self.cgroup.pids()
            for pid in victims:
                if pid != os.getpid():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            if not victims:
                break
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        self.cgroup.remove()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def isolation(self, facts: dict, timeout: float) -> list[str]:
        """What applied to this probe: the sandbox as the worker found it, the child's layers as the kernel showed
        them, and the launcher's own."""
        found = [x for x in (self.ready or {}).get("layers", []) if isinstance(x, str)]
        out = [MECHANISM[self.plan.kind]] if self.plan.kind in MECHANISM else []
        out += found + self.plan.missing(found)
        out += [x for x in facts.get("layers", []) if isinstance(x, str) and x not in out]
        out += [f"timeout:{timeout:g}s", "env-scrubbed"]
        if self.cgroup.path:
            out.append(f"pids-cgroup:{MAX_PIDS}")
        return out


class ProbeLauncher:
    """Runs probes; keeps one warm worker per (interpreter, framework, device, memory limit, project)."""

    def __init__(self, idle_s: float = 300.0, use_bwrap: bool = True):
        self.idle_s = idle_s
        self.use_bwrap = use_bwrap
        self._workers: dict[tuple, _Worker] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._ids = itertools.count(1)
        self._spawner = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradtrace-spawn")
        self._reaper = threading.Thread(target=self._reap_idle, daemon=True)
        self._reaper.start()
        atexit.register(self.shutdown)

    # -- public API
    def run(self, path: str, *, python: str | None = None, timeout: float = 60.0, memory_mb: int = 4096,
            device: str = "cpu", cancel: threading.Event | None = None,
            progress: Callable[[str], None] | None = None, mode: str = "auto", max_steps: int = 16) -> dict:
        """Probe `path`. Bad numbers (timeout, memory_mb, max_steps) raise ValueError before anything starts."""
        timeout = messages.seconds(timeout)
        memory_mb = messages.memory_mb(memory_mb)
        max_steps = messages.max_steps(max_steps)
        say = progress or (lambda _msg: None)
        path = os.path.abspath(path)
        try:
            source = read_text(path)
        except (OSError, UnicodeDecodeError) as exc:
            return _failure("error", None, "FileError", f"cannot read {path}: {exc}", path)
        framework = detect_framework(source, parse=parsing.parse)
        if framework not in ("torch", "tensorflow", "jax"):
            return _failure("unsupported", framework, "Unsupported",
                            "the probe runs PyTorch, TensorFlow and JAX code; this file uses none of them", path)
        python = sandbox.interpreter(python)
        key = (python, framework, device, memory_mb, sandbox.project_root(path))
        t0 = time.perf_counter()
        for _attempt in range(3):
            try:
                worker, warm = self._worker(key, say, cancel, path)
            except InterruptedError:
                return _failure("error", framework, "Cancelled", "the probe was cancelled", path)
            except _StartError as exc:
                return _failure("error", framework, exc.kind, str(exc), path)
            worker.lock.acquire()
            if worker.alive():
                break
            worker.lock.release()  # another probe's failure killed it while we waited: start another
        else:
            return _failure("error", framework, "WorkerDied", "the probe worker stopped before the probe started",
                            path)
        req = messages.ProbeRequest(id=next(self._ids), path=path, framework=framework, timeout=timeout,
                                    memory_mb=memory_mb, device=device, mode=mode, max_steps=max_steps,
                                    max_procs=MAX_PIDS, threads=os.cpu_count() or 1)
        try:
            worker.last_used = time.monotonic()
            say(f"probing {os.path.basename(path)} ({'warm' if warm else 'cold'} {framework} worker)")
            event = None
            try:
                worker.send(req.__dict__)
                deadline = time.monotonic() + timeout + 45.0
                while True:
                    msg = worker.wait_event(deadline, cancel, req.id)
                    if msg is None or msg["event"] == "result":
                        event = msg
                        break
            except InterruptedError:
                self._drop(key, worker)
                return _failure("error", framework, "Cancelled", "the probe was cancelled; its processes were "
                                "killed", path)
            except (_WorkerDied, OSError, ValueError) as exc:
                self._drop(key, worker)
                return _failure("error", framework, "WorkerDied", f"the probe worker died: {exc}".strip(), path)
            finally:
                worker.last_used = time.monotonic()
            facts = event.get("facts") if event is not None and isinstance(event.get("facts"), dict) else {}
            if event is None or facts.get("leftover_alive"):
                # The worker did not answer in time, or could not kill everything the probe left behind
                # (a fork bomb on a loaded machine): discard it, its sandbox and every process in them.
                self._drop(key, worker)
            if event is None:
                raw = {"status": "timeout", "error": {"type": "Timeout", "message": f"the probe did not finish "
                       f"within {timeout:g} s; its processes were killed", "path": None, "line": None}}
            else:
                raw = dict(event["result"])
                raw.update({k: facts[k] for k in ("elapsed_s", "output", "leftover_killed", "leftover_alive")
                            if k in facts})
        finally:
            worker.lock.release()
        result = build_result(raw, path, framework, worker.isolation(facts, timeout), worker.plan.notice)
        result["warm"] = warm
        result["wall_s"] = round(time.perf_counter() - t0, 4)
        return result

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._workers.values())
            self._workers.clear()
        for w in workers:
            w.kill()

    # -- internals
    def _worker(self, key, say, cancel, script) -> tuple[_Worker, bool]:
        try:
            return self._start_worker(key, say, cancel, script, allow_namespaces=True)
        except _StartError as exc:
            if exc.kind != "SandboxError":
                raise
            say(f"the namespace sandbox could not be built ({exc}); probing with limits only")
            return self._start_worker(key, say, cancel, script, allow_namespaces=False, why=str(exc))

    def _start_worker(self, key, say, cancel, script, allow_namespaces, why=None) -> tuple[_Worker, bool]:
        python, framework, device, memory_mb, _project = key
        with self._lock:
            w = self._workers.get(key)
            if w is not None and w.alive():
                return w, True
            if w is not None:
                w.kill()
            if self._closed:
                self._closed = False
            self._evict_idle(MAX_WORKERS - 1)
            say(f"starting a {framework} worker in {python}")
            try:
                # Started from one long-lived thread: bubblewrap's --die-with-parent (PR_SET_PDEATHSIG) fires
                # when the *thread* that started it exits, and probes often run on short-lived threads.
                w = self._spawner.submit(_Worker, python, framework, device, memory_mb, self.idle_s, script,
                                         self.use_bwrap, allow_namespaces).result()
            except OSError as exc:
                raise _StartError("InterpreterError", f"cannot start the interpreter {python}: {exc}") from None
            if why:
                w.plan.notice = f"the namespace sandbox failed here ({why}); " + (w.plan.notice or "")
            w.lock.acquire()  # held until the worker is ready: concurrent probes queue behind it
            self._workers[key] = w
        try:
            msg = w.wait_event(time.monotonic() + IMPORT_TIMEOUT, cancel, None)
        except InterruptedError:
            w.lock.release()
            self._drop(key, w)
            raise
        except (_WorkerDied, OSError) as exc:
            w.lock.release()
            self._drop(key, w)
            raise _StartError("WorkerDied", f"the interpreter {python} could not start the probe runner: "
                              f"{str(exc).strip()[-600:]}") from None
        w.lock.release()
        if msg is None:
            self._drop(key, w)
            raise _StartError("Timeout", f"importing {framework} in {python} took longer than {IMPORT_TIMEOUT:g} s")
        if msg["event"] == "fatal":
            self._drop(key, w)
            e = msg.get("error") or {}
            if e.get("type") == "SandboxError":
                raise _StartError("SandboxError", str(e.get("message")))
            raise _StartError("FrameworkMissing", f"the interpreter {python} cannot import {framework}: "
                              f"{e.get('type')}: {e.get('message')} (choose the interpreter of your project with "
                              "--python or the gradtrace.interpreter setting)")
        w.ready = msg
        return w, False

    def _drop(self, key, worker: _Worker | None = None) -> None:
        with self._lock:
            w = self._workers.get(key)
            if w is not None and (worker is None or w is worker):
                del self._workers[key]
        if worker is not None:
            worker.kill()
        elif w is not None:
            w.kill()

    def _evict_idle(self, keep: int) -> None:
        """Kill the least recently used idle workers until at most `keep` remain (called with the lock held)."""
        idle = sorted(((w.last_used, k) for k, w in self._workers.items() if not w.lock.locked()))
        while len(self._workers) > keep and idle:
            _, k = idle.pop(0)
            self._workers.pop(k).kill()

    def _reap_idle(self) -> None:
        while True:
            time.sleep(min(5.0, max(0.5, self.idle_s / 4)))
            now = time.monotonic()
            with self._lock:
                idle = [(k, w) for k, w in self._workers.items()
                        if not w.lock.locked() and now - w.last_used > self.idle_s]
            for k, w in idle:
                self._drop(k, w)

    def workers(self) -> int:
        with self._lock:
            return sum(1 for w in self._workers.values() if w.alive())


class _StartError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _failure(status: str, framework: str | None, kind: str, message: str, path: str) -> dict:
    return {"status": status, "framework": framework, "isolation": [], "parameters": [], "findings": [],
            "error": {"type": kind, "message": message, "path": path, "line": None}}
