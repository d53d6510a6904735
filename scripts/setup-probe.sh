#!/usr/bin/env bash
# Installs what the probe's sandbox uses: bubblewrap (`bwrap`). Safe to re-run; never fails the build:
# without bwrap the probe still runs, with resource limits only, and says so in its `isolation` field.
set -uo pipefail
if command -v bwrap >/dev/null 2>&1; then
  echo "gradtrace: bwrap present: $(bwrap --version 2>/dev/null)"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "gradtrace: bwrap missing and not root: install the 'bubblewrap' package for full probe isolation" >&2
    exit 0
  fi
fi
if command -v apt-get >/dev/null 2>&1; then
  $sudo apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq bubblewrap >/dev/null 2>&1 || true
elif command -v dnf >/dev/null 2>&1; then
  $sudo dnf install -y -q bubblewrap >/dev/null 2>&1 || true
elif command -v apk >/dev/null 2>&1; then
  $sudo apk add -q bubblewrap >/dev/null 2>&1 || true
fi
if command -v bwrap >/dev/null 2>&1 && bwrap --ro-bind / / --unshare-net --die-with-parent true 2>/dev/null; then
  echo "gradtrace: bwrap installed: $(bwrap --version 2>/dev/null)"
else
  echo "gradtrace: bwrap unavailable or not permitted here: the probe falls back to unshare or limits only" >&2
fi
exit 0
