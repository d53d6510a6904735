#!/usr/bin/env bash
# The gradient map draws with Graphviz `dot`; its tests render the SVG to PNG with rsvg-convert (librsvg).
# Safe to re-run; installs only what is missing.
set -uo pipefail
need=()
command -v dot >/dev/null 2>&1 || need+=(graphviz)
command -v rsvg-convert >/dev/null 2>&1 || need+=(librsvg2-bin)
if [ "${#need[@]}" -eq 0 ]; then
  echo "gradtrace: $(dot -V 2>&1), rsvg-convert present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo -n"
$sudo apt-get update -qq >/dev/null 2>&1 || true
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
command -v dot >/dev/null && command -v rsvg-convert >/dev/null
