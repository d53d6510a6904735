"""Fill extension/bundled/libs with the language server and its dependencies for several CPython versions.

    python extension/tools/bundle_python.py --wheel dist/gradtrace-X-py3-none-any.whl \
        --out extension/bundled/libs --versions 3.10 3.11 3.12 3.13 [--cache DIR]

Layout (what gradtrace_launcher.py expects):
    libs/cpXY/    packages that differ per version (compiled: libcst, PyYAML; version-specific backports)
    libs/common/  packages identical for every version (pure Python: pygls, lsprotocol, jedi, ..., gradtrace)

Wheels come from the package index with `pip install --target --python-version --only-binary=:all:` for
linux x86_64. What the server never runs is left out (PRUNED: jedi's stubs for third-party packages, libcst's
codemod tooling and the YAML parser only that tooling reads). Byte code is compiled for every bundled version
whose interpreter is on this machine (`python3.X`), as unchecked-hash .pyc (valid whatever the files' times
after unpacking); other versions compile theirs on the first start. pip evaluates environment markers (`python_version < "3.11"`) against the interpreter running
it, not the target, so each target's requirement closure is completed here with markers evaluated for the
target version. Third-party packages are cached per (dependencies, version); gradtrace itself is always
installed fresh from the given wheel. dist-info directories are kept (importlib.metadata needs them).
"""

from __future__ import annotations

import argparse
import email.parser
import filecmp
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 running this script
    tomllib = None

from pip._vendor.packaging.requirements import Requirement  # noqa: E402  (pip is what installs; use its parser)

PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_install(target: str, version: str, requirements: list[str], no_deps: bool) -> None:
    tag = "cp" + version.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
           "--target", target, "--python-version", version, "--implementation", "cp",
           "--abi", tag, "--abi", "abi3", "--abi", "none", "--only-binary=:all:", "--upgrade"]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    if no_deps:
        cmd.append("--no-deps")
    cmd += requirements
    subprocess.run(cmd, check=True)


def installed(target: str) -> dict[str, str]:
    """canonical project name -> dist-info directory."""
    out = {}
    for entry in os.listdir(target):
        if entry.endswith(".dist-info"):
            meta = email.parser.Parser().parsestr(open(os.path.join(target, entry, "METADATA"), encoding="utf-8").read())
            out[canonical(meta["Name"])] = entry
    return out


def missing_requirements(target: str, version: str) -> list[str]:
    """Requirements of what is installed whose markers hold on `version` but that are not installed."""
    env = {"python_version": version, "python_full_version": version + ".0", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
           "platform_machine": "x86_64", "os_name": "posix", "extra": ""}
    have = installed(target)
    needed = []
    for dist in have.values():
        meta = email.parser.Parser().parsestr(open(os.path.join(target, dist, "METADATA"), encoding="utf-8").read())
        for line in meta.get_all("Requires-Dist") or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            if canonical(req.name) not in have:
                needed.append(f"{req.name}{req.specifier}")
    return sorted(set(needed))


def install_closure(target: str, version: str, requirements: list[str]) -> None:
    pip_install(target, version, requirements, no_deps=False)
    for _ in range(10):
        extra = missing_requirements(target, version)
        if not extra:
            return
        print(f"  Python {version}: adding {', '.join(extra)} (markers for {version})")
        pip_install(target, version, extra, no_deps=False)
    raise SystemExit(f"bundle_python: the requirement closure for Python {version} does not settle")


def tidy(target: str) -> None:
    """Drop what the server never needs: console scripts, byte code caches, the packages' own test suites."""
    shutil.rmtree(os.path.join(target, "bin"), ignore_errors=True)
    for dirpath, dirnames, _ in os.walk(target):
        for d in list(dirnames):
            if d == "__pycache__" or (d == "tests" and os.path.isfile(os.path.join(dirpath, "__init__.py"))):
                shutil.rmtree(os.path.join(dirpath, d))
                dirnames.remove(d)


# Paths (relative to a cpXY/ or common/ directory) the language server never imports or reads.
PRUNED = (
    "jedi/third_party/typeshed/stubs",  # third-party stubs: only paths inside the project are resolved
    "jedi/third_party/django-stubs",
    "libcst/codemod", "libcst/tool.py", "libcst/testing", "libcst/display", "libcst/codegen",
    "yaml", "_yaml", "yaml_ft",  # imported only by libcst's codemod tooling
)
PRUNED_DISTS = ("pyyaml", "pyyaml-ft")


def prune(target: str) -> None:
    for rel in PRUNED:
        path = os.path.join(target, rel)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    for project, dist in installed(target).items():
        if project in PRUNED_DISTS:
            shutil.rmtree(os.path.join(target, dist))


