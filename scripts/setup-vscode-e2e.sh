#!/usr/bin/env bash
# Installs what the VS Code end-to-end test needs into a git-ignored tools directory:
#   code-server (VS Code in the browser, from npm), playwright-core (from npm), and Debian's chromium.
# Idempotent: each step is skipped when its result is already in place. Network: npm registry + Debian apt.
#   GRADTRACE_E2E_TOOLS   tools directory (default: <repo>/.e2e-tools)
#   CODE_SERVER_VERSION   default 4.100.3, the newest release that runs on node 20 (VS Code 1.100)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${GRADTRACE_E2E_TOOLS:-$root/.e2e-tools}"
cs_version="${CODE_SERVER_VERSION:-4.100.3}"
pw_version="${PLAYWRIGHT_CORE_VERSION:-1.65.1}"
mkdir -p "$tools/tmp"
export TMPDIR="$tools/tmp"

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v rg >/dev/null 2>&1 || need_apt+=(ripgrep)
dpkg -s libkrb5-dev >/dev/null 2>&1 || need_apt+=(libkrb5-dev)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || need_apt+=(fonts-dejavu-core)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "setup-vscode-e2e: apt-get install ${need_apt[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

cs_dir="$tools/code-server-$cs_version"
cs_bin="$cs_dir/node_modules/.bin/code-server"
if [ ! -x "$cs_bin" ] || [ ! -f "$cs_dir/.installed" ]; then
  echo "setup-vscode-e2e: installing code-server $cs_version (about 2 minutes)"
  # @vscode/ripgrep's install step downloads a ripgrep binary from a host we cannot reach; it looks in
  # its cache directory under $TMPDIR first, so put Debian's rg there under the name it expects.
  rg_cache="$TMPDIR/vscode-ripgrep-cache-1.15.11"
  mkdir -p "$rg_cache" "$tools/rg-stage"
  cp "$(command -v rg)" "$tools/rg-stage/rg"
  tar czf "$rg_cache/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz" -C "$tools/rg-stage" rg
  mkdir -p "$cs_dir"
  [ -f "$cs_dir/package.json" ] || echo '{"name":"gradtrace-e2e-code-server","private":true}' > "$cs_dir/package.json"
  # node-pty builds with node-gyp through npx (needs yes=true) against the installed node headers.
  if ! (cd "$cs_dir" && npm_config_yes=true npm_config_nodedir="${NODE_HEADERS_DIR:-/usr}" \
        npm_config_unsafe_perm=true npm install --no-audit --no-fund --unsafe-perm --foreground-scripts \
        "code-server@$cs_version" > "$tools/code-server-install.log" 2>&1); then
    tail -40 "$tools/code-server-install.log"; exit 1
  fi
  touch "$cs_dir/.installed"
fi

pw_dir="$tools/playwright"
if [ ! -f "$pw_dir/node_modules/playwright-core/package.json" ]; then
  echo "setup-vscode-e2e: installing playwright-core $pw_version"
  mkdir -p "$pw_dir"
  [ -f "$pw_dir/package.json" ] || echo '{"name":"gradtrace-e2e-playwright","private":true}' > "$pw_dir/package.json"
  (cd "$pw_dir" && npm install --silent --no-audit --no-fund "playwright-core@$pw_version")
fi

# code-server writes config and logs under XDG dirs even for --version: keep them in the tools dir.
XDG_CONFIG_HOME="$tools/tmp/xdg-config" XDG_DATA_HOME="$tools/tmp/xdg-data" "$cs_bin" --version | head -1
echo "setup-vscode-e2e: ready in $tools"
