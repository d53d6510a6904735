"""The red-team attacks on the probe, each really attempted by a probed script.

Each test runs in every sandbox mode this machine offers (bubblewrap, the unshare fallback, and limits only where
the test says so). Where a mode cannot apply a layer, the test asserts that `isolation` says so (`missing:...`).
"""

import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from gradtrace.probe import sandbox

SECRET = "gt-red-team-secret-7d31"
TRAIN = "w = torch.ones(2, requires_grad=True)\nw.sum().backward()\n"
MODES = [m for m, ok in (("bwrap", sandbox.bwrap_path() is not None), ("unshare", sandbox.unshare_path() is not None))
         if ok]


def write(directory, name, body):
    path = os.path.join(str(directory), name)
    with open(path, "w") as fh:
        fh.write("import torch\n" + body)
    return path


def report(res) -> dict:
    """The JSON a script printed as its last output line (`print(json.dumps(...))`)."""
    lines = [ln for ln in (res["output"]["head"] + res["output"]["tail"]).splitlines() if ln.startswith("{")]
    assert lines, res
    return json.loads(lines[-1])


@pytest.fixture(scope="module", params=MODES)
def mode_launcher(request):
    from gradtrace.probe.launcher import ProbeLauncher

    lau = ProbeLauncher(use_bwrap=request.param == "bwrap")
    lau.mode = request.param
    yield lau
    lau.shutdown()


# -- 1. a device or FIFO named by the probe's result is never read by the launcher -----------------------------

def test_device_symlink_named_in_a_traceback_is_not_read(mode_launcher, scripts):
    gen = scripts / "gen.py"
    gen.symlink_to("/dev/zero")
    fifo = scripts / "pipe.py"
    os.mkfifo(fifo)
    for target in (gen, fifo):
        path = write(scripts, f"run_{target.stem}.py",
                     f"exec(compile('raise ValueError(1)', {str(target)!r}, 'exec'))\n")
        t0 = time.perf_counter()
        res = mode_launcher.run(path, timeout=60)
        assert time.perf_counter() - t0 < 60
        assert res["status"] == "error" and res["error"]["path"] == str(target), res["error"]
        (finding,) = [f for f in res["findings"] if f["code"] == "GT906"]
        assert (finding["line"], finding["column"]) == (1, 1)


# -- 2. the control and result channels ------------------------------------------------------------------------

FORGE = """import json, os, stat
victim = {victim}
forged = [json.dumps({{"event": "result", "id": 0, "result": {{"status": "ok", "framework": "torch",
          "parameters": [{{"name": "forged", "grad": "ok"}}], "isolation_child": ["forged-layer"]}}}}),
          json.dumps({{"event": "started", "pid": victim}}), json.dumps({{"event": "ready", "pid": victim}}),
          "{{{{{{ not json", "[1, 2, 3]", '"a string"', "null", "1e999"]
hit = []
for name in os.listdir("/proc/self/fd"):
    fd = int(name)
    try:
        kind = os.fstat(fd).st_mode
    except OSError:
        continue
    if fd > 2 and (stat.S_ISFIFO(kind) or stat.S_ISSOCK(kind)):
        for line in forged:
            try:
                os.write(fd, (line + "\\n").encode())
                hit.append(fd)
            except OSError:
                pass
print(json.dumps({{"fds_written": sorted(set(hit))}}))
{tail}
"""


def test_forged_messages_never_reach_the_launcher(scripts):
    from gradtrace.probe.launcher import ProbeLauncher

    victim = subprocess.Popen(["sleep", "300"], start_new_session=True)
    lau = ProbeLauncher(use_bwrap=False)  # the fallback: no pid namespace to contain a forged pid
    try:
        first = lau.run(write(scripts, "forge.py", FORGE.format(victim=victim.pid, tail=TRAIN)), timeout=60)
        # what it wrote on its own result pipe spoils its own result, nothing else
        assert first["status"] in ("ok", "error") and "forged" not in json.dumps(first["parameters"])
        assert not any("forged" in layer for layer in first["isolation"])
        # the next probe gets its own result, not one the previous script queued
        second = lau.run(write(scripts, "honest.py", "v = torch.ones(3, requires_grad=True)\n(v * 2).sum()"
                                                      ".backward()\n"), timeout=60)
        assert [p["name"] for p in second["parameters"]] == ["v"]
        # a forged `started` pid followed by a timeout: the launcher kills its own processes only
        hung = lau.run(write(scripts, "hang.py", FORGE.format(victim=victim.pid, tail="import time\n"
                                                              "time.sleep(600)\n")), timeout=3)
        assert hung["status"] == "timeout"
        time.sleep(0.5)
        assert victim.poll() is None, "the launcher killed a host process named by the probe"
        after = lau.run(write(scripts, "after.py", TRAIN), timeout=60)
        assert after["status"] == "ok", after["error"]
    finally:
        lau.shutdown()
        victim.kill()
        victim.wait()


