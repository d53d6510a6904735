"""The escape suite: hostile code is contained, reported, and the launcher survives all of it."""

import os
import socket
import threading
import time

import pytest
from gradtrace.probe import sandbox

from .conftest import data

HAVE_BWRAP = sandbox.bwrap_path() is not None
SECRET = "gt-planted-secret-4f1c9a"


def write(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("import torch\n" + body)
    return str(path)


def marker_processes(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def secret_launcher():
    """A launcher started while secrets sit in the environment."""
    from gradtrace.probe.launcher import ProbeLauncher

    planted = {"GT_TEST_API_TOKEN": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET, "GITHUB_TOKEN": SECRET,
               "MY_SERVICE_PASSWORD": SECRET}
    old = {k: os.environ.get(k) for k in planted}
    os.environ.update(planted)
    lau = ProbeLauncher()
    try:
        yield lau
    finally:
        lau.shutdown()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_secret_environment_is_scrubbed(secret_launcher, scripts):
    path = write(scripts, "env.py", "import os\nprint(sorted(os.environ.items()))\n"
                 "raise RuntimeError(repr([v for v in os.environ.values() if 'planted' in v]))\n")
    res = secret_launcher.run(path, timeout=30)
    assert "env-scrubbed" in res["isolation"]
    assert SECRET not in str(res)
    assert res["error"]["message"] == "[]"
    assert "PATH" in res["output"]["head"]  # the script did run and print its environment


def test_network_connection_is_refused(launcher, scripts):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        deadline = time.time() + 20
        while time.time() < deadline and not accepted:
            try:
                accepted.append(server.accept())
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    path = write(scripts, "net.py", f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5)\n")
    res = launcher.run(path, timeout=30)
    accepted_any = bool(accepted)
    server.close()
    if HAVE_BWRAP:
        assert "no-network" in res["isolation"]
    if "no-network" in res["isolation"]:
        assert not accepted_any
        assert res["status"] == "error" and res["error"]["line"] == 3
    else:  # no way to isolate here: the report must say so
        assert "network" in res["isolation_notice"]


def test_writing_outside_the_temp_dir_fails(launcher, scripts):
    target = scripts / "escaped.txt"
    path = write(scripts, "write.py", f"open({str(target)!r}, 'w').write('x')\n")
    res = launcher.run(path, timeout=30)
    if HAVE_BWRAP:
        assert "read-only-fs" in res["isolation"]
    if "read-only-fs" in res["isolation"]:
        assert not target.exists()
        assert res["status"] == "error" and res["error"]["type"] == "OSError"
    else:  # no way to make the file system read-only here: the report must say so
        assert "writable" in res["isolation_notice"]
    # ... while its own temporary working directory is writable
    path = write(scripts, "write_ok.py", "import os\nopen('scratch.txt', 'w').write('x')\n"
                 "assert os.path.exists('scratch.txt')\nw = torch.ones(2, requires_grad=True)\nw.sum().backward()\n")
    res = launcher.run(path, timeout=30)
    assert res["status"] == "ok", res["error"]


def test_infinite_loop_times_out(launcher, scripts):
    path = write(scripts, "loop.py", "while True:\n    pass\n")
    t = time.perf_counter()
    res = launcher.run(path, timeout=2)
    assert time.perf_counter() - t < 15
    assert res["status"] == "timeout" and "2 s" in res["error"]["message"]


def test_allocating_10_gb_is_stopped(launcher, scripts):
    path = write(scripts, "alloc.py", "x = torch.ones(10 * 1024 ** 3, dtype=torch.uint8)\nprint(x.sum())\n")
    res = launcher.run(path, timeout=30, memory_mb=1024)
    assert res["status"] == "error"
    assert res["error"]["line"] == 2 or res["error"]["type"] == "ProbeCrashed"
    assert "memory-limit:1024MB" in res["isolation"]


def test_fork_bomb_is_contained(launcher, scripts):
    path = write(scripts, "bomb.py", "import os\nwhile True:\n    try:\n        os.fork()\n"
                 "    except OSError:\n        pass\n")
    t = time.perf_counter()
    res = launcher.run(path, timeout=3)
    assert time.perf_counter() - t < 30
    assert res["status"] in ("timeout", "error")
    # Nothing of the bomb may survive to starve the next probe of processes (a loaded machine slows the kill).
    forker = write(scripts, "forker.py", "import subprocess\n"
                   "procs = [subprocess.Popen(['true']) for _ in range(16)]\n"
                   "assert all(p.wait() == 0 for p in procs)\n"
                   "w = torch.ones(2, requires_grad=True)\nw.sum().backward()\n")
    after = launcher.run(forker, timeout=30)
    assert after["status"] == "ok", after["error"]


def test_grandchild_left_running_is_killed(launcher, scripts):
    marker = "987654.321"
    path = write(scripts, "daemon.py", "import subprocess, os\n"
                 f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
                 "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                 f"        os.execvp('sleep', ['sleep', '{marker}'])\n    os._exit(0)\n"
                 "w = torch.ones(2, requires_grad=True)\nw.sum().backward()\n")
    res = launcher.run(path, timeout=30)
    assert res["status"] == "ok", res["error"]
    time.sleep(0.3)
    assert marker_processes(marker) == []


def test_stdout_flood_is_capped(launcher, scripts):
    path = write(scripts, "flood.py", "import sys\nfor _ in range(200_000):\n    sys.stdout.write('x' * 1000 + '\\n')\n"
                 "w = torch.ones(2, requires_grad=True)\nw.sum().backward()\n")
    res = launcher.run(path, timeout=60)
    assert res["status"] == "ok", res["error"]
    assert res["output"]["bytes"] >= 200_000_000
    assert len(res["output"]["head"]) <= 8192 and len(res["output"]["tail"]) <= 8192
    assert [p["grad"] for p in res["parameters"]] == ["ok"]


def test_launcher_survives_everything(launcher, scripts):
    from gradtrace.probe.launcher import MAX_WORKERS

    res = launcher.run(write(scripts, "alive.py", "w = torch.ones(2, requires_grad=True)\nw.sum().backward()\n"))
    assert res["status"] == "ok" and res["warm"] is True  # this project's worker outlived the attacks above
    assert 1 <= launcher.workers() <= MAX_WORKERS


def test_isolation_is_reported_exactly(launcher):
    res = launcher.run(data("good_mlp.py"))
    iso = res["isolation"]
    for layer in ("process-group", "timeout:60s", "env-scrubbed", "private-tmp-cwd", "cpu-only",
                  "memory-limit:4096MB"):
        assert layer in iso
    if HAVE_BWRAP:
        assert {"bubblewrap", "no-network", "read-only-fs"} <= set(iso) and "isolation_notice" not in res
    else:
        assert "read-only-fs" not in iso and res["isolation_notice"]


def test_without_bubblewrap_unshare_builds_the_same_sandbox(tmp_path):
    from gradtrace.probe.launcher import ProbeLauncher

    if sandbox.unshare_path() is None:
        pytest.skip("unshare is not permitted here: test_plan_degrades_to_limits_only_with_a_notice covers it")
    lau = ProbeLauncher(use_bwrap=False)
    try:
        res = lau.run(data("good_mlp.py"), timeout=30)
    finally:
        lau.shutdown()
    assert res["status"] == "ok"
    assert "bubblewrap" not in res["isolation"] and "unshare" in res["isolation"]
    assert set(sandbox.SANDBOX_LAYERS) <= set(res["isolation"]) and "isolation_notice" not in res


def test_shutdown_kills_the_warm_worker():
    from gradtrace.probe.launcher import ProbeLauncher

    lau = ProbeLauncher()
    lau.run(data("good_mlp.py"))
    assert lau.workers() == 1
    w = next(iter(lau._workers.values()))
    lau.shutdown()
    assert w.proc.poll() is not None and lau.workers() == 0


def test_idle_worker_is_killed():
    from gradtrace.probe.launcher import ProbeLauncher

    lau = ProbeLauncher(idle_s=1.0)
    try:
        lau.run(data("good_mlp.py"))
        deadline = time.time() + 10
        while lau.workers() and time.time() < deadline:
            time.sleep(0.2)
        assert lau.workers() == 0
    finally:
        lau.shutdown()


def test_cancel_kills_the_probe(launcher, scripts):
    path = write(scripts, "slow.py", "import time\ntime.sleep(60)\n")
    ev = threading.Event()
    threading.Timer(1.0, ev.set).start()
    t = time.perf_counter()
    res = launcher.run(path, timeout=60, cancel=ev)
    assert time.perf_counter() - t < 10
    assert res["status"] == "error" and res["error"]["type"] == "Cancelled"


def test_plan_degrades_to_limits_only_with_a_notice(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "unshare_path", lambda: None)
    plan = sandbox.plan(sandbox.interpreter(None), str(tmp_path / "x.py"), sandbox.scrub_env(), 1024,
                        allow_bwrap=False)
    assert plan.kind == "limits-only" and plan.argv_prefix == [] and plan.mounts == []
    assert "network" in plan.notice and "writable" in plan.notice and "bubblewrap" in plan.notice
    assert plan.missing([]) == [f"missing:{layer}" for layer in sandbox.SANDBOX_LAYERS]


def test_scrubbed_environment_keeps_what_python_needs():
    env = sandbox.scrub_env({"PATH": "/usr/bin", "HOME": "/home/u", "PYTHONPATH": "/src", "AWS_SECRET_ACCESS_KEY": "s",
                             "GITHUB_TOKEN": "t", "OPENAI_API_KEY": "k", "CI_JOB_TOKEN": "c", "DB_PASSWORD": "p",
                             "SOME_RANDOM_VAR": "r", "OMP_NUM_THREADS": "2"})
    assert env["PATH"] == "/usr/bin" and env["PYTHONPATH"] == "/src" and env["OMP_NUM_THREADS"] == "2"
    assert not {"AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "OPENAI_API_KEY", "CI_JOB_TOKEN", "DB_PASSWORD",
                "SOME_RANDOM_VAR"} & set(env)
    assert env["CUDA_VISIBLE_DEVICES"] == ""


def test_cpu_only_unless_opted_in(launcher, scripts):
    path = write(scripts, "dev.py", "import os\nprint('CVD=' + repr(os.environ.get('CUDA_VISIBLE_DEVICES')))\n"
                 "w = torch.ones(2, requires_grad=True)\nw.sum().backward()\n")
    res = launcher.run(path, timeout=30)
    assert "cpu-only" in res["isolation"] and "CVD=''" in res["output"]["head"]
    from gradtrace.probe.launcher import ProbeLauncher

    lau = ProbeLauncher()
    try:
        res = lau.run(path, timeout=60, device="cuda")
    finally:
        lau.shutdown()
    assert res["status"] == "ok" and "cpu-only" not in res["isolation"]
    assert "CVD=''" not in res["output"]["head"]
