#!/usr/bin/env bash
# Builds the VS Code extension and packages it as a .vsix for linux-x64:
#   1. npm dependencies (npm ci, when package-lock.json changed), 2. the TypeScript bundle (esbuild),
#   3. the language server and its Python dependencies for CPython 3.10-3.13 under extension/bundled/libs,
#   4. vsce package. Prints the path of the .vsix on the last line.
# Works from a fresh clone: it needs node/npm and python3 (3.11+), and says in one line what to install when
# one is missing. Environment: PYTHON (default .venv/bin/python, else a build environment it makes under
# extension/.cache from python3), GRADTRACE_BUNDLE_PYTHONS
# (default "3.10 3.11 3.12 3.13"), GRADTRACE_VSIX (output path).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
say() { echo "package-extension: $*"; }
command -v node >/dev/null && command -v npm >/dev/null \
  || { say "needs node (20 or newer) and npm: apt-get install nodejs npm"; exit 1; }
cache="$root/extension/.cache"
mkdir -p "$cache"
# The bundle is made by pip for other Python versions (--python-version), which needs a recent pip: an old one
# (23.x) stops on packages that exist only for newer Pythons. Use PYTHON or .venv when given; otherwise make a
# private build environment with a current pip once.
python="${PYTHON:-}"
if [ -z "$python" ] && [ -x .venv/bin/python ]; then python=.venv/bin/python; fi
if [ -z "$python" ]; then
  build_env="$cache/build-python"
  if [ ! -x "$build_env/bin/python" ] || ! "$build_env/bin/python" -c 'import setuptools, wheel' 2>/dev/null; then
    base="$(command -v python3 || true)"
    [ -n "$base" ] && "$base" -c 'import sys, venv; assert sys.version_info >= (3, 11)' 2>/dev/null \
      || { say "needs python3 3.11 or newer with the venv module: apt-get install python3 python3-venv"; exit 1; }
    say "setting up a build environment with a current pip in $build_env (once)"
    rm -rf "$build_env"
    "$base" -m venv "$build_env"
    "$build_env/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24.2" setuptools wheel
  fi
  python="$build_env/bin/python"
fi
versions="${GRADTRACE_BUNDLE_PYTHONS:-3.10 3.11 3.12 3.13}"
version="$(node -p 'require("./package.json").version')"
vsix="${GRADTRACE_VSIX:-$root/extension/dist/gradtrace-linux-x64-$version.vsix}"
mkdir -p "$(dirname "$vsix")"
# one build at a time in this tree: builds share extension/out and extension/bundled/libs
exec 9>"$cache/package.lock"
flock 9

# 1. npm packages, reinstalled only when the lock file changes
stamp="node_modules/.gradtrace-$(sha1sum package-lock.json | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "package-extension: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi

# 2. the extension's JavaScript
echo "package-extension: building extension/out/extension.js"
rm -rf extension/out
node extension/esbuild.mjs --production

# 3. the Python side: gradtrace as a wheel, then the bundle for each CPython version
echo "package-extension: bundling the server for Python $versions"
wheels="$cache/wheel"; rm -rf "$wheels"; mkdir -p "$wheels"
# build the wheel from a copy of the sources so that no build/ or egg-info lands in the tree
src="$(mktemp -d)"; trap 'rm -rf "$src"' EXIT
cp pyproject.toml README.md LICENSE "$src/"
tar -C . --exclude='__pycache__' --exclude='*.egg-info' -cf - server | tar -C "$src" -xf -
# the documentation pages every diagnostic links to, built from the rules being shipped
PYTHONPATH="$src/server" "$python" -m gradtrace rules --markdown "$src/server/gradtrace/docs/rules" 2>/dev/null \
  || say "the build Python cannot import gradtrace's rules: shipping the documentation pages as committed"
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation -w "$wheels" "$src" \
  || "$python" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$wheels" "$src"
wheel="$(ls "$wheels"/gradtrace-*.whl)"
# shellcheck disable=SC2086
"$python" extension/tools/bundle_python.py --wheel "$wheel" --out extension/bundled/libs \
  --versions $versions --cache "$cache/libs"

# 4. the .vsix (vsce 3.9 runs on node 20). Our own shipped files are scanned for secrets here; vsce's scan
#    is skipped because it would read every bundled third-party file.
node extension/tools/scan-secrets.js package.json extension/out/extension.js \
  extension/bundled/tool/gradtrace_launcher.py extension/README.md
echo "package-extension: vsce package"
npx --no-install vsce package --target linux-x64 --no-dependencies --allow-missing-repository \
  --allow-package-all-secrets --readme-path extension/README.md -o "$vsix" \
  >"$cache/vsce.log" 2>&1 \
  || { cat "$cache/vsce.log"; exit 1; }
grep -E "^ (DONE|WARNING)" "$cache/vsce.log" || true
echo "$vsix"
