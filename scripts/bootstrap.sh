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
extras="${GRADTRACE_EXTRAS:-dev}"
stamp=".venv/.gradtrace-installed-$(cat pyproject.toml scripts/bootstrap.sh | sha1sum | cut -c1-12)-${extras//,/_}"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch is pinned exactly in the dev extra (CPU build from local disk where available).
  .venv/bin/python -m pip install --quiet -e ".[${extras}]"
  rm -f .venv/.gradtrace-installed-*
  touch "$stamp"
fi