def test_garbage_on_the_result_channel_stays_in_its_probe(mode_launcher, scripts):
    """A script writes a forged result of its own (claiming isolation layers) on every pipe it holds, then exits:
    the result is its own business, the isolation it claims is not."""
    path = write(scripts, "garbage.py", "import os, stat, json\n"
                 "forged = json.dumps({'status': 'ok', 'framework': 'torch', 'parameters': [], 'isolation_child': "
                 "['forged-layer'], 'isolation': ['forged-layer'], 'leftover_alive': 0}).encode()\n"
                 "for name in os.listdir('/proc/self/fd'):\n"
                 "    fd = int(name)\n"
                 "    try:\n"
                 "        if fd > 2 and stat.S_ISFIFO(os.fstat(fd).st_mode):\n"
                 "            os.write(fd, forged)\n"
                 "    except OSError:\n"
                 "        pass\n"
                 "os._exit(0)\n")
    t0 = time.perf_counter()
    res = mode_launcher.run(path, timeout=60)
    assert res["status"] != "timeout" and time.perf_counter() - t0 < 50  # the channel to the launcher is intact
    assert not any("forged" in layer for layer in res["isolation"]), res["isolation"]
    nxt = mode_launcher.run(write(scripts, "next.py", TRAIN), timeout=60)
    assert nxt["status"] == "ok" and [p["grad"] for p in nxt["parameters"]] == ["ok"]
    assert nxt["warm"] is True  # the worker outlived it


# -- 3. host unix sockets ----------------------------------------------------------------------------------------