def compile_byte_code(out: str, tags: list[str]) -> list[str]:
    """Compile cpXY/ and common/ with each bundled version's interpreter found here; the versions compiled."""
    done = []
    for tag in tags:
        version = f"{tag[2]}.{tag[3:]}"
        python = sys.executable if sys.version_info[:2] == tuple(map(int, version.split("."))) \
            else shutil.which(f"python{version}")
        probe = [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"] if python else None
        if not probe or subprocess.run(probe, capture_output=True, text=True).stdout.strip() != version:
            continue  # absent, or a shim (pyenv) for a version that is not installed
        for directory in (os.path.join(out, tag), os.path.join(out, "common")):
            subprocess.run([python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
                            "-x", r"/third_party/", directory], check=True, stdout=subprocess.DEVNULL)
        done.append(version)
    return done


def same_tree(a: str, b: str) -> bool:
    if os.path.isfile(a) or os.path.isfile(b):
        return os.path.isfile(a) and os.path.isfile(b) and filecmp.cmp(a, b, shallow=False)
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(same_tree(os.path.join(a, d), os.path.join(b, d)) for d in cmp.common_dirs)


def split_common(out: str, tags: list[str]) -> None:
    """Move entries identical in every cpXY directory to common/."""
    common = os.path.join(out, "common")
    os.makedirs(common, exist_ok=True)
    first = os.path.join(out, tags[0])
    for entry in sorted(os.listdir(first)):
        paths = [os.path.join(out, t, entry) for t in tags]
        if all(os.path.exists(p) for p in paths) and all(same_tree(paths[0], p) for p in paths[1:]):
            shutil.move(paths[0], os.path.join(common, entry))
            for p in paths[1:]:
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)


def dependencies(pyproject: str) -> list[str]:
    if tomllib is None:
        raise SystemExit("bundle_python: run this with Python 3.11 or newer (tomllib)")
    with open(pyproject, "rb") as fh:
        return list(tomllib.load(fh)["project"]["dependencies"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", required=True, help="the gradtrace wheel to bundle")
    parser.add_argument("--out", required=True, help="output directory (replaced)")
    parser.add_argument("--versions", nargs="+", default=["3.10", "3.11", "3.12", "3.13"])
    parser.add_argument("--pyproject", default="pyproject.toml")
    parser.add_argument("--cache", help="directory to keep the third-party packages between runs")
    args = parser.parse_args()

    deps = dependencies(args.pyproject)
    key = hashlib.sha1(json.dumps([deps, args.versions, PLATFORMS, open(__file__, "rb").read().hex()]).encode())
    cache = os.path.join(args.cache, key.hexdigest()[:16]) if args.cache else None
    tags = ["cp" + v.replace(".", "") for v in args.versions]

    if cache and os.path.isdir(cache) and os.path.exists(os.path.join(cache, ".complete")):
        print(f"bundle_python: third-party packages from the cache ({cache})")
        staging = cache
    else:
        staging = cache or tempfile.mkdtemp(prefix="gradtrace-bundle-")
        shutil.rmtree(staging, ignore_errors=True)
        for version, tag in zip(args.versions, tags):
            print(f"bundle_python: Python {version}: {', '.join(deps)}")
            target = os.path.join(staging, tag)
            install_closure(target, version, deps)
            tidy(target)
            prune(target)
        split_common(staging, tags)
        open(os.path.join(staging, ".complete"), "w").close()

    # build beside the output, then swap it in
    new = args.out.rstrip("/") + ".new"
    shutil.rmtree(new, ignore_errors=True)
    shutil.copytree(staging, new, ignore=shutil.ignore_patterns(".complete"))
    if not cache:
        shutil.rmtree(staging, ignore_errors=True)
    # gradtrace is pure Python: one copy in common/.
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
                    "--no-deps", "--target", os.path.join(new, "common"), args.wheel], check=True)
    tidy(os.path.join(new, "common"))
    compiled = compile_byte_code(new, tags)
    for tag in tags:
        if not os.listdir(os.path.join(new, tag)):
            open(os.path.join(new, tag, ".keep"), "w").close()
    if os.path.exists(args.out):
        old = args.out.rstrip("/") + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(args.out, old)
        shutil.rmtree(old)
    os.rename(new, args.out)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.out) for f in fs)
    files = sum(len(fs) for _, _, fs in os.walk(args.out))
    print(f"bundle_python: {args.out}: {', '.join(tags)} + common, {files} files, {size / 1e6:.1f} MB; "
          f"byte code for Python {', '.join(compiled) or 'none'} (the others compile on their first start)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
