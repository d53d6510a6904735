#!/usr/bin/env bash
# Creates .venv at the repository root when it is missing and installs gradtrace with what it needs.
# Idempotent: re-runs pip only when pyproject.toml or this script changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "gradtrace: creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
extras="${GRADTRACE_EXTRAS-dev,frameworks}"
digest="$(cat pyproject.toml scripts/bootstrap.sh | sha1sum | cut -c1-12)"
stamp=".venv/.gradtrace-installed-${digest}-${extras//,/_}"
# Any install at least as complete as the one asked for will do.
if [ ! -f "$stamp" ] && ! ls .venv/.gradtrace-installed-"${digest}"-*"${extras//,/_}"* >/dev/null 2>&1; then
  # A current pip: the extension's bundler installs wheels for other Python versions (--python-version),
  # which old pips check against the running interpreter's version instead.
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch is pinned exactly (torch==2.13.0, CPU build) in the dev extra: never a bare `torch`.
  if [ -n "$extras" ]; then
    .venv/bin/python -m pip install --quiet -e ".[${extras}]"
  else
    .venv/bin/python -m pip install --quiet -e .
  fi
  touch "$stamp"
fi
# Byte code for gradtrace itself, written now: with PYTHONDONTWRITEBYTECODE set (common in containers and CI),
# every `gradtrace` process would otherwise compile its own modules again (about 0.15 s each run).
.venv/bin/python -m compileall -q server/gradtrace