def test_host_unix_sockets_are_unreachable(mode_launcher, scripts):
    outside = tempfile.mkdtemp(prefix="gt-host-sock-")
    path_sock = os.path.join(outside, "agent.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path_sock)
    server.listen(4)
    abstract = socket.socket(socket.AF_UNIX)
    abstract_name = f"\0gt-red-team-{os.getpid()}"
    abstract.bind(abstract_name)
    abstract.listen(4)
    try:
        script = write(scripts, "sock.py", "import json, socket\nout = {}\n"
                       f"for name, addr in (('path', {path_sock!r}), ('abstract', {abstract_name!r})):\n"
                       "    s = socket.socket(socket.AF_UNIX)\n"
                       "    try:\n"
                       "        s.connect(addr)\n"
                       "        out[name] = 'connected'\n"
                       "    except OSError as exc:\n"
                       "        out[name] = type(exc).__name__\n"
                       "print(json.dumps(out))\n" + TRAIN)
        res = mode_launcher.run(script, timeout=60)
        assert res["status"] == "ok", res["error"]
        assert report(res) == {"path": "FileNotFoundError", "abstract": "ConnectionRefusedError"}
        assert {"no-network", "no-host-sockets"} <= set(res["isolation"])
    finally:
        server.close()
        abstract.close()
        os.unlink(path_sock)
        os.rmdir(outside)


# -- 4. /proc, capabilities, namespaces, the file system ---------------------------------------------------------

PROC = """import ctypes, json, os, socket
out = {{}}
try:
    out["launcher_environ"] = {SECRET!r} in open("/proc/{launcher}/environ", "rb").read().decode("latin-1")
except OSError as exc:
    out["launcher_environ"] = type(exc).__name__
out["processes"] = len([n for n in os.listdir("/proc") if n.isdigit()])
try:
    open("/proc/{launcher}/mem", "r+b")
    out["launcher_mem"] = "opened"
except OSError as exc:
    out["launcher_mem"] = type(exc).__name__
libc = ctypes.CDLL(None, use_errno=True)
try:
    fd = os.open("/proc/{launcher}/ns/net", os.O_RDONLY)
    out["setns"] = libc.setns(fd, 0x40000000) == 0
except OSError as exc:
    out["setns"] = type(exc).__name__
out["unshare"] = libc.unshare(0x10000000) == 0
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3)
    out["loopback"] = "connected"
except OSError as exc:
    out["loopback"] = type(exc).__name__
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
out["cap_eff"] = int(status["CapEff"].strip(), 16)
out["cap_bnd"] = int(status["CapBnd"].strip(), 16)
out["no_new_privs"] = status["NoNewPrivs"].strip()
out["seccomp"] = status["Seccomp"].strip()
for target in ("/root/gt-red-team-probe", {outside!r}):
    try:
        open(target, "w").write("x")
        out["wrote:" + target] = True
    except OSError as exc:
        out["wrote:" + target] = type(exc).__name__
print(json.dumps(out))
"""


def test_proc_capabilities_namespaces_and_file_system_are_confined(mode_launcher, scripts):
    os.environ["GT_RED_TEAM_UNSCRUBBED"] = SECRET  # in the launcher's own environment only
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    outside = os.path.join(tempfile.gettempdir(), f"gt-red-team-outside-{os.getpid()}")
    for leftover in ("/root/gt-red-team-probe", outside):  # from an interrupted earlier run, not from this probe
        if os.path.exists(leftover):
            os.remove(leftover)
    try:
        path = write(scripts, "proc.py", PROC.format(SECRET=SECRET, launcher=os.getpid(),
                                                    port=listener.getsockname()[1], outside=outside) + TRAIN)
        res = mode_launcher.run(path, timeout=60)
    finally:
        os.environ.pop("GT_RED_TEAM_UNSCRUBBED")
        listener.close()
    assert res["status"] == "ok", res["error"]
    out = report(res)
    assert out["launcher_environ"] in ("FileNotFoundError", False)  # not there, or another process of that pid
    assert out["processes"] <= 4
    assert out["launcher_mem"] in ("FileNotFoundError", "PermissionError")
    assert out["setns"] in ("FileNotFoundError", False) and out["unshare"] is False
    assert out["loopback"] in ("ConnectionRefusedError", "OSError", "TimeoutError")
    assert out["no_new_privs"] == "1" and out["seccomp"] == "2"
    assert out["cap_eff"] == 0  # and no exec can bring any back (no_new_privs), whatever the bounding set says
    for target in ("/root/gt-red-team-probe", outside):  # on the host: a private $HOME or /tmp may have taken it
        assert not os.path.exists(target), target
    for layer in ("private-proc", "no-network", "read-only-fs", "capabilities-dropped", "no-new-privs", "seccomp",
                  "mount-namespace", "pid-namespace"):
        assert layer in res["isolation"], (layer, res["isolation"])


def test_limits_only_mode_names_every_missing_layer(monkeypatch, scripts):
    from gradtrace.probe.launcher import ProbeLauncher

    monkeypatch.setattr(sandbox, "unshare_path", lambda: None)
    lau = ProbeLauncher(use_bwrap=False)
    try:
        res = lau.run(write(scripts, "plain.py", "import json\nstatus = dict(l.split(':', 1) for l in "
                                                  "open('/proc/self/status') if ':' in l)\n"
                                                  "print(json.dumps({'seccomp': status['Seccomp'].strip(), "
                                                  "'nnp': status['NoNewPrivs'].strip()}))\n" + TRAIN), timeout=60)
    finally:
        lau.shutdown()
    assert res["status"] == "ok", res["error"]
    iso = res["isolation"]
    for layer in ("no-network", "read-only-fs", "private-proc", "mount-namespace", "home-hidden", "no-host-sockets"):
        assert f"missing:{layer}" in iso and layer not in iso
    assert report(res) == {"seccomp": "2", "nnp": "1"}  # what needs no namespace still applies
    assert {"seccomp", "no-new-privs"} <= set(iso)


# -- 8. /dev/shm and the temporary directories: bounded, emptied per probe -----------------------------------------

def test_shared_memory_and_temp_are_bounded_and_emptied(scripts):
    from gradtrace.probe.launcher import ProbeLauncher

    for use_bwrap in ([True, False] if "bwrap" in MODES else [False]):
        lau = ProbeLauncher(use_bwrap=use_bwrap)
        try:
            fill = write(scripts, "fill.py", "import json, os, tempfile\nout = {}\n"
                         "chunk = b'x' * (1 << 20)\n"
                         "for where in ('/dev/shm', tempfile.gettempdir(), os.path.expanduser('~')):\n"
                         "    written = 0\n"
                         "    try:\n"
                         "        with open(os.path.join(where, 'fill.bin'), 'wb') as fh:\n"
                         "            for _ in range(3 * 1024):\n"
                         "                fh.write(chunk)\n"
                         "                written += 1\n"
                         "    except OSError as exc:\n"
                         "        out[where] = [written, type(exc).__name__]\n"
                         "    else:\n"
                         "        out[where] = [written, None]\n"
                         "locked = os.path.join(tempfile.gettempdir(), 'locked')\n"
                         "os.makedirs(os.path.join(locked, 'inner'))\n"
                         "open(os.path.join(locked, 'inner', 'f'), 'w').write('x')\n"
                         "os.chmod(os.path.join(locked, 'inner'), 0)\n"
                         "os.chmod(locked, 0)\n"
                         "out['tmp'] = tempfile.gettempdir()\n"
                         "print(json.dumps(out))\n" + TRAIN)
            res = lau.run(fill, timeout=120, memory_mb=512)
            assert res["status"] == "ok", res["error"]
            filled = report(res)
            tmp = filled.pop("tmp")
            for where, (written_mb, error) in filled.items():
                assert written_mb <= 512 and error is not None, (where, written_mb, error)
            look = write(scripts, "look.py", "import json, os\n"
                         "print(json.dumps({w: sorted(os.listdir(w)) for w in ('/dev/shm', os.path.dirname("
                         f"{tmp!r}), os.path.expanduser('~'))}}))\n" + TRAIN)
            res = lau.run(look, timeout=60, memory_mb=512)
            assert res["status"] == "ok", res["error"]
            listed = report(res)
            assert listed["/dev/shm"] == [], listed
            assert os.path.basename(tmp) not in listed[os.path.dirname(tmp)], listed  # the last probe's directory
            assert not any("fill.bin" in names for names in listed.values()), listed
            assert {"shm-bounded", "tmp-bounded"} <= set(res["isolation"])
        finally:
            lau.shutdown()


# -- 9. secrets in the home directory and the environment -----------------------------------------------------------

def test_home_secrets_and_environment_secrets_do_not_leak(tmp_path):
    from gradtrace.probe.launcher import ProbeLauncher

    home = tmp_path / "home"
    for rel in (".kaggle/kaggle.json", ".pgpass", ".config/someapp/token", ".netrc", ".bash_history",
                ".zsh_history", ".python_history", ".env", ".git-credentials", "notes/.env"):
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_text(SECRET)
    project = home / "work" / "proj"
    project.mkdir(parents=True)
    (project / "helper.py").write_text("VALUE = 3\n")
    planted = {"HOME": str(home), "TF_VAR_db_pass": SECRET, "TF_VAR_region": SECRET,
               "JAX_PLATFORM_URL": f"https://user:{SECRET}@example.invalid/x",
               "TORCH_HOME_URL": f"https://{SECRET}@example.invalid/"}
    old = {k: os.environ.get(k) for k in planted}
    os.environ.update(planted)
    try:
        for use_bwrap in ([True, False] if "bwrap" in MODES else [False]):
            lau = ProbeLauncher(use_bwrap=use_bwrap)
            try:
                script = write(project, "leak.py", "import os, json\nfrom helper import VALUE\nfound = {}\n"
                               f"for root, dirs, files in os.walk({str(home)!r}):\n"
                               "    for f in files:\n"
                               "        p = os.path.join(root, f)\n"
                               "        try:\n"
                               "            found[p] = open(p).read()[:100]\n"
                               "        except OSError as exc:\n"
                               "            found[p] = type(exc).__name__\n"
                               "print(json.dumps({'files': found, 'env': dict(os.environ), 'value': VALUE}))\n"
                               "raise RuntimeError(str(found) + str(dict(os.environ)))\n")
                res = lau.run(script, timeout=60)
                assert SECRET not in json.dumps(res)
                out = report(res)
                assert out["value"] == 3  # the project itself is readable
                assert set(out["files"]) <= {str(project / "leak.py"), str(project / "helper.py")}
                assert "home-hidden" in res["isolation"]
            finally:
                lau.shutdown()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_environment_scrub_drops_credentials_in_kept_variables():
    env = sandbox.scrub_env({"PATH": "/usr/bin", "TF_VAR_password": "s", "TF_VAR_region": "r", "TF_CPP_MIN_LOG_LEVEL": "1",
                             "JAX_URL": "https://u:pw@host/x", "TORCH_URL": "https://tok@host/",
                             "PYTHONPATH": "/src:https://u:pw@h", "XLA_FLAGS": "--xla_cpu_foo"})
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "1" and env["XLA_FLAGS"] == "--xla_cpu_foo" and env["PATH"] == "/usr/bin"
    assert not {"TF_VAR_password", "TF_VAR_region", "JAX_URL", "TORCH_URL", "PYTHONPATH"} & set(env)


# -- 10. ptrace and /proc/PID/mem of the warm worker ------------------------------------------------------------

PTRACE = """import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
worker = os.getppid()
out = {"worker": worker}
out["seize"] = libc.ptrace(0x4206, worker, None, None) == 0
out["attach"] = libc.ptrace(16, worker, None, None) == 0
try:
    with open(f"/proc/{worker}/mem", "r+b") as fh:
        out["mem"] = "opened"
except OSError as exc:
    out["mem"] = type(exc).__name__
class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
buf = ctypes.create_string_buffer(8)
local, remote = IOVec(ctypes.addressof(buf), 8), IOVec(0x400000, 8)
libc.process_vm_writev.restype = ctypes.c_ssize_t
out["vm_write"] = libc.process_vm_writev(worker, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) >= 0
print(json.dumps(out))
"""


def test_probe_cannot_ptrace_or_write_the_warm_worker(mode_launcher, scripts):
    res = mode_launcher.run(write(scripts, "ptrace.py", PTRACE + TRAIN), timeout=60)
    assert res["status"] == "ok", res["error"]
    out = report(res)
    assert out["seize"] is False and out["attach"] is False and out["vm_write"] is False
    assert out["mem"] in ("PermissionError", "FileNotFoundError")
    nxt = mode_launcher.run(write(scripts, "after_ptrace.py", TRAIN), timeout=60)
    assert nxt["status"] == "ok" and nxt["warm"] is True


# -- 11. control characters in the text output --------------------------------------------------------------------

def test_text_output_escapes_control_characters(scripts):
    path = write(scripts, "escape.py", "raise RuntimeError('\\x1b[2J\\x1b]0;pwned\\x07 done\\rover')\n")
    out = subprocess.run([sys.executable, "-m", "gradtrace", "probe", path], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode in (1, 2)
    assert "pwned" in out.stdout
    for raw in ("\x1b", "\x07", "\r"):
        assert raw not in out.stdout
    assert "\\x1b[2J" in out.stdout


# -- 14. numbers that are not numbers ---------------------------------------------------------------------------

@pytest.mark.parametrize("flag, value", [("--timeout", "nan"), ("--timeout", "inf"), ("--timeout", "-5"),
                                         ("--timeout", "0"), ("--memory", "-1"), ("--memory", "0"),
                                         ("--steps", "0"), ("--timeout", "1e400")])
def test_bad_numbers_are_refused_with_a_clear_message(scripts, flag, value):
    path = write(scripts, "ok.py", TRAIN)
    out = subprocess.run([sys.executable, "-m", "gradtrace", "probe", path, flag, value], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert flag in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("kw", [{"timeout": math.nan}, {"timeout": math.inf}, {"timeout": -5.0},
                                {"memory_mb": -1}, {"max_steps": 0}, {"timeout": "10"}])
def test_launcher_refuses_bad_numbers(kw, scripts):
    from gradtrace.probe.launcher import ProbeLauncher

    lau = ProbeLauncher()
    try:
        with pytest.raises(ValueError, match=next(iter(kw)).split("_")[0]):
            lau.run(write(scripts, "ok.py", TRAIN), **kw)
        assert lau.workers() == 0
    finally:
        lau.shutdown()


def test_the_sandbox_holds_while_probes_run_concurrently(mode_launcher, scripts):
    """Two probes of the same launcher at once: each gets its own result (no result crosses over)."""
    paths = [write(scripts, f"c{i}.py", f"v{i} = torch.ones(2, requires_grad=True)\n(v{i} * 3).sum().backward()\n")
             for i in range(2)]
    results = {}

    def run(i):
        results[i] = mode_launcher.run(paths[i], timeout=60)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [[p["name"] for p in results[i]["parameters"]] for i in range(2)] == [["v0"], ["v1"]]

