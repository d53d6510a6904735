"""Server side of the probe: starts the runner in the user's interpreter, inside the sandbox, and talks JSON.

    ProbeLauncher().run(path, python=None, timeout=60.0, memory_mb=4096, device="cpu", cancel=None,
                        progress=None) -> dict   # DESIGN §3 probe JSON; never raises for user-code failures
    ProbeLauncher().shutdown()                    # kills the warm workers

A warm worker (one per interpreter, framework, device and sandbox) imports the framework once and forks
one child per probe; it is started lazily, killed after `idle_s` without use and on shutdown.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
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

from gradtrace.guarded_files import read_text
from gradtrace.probe import sandbox
from gradtrace.probe.report import build_result, detect_framework

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runner.py")
IMPORT_TIMEOUT = 180.0
MAX_PIDS = 256


class _WorkerDied(Exception):
    pass


class _Worker:
    def __init__(self, python: str, framework: str, device: str, memory_mb: int, idle_s: float,
                 use_bwrap: bool):
        self.python = python
        self.framework = framework
        self.workdir = tempfile.mkdtemp(prefix="gradtrace-worker-")
        self.plan = sandbox.plan(memory_mb, self.workdir, allow_bwrap=use_bwrap, device=device)
        self.cgroup = sandbox.PidsCgroup(MAX_PIDS)
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self.lines: queue.Queue = queue.Queue()
        self.stderr: collections.deque = collections.deque(maxlen=200)
        self.ready: dict | None = None
        self.child_pid: int | None = None
        env = sandbox.scrub_env(device=device)
        env["TMPDIR"] = self.workdir
        argv = [*self.plan.argv_prefix, python, RUNNER, "worker"]
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, cwd=self.workdir, start_new_session=True,
                                     preexec_fn=self.cgroup.preexec if self.cgroup.path else None)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.send({"framework": framework, "device": device, "pidns": self.plan.pidns, "idle_s": idle_s + 60})

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                self.stderr.append(raw.decode("utf-8", "replace"))
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr.append(raw.decode("utf-8", "replace"))

    def send(self, obj: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()

    def wait_event(self, deadline: float, cancel: threading.Event | None) -> dict | None:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if cancel is not None and cancel.is_set():
                raise InterruptedError
            try:
                msg = self.lines.get(timeout=min(0.1, remaining))
            except queue.Empty:
                continue
            if msg is None:
                try:
                    code = self.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    code = None
                raise _WorkerDied(f"(exit status {code}) " + "".join(self.stderr)[-2000:])
            return msg

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.child_pid and not self.plan.pidns:
            try:
                os.killpg(self.child_pid, signal.SIGKILL)
            except OSError:
                pass
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


class ProbeLauncher:
    """Runs probes; keeps one warm worker per (interpreter, framework, device)."""

    def __init__(self, idle_s: float = 300.0, use_bwrap: bool = True):
        self.idle_s = idle_s
        self.use_bwrap = use_bwrap
        self._workers: dict[tuple, _Worker] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._spawner = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradtrace-spawn")
        self._reaper = threading.Thread(target=self._reap_idle, daemon=True)
        self._reaper.start()
        atexit.register(self.shutdown)

    # -- public API
    def run(self, path: str, *, python: str | None = None, timeout: float = 60.0, memory_mb: int = 4096,
            device: str = "cpu", cancel: threading.Event | None = None,
            progress: Callable[[str], None] | None = None, mode: str = "auto", max_steps: int = 16) -> dict:
        say = progress or (lambda _msg: None)
        path = os.path.abspath(path)
        try:
            source = read_text(path)
        except (OSError, UnicodeDecodeError) as exc:
            return _failure("error", None, "FileError", f"cannot read {path}: {exc}", path)
        framework = detect_framework(source)
        if framework not in ("torch", "tensorflow"):
            what = {"jax": "JAX"}.get(framework or "", "neither PyTorch nor TensorFlow")
            return _failure("unsupported", framework, "Unsupported",
                            f"the probe runs PyTorch and TensorFlow code; this file uses {what}", path)
        python = sandbox.interpreter(python)
        key = (python, framework, device)
        t0 = time.perf_counter()
        try:
            worker, warm = self._worker(key, memory_mb, say, cancel)
        except InterruptedError:
            return _failure("error", framework, "Cancelled", "the probe was cancelled", path)
        except _StartError as exc:
            return _failure("error", framework, exc.kind, str(exc), path)
        req = {"path": path, "timeout": timeout, "memory_mb": memory_mb, "device": device, "mode": mode,
               "framework": framework, "max_steps": max_steps, "max_procs": MAX_PIDS,
               "threads": os.cpu_count() or 1}
        with worker.lock:
            worker.last_used = time.monotonic()
            say(f"probing {os.path.basename(path)} ({'warm' if warm else 'cold'} {framework} worker)")
            try:
                worker.send(req)
                deadline = time.monotonic() + timeout + 15.0
                raw = None
                while True:
                    msg = worker.wait_event(deadline, cancel)
                    if msg is None:
                        break
                    if msg.get("event") == "started":
                        worker.child_pid = msg.get("pid")
                    elif msg.get("event") == "result":
                        raw = msg["result"]
                        break
            except InterruptedError:
                self._drop(key)
                return _failure("error", framework, "Cancelled", "the probe was cancelled; its processes were "
                                "killed", path)
            except (_WorkerDied, OSError) as exc:
                self._drop(key)
                return _failure("error", framework, "WorkerDied", f"the probe worker died: {exc}".strip(), path)
            finally:
                worker.child_pid = None
                worker.last_used = time.monotonic()
            if raw is None or raw.get("leftover_alive"):
                # The worker did not answer in time, or could not kill everything the probe left behind
                # (a fork bomb on a loaded machine): discard it, its sandbox and every process in them.
                self._drop(key)
            if raw is None:
                raw = {"status": "timeout", "error": {"type": "Timeout", "message": f"the probe did not finish "
                       f"within {timeout:g} s; its processes were killed", "path": None, "line": None}}
        isolation = list(worker.plan.layers)
        isolation += [f"timeout:{timeout:g}s", "env-scrubbed"]
        if worker.cgroup.path:
            isolation.append(f"pids-cgroup:{MAX_PIDS}")
        result = build_result(raw, path, framework, isolation, worker.plan.notice)
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
    def _worker(self, key, memory_mb, say, cancel) -> tuple[_Worker, bool]:
        with self._lock:
            w = self._workers.get(key)
            if w is not None and w.alive():
                return w, True
            if w is not None:
                w.kill()
            if self._closed:
                self._closed = False
            say(f"starting a {key[1]} worker in {key[0]}")
            try:
                # Started from one long-lived thread: bubblewrap's --die-with-parent (PR_SET_PDEATHSIG) fires
                # when the *thread* that started it exits, and probes often run on short-lived threads.
                w = self._spawner.submit(_Worker, key[0], key[1], key[2], memory_mb, self.idle_s,
                                         self.use_bwrap).result()
            except OSError as exc:
                raise _StartError("InterpreterError", f"cannot start the interpreter {key[0]}: {exc}") from None
            w.lock.acquire()  # held until the worker is ready: concurrent probes queue behind it
            self._workers[key] = w
        try:
            msg = w.wait_event(time.monotonic() + IMPORT_TIMEOUT, cancel)
        except InterruptedError:
            w.lock.release()
            self._drop(key)
            raise
        except (_WorkerDied, OSError) as exc:
            w.lock.release()
            self._drop(key)
            raise _StartError("WorkerDied", f"the interpreter {key[0]} could not start the probe runner: "
                              f"{str(exc).strip()[-600:]}") from None
        w.lock.release()
        if msg is None:
            self._drop(key)
            raise _StartError("Timeout", f"importing {key[1]} in {key[0]} took longer than {IMPORT_TIMEOUT:g} s")
        if msg.get("event") == "fatal":
            self._drop(key)
            e = msg.get("error") or {}
            raise _StartError("FrameworkMissing", f"the interpreter {key[0]} cannot import {key[1]}: "
                              f"{e.get('type')}: {e.get('message')} (choose the interpreter of your project with "
                              "--python or the gradtrace.interpreter setting)")
        w.ready = msg
        return w, False

    def _drop(self, key) -> None:
        with self._lock:
            w = self._workers.pop(key, None)
        if w is not None:
            w.kill()

    def _reap_idle(self) -> None:
        while True:
            time.sleep(min(5.0, max(0.5, self.idle_s / 4)))
            now = time.monotonic()
            with self._lock:
                idle = [k for k, w in self._workers.items()
                        if not w.lock.locked() and now - w.last_used > self.idle_s]
            for k in idle:
                self._drop(k)

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
