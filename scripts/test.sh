#!/usr/bin/env bash
# Set up .venv when missing (gradtrace + dev tools + torch 2.13 CPU + TensorFlow/JAX CPU for truth tests),
# install what the end-to-end suites need, then lint and run the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
for setup in scripts/setup-*.sh; do
  [ -f "$setup" ] || continue
  echo "== $setup"
  bash "$setup"
done
echo "== ruff"
.venv/bin/ruff check server tests bench
echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
